//! A Node pool's fleet taken over: its agents, deployed on the simulator as the Node pool
//! deploys them (a project each, the gateway token as `GATEWAY_TOKEN`), recorded in its
//! tables as the Node pool at the pinned commit writes them, adopted, then reconciled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use pool_provisioner::testing::{
    ENVIRONMENT, provisioner_config, railway_client, test_settings, unthrottled,
};
use pool_provisioner::{ClaimInput, Provisioner};
use pool_reconciler::{Reconciler, ReconcilerConfig};
use pool_store::testing::TestDatabase;
use pool_store::{AdoptOptions, AgentId, AgentStatus, MigrateOptions, Store, StoreConfig, run_migrations};
use railway_sim::SeededProject;

/// The Node pool's drizzle migrations at the pinned commit (checked against the runtime's
/// files by pool-store's `adopt_node` tests).
const NODE_SCHEMA_SQL: &str = include_str!("../../store/tests/fixtures/node_pool_schema.sql");

/// Node's statuses for the six agents, in order, and its `target_idle`.
const FLEET: [(&str, &str); 6] = [
    ("nodeIdle--01", "idle"),
    ("nodeIdle--02", "idle"),
    ("nodeClaim-03", "claimed"),
    ("nodeClaim-04", "claimed"),
    ("nodeCling-05", "claiming"),
    ("nodeDead--06", "dead"),
];

fn token(i: usize) -> String {
    format!("node-gateway-token-{i:02}")
}

/// The rows the Node pool writes for `seeded[i]` with status `FLEET[i]`
/// (`pool/src/services/infra.ts:204-214`, `pool/src/db/pool.ts`).
fn node_rows(seeded: &[SeededProject]) -> String {
    let mut sql = String::from("INSERT INTO pool_settings (key, value) VALUES ('target_idle', '3');\n");
    for (i, (p, (id, status))) in seeded.iter().zip(FLEET).enumerate() {
        let claimed = status == "claimed";
        sql.push_str(&format!(
            "INSERT INTO instance_infra (instance_id, provider_service_id, provider_env_id, provider_project_id, url, \
                 deploy_status, runtime_image, gateway_token, runtime_type) \
             VALUES ('{id}', '{}', '{}', '{}', 'https://{}', 'SUCCESS', 'ghcr.io/xmtplabs/convos-runtime:v0.9.1', '{}', 'openclaw');\n\
             INSERT INTO instances (id, name, status, agent_name, conversation_id, invite_url, instructions, claimed_at) \
             VALUES ('{id}', 'convos-agent-{id}', '{status}', {}, {}, {}, {}, {});\n",
            p.service_id,
            p.environment_id,
            p.project_id,
            p.domain,
            token(i),
            if claimed { format!("'User {i}'") } else { "NULL".into() },
            if claimed { format!("'conv-{i}'") } else { "NULL".into() },
            if claimed { format!("'https://convos.org/v2?i=invite-{i}'") } else { "NULL".into() },
            if claimed { "'Be kind.'" } else { "NULL" },
            if claimed { "now()" } else { "NULL" },
        ));
    }
    sql
}

#[tokio::test]
async fn an_adopted_fleet_keeps_its_claimed_agents_and_not_one_project_is_deleted() {
    let sim = railway_sim::start(unthrottled()).await.unwrap();
    let seeded = sim.seed_agent_projects(
        FLEET.len(),
        ENVIRONMENT,
        "ghcr.io/xmtplabs/convos-runtime:v0.9.1",
        |i| BTreeMap::from([("GATEWAY_TOKEN".to_string(), token(i))]),
    );
    assert_eq!(seeded.len(), FLEET.len());

    // The Node pool's database: its schema and rows in public; this pool's in agent_pool.
    let db = TestDatabase::empty().await;
    let client = db.client().await;
    client.batch_execute(NODE_SCHEMA_SQL).await.unwrap();
    client.batch_execute(&node_rows(&seeded)).await.unwrap();
    let config = StoreConfig {
        schema: "agent_pool".into(),
        ..db.config()
    };
    run_migrations(&config, &MigrateOptions::default()).await.unwrap();
    let store = Store::connect(config).await.unwrap();
    let report = store
        .adopt_node(&AdoptOptions {
            dry_run: false,
            legacy_project_id: None,
            settings_seed: test_settings(),
        })
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(report.adopted.len(), FLEET.len());
    assert_eq!(
        store.settings().await.unwrap().settings.min_idle,
        3,
        "Node's target_idle"
    );

    let (railway, deleter) = railway_client(&sim);
    let mut provisioner_config = provisioner_config(&sim, None);
    provisioner_config.pool_id = Some(store.pool_id().await.unwrap());
    let provisioner = Provisioner::new(provisioner_config, store.clone(), railway, deleter).unwrap();
    let reconciler = Reconciler::new(
        provisioner.clone(),
        ReconcilerConfig {
            tick_interval: Duration::from_millis(200),
            stuck_timeout: Duration::from_secs(30),
            full_sweep_interval: Duration::ZERO,
            reprobe_delay: Duration::from_millis(100),
            orphan_sweep_interval: Duration::from_secs(3600),
            ..ReconcilerConfig::default()
        },
    );
    let deletes_before = sim.counters().requests.get("projectDelete").copied().unwrap_or(0);

    // Ticks: the claiming agent is health-checked back to idle, the dead one torn down.
    let id = |i: usize| AgentId::parse(FLEET[i].0).unwrap();
    let mut ticks = 0;
    loop {
        let report = reconciler.tick(None).await;
        assert!(!report.lost_leadership);
        ticks += 1;
        let counts = store.counts().await.unwrap();
        let dead = store.agent(&id(5)).await.unwrap().unwrap();
        if counts.idle == 3 && counts.claimed == 2 && dead.status == AgentStatus::Deleted {
            break;
        }
        assert!(
            ticks < 100,
            "not settled after {ticks} ticks: {counts:?}, dead agent {:?}",
            dead.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more ticks: the takeover is steady.
    for _ in 0..3 {
        reconciler.tick(None).await;
    }

    let counters = sim.counters();
    for (i, status) in [
        (2, AgentStatus::Claimed),
        (3, AgentStatus::Claimed),
        (0, AgentStatus::Idle),
        (1, AgentStatus::Idle),
        (4, AgentStatus::Idle),
    ] {
        let agent = store.agent(&id(i)).await.unwrap().unwrap();
        assert_eq!(agent.status, status, "{}", FLEET[i].0);
        // The runtime answers `/pool/health` without auth (pool-server/index.ts:342-361): the
        // tick reads no secret and sends none (issue 23).
        assert_eq!(
            counters.health_tokens.get(&seeded[i].domain).map(String::as_str),
            Some(""),
            "{} is health-checked, without a token",
            FLEET[i].0
        );
    }
    let claimed = store.agent(&id(2)).await.unwrap().unwrap();
    assert_eq!(claimed.conversation_id.as_deref(), Some("conv-2"));
    assert_eq!(claimed.last_health_ok, Some(true));

    // The dead agent's service is gone; every project is still there; not one projectDelete.
    let snapshot = sim.snapshot();
    let live: Vec<&str> = snapshot.live_projects().iter().map(|p| p.id.as_str()).collect();
    for p in &seeded {
        assert!(
            live.contains(&p.project_id.as_str()),
            "project {} kept",
            p.project_id
        );
    }
    let dead_service = snapshot
        .services
        .iter()
        .find(|s| s.id == seeded[5].service_id)
        .unwrap();
    assert!(dead_service.deleted, "the dead agent's service was deleted");
    assert!(
        snapshot
            .services
            .iter()
            .filter(|s| s.id != seeded[5].service_id && seeded.iter().any(|p| p.service_id == s.id))
            .all(|s| !s.deleted),
        "every other adopted service is alive"
    );
    let deletes = counters.requests.get("projectDelete").copied().unwrap_or(0) - deletes_before;
    assert_eq!(deletes, 0, "not one project was deleted");

    // An adopted idle agent is handed out with its own (Node's) gateway token.
    let claim = provisioner
        .claim(
            &ClaimInput {
                agent_name: "Ada".into(),
                instructions: "Be kind.".into(),
                join_url: None,
                ..ClaimInput::default()
            },
            None,
        )
        .await
        .unwrap();
    let taken = FLEET
        .iter()
        .position(|(fleet_id, _)| *fleet_id == claim.instance_id)
        .expect("an adopted agent");
    assert_eq!(claim.gateway_token, token(taken));
    assert_eq!(
        sim.counters().requests.get("projectDelete").copied().unwrap_or(0),
        deletes_before
    );
}
