//! The real binary SIGKILLed in the middle of a rollout, then started again: the rollout resumes
//! from its rows and finishes, and every agent in it was upgraded exactly once (one new
//! deployment each, on the rollout's digest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_e2e::{ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_store::testing::TestDatabase;
use railway_sim::SimConfig;
use serde_json::{Value, json};

async fn rollout_status(manager: &ManagerProcess) -> Value {
    let answer = manager.get("/api/pool/status", true).await.unwrap();
    let status: Value = serde_json::from_slice(&answer.body).unwrap();
    status["rollout"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_a_sigkill_and_upgrades_each_agent_once() {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let db = TestDatabase::empty().await;
    let mut env = sim_environment(&sim, db.url(), free_port().unwrap());
    env.insert("POOL_MIN_IDLE".into(), "3".into());
    let store = db.store().await;

    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    manager
        .wait_counts(Duration::from_secs(60), |c| c["idle"].as_i64() >= Some(3))
        .await
        .unwrap();
    for name in ["Ada", "Grace"] {
        let answer = manager.claim(name).await.unwrap();
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    }
    manager
        .wait_counts(Duration::from_secs(60), |c| {
            c["idle"].as_i64() >= Some(3) && c["claimed"].as_i64() == Some(2)
        })
        .await
        .unwrap();

    let image = "ghcr.io/xmtplabs/convos-agent:sha-e2e0001";
    let digest = sim.image_digest(image);
    let answer = manager
        .send(
            hyper::Method::POST,
            "/api/pool/rollout",
            true,
            Some(&json!({"runtime": "openclaw", "image": image, "batch": 1, "pauseMs": 1500})),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let started: Value = serde_json::from_slice(&answer.body).unwrap();
    let id = started["id"].as_i64().unwrap();
    assert_eq!(
        started["target"],
        format!("ghcr.io/xmtplabs/convos-agent@{digest}")
    );

    // Killed once the canary is through and more are under way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let rollout = rollout_status(&manager).await;
        if rollout["agents"]["done"].as_i64() >= Some(1) && rollout["state"] == "running" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rollout}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    manager.signal("KILL").unwrap();
    manager.wait_exit(Duration::from_secs(10)).await.unwrap();
    let at_kill = store.rollout_counts(id).await.unwrap();
    assert!(
        at_kill.pending + at_kill.upgrading > 0,
        "killed mid-way: {at_kill:?}"
    );

    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let rollout = rollout_status(&manager).await;
        if rollout["id"].as_i64() == Some(id) && rollout["state"] != "running" {
            assert_eq!(rollout["state"], "succeeded", "{rollout}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rollout}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let members = store.rollout_agents(id).await.unwrap();
    assert!(
        members.len() >= 5,
        "at least 3 idle and 2 claimed: {}",
        members.len()
    );
    let snapshot = sim.snapshot();
    for member in &members {
        assert_eq!(member.state, "done", "{member:?}");
        let agent = store.agent(&member.agent_id).await.unwrap().unwrap();
        let deployments = snapshot.deployments_of(agent.service_id.as_deref().unwrap());
        assert_eq!(deployments.len(), 2, "{}: upgraded exactly once", member.agent_id);
        assert_eq!(deployments[1].image_digest.as_deref(), Some(digest.as_str()));
    }
    manager.signal("TERM").unwrap();
    manager.wait_exit(Duration::from_secs(30)).await.unwrap();
}
