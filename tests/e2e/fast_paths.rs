//! The paths that make the pool react without waiting for its interval: Railway's deploy
//! events through the webhook, and a claim on a replica that does not lead. The interval is
//! set to a minute, so anything that happens within seconds happened through them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pool_e2e::{ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_store::testing::TestDatabase;
use pool_store::{Agent, AgentStatus};
use railway_sim::{SimConfig, SimHandle};
use serde_json::{Value, json};

const SECRET: &str = "railway-webhook-secret-e2e-0123456789";

fn env(sim: &SimHandle, db: &TestDatabase, port: u16) -> BTreeMap<String, String> {
    let mut env = sim_environment(sim, db.url(), port);
    for (k, v) in [
        ("TICK_INTERVAL_MS", "60000"),
        ("POOL_MIN_IDLE", "1"),
        ("POOL_FULL_SWEEP_INTERVAL_MS", "600000"),
        ("RAILWAY_WEBHOOK_SECRET", SECRET),
    ] {
        env.insert(k.into(), v.into());
    }
    env
}

async fn agents(db: &TestDatabase) -> Vec<Agent> {
    db.store().await.live_agents().await.unwrap()
}

/// Polls `check` every 20 ms; how long it took to hold.
async fn within(what: &str, timeout: Duration, check: impl AsyncFn() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The event Railway sends when a deployment succeeded.
fn deployed(agent: &Agent) -> Value {
    json!({
        "type": "Deployment.deployed",
        "details": {"id": agent.deployment_id, "status": "SUCCESS"},
        "resource": {
            "workspace": {"id": "ws-sim"},
            "project": {"id": agent.project_id},
            "environment": {"id": agent.environment_id},
            "service": {"id": agent.service_id},
            "deployment": {"id": agent.deployment_id}
        },
        "severity": "INFO",
        "timestamp": "2026-12-01T10:00:00.000Z"
    })
}

fn deployment_succeeded(sim: &SimHandle, agent: &Agent) -> bool {
    sim.snapshot()
        .deployments
        .iter()
        .any(|d| Some(&d.service_id) == agent.service_id.as_ref() && d.status == "SUCCESS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_event_makes_a_starting_agent_idle_at_once_and_forged_or_duplicate_ones_change_nothing() {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let db = TestDatabase::empty().await;
    let mut manager = ManagerProcess::start(&binary, &env(&sim, &db, free_port().unwrap()))
        .await
        .unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    let hook = format!("/webhooks/railway/{SECRET}");

    // The first tick creates one agent; its deployment succeeds, and with a minute's interval
    // nothing looks at it.
    within(
        "an agent starting with its deployment up",
        Duration::from_secs(60),
        async || {
            let all = agents(&db).await;
            all.len() == 1 && all[0].status == AgentStatus::Starting && deployment_succeeded(&sim, &all[0])
        },
    )
    .await;
    let agent = agents(&db).await.remove(0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        agents(&db).await[0].status,
        AgentStatus::Starting,
        "the interval alone is slow"
    );

    // A forged secret: 401, and nothing moves.
    let forged = manager
        .send(
            hyper::Method::POST,
            "/webhooks/railway/guessed-secret-0000000000000",
            false,
            Some(&deployed(&agent)),
        )
        .await
        .unwrap();
    assert_eq!(forged.status, 401);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        agents(&db).await[0].status,
        AgentStatus::Starting,
        "a forged event changes nothing"
    );

    // The real event: idle within two seconds.
    let answer = manager
        .send(hyper::Method::POST, &hook, false, Some(&deployed(&agent)))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let took = within("idle after the event", Duration::from_secs(2), async || {
        agents(&db).await[0].status == AgentStatus::Idle
    })
    .await;
    println!("idle {took:?} after the deploy event");

    // A duplicate: acknowledged, nothing changes.
    let events_before = db.store().await.events(&agent.id).await.unwrap().len();
    let duplicate = manager
        .send(hyper::Method::POST, &hook, false, Some(&deployed(&agent)))
        .await
        .unwrap();
    assert_eq!(duplicate.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = db.store().await.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!(after.status, AgentStatus::Idle);
    assert_eq!(
        db.store().await.events(&agent.id).await.unwrap().len(),
        events_before
    );

    // Railway's own events (the simulator sends them): a claim makes the pool create a
    // replacement, whose deployment's event makes it idle long before the next tick.
    sim.set_webhook_url(Some(format!("{}{hook}", manager.base_url)));
    let claim = manager.claim("Ada").await.unwrap();
    assert_eq!(claim.status, 200, "{}", String::from_utf8_lossy(&claim.body));
    within(
        "a replacement being created",
        Duration::from_secs(10),
        async || agents(&db).await.len() == 2,
    )
    .await;
    let replacement = within("the replacement idle", Duration::from_secs(40), async || {
        agents(&db).await.iter().any(|a| a.status == AgentStatus::Idle)
    })
    .await;
    let (delivered, dropped) = sim.webhook_deliveries();
    assert!(delivered >= 1, "the simulator delivered its events");
    assert_eq!(dropped, 0);
    println!("replacement idle {replacement:?} after its creation began; {delivered} events delivered");
    manager.signal("TERM").unwrap();
    assert_eq!(manager.wait_exit(Duration::from_secs(30)).await.unwrap(), Some(0));
    let logs = manager.output_text();
    assert!(!logs.contains(SECRET), "the webhook secret is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_the_replica_that_does_not_lead_starts_the_refill_within_two_seconds() {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let db = TestDatabase::empty().await;
    let mut first = ManagerProcess::start(&binary, &env(&sim, &db, free_port().unwrap()))
        .await
        .unwrap();
    first.wait_healthy(Duration::from_secs(30)).await.unwrap();
    let mut second = ManagerProcess::start(&binary, &env(&sim, &db, free_port().unwrap()))
        .await
        .unwrap();
    second.wait_healthy(Duration::from_secs(30)).await.unwrap();
    // Deploy events help the first agent become idle (the interval is a minute).
    sim.set_webhook_url(Some(format!("{}/webhooks/railway/{SECRET}", second.base_url)));
    within("the pool filled", Duration::from_secs(60), async || {
        agents(&db).await.iter().any(|a| a.status == AgentStatus::Idle)
    })
    .await;

    let leading = async |m: &ManagerProcess| {
        let metrics = m.get("/metrics", true).await.unwrap();
        let text = String::from_utf8_lossy(&metrics.body).to_string();
        text.lines()
            .find(|l| l.starts_with("pool_is_leader "))
            .map(|l| l.ends_with(" 1"))
            .unwrap_or_else(|| panic!("no pool_is_leader in {text}"))
    };
    // Metrics are refreshed every few seconds: wait until they show exactly one leader.
    within(
        "exactly one replica leading",
        Duration::from_secs(15),
        async || leading(&first).await != leading(&second).await,
    )
    .await;
    let (leader, follower) = if leading(&first).await {
        (&first, &second)
    } else {
        (&second, &first)
    };
    assert!(leading(leader).await && !leading(follower).await);

    let claim = follower.claim("Grace").await.unwrap();
    assert_eq!(claim.status, 200, "{}", String::from_utf8_lossy(&claim.body));
    let took = within("the refill started", Duration::from_secs(2), async || {
        agents(&db).await.len() >= 2
    })
    .await;
    println!("the leader started the refill {took:?} after the claim on the follower");
    for m in [&mut first, &mut second] {
        m.signal("TERM").unwrap();
        assert_eq!(m.wait_exit(Duration::from_secs(30)).await.unwrap(), Some(0));
    }
}
