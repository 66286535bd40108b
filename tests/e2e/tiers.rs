//! The parked tier through the real binary (issue 21): a burst larger than the warm stock is
//! served by waking parked agents, within each claim's wait, with no `projectCreate`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use pool_e2e::{ADMIN_KEY, ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_provisioner::outbound::OutboundClient;
use pool_store::testing::TestDatabase;
use railway_sim::SimConfig;
use serde_json::json;

/// Each claim's `Prefer: wait`.
const WAIT: Duration = Duration::from_secs(120);

fn project_creates(sim: &railway_sim::SimHandle) -> u64 {
    sim.counters().requests.get("projectCreate").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_warm_and_ten_parked_serve_a_burst_of_ten_waiting_claims_by_waking_with_no_project_create() {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let db = TestDatabase::empty().await;
    let mut env = sim_environment(&sim, db.url(), free_port().unwrap());
    // Two warm and ten parked, and no ceiling of our own (the harness's 1000): the burst's
    // rate raises the warm target far above the stock, and the plan serves it by waking alone
    // while the stock covers the waiting claims (`TierPlan::served_by_waking`).
    for (k, v) in [
        ("POOL_MIN_IDLE", "2"),
        ("POOL_PARKED_MIN", "10"),
        ("POOL_PARKED_MAX", "10"),
    ] {
        env.insert(k.into(), v.into());
    }
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    manager
        .wait_counts(Duration::from_secs(240), |c| {
            c["idle"] == 2
                && c["parked"] == 10
                && c["creating"] == 0
                && c["starting"] == 0
                && c["parking"] == 0
        })
        .await
        .unwrap();
    assert_eq!(sim.running_deployments(), 2, "parked agents run nothing");
    let creates_before = project_creates(&sim);

    let burst_from = chrono::Utc::now();
    let started = Instant::now();
    let mut claims = Vec::new();
    for i in 0..10 {
        let url = format!("{}/api/pool/claim", manager.base_url);
        claims.push(tokio::spawn(async move {
            let http = OutboundClient::new().unwrap();
            let sent = Instant::now();
            let prefer = format!("wait={}", WAIT.as_secs());
            let answer = http
                .send_with_headers(
                    hyper::Method::POST,
                    &url,
                    Some(ADMIN_KEY),
                    &[("prefer", prefer.as_str())],
                    Some(&json!({"agentName": format!("burst-{i}"), "instructions": "hi"})),
                    WAIT + Duration::from_secs(60),
                )
                .await
                .unwrap();
            (answer, sent.elapsed())
        }));
    }
    let mut times = Vec::new();
    let mut agents = Vec::new();
    for claim in claims {
        let (answer, took) = claim.await.unwrap();
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        assert!(took < WAIT, "served within its wait: {took:?}");
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        agents.push(body["instanceId"].as_str().unwrap().to_string());
        times.push(took);
    }
    let burst = started.elapsed();
    let creates_after = project_creates(&sim);
    agents.sort();
    agents.dedup();
    assert_eq!(agents.len(), 10, "ten agents, each handed out once");
    // Eight of them at least were parked and woken for the burst (two were warm). The burst
    // ends when the last of them was handed out (its `claiming`): once no claim waits the
    // pool refills its parked tier, which may begin while the last answer is on its way.
    let store = db.store().await;
    let mut woken = 0;
    let mut burst_until = burst_from;
    for id in &agents {
        let id = pool_store::AgentId::parse(id).unwrap();
        let events = store.events(&id).await.unwrap();
        if events.iter().any(|e| e.to_status.as_deref() == Some("waking")) {
            woken += 1;
        }
        let handed_out = events
            .iter()
            .filter(|e| e.to_status.as_deref() == Some("claiming") && e.at >= burst_from)
            .map(|e| e.at)
            .max()
            .expect("handed out during the burst");
        burst_until = burst_until.max(handed_out);
    }
    assert!(woken >= 8, "{woken} woken");
    let created_in_burst: Vec<_> = sim
        .snapshot()
        .projects
        .into_iter()
        .filter(|p| p.created_at >= burst_from && p.created_at <= burst_until)
        .map(|p| p.name)
        .collect();
    assert!(
        created_in_burst.is_empty(),
        "no projectCreate during the burst: {created_in_burst:?}"
    );
    times.sort();
    println!(
        "burst of 10 waiting claims on 2 warm + 10 parked, no POOL_MAX_TOTAL of its own: all served in {burst:?}; per claim {times:?}; {woken} served by a wake; projects created during the burst: {}; projectCreate requests from the first claim to the last answer: {} (the parked tier's refill, after the last hand-out)",
        created_in_burst.len(),
        creates_after - creates_before
    );
    manager.signal("TERM").unwrap();
    assert_eq!(manager.wait_exit(Duration::from_secs(30)).await.unwrap(), Some(0));
}

/// Where a SIGKILL lands in a park's or a wake's saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPoint {
    /// The step journaled (`tier_step`), Railway's call not applied: every request of the
    /// step hangs before anything is applied, so the kill lands while the call is under way.
    /// (A 503 answered at once left a window of one round trip, which a 20 ms poll of the
    /// database missed now and then, and the wake was retried and given up in between.)
    BeforeApply,
    /// Railway applied the call and never answered.
    AfterApply,
}

impl KillPoint {
    /// Injects the fault for the step's Railway `operations`.
    fn inject(self, sim: &railway_sim::SimHandle, operations: &[&str]) {
        let mut faults = railway_sim::Faults::default();
        for operation in operations {
            let fault = match self {
                KillPoint::BeforeApply => railway_sim::OperationFaults {
                    timeout_before_apply: 1.0,
                    ..Default::default()
                },
                KillPoint::AfterApply => railway_sim::OperationFaults {
                    timeout_after_apply: 1.0,
                    ..Default::default()
                },
            };
            faults.operations.insert((*operation).into(), fault);
        }
        sim.set_faults(faults);
    }
}

/// Waits until an agent is in `status` with its step noted (the remote call under way), then
/// SIGKILLs the binary; the agent's id.
async fn kill_mid_step(
    manager: &mut ManagerProcess,
    store: &pool_store::Store,
    status: pool_store::AgentStatus,
) -> pool_store::AgentId {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let caught = store
            .agents_with_status(status)
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.tier_step.is_some());
        if let Some(agent) = caught {
            manager.signal("KILL").unwrap();
            manager.wait_exit(Duration::from_secs(10)).await.unwrap();
            return agent.id;
        }
        assert!(
            Instant::now() < deadline,
            "no agent reached {status} with its step noted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The service's deployments in the simulator.
fn deployments_of(sim: &railway_sim::SimHandle, service: &str) -> Vec<String> {
    sim.snapshot()
        .deployments_of(service)
        .iter()
        .map(|d| d.status.clone())
        .collect()
}

/// One warm agent and two parked; a SIGKILL at `point` of a park, a restart; then a SIGKILL at
/// `point` of a wake (`minIdle` raised to 3), a restart. Each time the agent is resumed, not
/// lost, parked or woken once, and every running deployment is an idle agent's.
async fn sigkill_mid_park_and_mid_wake(point: KillPoint) {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let db = TestDatabase::empty().await;
    let store = db.store().await;
    let mut env = sim_environment(&sim, db.url(), free_port().unwrap());
    for (k, v) in [
        ("POOL_MIN_IDLE", "1"),
        ("POOL_PARKED_MIN", "2"),
        ("POOL_PARKED_MAX", "2"),
        ("POOL_PARK_AFTER_MS", "0"),
    ] {
        env.insert(k.into(), v.into());
    }
    // (1) Killed while parking.
    point.inject(&sim, &["deploymentRemove"]);
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    let parking = kill_mid_step(&mut manager, &store, pool_store::AgentStatus::Parking).await;
    let service = store.agent(&parking).await.unwrap().unwrap().service_id.unwrap();
    if point == KillPoint::BeforeApply {
        // The deployment still runs, an agent's in `parking`: no claim can take it.
        let deployments = deployments_of(&sim, &service);
        assert_eq!(deployments.len(), 1, "the first boot's only");
        assert_ne!(
            deployments[0], "REMOVED",
            "killed before Railway removed anything"
        );
    }
    sim.set_faults(railway_sim::Faults::default());
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    // The park is resumed once its lease (60 s) runs out.
    manager
        .wait_counts(Duration::from_secs(180), |c| {
            c["idle"] == 1
                && c["parked"] == 2
                && c["parking"] == 0
                && c["creating"] == 0
                && c["starting"] == 0
        })
        .await
        .unwrap();
    assert_eq!(
        store.agent(&parking).await.unwrap().unwrap().status,
        pool_store::AgentStatus::Parked,
        "the agent killed mid-park is parked, not lost"
    );
    assert_eq!(
        deployments_of(&sim, &service),
        vec!["REMOVED".to_string()],
        "parked by removing its one deployment, nothing deployed"
    );
    assert_eq!(sim.running_deployments(), 1, "only the warm agent runs");

    // (2) Killed while waking (the image's digest is the agent's, so the deploy is
    // `serviceInstanceDeployV2`; an image change would go through `serviceInstanceUpdate`).
    point.inject(&sim, &["serviceInstanceDeployV2", "serviceInstanceUpdate"]);
    let answer = manager
        .send(
            hyper::Method::PUT,
            "/api/pool/settings",
            true,
            Some(&json!({"minIdle": 3, "parkedMin": 0})),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let waking = kill_mid_step(&mut manager, &store, pool_store::AgentStatus::Waking).await;
    let service = store.agent(&waking).await.unwrap().unwrap().service_id.unwrap();
    if point == KillPoint::BeforeApply {
        assert_eq!(
            deployments_of(&sim, &service).len(),
            1,
            "killed before Railway deployed anything"
        );
        assert_eq!(sim.running_deployments(), 1, "nothing started for the wake");
    }
    sim.set_faults(railway_sim::Faults::default());
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    manager
        .wait_counts(Duration::from_secs(180), |c| {
            c["idle"] == 3 && c["parked"] == 0 && c["waking"] == 0 && c["creating"] == 0 && c["starting"] == 0
        })
        .await
        .unwrap();
    let woken = store.agent(&waking).await.unwrap().unwrap();
    assert_eq!(woken.status, pool_store::AgentStatus::Idle, "woken, not lost");
    // One deployment per wake: the first boot's, removed, and the wake's, never a second.
    assert_eq!(deployments_of(&sim, &service).len(), 2, "woken once");
    // Every running deployment is an idle agent's: nothing runs unaccounted.
    let live = store.live_agents().await.unwrap();
    assert_eq!(live.len(), 3, "no agent lost, none created: {live:?}");
    assert_eq!(sim.running_deployments(), 3);
    println!(
        "SIGKILL {point:?} mid-park ({parking}) and mid-wake ({waking}): both resumed, 3 idle, 3 deployments running, the woken agent's service has 2 deployments"
    );
    manager.signal("TERM").unwrap();
    assert_eq!(manager.wait_exit(Duration::from_secs(30)).await.unwrap(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_park_and_mid_wake_loses_no_agent_and_leaves_nothing_running_unaccounted() {
    sigkill_mid_park_and_mid_wake(KillPoint::AfterApply).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_after_the_journal_and_before_railway_applied_a_park_or_a_wake_loses_no_agent_and_wakes_none_twice()
 {
    sigkill_mid_park_and_mid_wake(KillPoint::BeforeApply).await;
}
