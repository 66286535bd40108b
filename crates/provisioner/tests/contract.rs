//! The agent contract as the runtime's pool server defines it (issue 19): an agent is never
//! burned on a normal answer, claims come as the real clients send them, one joinUrl gets one
//! agent, and protected agents are never handed out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_provisioner::{ClaimInput, ProvisionError, ProvisionStatus};
use pool_store::{AgentId, AgentStatus};
use railway_sim::ProvisionFault;
use serde_json::json;

fn input(name: &str) -> ClaimInput {
    ClaimInput {
        agent_name: name.into(),
        instructions: "be helpful".into(),
        ..ClaimInput::default()
    }
}

async fn domain_of(pool: &TestPool, id: &AgentId) -> String {
    pool.store.agent(id).await.unwrap().unwrap().domain.unwrap()
}

async fn status_of(pool: &TestPool, id: &AgentId) -> AgentStatus {
    pool.store.agent(id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn an_agent_answering_400_is_not_torn_down_and_the_claimer_gets_a_400() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pool.idle_agents(1).await.remove(0);
    pool.sim.fault_next_provision(ProvisionFault::BadRequest);
    let err = pool
        .provisioner
        .claim(&input("Ada"), Some("k-400"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProvisionError::InvalidRequest { .. }), "{err:?}");
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Idle, "back to idle, not burned");
    assert!(!agent.quarantined);
    assert_eq!(agent.agent_name, None, "the claim's fields are cleared");
    // It serves the next claim.
    let next = pool.provisioner.claim(&input("Bea"), None).await.unwrap();
    assert_eq!(next.instance_id, id.to_string());
}

#[tokio::test]
async fn an_agent_answering_503_is_not_torn_down_and_the_claim_takes_the_next_agent() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    pool.sim.fault_next_provision(ProvisionFault::NotReady);
    let answer = pool
        .provisioner
        .claim(&input("Ada"), Some("k-503"))
        .await
        .unwrap();
    assert_eq!(
        answer.instance_id,
        ids[1].to_string(),
        "the second agent served it"
    );
    let first = pool.store.agent(&ids[0]).await.unwrap().unwrap();
    assert_eq!(first.status, AgentStatus::Starting, "not ready: back to starting");
    assert!(!first.quarantined);
    // The key now names the agent that served it.
    let again = pool
        .provisioner
        .claim(&input("Ada"), Some("k-503"))
        .await
        .unwrap();
    assert_eq!(again.instance_id, ids[1].to_string());
    // The tick's health check brings the first back to idle.
    pool.make_idle(&ids[0]).await;
    assert_eq!(status_of(&pool, &ids[0]).await, AgentStatus::Idle);
}

#[tokio::test]
async fn a_500_on_a_clean_agent_returns_it_to_idle_after_convos_reset() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pool.idle_agents(1).await.remove(0);
    let domain = domain_of(&pool, &id).await;
    pool.sim.fault_next_provision(ProvisionFault::FailDirty);
    let err = pool.provisioner.claim(&input("Ada"), None).await.unwrap_err();
    assert!(matches!(err, ProvisionError::ProvisionFailed { .. }), "{err:?}");
    let runtime = pool.sim.agent_runtime(&domain).unwrap();
    assert_eq!(runtime.resets, 1, "reset through /convos/reset");
    assert!(runtime.clean());
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Idle);
    assert!(!agent.quarantined);
    let next = pool.provisioner.claim(&input("Bea"), None).await.unwrap();
    assert_eq!(next.instance_id, id.to_string());
}

#[tokio::test]
async fn a_500_on_an_agent_holding_a_conversation_tears_it_down_without_a_reset() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pool.idle_agents(1).await.remove(0);
    let domain = domain_of(&pool, &id).await;
    pool.sim
        .fault_next_provision(ProvisionFault::FailWithConversation);
    pool.provisioner.claim(&input("Ada"), None).await.unwrap_err();
    assert_eq!(
        pool.sim.agent_runtime(&domain).map(|r| r.resets),
        Some(0),
        "a conversation a user may be in is never wiped"
    );
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert!(agent.quarantined);
    assert!(matches!(
        agent.status,
        AgentStatus::Deleting | AgentStatus::Deleted
    ));
}

#[tokio::test]
async fn two_claims_with_one_join_url_get_one_agent() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(3).await;
    let join = ClaimInput {
        join_url: Some("https://dev.convos.org/v2?i=double-tap".into()),
        ..input("Ada")
    };
    let claims: Vec<_> = (0..2)
        .map(|_| {
            let p = pool.provisioner.clone();
            let join = join.clone();
            tokio::spawn(async move { p.claim(&join, None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for c in claims {
        answers.push(c.await.unwrap().unwrap());
    }
    assert_eq!(answers[0].instance_id, answers[1].instance_id, "one agent");
    assert_eq!(answers[0].conversation_id, answers[1].conversation_id);
    assert_eq!(answers[0].status, ProvisionStatus::Joined);
    assert_eq!(pool.sim.counters().provisions, 1, "one provision");
    let counts = pool.store.counts().await.unwrap();
    assert_eq!((counts.claimed, counts.idle), (1, 2));
    // A third, later, with an idempotency key: the same agent still.
    let third = pool.provisioner.claim(&join, Some("k-join")).await.unwrap();
    assert_eq!(third.instance_id, answers[0].instance_id);
}

#[tokio::test]
async fn the_landing_pages_claim_gets_the_defaults_and_profile_image_and_metadata_reach_the_agent() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    // dashboard/src/app/api/claim/route.ts:14 sends the body with `source: "landing"`.
    let landing: ClaimInput = serde_json::from_value(
        json!({"joinUrl": "https://dev.convos.org/v2?i=landing", "source": "landing"}),
    )
    .unwrap();
    let answer = pool.provisioner.claim(&landing, None).await.unwrap();
    assert_eq!(answer.agent_name, "Assistant");
    assert_eq!(answer.status, ProvisionStatus::Joined);
    let id = AgentId::parse(&answer.instance_id).unwrap();
    let sent = pool.sim.agent_runtime(&domain_of(&pool, &id).await).unwrap();
    assert_eq!(sent.provision_requests[0]["agentName"], "Assistant");
    assert_eq!(
        sent.provision_requests[0]["instructions"],
        "You are a helpful AI assistant."
    );
    let row = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(row.claim_source.as_deref(), Some("landing"));

    let rich = ClaimInput {
        profile_image: Some("https://img.example/ada.png".into()),
        metadata: Some(json!({"plan": "pro", "ref": "newsletter"})),
        ..input("Ada")
    };
    let answer = pool.provisioner.claim(&rich, None).await.unwrap();
    assert_eq!(answer.status, ProvisionStatus::Created);
    let other = ids.iter().find(|i| i.to_string() == answer.instance_id).unwrap();
    let sent = pool.sim.agent_runtime(&domain_of(&pool, other).await).unwrap();
    assert_eq!(
        sent.provision_requests[0]["profileImage"],
        "https://img.example/ada.png"
    );
    assert_eq!(
        sent.provision_requests[0]["metadata"],
        json!({"plan": "pro", "ref": "newsletter"})
    );
    let row = pool.store.agent(other).await.unwrap().unwrap();
    assert_eq!(row.profile_image.as_deref(), Some("https://img.example/ada.png"));
    assert_eq!(
        row.claim_metadata,
        Some(json!({"plan": "pro", "ref": "newsletter"}))
    );
}

#[tokio::test]
async fn bad_profile_image_metadata_or_runtime_get_a_400_naming_the_field_and_touch_no_agent() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pool.idle_agents(1).await.remove(0);
    let domain = domain_of(&pool, &id).await;
    let cases = [
        (
            ClaimInput {
                profile_image: Some("http://img.example/a.png".into()),
                ..input("Ada")
            },
            "profileImage",
        ),
        (
            ClaimInput {
                metadata: Some(json!({"nested": {"a": "b"}})),
                ..input("Ada")
            },
            "metadata",
        ),
        (
            ClaimInput {
                metadata: Some(json!({"big": "x".repeat(5000)})),
                ..input("Ada")
            },
            "metadata",
        ),
        (
            ClaimInput {
                runtime: Some("hermes".into()),
                ..input("Ada")
            },
            "runtime",
        ),
    ];
    for (bad, named) in cases {
        let err = pool.provisioner.claim(&bad, Some("k-bad")).await.unwrap_err();
        assert!(
            matches!(&err, ProvisionError::InvalidRequest { field, .. } if *field == named),
            "{named}: {err:?}"
        );
    }
    assert_eq!(status_of(&pool, &id).await, AgentStatus::Idle);
    assert!(
        pool.sim
            .agent_runtime(&domain)
            .unwrap()
            .provision_requests
            .is_empty(),
        "no agent was called"
    );
    assert_eq!(
        pool.store
            .idempotent_claim("admin", "k-bad")
            .await
            .unwrap()
            .map(|c| c.agent_id),
        None
    );
}

#[tokio::test]
async fn a_protected_agent_is_never_claimed_drained_or_killed_without_confirmation() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    let mut config = provisioner_config(&pool.sim, None);
    config.protected_instances = vec![ids[0].to_string()];
    let provisioner = pool.provisioner(config);
    let answer = provisioner.claim(&input("Ada"), None).await.unwrap();
    assert_eq!(answer.instance_id, ids[1].to_string());
    assert!(matches!(
        provisioner.claim(&input("Bea"), None).await,
        Err(ProvisionError::PoolEmpty)
    ));
    assert!(provisioner.drain(5).await.unwrap().is_empty(), "nothing drained");
    let refused = provisioner.kill(&ids[0], "killed by operator").await.unwrap_err();
    assert!(matches!(refused, ProvisionError::Conflict { .. }), "{refused:?}");
    assert_eq!(status_of(&pool, &ids[0]).await, AgentStatus::Idle);
    provisioner
        .kill_protected(&ids[0], "killed by operator (protected, confirmed)")
        .await
        .unwrap();
    assert!(matches!(
        status_of(&pool, &ids[0]).await,
        AgentStatus::Deleting | AgentStatus::Deleted
    ));
}
