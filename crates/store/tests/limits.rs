//! Limits every replica shares (issue 20), against a real PostgreSQL: fixed-window rate limits,
//! and the console's sign-in limit with lockouts that double.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_store::testing::TestDatabase;
use pool_store::{RateDecision, SignInLimit};

#[tokio::test]
async fn a_rate_limit_counts_hits_of_a_key_across_stores_and_says_when_to_come_back() {
    let db = TestDatabase::migrated().await;
    let (a, b) = (db.store().await, db.store().await);
    let window = Duration::from_secs(3600);
    for i in 0..4 {
        let store = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            store.hit_rate_limit("claim:app", window, 4).await.unwrap(),
            RateDecision::Allowed
        );
    }
    match a.hit_rate_limit("claim:app", window, 4).await.unwrap() {
        RateDecision::Limited { retry_after } => {
            assert!(retry_after <= window && retry_after >= Duration::from_secs(1))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        b.hit_rate_limit("claim:bot", window, 4).await.unwrap(),
        RateDecision::Allowed,
        "another key has its own count"
    );
}

#[tokio::test]
async fn sign_in_failures_lock_an_address_out_then_for_twice_as_long_and_many_addresses_pause_everyone() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let limit = SignInLimit {
        per_address: 3,
        global: 5,
        window: Duration::from_secs(60),
        max_lockout: Duration::from_secs(3600),
        strikes_forgotten: Duration::from_secs(3600),
    };
    for _ in 0..2 {
        assert_eq!(store.sign_in_failed("192.0.2.1", &limit).await.unwrap(), None);
    }
    let first = store.sign_in_failed("192.0.2.1", &limit).await.unwrap().unwrap();
    assert!((58..=60).contains(&first.as_secs()), "{first:?}");
    assert!(
        store
            .sign_in_refused("192.0.2.1", &limit)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.sign_in_refused("192.0.2.2", &limit).await.unwrap(), None);

    // The lockout ends; the next one, within the hour, lasts twice as long.
    let client = db.client().await;
    client
        .batch_execute("UPDATE sign_in_lockouts SET locked_until = now() - interval '1 second'")
        .await
        .unwrap();
    assert_eq!(store.sign_in_refused("192.0.2.1", &limit).await.unwrap(), None);
    for _ in 0..2 {
        store.sign_in_failed("192.0.2.1", &limit).await.unwrap();
    }
    let second = store.sign_in_failed("192.0.2.1", &limit).await.unwrap().unwrap();
    assert!((118..=120).contains(&second.as_secs()), "{second:?}");
    store.sign_in_succeeded("192.0.2.1").await.unwrap();
    assert_eq!(store.sign_in_refused("192.0.2.1", &limit).await.unwrap(), None);

    // Five failures from five addresses: every sign-in waits for the window.
    for i in 0..5 {
        store
            .sign_in_failed(&format!("198.51.100.{i}"), &limit)
            .await
            .unwrap();
    }
    assert!(
        store
            .sign_in_refused("203.0.113.9", &limit)
            .await
            .unwrap()
            .is_some()
    );
}
