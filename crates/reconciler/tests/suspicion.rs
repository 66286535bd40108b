//! Railway reads only on real suspicion (issue 23): the breaker, the backoff of agents Railway
//! confirmed down, the rolling sweep — against the simulator over HTTP and a real Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use pool_provisioner::ClaimInput;
use pool_provisioner::testing::{TestPool, unthrottled};
use pool_reconciler::{Reconciler, ReconcilerConfig};
use pool_store::{AgentId, AgentStatus};

fn config() -> ReconcilerConfig {
    ReconcilerConfig {
        tick_interval: Duration::from_millis(200),
        stuck_timeout: Duration::from_secs(30),
        // A sweep so slow that no tick of these tests reads a steady agent by it (unless the
        // test sets it).
        full_sweep_interval: Duration::from_secs(3_600_000),
        reprobe_delay: Duration::from_millis(100),
        orphan_sweep_interval: Duration::from_secs(3600),
        ..ReconcilerConfig::default()
    }
}

async fn fill(reconciler: &Reconciler, pool: &TestPool, idle: i64) {
    for _ in 0..100 {
        reconciler.tick(None).await;
        let counts = pool.store.counts().await.unwrap();
        if counts.idle == idle && counts.creating == 0 && counts.starting == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not filled: {:?}", pool.store.counts().await.unwrap());
}

async fn pool_event_kinds(pool: &TestPool) -> Vec<String> {
    pool.store
        .pool_events(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Half the fleet fails at once: the breaker trips (no demotion, no teardown, one sample
/// read, an event, the verdict in the report), and releases when they answer again.
#[tokio::test]
async fn the_breaker_trips_when_half_the_fleet_fails_at_once_and_releases() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 4).await;
    let reconciler = Reconciler::new(
        pool.provisioner.clone(),
        ReconcilerConfig {
            // A fleet of 4: the threshold is 1 failure (max(1, 0 % of 4)).
            breaker_min_failures: 1,
            breaker_fraction: 0.0,
            ..config()
        },
    );
    fill(&reconciler, &pool, 4).await;
    let idle = pool.store.agents_with_status(AgentStatus::Idle).await.unwrap();
    let down: Vec<String> = idle[..2].iter().map(|a| a.service_id.clone().unwrap()).collect();
    for service in &down {
        assert!(pool.sim.crash_service(service));
    }
    for _ in 0..3 {
        let report = reconciler.tick(None).await;
        let breaker = report.breaker.clone().expect("the breaker is open");
        assert_eq!((report.new_failures, breaker.threshold), (2, 1), "{report:?}");
        assert!(breaker.verdict.contains("the fleet's"), "{breaker:?}");
        assert_eq!(
            (report.transitions, report.teardowns, report.reprobes),
            (0, 0, 0),
            "nothing demoted, no per-agent re-probe: {report:?}"
        );
        assert!(report.read <= 2, "one sample batch: {report:?}");
    }
    assert_eq!(
        pool.store.counts().await.unwrap().idle,
        4,
        "no agent left the pool"
    );
    assert_eq!(
        pool_event_kinds(&pool)
            .await
            .iter()
            .filter(|k| *k == "breaker_tripped")
            .count(),
        1,
        "one event for the trip"
    );

    for service in &down {
        assert!(pool.sim.recover_service(service));
    }
    let mut released = false;
    for _ in 0..20 {
        let report = reconciler.tick(None).await;
        if report.breaker.is_none() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(released, "the breaker released");
    assert!(
        pool_event_kinds(&pool)
            .await
            .contains(&"breaker_released".to_string())
    );
    assert_eq!(pool.store.counts().await.unwrap().idle, 4);
}

/// A claimed agent Railway confirmed crashed is read again only after each backoff step
/// (here 400 ms doubling to 1.6 s), never every tick.
#[tokio::test]
async fn a_confirmed_down_agent_is_read_at_most_once_per_backoff_step() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 2).await;
    let base = Duration::from_millis(400);
    let max = Duration::from_millis(1600);
    let reconciler = Reconciler::new(
        pool.provisioner.clone(),
        ReconcilerConfig {
            down_backoff: base,
            down_backoff_max: max,
            ..config()
        },
    );
    fill(&reconciler, &pool, 2).await;
    // No replacement is created meanwhile: the only agent read is the crashed one.
    pool.set_settings(|s| s.paused = true).await;
    let claimed = pool
        .provisioner
        .claim(
            &ClaimInput {
                agent_name: "Ada".into(),
                instructions: "hi".into(),
                ..ClaimInput::default()
            },
            None,
        )
        .await
        .unwrap();
    let id = AgentId::parse(&claimed.instance_id).unwrap();
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    pool.sim.crash_service(agent.service_id.as_deref().unwrap());

    // (start, end) of every tick that read Railway.
    let mut reads: Vec<(Instant, Instant)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let start = Instant::now();
        let report = reconciler.tick(None).await;
        if report.read > 0 {
            assert_eq!(report.read, 1, "{report:?}");
            reads.push((start, Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pool.store.agent(&id).await.unwrap().unwrap().status,
        AgentStatus::Crashed
    );
    // Read on its first failure, then again after 0.4, 0.8, 1.6, 1.6 s: 4 or 5 reads in
    // 6 s (a tick every ~50 ms would have read it ~100 times).
    assert!((4..=6).contains(&reads.len()), "{} reads", reads.len());
    for (i, pair) in reads.windows(2).enumerate() {
        let step = base.saturating_mul(1 << i.min(10)).min(max);
        // The backoff starts within read i's tick and ends before read i+1's check.
        let gap = pair[1].1 - pair[0].0;
        assert!(
            gap >= step,
            "read {} came {gap:?} after read {i}: step {step:?}",
            i + 1
        );
    }
}

/// The rolling sweep: with the full-sweep interval three tick intervals, each tick reads a
/// third of the steady agents, and three ticks read every one of them.
#[tokio::test]
async fn a_rolling_sweep_covers_every_agent_within_n_ticks() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 5).await;
    let mut rolling = config();
    rolling.full_sweep_interval = rolling.tick_interval * 3;
    let reconciler = Reconciler::new(pool.provisioner.clone(), rolling);
    fill(&reconciler, &pool, 5).await;
    for round in 0..2 {
        // Forget what was seen: a read writes the deployment's status back.
        pool.db
            .client()
            .await
            .execute(
                "UPDATE agent_metadata SET deployment_status = NULL WHERE status = 'idle'",
                &[],
            )
            .await
            .unwrap();
        let mut read = 0;
        for _ in 0..3 {
            let report = reconciler.tick(None).await;
            assert_eq!(report.sweep_slices, 3);
            read += report.read;
        }
        assert_eq!(read, 5, "round {round}: every agent read exactly once in 3 ticks");
        for agent in pool.store.agents_with_status(AgentStatus::Idle).await.unwrap() {
            assert_eq!(
                agent.deployment_status.as_deref(),
                Some("SUCCESS"),
                "round {round}: {} read",
                agent.id
            );
        }
    }
}
