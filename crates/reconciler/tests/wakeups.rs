//! What wakes the leader, against the simulator and a real PostgreSQL: claims ask for sizing
//! passes, not ticks; a replica acts once on what it announces itself (its own `NOTIFY` echo
//! is dropped) and once on what another replica announces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_provisioner::ClaimInput;
use pool_provisioner::testing::{TestPool, unthrottled};
use pool_reconciler::{Reconciler, ReconcilerConfig};
use pool_store::PoolSignal;

const WAIT: Duration = Duration::from_secs(30);

async fn until(what: &str, reconciler: &Reconciler, done: impl Fn(u64, u64) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = reconciler.status();
        if done(status.ticks, status.sizings) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another replica announces `QueueMoved` (which the reconciler ignores), and this replica's
/// listener hears it: PostgreSQL delivers in commit order, so any echo of what this replica
/// sent before has arrived by then. Then the loop gets a moment to act on what it heard.
async fn settle(pool: &TestPool, other: &pool_store::Store) {
    let mut heard = pool.provisioner.listener().subscribe();
    other.notify(PoolSignal::QueueMoved).await.unwrap();
    loop {
        let signal = tokio::time::timeout(WAIT, heard.recv()).await.unwrap().unwrap();
        if signal == PoolSignal::QueueMoved {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn claims_cost_sizing_passes_not_ticks_and_a_replica_acts_once_on_its_own_notify() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 3).await;
    let reconciler = Reconciler::new(
        pool.provisioner.clone(),
        ReconcilerConfig {
            // Only wake-ups tick: the interval's first tick comes at start, the next in an hour.
            tick_interval: Duration::from_secs(3600),
            full_sweep_interval: Duration::from_secs(3600),
            ..ReconcilerConfig::default()
        },
    );
    // Fill the pool by hand first.
    for _ in 0..200 {
        reconciler.tick(None).await;
        if pool.store.counts().await.unwrap().idle == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pool.store.counts().await.unwrap().idle, 3);
    let other_replica = pool.db.store().await;
    let running = tokio::spawn(reconciler.clone().run(std::future::pending()));
    until("the first tick, at start", &reconciler, |ticks, _| ticks == 1).await;
    settle(&pool, &other_replica).await;
    assert_eq!(reconciler.status().ticks, 1);

    // Three claims, each announced as the claim route does: sizing passes (at most one a
    // second), no tick; the pool creates what the claims took.
    let echoes = pool.provisioner.listener().echoes_ignored();
    for i in 0..3 {
        let input = ClaimInput {
            agent_name: format!("user-{i}"),
            instructions: "hi".into(),
            ..ClaimInput::default()
        };
        pool.provisioner.claim(&input, None).await.unwrap();
        reconciler.size_everywhere();
    }
    until("a sizing pass", &reconciler, |_, sizings| sizings >= 1).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let counts = pool.store.counts().await.unwrap();
        if counts.creating + counts.starting + counts.idle >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sizing pass creates: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(&pool, &other_replica).await;
    let status = reconciler.status();
    assert_eq!(status.ticks, 1, "claims cost no tick");
    assert!((1..=3).contains(&status.sizings), "{status:?}");
    assert!(
        pool.provisioner.listener().echoes_ignored() >= echoes + 3,
        "this replica's own NOTIFYs came back and were dropped"
    );

    // A tick asked for on this replica: one tick, not two (no echo).
    reconciler.trigger_everywhere();
    until("the tick asked for", &reconciler, |ticks, _| ticks >= 2).await;
    settle(&pool, &other_replica).await;
    assert_eq!(
        reconciler.status().ticks,
        2,
        "one tick per request, its echo dropped"
    );

    // Another replica's request: one tick here.
    other_replica.notify(PoolSignal::TickSoon).await.unwrap();
    until("the other replica's tick", &reconciler, |ticks, _| ticks >= 3).await;
    settle(&pool, &other_replica).await;
    assert_eq!(reconciler.status().ticks, 3);
    running.abort();
}
