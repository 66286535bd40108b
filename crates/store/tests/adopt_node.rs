//! Taking over a Node pool's database: a database built from the Node pool's own drizzle
//! migrations at the pinned commit (fixtures/node_pool_schema.sql), with one agent per status
//! (fixtures/node_pool_rows.sql), adopted in a dry run, then for real, then again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_store::testing::TestDatabase;
use pool_store::{
    AdoptOptions, AgentId, AgentStatus, MigrateOptions, PoolSettings, Store, StoreConfig, StoreError,
    run_migrations,
};
use secrecy::ExposeSecret;

const NODE_SCHEMA_SQL: &str = include_str!("fixtures/node_pool_schema.sql");
const NODE_ROWS_SQL: &str = include_str!("fixtures/node_pool_rows.sql");
const OUR_SCHEMA: &str = "agent_pool";

fn seed() -> PoolSettings {
    PoolSettings {
        min_idle: 1,
        max_total: Some(40),
        paused: false,
        idle_schedule: None,
        max_idle_age: Some(Duration::from_secs(86_400)),
        create_failure_limit: 5,
        parked_min: 0,
        parked_max: 0,
        park_after: Duration::from_secs(600),
    }
}

fn options(dry_run: bool) -> AdoptOptions {
    AdoptOptions {
        dry_run,
        legacy_project_id: None,
        settings_seed: seed(),
    }
}

/// A Node pool's database: its schema and rows in `public`.
async fn node_database(extra_rows: &str) -> TestDatabase {
    let db = TestDatabase::empty().await;
    let client = db.client().await;
    client
        .batch_execute(NODE_SCHEMA_SQL)
        .await
        .expect("Node's drizzle migrations");
    client.batch_execute(NODE_ROWS_SQL).await.expect("Node's rows");
    client.batch_execute(extra_rows).await.expect("extra rows");
    db
}

fn our_config(db: &TestDatabase) -> StoreConfig {
    StoreConfig {
        schema: OUR_SCHEMA.into(),
        ..db.config()
    }
}

/// This pool's tables in their own schema, migrated; the store on them.
async fn our_store(db: &TestDatabase) -> Store {
    run_migrations(&our_config(db), &MigrateOptions::default())
        .await
        .expect("migrations into agent_pool");
    Store::connect(our_config(db)).await.unwrap()
}

/// Every row of Node's tables, as one text: compared before and after to show they are
/// untouched.
async fn node_tables(db: &TestDatabase) -> String {
    let client = db.client().await;
    let mut all = String::new();
    for table in [
        "instances",
        "instance_infra",
        "instance_services",
        "pool_settings",
    ] {
        let row = client
            .query_one(
                &format!(
                    "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM public.{table} t"
                ),
                &[],
            )
            .await
            .unwrap();
        all.push_str(&row.get::<_, String>(0));
        all.push('\n');
    }
    all
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

fn id(text: &str) -> AgentId {
    AgentId::parse(text).unwrap()
}

#[tokio::test]
async fn the_fixture_is_the_node_pools_drizzle_migrations_at_the_pinned_commit() {
    let Some(dir) = std::env::var_os("CONVOS_RUNTIME_DIR") else {
        eprintln!("CONVOS_RUNTIME_DIR unset: the fixture is not compared with the runtime's files");
        return;
    };
    let drizzle = std::path::Path::new(&dir).join("pool/drizzle");
    let journal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(drizzle.join("meta/_journal.json")).unwrap()).unwrap();
    let tags: Vec<&str> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tag"].as_str().unwrap())
        .collect();
    let mut sections = NODE_SCHEMA_SQL.split("-- file: ").skip(1);
    for tag in &tags {
        let section = sections
            .next()
            .unwrap_or_else(|| panic!("the fixture lacks {tag}.sql"));
        let (name, body) = section.split_once('\n').unwrap();
        assert_eq!(name, format!("{tag}.sql"));
        let file = std::fs::read_to_string(drizzle.join(name)).unwrap();
        assert_eq!(
            body.strip_suffix('\n').unwrap(),
            file,
            "{name} differs from the runtime's"
        );
    }
    assert!(
        sections.next().is_none(),
        "the fixture has more files than the journal"
    );
}

#[tokio::test]
async fn migrations_refuse_the_schema_that_holds_the_node_pools_tables() {
    let db = node_database("").await;
    let err = run_migrations(&db.config(), &MigrateOptions::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Migration(_)), "{err:?}");
    assert!(
        message.contains("DATABASE_SCHEMA") && message.contains("Node pool"),
        "{message}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('agent_metadata', 'refinery_schema_history')").await,
        0,
        "nothing of this pool's was created in public"
    );
    // And the adoption itself refuses to run with this pool's tables in public.
    let err = Store::connect(db.config())
        .await
        .unwrap()
        .adopt_node(&options(true))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DATABASE_SCHEMA"), "{err}");
}

#[tokio::test]
async fn a_node_pool_is_adopted_in_a_dry_run_then_for_real_then_not_again() {
    let db = node_database("").await;
    let store = our_store(&db).await;
    let node_before = node_tables(&db).await;

    // Dry run: the plan per status, and nothing changed.
    let dry = store.adopt_node(&options(true)).await.unwrap();
    println!("{dry}");
    assert!(dry.dry_run);
    assert_eq!(dry.read, (11, 12, 5));
    assert_eq!(dry.adopted.len(), 12);
    assert_eq!(dry.target_idle, Some(3));
    assert_eq!(dry.min_idle, Some((None, 3)));
    let text = dry.to_string();
    for line in [
        "dry run, nothing changed",
        "claimed              -> claimed      2",
        "claiming             -> starting     1  (health check, then idle)",
        "tainted              -> teardown     1",
        "(no instances row)   -> teardown     1",
        "minIdle: unset -> 3 (Node's target_idle 3)",
        "left to the operator: exa exa-key-01 of agent idleAgent_01",
        "left to the operator: telnyx tel-phone-05 of agent claimedAg-05",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM agent_pool.agent_metadata").await,
        0
    );
    assert_eq!(count(&db, "SELECT count(*) FROM agent_pool.pool_events").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM agent_pool.pool_settings").await,
        0
    );
    assert_eq!(node_tables(&db).await, node_before);

    // The real run.
    let real = store.adopt_node(&options(false)).await.unwrap();
    println!("{real}");
    assert!(!real.dry_run);
    assert_eq!(real.adopted.len(), 12);
    let expect = [
        ("idleAgent_01", AgentStatus::Idle),
        ("idleAgent_02", AgentStatus::Idle),
        ("startingA-03", AgentStatus::Starting),
        ("claimedAg-04", AgentStatus::Claimed),
        ("claimedAg-05", AgentStatus::Claimed),
        ("pendingA-06x", AgentStatus::PendingAcceptance),
        ("crashedA-07x", AgentStatus::Crashed),
        ("claimingA-08", AgentStatus::Starting),
        ("taintedA-09x", AgentStatus::Deleting),
        ("deadAgent-10", AgentStatus::Deleting),
        ("sleepingA-11", AgentStatus::Starting),
        ("halfMade--12", AgentStatus::Deleting),
    ];
    for (agent, status) in expect {
        let a = store.agent(&id(agent)).await.unwrap().unwrap();
        assert_eq!(a.status, status, "{agent}");
        assert!(!a.legacy, "{agent} has a project of its own");
        assert!(
            a.project_not_ours(),
            "{agent}: its project was not made by this pool"
        );
        assert_eq!(a.quarantined, status == AgentStatus::Deleting, "{agent}");
    }
    let ada = store.agent(&id("claimedAg-04")).await.unwrap().unwrap();
    assert_eq!(ada.project_id.as_deref(), Some("prj-claim-4"));
    assert_eq!(ada.environment_id.as_deref(), Some("env-claim-4"));
    assert_eq!(ada.service_id.as_deref(), Some("svc-claim-4"));
    assert_eq!(ada.volume_id.as_deref(), Some("vol-claim-4"));
    assert_eq!(
        ada.domain.as_deref(),
        Some("convos-agent-claimedag04.up.railway.app")
    );
    assert_eq!(
        ada.image.as_deref(),
        Some("ghcr.io/xmtplabs/convos-runtime:v0.9.0")
    );
    assert_eq!(ada.agent_name.as_deref(), Some("Ada"));
    assert_eq!(ada.conversation_id.as_deref(), Some("conv-04"));
    assert_eq!(
        ada.invite_url.as_deref(),
        Some("https://convos.org/v2?i=invite-04")
    );
    assert!(ada.claimed_at.is_some());
    assert_eq!(ada.openrouter_key_hash.as_deref(), Some("or-hash-04"));
    let secrets = ada.secrets.expect("the gateway token opens");
    assert_eq!(secrets.gateway_token.expose_secret(), "gw-claim-4");
    assert_eq!(
        secrets.agent_api_token.expose_secret(),
        "gw-claim-4",
        "the runtime checks GATEWAY_TOKEN"
    );
    let stored: String = db
        .client()
        .await
        .query_one(
            "SELECT gateway_token FROM agent_pool.agent_metadata WHERE id = 'claimedAg-04'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored.starts_with("v1:") && !stored.contains("gw-claim-4"),
        "sealed at rest: {stored}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM agent_pool.agent_services WHERE agent_id = 'claimedAg-04' AND service = 'email' AND resource_id = 'inbox-04@agentmail.to'").await,
        1
    );
    // The claim fields of an agent going back to the pool are not carried over.
    let claiming = store.agent(&id("claimingA-08")).await.unwrap().unwrap();
    assert_eq!(claiming.invite_url, None);
    let pending = store.agent(&id("pendingA-06x")).await.unwrap().unwrap();
    assert_eq!(
        pending.join_url.as_deref(),
        Some("https://convos.org/v2?i=pending-06")
    );
    assert!(
        pending.pending_acceptance_at > pending.claimed_at,
        "its wait counts from the take-over"
    );
    assert_eq!(pending.agent_name.as_deref(), Some("Lin"));
    assert_eq!(pending.runtime_version.as_deref(), Some("0.9.1"));
    let hermes = store.agent(&id("claimedAg-05")).await.unwrap().unwrap();
    assert_eq!(hermes.runtime_name.as_deref(), Some("hermes"));
    assert_eq!(hermes.runtime_version.as_deref(), Some("0.3.0"));
    let events = store.events(&id("pendingA-06x")).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "adopted");
    assert!(
        events[0].reason.contains("pending_acceptance"),
        "{}",
        events[0].reason
    );

    let settings = store.settings().await.unwrap();
    assert_eq!(settings.settings.min_idle, 3, "minIdle from Node's target_idle");
    assert_eq!(settings.settings.max_total, Some(40), "the rest from the seed");
    assert_eq!(settings.updated_by, "node-adoption");
    let adopted_events: Vec<_> = store
        .pool_events(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "node_adopted")
        .collect();
    assert_eq!(adopted_events.len(), 1);
    assert_eq!(adopted_events[0].detail["adopted"], 12);
    assert_eq!(node_tables(&db).await, node_before, "Node's tables are untouched");

    // The operator changes minIdle; a second run adopts nothing and leaves it.
    let changed = PoolSettings {
        min_idle: 5,
        ..settings.settings.clone()
    };
    store.update_settings(&changed, "admin").await.unwrap();
    let again = store.adopt_node(&options(false)).await.unwrap();
    println!("{again}");
    assert!(again.adopted.is_empty());
    assert_eq!(again.already_adopted.len(), 12);
    assert_eq!(again.min_idle, None);
    assert!(again.to_string().contains("already adopted"), "{again}");
    assert_eq!(store.settings().await.unwrap().settings.min_idle, 5);
    assert_eq!(
        count(&db, "SELECT count(*) FROM agent_pool.agent_metadata").await,
        12
    );
    assert_eq!(node_tables(&db).await, node_before);
}

/// Nothing of this pool's changed: no agent, no event, no settings.
async fn assert_unchanged(db: &TestDatabase) {
    for table in [
        "agent_metadata",
        "agent_events",
        "pool_events",
        "pool_settings",
        "agent_services",
    ] {
        assert_eq!(
            count(db, &format!("SELECT count(*) FROM agent_pool.{table}")).await,
            0,
            "{table}"
        );
    }
}

#[tokio::test]
async fn a_status_the_node_pool_never_writes_stops_the_adoption_naming_the_row() {
    let db = node_database(
        "INSERT INTO instance_infra (instance_id, provider_service_id, provider_env_id, provider_project_id, gateway_token)
             VALUES ('oddStatus-13', 'svc-odd', 'env-odd', 'prj-odd', 'gw-odd');
         INSERT INTO instances (id, name, status) VALUES ('oddStatus-13', 'convos-agent-oddStatus-13', 'hibernating');",
    )
    .await;
    let store = our_store(&db).await;
    for dry_run in [true, false] {
        let err = store.adopt_node(&options(dry_run)).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::AdoptionRefused(_)), "{err:?}");
        assert!(
            message.contains("\"oddStatus-13\"") && message.contains("\"hibernating\""),
            "{message}"
        );
        println!("{message}");
    }
    assert_unchanged(&db).await;
}

#[tokio::test]
async fn a_row_without_a_service_id_stops_the_adoption_naming_the_row() {
    let db = node_database(
        "INSERT INTO instances (id, name, status, agent_name, claimed_at)
             VALUES ('noService-14', 'convos-agent-noService-14', 'claimed', 'Eve', now());",
    )
    .await;
    let store = our_store(&db).await;
    let err = store.adopt_node(&options(false)).await.unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(
        message.contains("\"noService-14\"") && message.contains("no service id"),
        "{message}"
    );
    assert_unchanged(&db).await;
}

#[tokio::test]
async fn shared_project_agents_are_adopted_as_legacy_with_the_node_pools_project() {
    let db = node_database(
        "INSERT INTO instance_infra (instance_id, provider_service_id, provider_env_id, gateway_token, url)
             VALUES ('sharedOld-15', 'svc-shared', 'env-shared', 'gw-shared', 'https://shared.up.railway.app');
         INSERT INTO instances (id, name, status, agent_name, claimed_at)
             VALUES ('sharedOld-15', 'convos-agent-sharedOld-15', 'claimed', 'Old', now());",
    )
    .await;
    let store = our_store(&db).await;
    let err = store.adopt_node(&options(true)).await.unwrap_err();
    assert!(
        err.to_string().contains("sharedOld-15") && err.to_string().contains("RAILWAY_PROJECT_ID"),
        "{err}"
    );
    assert_unchanged(&db).await;

    let report = store
        .adopt_node(&AdoptOptions {
            legacy_project_id: Some("node-pool-project".into()),
            ..options(false)
        })
        .await
        .unwrap();
    assert_eq!(report.adopted.len(), 13);
    let old = store.agent(&id("sharedOld-15")).await.unwrap().unwrap();
    assert!(old.legacy && old.project_not_ours());
    assert_eq!(old.project_id.as_deref(), Some("node-pool-project"));
    assert_eq!(old.status, AgentStatus::Claimed);
}
