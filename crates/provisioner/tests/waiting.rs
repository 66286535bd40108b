//! Claims that wait (`Prefer: wait=N`): first in, first out for the next agent that becomes
//! idle, woken by notifications, never past their wait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_provisioner::testing::{TestPool, unthrottled};
use pool_provisioner::{ClaimInput, MAX_CLAIM_WAIT, ProvisionError};

fn input(name: &str) -> ClaimInput {
    ClaimInput {
        agent_name: name.into(),
        instructions: "wait for me".into(),
        join_url: None,
        ..ClaimInput::default()
    }
}

#[tokio::test]
async fn a_claim_without_a_wait_on_an_empty_pool_is_refused_at_once() {
    let pool = TestPool::start(unthrottled()).await;
    let started = tokio::time::Instant::now();
    let refused = pool.provisioner.claim(&input("now"), None).await.unwrap_err();
    assert!(matches!(refused, ProvisionError::PoolEmpty), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(pool.store.waiting_claims().await.unwrap(), 0);
}

#[tokio::test]
async fn a_waiting_claim_on_an_empty_pool_is_served_once_an_agent_becomes_ready() {
    let pool = TestPool::start(unthrottled()).await;
    let provisioner = pool.provisioner.clone();
    let claim = tokio::spawn(async move {
        provisioner
            .claim_waiting(&input("patient"), None, Duration::from_secs(30))
            .await
    });
    // It is queued (and has asked for a tick); then an agent becomes ready.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pool.store.waiting_claims().await.unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the claim never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = pool.create_one().await.unwrap();
    pool.make_idle(&id).await;
    let claimed = tokio::time::timeout(Duration::from_secs(10), claim)
        .await
        .expect("served within the wait")
        .unwrap()
        .unwrap();
    assert_eq!(claimed.instance_id, id.as_str());
    assert_eq!(pool.store.waiting_claims().await.unwrap(), 0, "it left the queue");
    assert!(pool.provisioner.stats().waits.count >= 1);
}

#[tokio::test]
async fn two_waiting_claims_are_served_in_the_order_they_arrived() {
    let pool = TestPool::start(unthrottled()).await;
    let mut claims = Vec::new();
    for name in ["first", "second"] {
        let provisioner = pool.provisioner.clone();
        claims.push(tokio::spawn(async move {
            let claimed = provisioner
                .claim_waiting(&input(name), None, Duration::from_secs(30))
                .await
                .unwrap();
            (name, claimed, tokio::time::Instant::now())
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while pool.store.waiting_claims().await.unwrap() < claims.len() as i64 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ids: Vec<_> = pool.create(2).await.into_iter().map(Result::unwrap).collect();
    // One agent: the first claim gets it, the second keeps waiting.
    pool.make_idle(&ids[0]).await;
    let (name, claimed, _) = tokio::time::timeout(Duration::from_secs(10), &mut claims[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((name, claimed.instance_id.as_str()), ("first", ids[0].as_str()));
    assert!(!claims[1].is_finished(), "the second waits for the next agent");
    pool.make_idle(&ids[1]).await;
    let (name, claimed, _) = tokio::time::timeout(Duration::from_secs(10), &mut claims[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((name, claimed.instance_id.as_str()), ("second", ids[1].as_str()));
}

#[tokio::test]
async fn a_wait_that_runs_out_answers_pool_empty_and_leaves_the_queue() {
    let pool = TestPool::start(unthrottled()).await;
    let started = tokio::time::Instant::now();
    let refused = pool
        .provisioner
        .claim_waiting(&input("short"), None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(refused, ProvisionError::PoolEmpty), "{refused:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(pool.store.waiting_claims().await.unwrap(), 0);
    let too_long = pool
        .provisioner
        .claim_waiting(&input("long"), None, MAX_CLAIM_WAIT + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(too_long, ProvisionError::InvalidRequest { field: "Prefer", .. }),
        "{too_long:?}"
    );
}
