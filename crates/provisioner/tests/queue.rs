//! The claim queue cannot be wedged (issue 20): a ticket leaves on every way out — the caller
//! going away and a lost idempotency race included —, a ticket whose claim stopped beating is
//! skipped, a caller holds at most a few, and only live tickets count. Refusals count as demand
//! at most a few per caller a minute.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_provisioner::{ClaimInput, ProvisionError};

fn input(name: &str) -> ClaimInput {
    ClaimInput {
        agent_name: name.into(),
        instructions: "wait for me".into(),
        join_url: None,
        ..ClaimInput::default()
    }
}

async fn until_waiting(pool: &TestPool, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pool.store.waiting_claims().await.unwrap() < n {
        assert!(tokio::time::Instant::now() < deadline, "the claims never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_no_ticket(pool: &TestPool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while pool.store.queue_tickets().await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a ticket stayed in the queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A waiting claim whose future is dropped (what hyper does when the client hangs up) leaves
/// no ticket behind, and the next claim is served at once.
#[tokio::test]
async fn a_dropped_waiting_claim_leaves_no_ticket_and_the_next_claim_is_served_at_once() {
    let pool = TestPool::start(unthrottled()).await;
    let provisioner = pool.provisioner.clone();
    let waiting = tokio::spawn(async move {
        provisioner
            .claim_waiting(&input("gone"), None, Duration::from_secs(60))
            .await
    });
    until_waiting(&pool, 1).await;
    waiting.abort();
    until_no_ticket(&pool).await;

    let id = pool.create_one().await.unwrap();
    pool.make_idle(&id).await;
    let started = tokio::time::Instant::now();
    let claimed = pool.provisioner.claim(&input("next"), None).await.unwrap();
    assert_eq!(claimed.instance_id, id.as_str());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Two waiting claims under one idempotency key: the one that takes the agent wins, the other
/// finds the key taken (a repeat) — and its ticket leaves the queue too.
#[tokio::test]
async fn a_lost_idempotency_race_leaves_no_ticket() {
    let pool = TestPool::start(unthrottled()).await;
    let mut claims = Vec::new();
    for _ in 0..2 {
        let provisioner = pool.provisioner.clone();
        claims.push(tokio::spawn(async move {
            provisioner
                .claim_waiting(&input("twice"), Some("same-key"), Duration::from_secs(30))
                .await
        }));
    }
    until_waiting(&pool, 2).await;
    let id = pool.create_one().await.unwrap();
    pool.make_idle(&id).await;
    let mut served = 0;
    for claim in claims {
        match tokio::time::timeout(Duration::from_secs(10), claim)
            .await
            .unwrap()
            .unwrap()
        {
            Ok(answer) => {
                assert_eq!(answer.instance_id, id.as_str());
                served += 1;
            }
            // The winner was still provisioning when the loser looked.
            Err(ProvisionError::ClaimInProgress) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(served >= 1);
    until_no_ticket(&pool).await;
    // Nothing blocks the next claim.
    let next = pool.create_one().await.unwrap();
    pool.make_idle(&next).await;
    let claimed = pool.provisioner.claim(&input("next"), None).await.unwrap();
    assert_eq!(claimed.instance_id, next.as_str());
}

/// A ticket whose claim stopped beating (its replica died) is skipped: it neither heads the
/// queue nor counts as waiting, long before its wait runs out.
#[tokio::test]
async fn a_stale_head_is_skipped_and_not_counted() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pool.create_one().await.unwrap();
    pool.make_idle(&id).await;
    pool.db
        .client()
        .await
        .batch_execute(
            "INSERT INTO claim_queue (owner, expires_at, heartbeat_at)
             VALUES ('app', now() + interval '100 seconds', now() - interval '30 seconds')",
        )
        .await
        .unwrap();
    assert_eq!(pool.store.waiting_claims().await.unwrap(), 0);
    let claimed = pool
        .provisioner
        .claim(&input("past the dead"), None)
        .await
        .unwrap();
    assert_eq!(claimed.instance_id, id.as_str());
}

/// A caller holds at most `max_waiting_per_claimant` live tickets; another caller is not
/// affected.
#[tokio::test]
async fn a_caller_holds_at_most_its_cap_of_waiting_claims() {
    let pool = TestPool::start(unthrottled()).await;
    let mut config = provisioner_config(&pool.sim, None);
    config.max_waiting_per_claimant = 2;
    let provisioner = pool.provisioner(config);
    let mut waiting = Vec::new();
    for i in 0..2 {
        let p = provisioner.clone();
        waiting.push(tokio::spawn(async move {
            p.claim_as("app", &input(&format!("w{i}")), None, Duration::from_secs(30))
                .await
        }));
    }
    until_waiting(&pool, 2).await;
    let refused = provisioner
        .claim_as("app", &input("third"), None, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ProvisionError::TooManyWaiting { max: 2 }),
        "{refused:?}"
    );
    assert_eq!(
        pool.store.queue_tickets().await.unwrap(),
        2,
        "nothing was written"
    );
    let p = provisioner.clone();
    let other = tokio::spawn(async move {
        p.claim_as("bot", &input("other"), None, Duration::from_secs(30))
            .await
    });
    until_waiting(&pool, 3).await;
    for task in waiting.iter().chain([&other]) {
        task.abort();
    }
    until_no_ticket(&pool).await;
}

/// One caller's refusals count as demand at most `refusals_counted_per_minute` a minute.
#[tokio::test]
async fn refusals_count_as_demand_at_most_a_few_per_caller_a_minute() {
    let pool = TestPool::start(unthrottled()).await;
    for _ in 0..12 {
        let refused = pool
            .provisioner
            .claim_as("app", &input("hammer"), None, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(refused, ProvisionError::PoolEmpty));
    }
    pool.provisioner
        .claim_as("bot", &input("once"), None, Duration::ZERO)
        .await
        .unwrap_err();
    let counted = |who: &'static str| {
        let db = &pool.db;
        async move {
            db.client()
                .await
                .query_one("SELECT count(*) FROM claim_refusals WHERE claimant = $1", &[&who])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // A minute boundary may fall between the refusals: at most twice the cap then.
    let app = counted("app").await;
    assert!((5..=10).contains(&app), "{app}");
    assert_eq!(counted("bot").await, 1);
}
