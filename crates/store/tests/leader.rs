//! The leader lock: one holder at a time, lost with its connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_store::LeaderLock;
use pool_store::testing::TestDatabase;

const KEY: i64 = 42;

#[tokio::test]
async fn only_one_session_holds_the_leader_lock_and_it_passes_on_when_dropped() {
    let db = TestDatabase::migrated().await;
    let config = db.config();
    let first = LeaderLock::try_acquire(&config, KEY)
        .await
        .unwrap()
        .expect("first takes the lock");
    assert!(LeaderLock::try_acquire(&config, KEY).await.unwrap().is_none());
    assert!(first.still_held(Duration::from_secs(2)).await);
    first.release().await;
    let second = LeaderLock::try_acquire(&config, KEY).await.unwrap();
    assert!(second.is_some(), "released lock is free again");
}

#[tokio::test]
async fn a_cut_connection_loses_leadership_and_frees_the_lock() {
    let db = TestDatabase::migrated().await;
    let config = db.config();
    let leader = LeaderLock::try_acquire(&config, KEY)
        .await
        .unwrap()
        .expect("lock");
    let pid = leader.backend_pid().await.unwrap();
    db.client()
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    assert!(
        !leader.still_held(Duration::from_secs(2)).await,
        "leader notices the cut"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if LeaderLock::try_acquire(&config, KEY).await.unwrap().is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "lock freed by the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
