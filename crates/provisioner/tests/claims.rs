//! Claims: each idle agent goes to exactly one claimer, failures quarantine, keys repeat.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use pool_provisioner::testing::{TestPool, unthrottled};
use pool_provisioner::{ClaimInput, ProvisionError};
use pool_store::{AgentId, AgentStatus};
use railway_sim::{AgentBehaviour, SimConfig};

fn input(name: &str) -> ClaimInput {
    ClaimInput {
        agent_name: name.into(),
        instructions: "be helpful".into(),
        join_url: None,
        ..ClaimInput::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_claims_over_thirty_idle_agents_hand_each_out_once() {
    let pool = TestPool::start(unthrottled()).await;
    let idle: BTreeSet<String> = pool
        .idle_agents(30)
        .await
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    let claims: Vec<_> = (0..100)
        .map(|i| {
            let p = pool.provisioner.clone();
            tokio::spawn(async move { p.claim(&input(&format!("user-{i}")), None).await })
        })
        .collect();
    let mut won = Vec::new();
    let mut empty = 0;
    for c in claims {
        match c.await.unwrap() {
            Ok(response) => won.push(response),
            Err(ProvisionError::PoolEmpty) => empty += 1,
            Err(e) => panic!("unexpected claim error: {e}"),
        }
    }
    assert_eq!(won.len(), 30);
    assert_eq!(empty, 70);
    let winners: BTreeSet<String> = won.iter().map(|r| r.instance_id.clone()).collect();
    assert_eq!(winners, idle, "each idle agent went to exactly one claimer");
    let invites: BTreeSet<&str> = won.iter().map(|r| r.invite_url.as_str()).collect();
    assert_eq!(invites.len(), 30);

    let snapshot = pool.sim.snapshot();
    assert!(
        snapshot.deployments.iter().all(|d| d.provisions <= 1),
        "no agent provisioned twice"
    );
    assert_eq!(snapshot.counters.provisions, 30);
    let counts = pool.store.counts().await.unwrap();
    assert_eq!((counts.claimed, counts.idle, counts.claiming), (30, 0, 0));
    for r in &won {
        let agent = pool
            .store
            .agent(&AgentId::parse(&r.instance_id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(agent.invite_url.as_deref(), Some(r.invite_url.as_str()));
        assert_eq!(agent.status, AgentStatus::Claimed);
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_answer_and_takes_no_second_agent() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(2).await;
    let first = pool
        .provisioner
        .claim(&input("Ada"), Some("key-1"))
        .await
        .unwrap();
    let again = pool
        .provisioner
        .claim(&input("Ada"), Some("key-1"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(
        pool.store.counts().await.unwrap().idle,
        1,
        "the second agent is still idle"
    );
    assert_eq!(pool.sim.counters().provisions, 1);
}

#[tokio::test]
async fn a_failed_provision_quarantines_the_agent_and_tears_it_down_instead_of_returning_it() {
    let pool = TestPool::start(SimConfig {
        agents: AgentBehaviour {
            provision_fail: 1.0,
            ..AgentBehaviour::default()
        },
        ..unthrottled()
    })
    .await;
    let ids = pool.idle_agents(1).await;
    let err = pool
        .provisioner
        .claim(&input("Ada"), Some("key-f"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProvisionError::ProvisionFailed { agent, .. } if *agent == ids[0]),
        "{err:?}"
    );
    // Never back to the pool: quarantined, then torn down.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();
        assert!(agent.quarantined);
        assert_ne!(agent.status, AgentStatus::Idle);
        if agent.status == AgentStatus::Deleted {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "teardown finished");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    pool.assert_nothing_leaked().await;
    assert!(matches!(
        pool.provisioner.claim(&input("Ada"), None).await,
        Err(ProvisionError::PoolEmpty)
    ));
    // The key remembers the failure.
    let repeated = pool
        .provisioner
        .claim(&input("Ada"), Some("key-f"))
        .await
        .unwrap_err();
    assert!(
        matches!(repeated, ProvisionError::RepeatedFailure(_)),
        "{repeated:?}"
    );
}

#[tokio::test]
async fn a_provision_that_never_answers_times_out_and_quarantines() {
    let pool = TestPool::start(SimConfig {
        agents: AgentBehaviour {
            provision_hang: 1.0,
            ..AgentBehaviour::default()
        },
        ..unthrottled()
    })
    .await;
    let ids = pool.idle_agents(1).await;
    let err = pool.provisioner.claim(&input("Ada"), None).await.unwrap_err();
    assert!(matches!(err, ProvisionError::ProvisionFailed { .. }), "{err:?}");
    let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();
    assert!(agent.quarantined);
}

#[tokio::test]
async fn invalid_claims_are_refused_before_any_agent_is_touched() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(1).await;
    let err = pool
        .provisioner
        .claim(&input(&"x".repeat(201)), None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ProvisionError::InvalidRequest {
            field: "agentName",
            ..
        }
    ));
    let mut dev_link = input("Ada");
    dev_link.join_url = Some("https://popup.convos.org/v2?i=x".into());
    let err = pool.provisioner.claim(&dev_link, None).await.unwrap_err();
    assert!(matches!(
        err,
        ProvisionError::InvalidRequest { field: "joinUrl", .. }
    ));
    assert_eq!(pool.store.counts().await.unwrap().idle, 1);
    assert_eq!(pool.sim.counters().provisions, 0);
}
