//! `POOL_ADOPT_NODE_SCHEMA=true` through the real binary: a Node pool's database (its drizzle
//! migrations at the pinned commit, its rows for agents deployed on the simulator as it
//! deploys them) is taken over at start-up; a restart adopts nothing new.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use pool_e2e::{ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_store::testing::TestDatabase;
use railway_sim::SimConfig;

const NODE_SCHEMA_SQL: &str = include_str!("../../crates/store/tests/fixtures/node_pool_schema.sql");

/// Node's status per agent, in order.
const FLEET: [(&str, &str); 3] = [
    ("e2eIdle---01", "idle"),
    ("e2eClaim--02", "claimed"),
    ("e2eDead---03", "dead"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_pools_agents_are_adopted_at_start_up_and_a_restart_adopts_nothing_new() {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let seeded = sim.seed_agent_projects(
        FLEET.len(),
        "staging",
        "ghcr.io/xmtplabs/convos-runtime:v0.9.1",
        |i| BTreeMap::from([("GATEWAY_TOKEN".to_string(), format!("node-token-{i}"))]),
    );
    let db = TestDatabase::empty().await;
    let client = db.client().await;
    client.batch_execute(NODE_SCHEMA_SQL).await.unwrap();
    let mut rows = String::from("INSERT INTO pool_settings (key, value) VALUES ('target_idle', '1');\n");
    for (i, (p, (id, status))) in seeded.iter().zip(FLEET).enumerate() {
        let claimed = status == "claimed";
        rows.push_str(&format!(
            "INSERT INTO instance_infra (instance_id, provider_service_id, provider_env_id, provider_project_id, url, gateway_token) \
             VALUES ('{id}', '{}', '{}', '{}', 'https://{}', 'node-token-{i}');\n\
             INSERT INTO instances (id, name, status, agent_name, conversation_id, invite_url, claimed_at) \
             VALUES ('{id}', 'convos-agent-{id}', '{status}', {}, {}, {}, {});\n",
            p.service_id,
            p.environment_id,
            p.project_id,
            p.domain,
            if claimed { "'Ada'" } else { "NULL" },
            if claimed { "'conv-2'" } else { "NULL" },
            if claimed { "'https://convos.org/v2?i=x'" } else { "NULL" },
            if claimed { "now()" } else { "NULL" },
        ));
    }
    client.batch_execute(&rows).await.unwrap();

    let mut env = sim_environment(&sim, db.url(), free_port().unwrap());
    env.insert("DATABASE_SCHEMA".into(), "agent_pool".into());
    env.insert("POOL_ADOPT_NODE_SCHEMA".into(), "true".into());
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(60)).await.unwrap();
    let counts = manager
        .wait_counts(Duration::from_secs(60), |c| {
            c["claimed"] == 1 && c["idle"].as_i64() >= Some(1)
        })
        .await
        .unwrap();
    println!("counts after the take-over: {counts}");
    let output = manager.output_text();
    assert!(output.contains("Node pool adoption"), "{output}");
    assert!(output.contains("adopted: 3"), "{output}");
    let stored: String = client
        .query_one(
            "SELECT status FROM agent_pool.agent_metadata WHERE id = 'e2eClaim--02'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "claimed");
    // The dead agent is torn down: its service goes, its project stays.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dead: String = client
            .query_one(
                "SELECT status FROM agent_pool.agent_metadata WHERE id = 'e2eDead---03'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if dead == "deleted" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead agent is still {dead}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(manager);

    // A restart with the flag still set adopts nothing new.
    let mut again = ManagerProcess::start(&binary, &env).await.unwrap();
    again.wait_healthy(Duration::from_secs(60)).await.unwrap();
    let output = again.output_text();
    assert!(output.contains("nothing new: already adopted"), "{output}");
    let snapshot = sim.snapshot();
    for p in &seeded {
        assert!(
            snapshot
                .projects
                .iter()
                .any(|v| v.id == p.project_id && !v.deleted),
            "project {} kept",
            p.project_id
        );
    }
    assert_eq!(
        sim.counters().requests.get("projectDelete").copied().unwrap_or(0),
        0
    );
    let node_rows: i64 = client
        .query_one("SELECT count(*) FROM public.instances", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(node_rows, 3, "Node's rows are left in place");
}
