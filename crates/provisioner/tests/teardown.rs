//! Teardown: own projects by `projectDelete` through the guard, legacy agents service by
//! service, retried until done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use pool_provisioner::testing::{TestPool, WORKSPACE, unthrottled};
use pool_provisioner::{GuardRefusal, Naming, ProjectGuard};
use pool_store::{Agent, AgentId, AgentStatus, CreationStep};
use proptest::prelude::*;
use railway_api::{
    ClientConfig, NewProject, NewService, ProjectDeleter, ProjectId, RailwayClient, WorkspaceId,
};
use railway_sim::{Faults, OperationFaults};

#[tokio::test]
async fn killing_an_agent_deletes_its_project_key_and_inbox_then_archives_the_row() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    pool.provisioner.kill(&ids[0], "operator").await.unwrap();
    let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Deleted);
    pool.assert_nothing_leaked().await;
    assert_eq!(
        pool.sim.snapshot().live_projects().len(),
        1,
        "the other agent is untouched"
    );
}

#[tokio::test]
async fn a_failed_teardown_stays_deleting_and_is_retried_until_done() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(1).await;
    let outage = Faults {
        operations: BTreeMap::from([(
            "projectDelete".to_string(),
            OperationFaults {
                server_error: 1.0,
                ..OperationFaults::default()
            },
        )]),
        ..Faults::default()
    };
    pool.sim.set_faults(outage);
    pool.provisioner.kill(&ids[0], "operator").await.unwrap();
    let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Deleting);
    assert_eq!(agent.teardown_attempts, 1);
    assert!(agent.next_attempt_at.is_some());
    assert!(
        agent.openrouter_key_hash.is_none(),
        "the key was deleted before Railway failed"
    );

    // Not due yet; then due, with Railway back.
    assert_eq!(pool.provisioner.retry_due_teardowns().await.unwrap(), 0);
    pool.sim.set_faults(Faults::default());
    pool.db
        .client()
        .await
        .execute(
            "UPDATE agent_metadata SET next_attempt_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(pool.provisioner.retry_due_teardowns().await.unwrap(), 1);
    assert_eq!(
        pool.store.agent(&ids[0]).await.unwrap().unwrap().status,
        AgentStatus::Deleted
    );
    pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn teardown_of_a_legacy_agent_deletes_its_service_and_volume_and_never_the_shared_project() {
    // The setup makes volumes right after their services; the fresh-service window is not this
    // test's subject.
    let mut sim = unthrottled();
    sim.quirks.fresh_service_window = std::time::Duration::ZERO;
    let pool = TestPool::start(sim).await;
    // The shared project of the Node era, with two agents' services and volumes.
    let shared = pool
        .railway
        .create_project(&NewProject {
            name: "convos-pool".into(),
            description: "the old shared project".into(),
            workspace_id: WorkspaceId::new(WORKSPACE),
            default_environment_name: Some("staging".into()),
        })
        .await
        .unwrap();
    let env = shared.environments[0].id.clone();
    let mut services = Vec::new();
    for i in 0..2 {
        let service = pool
            .railway
            .create_service(&NewService {
                project_id: shared.id.clone(),
                environment_id: env.clone(),
                name: format!("convos-agent-legacy{i:05}"),
                registry_credentials: None,
            })
            .await
            .unwrap();
        pool.railway
            .create_volume(&shared.id, &env, &service.id, "/data")
            .await
            .unwrap();
        services.push(service.id);
    }
    let client = pool.db.client().await;
    client
        .execute(
            "INSERT INTO agent_metadata (id, railway_project_id, railway_environment_id, railway_service_id, status, legacy) \
             VALUES ('legacy000000', $1, $2, $3, 'idle', true)",
            &[&shared.id.as_str(), &env.as_str(), &services[0].as_str()],
        )
        .await
        .unwrap();
    let before = pool.sim.counters();
    pool.provisioner
        .kill(&AgentId::parse("legacy000000").unwrap(), "cycled out")
        .await
        .unwrap();

    let after = pool.sim.counters();
    let calls = |c: &railway_sim::Counters, op: &str| c.requests.get(op).copied().unwrap_or(0);
    assert_eq!(
        calls(&after, "projectDelete"),
        calls(&before, "projectDelete"),
        "never projectDelete"
    );
    assert_eq!(
        calls(&after, "serviceDelete") - calls(&before, "serviceDelete"),
        1
    );
    assert_eq!(calls(&after, "volumeDelete") - calls(&before, "volumeDelete"), 1);
    let snapshot = pool.sim.snapshot();
    assert!(
        snapshot
            .projects
            .iter()
            .any(|p| p.id == shared.id.as_str() && !p.deleted),
        "shared project alive"
    );
    assert!(
        snapshot
            .services
            .iter()
            .any(|s| s.id == services[0].as_str() && s.deleted)
    );
    assert!(
        snapshot
            .services
            .iter()
            .any(|s| s.id == services[1].as_str() && !s.deleted),
        "the other legacy agent untouched"
    );
    let volumes: Vec<_> = snapshot.volumes.iter().filter(|v| !v.deleted).collect();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].service_id.as_deref(), Some(services[1].as_str()));
    assert_eq!(
        pool.store
            .agent(&AgentId::parse("legacy000000").unwrap())
            .await
            .unwrap()
            .unwrap()
            .status,
        AgentStatus::Deleted
    );
}

/// Must show: a kill whose `projectDelete` applied and then timed out ends archived. The guard
/// reads the project before the delete (it is the agent's, with this pool's marker), the delete
/// applies and its answer never comes, and a read of the project confirms it is gone.
#[tokio::test]
async fn a_kill_whose_delete_applied_and_then_timed_out_ends_archived() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(1).await;
    pool.sim.set_faults(Faults {
        operations: BTreeMap::from([(
            "projectDelete".to_string(),
            OperationFaults {
                timeout_after_apply: 1.0,
                ..OperationFaults::default()
            },
        )]),
        ..Faults::default()
    });
    pool.provisioner.kill(&ids[0], "operator").await.unwrap();
    assert!(
        pool.sim.snapshot().live_projects().is_empty(),
        "the delete applied"
    );
    assert_eq!(
        pool.store.agent(&ids[0]).await.unwrap().unwrap().status,
        AgentStatus::Deleted
    );
    pool.assert_nothing_leaked().await;
}

/// When the project cannot be read before the delete, nothing is deleted: the teardown waits
/// for a read, and is retried.
#[tokio::test]
async fn a_project_that_cannot_be_read_is_not_deleted_until_it_can() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(1).await;
    pool.sim.set_faults(Faults {
        operations: BTreeMap::from([(
            "project".to_string(),
            OperationFaults {
                server_error: 1.0,
                ..OperationFaults::default()
            },
        )]),
        ..Faults::default()
    });
    pool.provisioner.kill(&ids[0], "operator").await.unwrap();
    assert_eq!(
        pool.sim.snapshot().live_projects().len(),
        1,
        "nothing deleted unread"
    );
    assert_eq!(
        pool.store.agent(&ids[0]).await.unwrap().unwrap().status,
        AgentStatus::Deleting
    );
    pool.sim.set_faults(Faults::default());
    pool.db
        .client()
        .await
        .execute(
            "UPDATE agent_metadata SET next_attempt_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(pool.provisioner.retry_due_teardowns().await.unwrap(), 1);
    assert_eq!(
        pool.store.agent(&ids[0]).await.unwrap().unwrap().status,
        AgentStatus::Deleted
    );
    pool.assert_nothing_leaked().await;
}

/// With the quirk off (a repeated delete answers "not found"), the same holds.
#[tokio::test]
async fn a_repeated_delete_answered_not_found_also_ends_archived() {
    let mut sim = unthrottled();
    sim.quirks.deleted_project_delete_unauthorized = false;
    let pool = TestPool::start(sim).await;
    let ids = pool.idle_agents(1).await;
    let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();
    pool.deleter
        .delete_project(&ProjectId::new(agent.project_id.clone().unwrap()))
        .await
        .unwrap();
    pool.provisioner.kill(&ids[0], "operator").await.unwrap();
    assert_eq!(
        pool.store.agent(&ids[0]).await.unwrap().unwrap().status,
        AgentStatus::Deleted
    );
}

/// A crash between `projectCreate` and its journal entry: the row knows no project, but its
/// step was in flight, so the teardown looks the project up by name — no project outlives its
/// row, without waiting for the orphan sweep.
#[tokio::test]
async fn a_creation_whose_project_step_is_uncertain_is_torn_down_by_name() {
    let pool = TestPool::start(unthrottled()).await;
    let id = AgentId::random();
    let name = pool.provisioner.naming().name(&id);
    let description = pool.provisioner.naming().project_description(&id);
    let client = pool.db.client().await;
    client
        .execute(
            "INSERT INTO agent_metadata (id, railway_project_id, status, step_in_flight) VALUES ($1, '', 'deleting', 'project')",
            &[&id.as_str()],
        )
        .await
        .unwrap();
    // The project exists on Railway; its id never reached the row.
    pool.railway
        .create_project(&NewProject {
            name,
            description,
            workspace_id: WorkspaceId::new(WORKSPACE),
            default_environment_name: Some("staging".into()),
        })
        .await
        .unwrap();
    assert_eq!(pool.provisioner.retry_due_teardowns().await.unwrap(), 1);
    assert!(pool.sim.snapshot().live_projects().is_empty());
    assert_eq!(
        pool.store.agent(&id).await.unwrap().unwrap().status,
        AgentStatus::Deleted
    );
}

const OWN: &str = "pool-own-project";

fn agent(legacy: bool, project: Option<String>, journaled: bool) -> Agent {
    Agent {
        id: AgentId::parse("abcdefabcdef").unwrap(),
        status: AgentStatus::Deleting,
        status_changed_at: chrono::Utc::now(),
        created_at: chrono::Utc::now(),
        legacy,
        quarantined: false,
        project_id: project,
        environment_id: None,
        service_id: None,
        volume_id: None,
        domain: None,
        deployment_id: None,
        image: None,
        openrouter_key_hash: None,
        openrouter_api_key: None,
        agentmail_inbox_id: None,
        secrets: None,
        setup_secrets: None,
        unreadable_secrets: Vec::new(),
        agent_name: None,
        instructions: None,
        join_url: None,
        conversation_id: None,
        invite_url: None,
        joined: None,
        claimed_at: None,
        pending_acceptance_at: None,
        claim_source: None,
        profile_image: None,
        claim_metadata: None,
        provision_status: None,
        runtime_version: None,
        runtime_name: None,
        shape: pool_store::DEFAULT_SHAPE.into(),
        claim_expires_at: None,
        deployment_status: None,
        last_health_at: None,
        last_health_ok: None,
        teardown_attempts: 0,
        next_attempt_at: None,
        last_error: None,
        worker_lease_until: None,
        redeploy_requested_at: None,
        project_marker_form: 2,
        completed_steps: if journaled {
            vec![CreationStep::Project]
        } else {
            Vec::new()
        },
        step_in_flight: None,
        tier_step: None,
        parked_at: None,
        wake_failures: 0,
    }
}

/// A deleter for guards that are only asked what they would clear (nothing is sent).
fn idle_deleter() -> ProjectDeleter {
    let config = ClientConfig::new(
        "http://127.0.0.1:1/graphql/v2",
        vec![secrecy::SecretString::from("unused")],
    );
    RailwayClient::with_project_deleter(config).unwrap().1
}

fn guard(naming: Naming) -> ProjectGuard {
    ProjectGuard::new(
        Some(ProjectId::new(OWN)),
        WorkspaceId::new(WORKSPACE),
        naming,
        idle_deleter(),
    )
}

proptest! {
    #[test]
    fn the_guard_clears_only_projects_this_pool_created(
        legacy in any::<bool>(),
        project in prop_oneof![Just(None), Just(Some(OWN.to_string())), "[a-z0-9-]{1,20}".prop_map(Some)],
        journaled in any::<bool>(),
    ) {
        let guard = guard(Naming::new("convos-agent-", OWN, "staging").unwrap());
        let a = agent(legacy, project.clone(), journaled);
        let created_by_pool = !legacy && journaled && project.as_deref().is_some_and(|p| p != OWN);
        match guard.agent_project(&a) {
            Ok(cleared) => {
                prop_assert!(created_by_pool);
                prop_assert_eq!(Some(cleared.id().as_str()), project.as_deref());
                prop_assert_ne!(cleared.id().as_str(), OWN);
            }
            Err(refusal) => {
                prop_assert!(!created_by_pool);
                if legacy {
                    prop_assert!(matches!(refusal, GuardRefusal::Legacy(_)));
                }
            }
        }
    }

    #[test]
    fn the_guard_clears_workspace_projects_only_with_this_pools_marker(
        name in prop_oneof!["convos-agent-[a-z0-9]{12}", "[a-z-]{1,30}"],
        description in prop_oneof![Just(None), "[ -~]{0,80}".prop_map(Some), Just(Some("[agent-pool id=pool-own-project env=staging] agent x".to_string()))],
        own in any::<bool>(),
    ) {
        let naming = Naming::new("convos-agent-", OWN, "staging").unwrap();
        let guard = guard(naming.clone());
        let project = railway_api::ProjectSummary {
            id: ProjectId::new(if own { OWN } else { "prj-1" }),
            name: name.clone(),
            description: description.clone(),
            created_at: chrono::Utc::now(),
        };
        let ok = guard.marked_project(&project).is_ok();
        prop_assert_eq!(ok, !own && naming.is_marked(description.as_deref()) && naming.agent_id(&name).is_some());
    }
}

/// Issue 20: the guard trusted the database — `projectDelete` went to whatever project id the
/// row held. Now it re-reads the project just before deleting: a row rewritten to point at
/// another pool's project (named like ours or not), or at another agent's project of this very
/// pool, is refused, and the project lives.
#[tokio::test]
async fn a_kill_whose_row_was_rewritten_never_deletes_the_project_it_points_at() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(4).await;
    let ours = pool.provisioner.naming().clone();
    let theirs = Naming::new("convos-agent-", "0123456789abcdef0123456789abcdef", "staging").unwrap();
    let strangers = [
        // Another pool's project, named after the agent whose row was rewritten.
        pool.sim
            .create_foreign_project(&ours.name(&ids[0]), Some(&theirs.project_description(&ids[0]))),
        // Another pool's project, under the old marker both pools shared.
        pool.sim.create_foreign_project(
            &ours.name(&ids[1]),
            Some(&format!(
                "[agent-pool pool=pool-own-project env=staging] agent {}.",
                ids[1]
            )),
        ),
        // This pool's own project of another agent (claimed, say).
        pool.store
            .agent(&ids[3])
            .await
            .unwrap()
            .unwrap()
            .project_id
            .unwrap(),
    ];
    let client = pool.db.client().await;
    for (id, project) in ids.iter().zip(&strangers) {
        client
            .execute(
                "UPDATE agent_metadata SET railway_project_id = $2 WHERE id = $1",
                &[&id.as_str(), project],
            )
            .await
            .unwrap();
        pool.provisioner.kill(id, "operator").await.unwrap();
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        assert_eq!(agent.status, AgentStatus::Deleting, "the teardown did not finish");
        let error = agent.last_error.unwrap_or_default();
        assert!(error.contains("is not this pool's agent project"), "{error}");
    }
    let snapshot = pool.sim.snapshot();
    for project in &strangers {
        assert!(
            snapshot.projects.iter().any(|p| &p.id == project && !p.deleted),
            "{project} was deleted"
        );
    }
    // The agent whose project agent 2's row was rewritten to is killed as ever: its own row
    // names its own project.
    pool.provisioner.kill(&ids[3], "operator").await.unwrap();
    assert_eq!(
        pool.store.agent(&ids[3]).await.unwrap().unwrap().status,
        AgentStatus::Deleted
    );
}
