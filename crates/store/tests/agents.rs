//! Agent rows: creation, the saga journal, guarded transitions and claims.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::Duration;

use pool_store::testing::{TestDatabase, claim_request};
use pool_store::{
    AgentId, AgentSecrets, AgentStatus, ClaimOutcome, CreationStep, NewAgent, SetupSecrets, Store, Transition,
};
use secrecy::SecretString;

const LEASE: Duration = Duration::from_secs(300);

fn new_agent(id: &str) -> NewAgent {
    NewAgent {
        id: AgentId::parse(id).unwrap(),
        image: "ghcr.io/xmtplabs/convos-agent:staging".into(),
        shape: pool_store::DEFAULT_SHAPE.into(),
        secrets: AgentSecrets {
            gateway_token: SecretString::from(format!("gw-{id}")),
            agent_api_token: SecretString::from(format!("tok-{id}")),
        },
        setup: SetupSecrets {
            setup_password: SecretString::from(format!("pw-{id}")),
            wallet_private_key: SecretString::from(format!("0x{id}")),
        },
    }
}

/// Inserts `n` agents and walks them to idle as the saga and tick would.
async fn idle_agents(store: &Store, n: usize) -> Vec<AgentId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let agent = new_agent(&format!("agent{i:07}"));
        store.insert_creating(&agent, LEASE).await.unwrap();
        store
            .record_step(&agent.id, CreationStep::Project, Some(&format!("proj-{i}")))
            .await
            .unwrap();
        assert!(
            store
                .transition(
                    &agent.id,
                    AgentStatus::Creating,
                    AgentStatus::Starting,
                    "deployed"
                )
                .await
                .unwrap()
                .applied()
        );
        assert!(
            store
                .transition(&agent.id, AgentStatus::Starting, AgentStatus::Idle, "healthy")
                .await
                .unwrap()
                .applied()
        );
        ids.push(agent.id);
    }
    ids
}

#[tokio::test]
async fn a_creating_row_exists_before_any_remote_call_and_journals_each_step() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let agent = store
        .insert_creating(&new_agent("abcdefabcdef"), LEASE)
        .await
        .unwrap();
    assert_eq!(agent.status, AgentStatus::Creating);
    assert_eq!(agent.project_id, None);
    assert!(agent.completed_steps.is_empty());

    store
        .record_openrouter_key(&agent.id, "key-hash", &SecretString::from("sk-or-1"))
        .await
        .unwrap();
    store
        .record_step(&agent.id, CreationStep::Project, Some("proj-1"))
        .await
        .unwrap();
    store
        .record_step(&agent.id, CreationStep::Variables, None)
        .await
        .unwrap();
    let agent = store.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!(agent.project_id.as_deref(), Some("proj-1"));
    assert_eq!(agent.openrouter_key_hash.as_deref(), Some("key-hash"));
    assert_eq!(
        agent.completed_steps,
        vec![
            CreationStep::OpenRouterKey,
            CreationStep::Project,
            CreationStep::Variables
        ]
    );
    let events = store.events(&agent.id).await.unwrap();
    assert_eq!(events[0].kind, "created");
    // Secrets never print.
    assert!(!format!("{agent:?}").contains("gw-abcdefabcdef"));
}

#[tokio::test]
async fn a_transition_with_a_stale_expected_status_changes_nothing_and_says_so() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let id = idle_agents(&store, 1).await.remove(0);
    let events_before = store.events(&id).await.unwrap().len();

    // The tick believes the agent is still starting; a claim already moved it on.
    let outcome = store
        .transition(&id, AgentStatus::Starting, AgentStatus::Deleting, "stuck")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Transition::LostRace {
            actual: Some(AgentStatus::Idle)
        }
    );
    let agent = store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Idle);
    assert_eq!(
        store.events(&id).await.unwrap().len(),
        events_before,
        "no event for a lost race"
    );

    let missing = store
        .transition(
            &AgentId::parse("nosuchagent0").unwrap(),
            AgentStatus::Idle,
            AgentStatus::Deleting,
            "x",
        )
        .await
        .unwrap();
    assert_eq!(missing, Transition::LostRace { actual: None });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_claims_over_twenty_idle_agents_take_each_agent_once() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let idle: HashSet<AgentId> = idle_agents(&store, 20).await.into_iter().collect();

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&claim_request(None)).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut empty = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            ClaimOutcome::Claimed(agent) => winners.push(agent.id.clone()),
            ClaimOutcome::PoolEmpty => empty += 1,
            ClaimOutcome::Repeated(_) => panic!("no idempotency keys were used"),
            ClaimOutcome::SameJoin(_) => panic!("no join URLs were used"),
        }
    }
    let distinct: HashSet<AgentId> = winners.iter().cloned().collect();
    assert_eq!(winners.len(), 20, "exactly 20 winners");
    assert_eq!(distinct.len(), 20, "no agent claimed twice");
    assert_eq!(distinct, idle);
    assert_eq!(empty, 30, "30 clean 'none idle' answers");
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.idle, counts.claiming), (0, 20));
}

#[tokio::test]
async fn claims_take_the_oldest_idle_agent_under_a_lease() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let ids = idle_agents(&store, 3).await;
    let ClaimOutcome::Claimed(agent) = store.claim(&claim_request(None)).await.unwrap() else {
        panic!("an idle agent exists");
    };
    assert_eq!(agent.id, ids[0]);
    assert_eq!(agent.status, AgentStatus::Claiming);
    assert_eq!(agent.agent_name.as_deref(), Some("Ada"));
    assert!(agent.claim_expires_at.is_some());
    assert!(agent.secrets.is_some(), "the claimer needs the agent's token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_returns_the_first_agent_and_takes_no_other() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    idle_agents(&store, 5).await;
    let results = futures_util::future::join_all((0..10).map(|_| {
        let store = store.clone();
        async move { store.claim(&claim_request(Some("key-1"))).await.unwrap() }
    }))
    .await;
    let mut first = None;
    let mut repeats = Vec::new();
    for r in results {
        match r {
            ClaimOutcome::Claimed(a) => {
                assert!(first.is_none(), "only one request takes an agent");
                first = Some(a.id.clone());
            }
            ClaimOutcome::Repeated(p) => repeats.push(p.agent_id),
            ClaimOutcome::PoolEmpty => panic!("agents were idle"),
            ClaimOutcome::SameJoin(_) => panic!("no join URLs were used"),
        }
    }
    let first = first.expect("one request claimed");
    assert!(repeats.iter().all(|id| *id == first));
    assert_eq!(store.counts().await.unwrap().idle, 4);

    let response = serde_json::json!({"inviteUrl": "https://convos.org/i/x"});
    assert!(
        store
            .complete_claim(
                &first,
                "https://convos.org/i/x",
                "conv",
                false,
                Some(("key-1", &response))
            )
            .await
            .unwrap()
            .applied()
    );
    let ClaimOutcome::Repeated(p) = store.claim(&claim_request(Some("key-1"))).await.unwrap() else {
        panic!("key was used");
    };
    assert_eq!(p.response, Some(response));
}

#[tokio::test]
async fn an_abandoned_claim_quarantines_the_agent_instead_of_returning_it() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    idle_agents(&store, 1).await;
    let ClaimOutcome::Claimed(agent) = store.claim(&claim_request(None)).await.unwrap() else {
        panic!("an idle agent exists");
    };
    assert!(
        store
            .abandon_claim(&agent.id, "provision failed: 500", None)
            .await
            .unwrap()
            .applied()
    );
    let agent = store.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Deleting);
    assert!(agent.quarantined);
    assert!(matches!(
        store.claim(&claim_request(None)).await.unwrap(),
        ClaimOutcome::PoolEmpty
    ));
    // The lease of a dead claimer expires and is found.
    idle_agents_with_prefix(&store).await;
    let mut short = claim_request(None);
    short.lease = Duration::from_millis(1);
    let ClaimOutcome::Claimed(b) = store.claim(&short).await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.expired_claim_leases().await.unwrap(), vec![b.id]);
}

async fn idle_agents_with_prefix(store: &Store) {
    let agent = new_agent("second000000");
    store.insert_creating(&agent, LEASE).await.unwrap();
    store
        .record_step(&agent.id, CreationStep::Project, Some("proj-x"))
        .await
        .unwrap();
    store
        .transition(&agent.id, AgentStatus::Creating, AgentStatus::Idle, "test")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_project_id_is_required_once_an_agent_leaves_creating() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let agent = store
        .insert_creating(&new_agent("noproject000"), LEASE)
        .await
        .unwrap();
    let err = store
        .transition(&agent.id, AgentStatus::Creating, AgentStatus::Idle, "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("agent_metadata_project_known"), "{err}");
    assert!(
        store
            .transition(
                &agent.id,
                AgentStatus::Creating,
                AgentStatus::Deleting,
                "failed early"
            )
            .await
            .unwrap()
            .applied()
    );
}

#[tokio::test]
async fn the_event_log_is_append_only() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    store
        .insert_creating(&new_agent("appendonly00"), LEASE)
        .await
        .unwrap();
    let err = db
        .client()
        .await
        .batch_execute("DELETE FROM agent_events")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("db error") || err.as_db_error().is_some());
}

/// Found by the chaos run: a replica killed between a failed creation's compensation and its
/// teardown left the row held by the saga's five-minute lease.
#[tokio::test]
async fn a_teardown_does_not_wait_out_a_dead_creations_lease() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let agent = store
        .insert_creating(&new_agent("leaseheld000"), LEASE)
        .await
        .unwrap();
    assert!(
        store
            .begin_teardown(&agent.id, AgentStatus::Creating, "failed", false)
            .await
            .unwrap()
            .applied()
    );
    let agent = store.agent(&agent.id).await.unwrap().unwrap();
    let now = store.now().await.unwrap();
    let held_for = agent.worker_lease_until.unwrap() - now;
    assert!(
        held_for <= chrono::Duration::seconds(60),
        "lease cut to a minute: {held_for}"
    );
}

#[tokio::test]
async fn a_step_in_flight_is_visible_until_it_is_journaled() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let agent = store
        .insert_creating(&new_agent("inflight0001"), LEASE)
        .await
        .unwrap();
    assert_eq!(agent.step_in_flight, None);
    store.begin_step(&agent.id, CreationStep::Project).await.unwrap();
    let mid = store.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!(
        mid.step_in_flight,
        Some(CreationStep::Project),
        "a crash now leaves the step visibly uncertain"
    );
    store
        .record_step(&agent.id, CreationStep::Project, Some("prj-1"))
        .await
        .unwrap();
    let done = store.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!(done.step_in_flight, None);
    assert_eq!(done.project_id.as_deref(), Some("prj-1"));
}

#[tokio::test]
async fn the_redeploy_rule_in_sql_and_in_code_agree() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let ids = idle_agents(&store, 3).await;
    let client = db.client().await;
    // One legacy idle agent, one starting: neither may be redeployed.
    client
        .execute(
            "UPDATE agent_metadata SET legacy = true WHERE id = $1",
            &[&ids[1].as_str()],
        )
        .await
        .unwrap();
    store
        .transition(&ids[2], AgentStatus::Idle, AgentStatus::Starting, "test")
        .await
        .unwrap();
    let marked = store.request_redeploy(None).await.unwrap();
    let agents = store.agents_by_ids(&ids).await.unwrap();
    let by_rule = agents.iter().filter(|a| a.is_redeployable()).count() as u64;
    assert_eq!(marked, by_rule);
    assert_eq!(marked, 1);
}

/// On a table autovacuum has analysed, the claim statement still takes the oldest idle agent
/// from the front of `agent_metadata_idle_by_shape`: an estimate of one matching row made
/// PostgreSQL scan and sort the whole table for every claim of a connection's first five
/// (64 ms at 50,000 agents, against 0.2 ms).
#[tokio::test]
async fn the_claim_takes_the_oldest_idle_agent_by_its_index_on_an_analysed_table() {
    let db = TestDatabase::migrated().await;
    let agents: Vec<pool_store::testing::SeedAgent> = (0..3_000)
        .map(|i| pool_store::testing::SeedAgent::numbered(format!("analysed{i:05}"), i))
        .collect();
    db.seed_idle_agents(&agents).await;
    db.client()
        .await
        .batch_execute("ANALYZE agent_metadata")
        .await
        .unwrap();
    let store = db.store().await;
    let plan = store.claim_plan(&claim_request(None)).await.unwrap();
    assert!(
        plan.contains("agent_metadata_idle_by_shape") && !plan.contains("Seq Scan on agent_metadata"),
        "the claim does not read the idle agents' index:\n{plan}"
    );
    // And it claims the oldest.
    match store.claim(&claim_request(None)).await.unwrap() {
        ClaimOutcome::Claimed(agent) => assert_eq!(agent.id.as_str(), "analysed00000"),
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// Claim `i`: its own name (`user-i`), instructions and metadata (`{"i": i}`).
fn numbered_claim(i: usize) -> pool_store::ClaimRequest {
    let mut request = claim_request(None);
    request.agent_name = format!("user-{i}");
    request.instructions = format!("instructions of {i}");
    request.metadata = Some(serde_json::json!({ "i": i }));
    request
}

/// Claims that arrive together share statements (`gathered.rs`): each still gets an agent
/// of its own with its own name and instructions written on it, and their completions, shared
/// too, finish each agent with its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_sharing_statements_each_get_their_own_agent_with_their_own_fields() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let idle = idle_agents(&store, 25).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { (i, store.claim(&numbered_claim(i)).await.unwrap()) })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, ClaimOutcome::Claimed(agent)) => {
                assert_eq!(
                    agent.agent_name,
                    Some(format!("user-{i}")),
                    "the claim's own name"
                );
                assert_eq!(agent.instructions, Some(format!("instructions of {i}")));
                assert_eq!(agent.claim_metadata, Some(serde_json::json!({ "i": i })));
                assert_eq!(agent.status, AgentStatus::Claiming);
                claimed.push((i, agent.id.clone()));
            }
            (_, ClaimOutcome::PoolEmpty) => {}
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    let distinct: HashSet<&AgentId> = claimed.iter().map(|(_, id)| id).collect();
    assert_eq!(
        (claimed.len(), distinct.len()),
        (25, 25),
        "each of the 25 agents once"
    );
    assert_eq!(distinct, idle.iter().collect::<HashSet<_>>());

    let done = futures_util::future::join_all(claimed.iter().map(|(i, id)| {
        let store = store.clone();
        async move {
            store
                .complete_claim(
                    id,
                    &format!("https://convos.org/i/{i}"),
                    &format!("conv-{i}"),
                    false,
                    None,
                )
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(done.iter().all(Transition::applied), "{done:?}");
    for (i, id) in &claimed {
        let agent = store.agent(id).await.unwrap().unwrap();
        assert_eq!(agent.status, AgentStatus::Claimed);
        assert_eq!(agent.invite_url, Some(format!("https://convos.org/i/{i}")));
        assert_eq!(agent.conversation_id, Some(format!("conv-{i}")));
        let events = store.events(id).await.unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.to_status.as_deref() == Some("claimed"))
                .count(),
            1,
            "one claimed event"
        );
    }
    // A completion of an agent no longer claiming changes nothing and says what it is.
    let first = &claimed[0].1;
    assert_eq!(
        store
            .complete_claim(first, "https://convos.org/i/again", "c", false, None)
            .await
            .unwrap(),
        Transition::LostRace {
            actual: Some(AgentStatus::Claimed)
        }
    );
    let (i, first) = &claimed[0];
    assert_eq!(
        store.agent(first).await.unwrap().unwrap().invite_url,
        Some(format!("https://convos.org/i/{i}"))
    );
}

/// The status's list reads agents narrow (no secrets, instructions or journal): each listing
/// is what the agent read whole shows, page after page in id order.
#[tokio::test]
async fn the_fleet_listing_shows_of_each_live_agent_what_its_whole_row_does() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let ids = idle_agents(&store, 5).await;
    let ClaimOutcome::Claimed(claimed) = store.claim(&claim_request(None)).await.unwrap() else {
        panic!("agents are idle");
    };
    store
        .complete_claim(&claimed.id, "https://convos.org/i/l", "conv-l", true, None)
        .await
        .unwrap();
    let mut listed = Vec::new();
    let mut after: Option<AgentId> = None;
    loop {
        let page = store.live_agents_page(after.as_ref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        listed.extend(page);
    }
    let mut expected = Vec::new();
    for id in &ids {
        expected.push(pool_store::AgentListing::from(
            &store.agent(id).await.unwrap().unwrap(),
        ));
    }
    expected.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    assert_eq!(listed, expected);
    assert!(
        listed
            .iter()
            .any(|a| a.invite_url.as_deref() == Some("https://convos.org/i/l"))
    );
}

/// One shared claim statement for five claims over three idle agents: the claims that came
/// first get the oldest agents, in order, each with its own fields; the last two get none.
#[tokio::test]
async fn one_shared_statement_gives_the_oldest_agents_to_the_first_claims_each_with_its_own_fields() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let idle = idle_agents(&store, 3).await;
    let requests: Vec<_> = (0..5)
        .map(|i| {
            let mut request = numbered_claim(i);
            request.profile_image = (i % 2 == 0).then(|| format!("https://img/{i}.png"));
            request
        })
        .collect();
    let taken = store.take_in_one_statement(&requests).await.unwrap();
    assert_eq!(taken.len(), 5);
    for (i, agent) in taken.iter().take(3).enumerate() {
        let agent = agent
            .as_ref()
            .expect("an agent for each of the first three claims");
        assert_eq!(agent.id, idle[i], "claim {i} gets the {i}th oldest agent");
        assert_eq!(agent.status, AgentStatus::Claiming);
        assert_eq!(agent.agent_name, Some(format!("user-{i}")));
        assert_eq!(agent.instructions, Some(format!("instructions of {i}")));
        assert_eq!(agent.profile_image, requests[i].profile_image);
        assert_eq!(agent.claim_metadata, Some(serde_json::json!({ "i": i })));
    }
    assert!(
        taken[3].is_none() && taken[4].is_none(),
        "no agent left for the last two"
    );
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.idle, counts.claiming), (0, 3));
    // Each taken agent has one event, `idle → claiming`, by the claim's claimant.
    for id in &idle {
        let events = store.events(id).await.unwrap();
        let claims: Vec<_> = events
            .iter()
            .filter(|e| e.to_status.as_deref() == Some("claiming"))
            .collect();
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].actor.as_deref(), Some("admin"));
    }
}
