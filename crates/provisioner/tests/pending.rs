//! `pending_acceptance`: a join that waits for approval is handed out and waits, is completed
//! into `claimed`, or fails back to idle when the runtime resets clean (issue 19).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pool_provisioner::testing::{TestPool, unthrottled};
use pool_provisioner::{ClaimInput, ProvisionError, ProvisionStatus, Recovered};
use pool_store::{AgentId, AgentStatus};

/// A join the simulator's agent answers as pending (its join URL contains `pending`).
fn pending_join() -> ClaimInput {
    ClaimInput {
        agent_name: "Ada".into(),
        instructions: "be helpful".into(),
        join_url: Some("https://dev.convos.org/v2?i=pending-join-1".into()),
        ..ClaimInput::default()
    }
}

async fn pending_agent(pool: &TestPool) -> AgentId {
    pool.idle_agents(1).await;
    let answer = pool.provisioner.claim(&pending_join(), None).await.unwrap();
    assert_eq!(answer.status, ProvisionStatus::PendingAcceptance);
    assert_eq!(answer.conversation_id, None);
    assert_eq!(answer.invite_url, "https://dev.convos.org/v2?i=pending-join-1");
    assert_eq!(answer.agent_name, "Ada");
    AgentId::parse(&answer.instance_id).unwrap()
}

#[tokio::test]
async fn a_pending_join_is_handed_out_counted_apart_and_never_claimed_again() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pending_agent(&pool).await;
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::PendingAcceptance);
    assert!(agent.pending_acceptance_at.is_some());
    assert!(!agent.quarantined, "a pending join does not burn the agent");
    assert_eq!(agent.provision_status.as_deref(), Some("pending_acceptance"));
    let counts = pool.store.counts().await.unwrap();
    assert_eq!(
        (counts.pending_acceptance, counts.claimed, counts.idle),
        (1, 0, 0)
    );
    // Never claimed again: a claim for the same join gets this agent's answer, any other
    // claim finds the pool empty.
    let again = pool.provisioner.claim(&pending_join(), None).await.unwrap();
    assert_eq!(again.instance_id, id.to_string());
    assert_eq!(again.status, ProvisionStatus::PendingAcceptance);
    let other = ClaimInput {
        join_url: None,
        ..pending_join()
    };
    assert!(matches!(
        pool.provisioner.claim(&other, None).await,
        Err(ProvisionError::PoolEmpty)
    ));
}

#[tokio::test]
async fn a_completed_pending_join_becomes_claimed_with_its_conversation() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pending_agent(&pool).await;
    pool.provisioner
        .complete_pending_acceptance(&id, "conv-accepted")
        .await
        .unwrap();
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Claimed);
    assert_eq!(agent.conversation_id.as_deref(), Some("conv-accepted"));
    assert_eq!(agent.joined, Some(true));
    // Only once, and only for a pending agent.
    let again = pool
        .provisioner
        .complete_pending_acceptance(&id, "conv-other")
        .await
        .unwrap_err();
    assert!(
        matches!(
            again,
            ProvisionError::Conflict {
                status: AgentStatus::Claimed,
                ..
            }
        ),
        "{again:?}"
    );
    let empty = pool
        .provisioner
        .complete_pending_acceptance(&id, " ")
        .await
        .unwrap_err();
    assert!(
        matches!(
            empty,
            ProvisionError::InvalidRequest {
                field: "conversationId",
                ..
            }
        ),
        "{empty:?}"
    );
}

#[tokio::test]
async fn a_failed_pending_join_resets_the_runtime_and_returns_the_agent_to_idle() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pending_agent(&pool).await;
    let domain = pool.store.agent(&id).await.unwrap().unwrap().domain.unwrap();
    let runtime = pool.sim.agent_runtime(&domain).unwrap();
    assert!(runtime.pending_join.is_some());
    assert_eq!(runtime.provision_requests.len(), 1);

    let recovered = pool.provisioner.fail_pending_acceptance(&id).await.unwrap();
    assert_eq!(recovered, Recovered::Idle);
    let runtime = pool.sim.agent_runtime(&domain).unwrap();
    assert_eq!(runtime.resets, 1, "the runtime was reset through /convos/reset");
    assert!(runtime.clean());
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Idle);
    assert_eq!(
        (
            agent.join_url,
            agent.invite_url,
            agent.agent_name,
            agent.pending_acceptance_at
        ),
        (None, None, None, None),
        "the claim's fields are cleared"
    );
    // It serves the next claim.
    let next = pool
        .provisioner
        .claim(
            &ClaimInput {
                agent_name: "Bea".into(),
                instructions: "be brief".into(),
                join_url: None,
                ..ClaimInput::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(next.instance_id, id.to_string());
    assert_eq!(next.status, ProvisionStatus::Created);
    assert!(next.conversation_id.is_some());
}

#[tokio::test]
async fn a_failed_pending_join_whose_runtime_cannot_be_reached_is_torn_down() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pending_agent(&pool).await;
    let service = pool.store.agent(&id).await.unwrap().unwrap().service_id.unwrap();
    assert!(pool.sim.crash_service(&service));
    let recovered = pool.provisioner.fail_pending_acceptance(&id).await.unwrap();
    assert_eq!(recovered, Recovered::TornDown);
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert!(matches!(
        agent.status,
        AgentStatus::Deleting | AgentStatus::Deleted
    ));
    assert!(agent.quarantined);
    // An agent that is not pending is refused.
    let idle = pool.idle_agents(1).await.remove(0);
    let refused = pool.provisioner.fail_pending_acceptance(&idle).await.unwrap_err();
    assert!(
        matches!(
            refused,
            ProvisionError::Conflict {
                status: AgentStatus::Idle,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(
        pool.store.agent(&idle).await.unwrap().unwrap().status,
        AgentStatus::Idle
    );
}
