//! Wake-ups across replicas on a real PostgreSQL: each replica hears each signal once — its
//! own at once, in-process, with the echo of its `NOTIFY` dropped; the others' through
//! `LISTEN`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_store::testing::TestDatabase;
use pool_store::{AgentId, Listener, PoolSignal};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;

const WAIT: Duration = Duration::from_secs(20);

async fn next(heard: &mut Receiver<PoolSignal>) -> PoolSignal {
    tokio::time::timeout(WAIT, heard.recv())
        .await
        .expect("a signal within the wait")
        .expect("the listener runs")
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_replica_hears_its_own_signal_once_and_drops_the_echo_the_other_replica_hears_it_once() {
    let db = TestDatabase::migrated().await;
    // Two replicas: two stores, each with its listener.
    let (a, b) = (db.store().await, db.store().await);
    assert_ne!(a.notify_origin(), b.notify_origin());
    let (ear_a, ear_b) = (Listener::start(&a), Listener::start(&b));
    until("both listeners connected", || {
        ear_a.is_connected() && ear_b.is_connected()
    })
    .await;
    let (mut heard_a, mut heard_b) = (ear_a.subscribe(), ear_b.subscribe());

    a.notify(PoolSignal::TickSoon).await.unwrap();
    assert_eq!(
        next(&mut heard_a).await,
        PoolSignal::TickSoon,
        "at once, in-process"
    );
    assert_eq!(next(&mut heard_b).await, PoolSignal::TickSoon, "through NOTIFY");
    // The echo comes back to A's listener, which drops it.
    until("A's echo heard and dropped", || ear_a.echoes_ignored() == 1).await;
    assert_eq!(ear_b.echoes_ignored(), 0);

    // B's signal is A's next: nothing in between (PostgreSQL delivers in commit order, so a
    // second TickSoon would have come first).
    b.notify(PoolSignal::QueueMoved).await.unwrap();
    assert_eq!(next(&mut heard_a).await, PoolSignal::QueueMoved);
    assert_eq!(heard_a.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(next(&mut heard_b).await, PoolSignal::QueueMoved);
    until("B's echo dropped", || ear_b.echoes_ignored() == 1).await;
    assert_eq!(heard_b.try_recv(), Err(TryRecvError::Empty));

    // A look carries its agent past the origin; sizing travels like a tick.
    let agent = AgentId::parse("abc123def456").unwrap();
    a.notify(PoolSignal::Look(agent.clone())).await.unwrap();
    a.notify(PoolSignal::SizeSoon).await.unwrap();
    assert_eq!(next(&mut heard_b).await, PoolSignal::Look(agent.clone()));
    assert_eq!(next(&mut heard_b).await, PoolSignal::SizeSoon);
    assert_eq!(next(&mut heard_a).await, PoolSignal::Look(agent));
    assert_eq!(next(&mut heard_a).await, PoolSignal::SizeSoon);
    until("A's two echoes dropped", || ear_a.echoes_ignored() == 3).await;

    // A replica from before origins sends bare payloads: never taken for one's own.
    db.client()
        .await
        .execute("SELECT pg_notify('pool_tick', '')", &[])
        .await
        .unwrap();
    assert_eq!(next(&mut heard_a).await, PoolSignal::TickSoon);
    assert_eq!(next(&mut heard_b).await, PoolSignal::TickSoon);
    assert_eq!((ear_a.echoes_ignored(), ear_b.echoes_ignored()), (3, 1));
    assert_eq!(heard_a.try_recv(), Err(TryRecvError::Empty));
}
