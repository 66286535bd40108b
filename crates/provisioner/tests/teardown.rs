//! Teardown: own projects by `projectDelete` through the guard, legacy agents service by
//! service, retried until done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use pool_provisioner::testing::{TestPool, WORKSPACE};
use pool_provisioner::{GuardRefusal, Naming, ProjectGuard};
use pool_store::{Agent, AgentId, AgentStatus, CreationStep};
use proptest::prelude::*;
use railway_api::{NewProject, NewService};
use railway_sim::{Faults, OperationFaults, SimConfig};

#[tokio::test]
async fn killing_an_agent_deletes_its_project_key_and_inbox_then_archives_the_row() {
    let pool = TestPool::start(SimConfig::default()).await;
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
    let pool = TestPool::start(SimConfig::default()).await;
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
    let pool = TestPool::start(SimConfig::default()).await;
    // The shared project of the Node era, with two agents' services and volumes.
    let shared = pool
        .railway
        .create_project(&NewProject {
            name: "convos-pool".into(),
            description: "the old shared project".into(),
            workspace_id: WORKSPACE.into(),
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
            &[&shared.id, &env, &services[0]],
        )
        .await
        .unwrap();
    let before = pool.sim.counters();
    pool.provisioner
        .kill(&AgentId::from("legacy000000"), "cycled out")
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
        snapshot.projects.iter().any(|p| p.id == shared.id && !p.deleted),
        "shared project alive"
    );
    assert!(snapshot.services.iter().any(|s| s.id == services[0] && s.deleted));
    assert!(
        snapshot
            .services
            .iter()
            .any(|s| s.id == services[1] && !s.deleted),
        "the other legacy agent untouched"
    );
    let volumes: Vec<_> = snapshot.volumes.iter().filter(|v| !v.deleted).collect();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].service_id.as_deref(), Some(services[1].as_str()));
    assert_eq!(
        pool.store
            .agent(&AgentId::from("legacy000000"))
            .await
            .unwrap()
            .unwrap()
            .status,
        AgentStatus::Deleted
    );
}

#[test]
fn project_delete_is_called_only_by_the_guard() {
    // The one call site of `delete_project` outside railway-api is guard.rs: grep the sources.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut offenders = Vec::new();
    let mut stack = vec![root.join("crates"), root.join("bin"), root.join("xtask")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let allowed = path.ends_with("provisioner/src/guard.rs")
                    || path.ends_with("railway-api/src/client.rs")
                    || path.components().any(|c| c.as_os_str() == "tests")
                    || path.components().any(|c| c.as_os_str() == "railway-sim");
                if text.contains(".delete_project(") && !allowed {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "delete_project called outside the guard: {offenders:?}"
    );
}

const OWN: &str = "pool-own-project";

fn agent(legacy: bool, project: Option<String>, journaled: bool) -> Agent {
    Agent {
        id: AgentId::from("abcdefabcdef"),
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
        agent_name: None,
        instructions: None,
        join_url: None,
        conversation_id: None,
        invite_url: None,
        joined: None,
        claimed_at: None,
        claim_expires_at: None,
        deployment_status: None,
        last_health_at: None,
        last_health_ok: None,
        teardown_attempts: 0,
        next_attempt_at: None,
        last_error: None,
        worker_lease_until: None,
        redeploy_requested_at: None,
        completed_steps: if journaled {
            vec![CreationStep::Project]
        } else {
            Vec::new()
        },
    }
}

proptest! {
    #[test]
    fn the_guard_clears_only_projects_this_pool_created(
        legacy in any::<bool>(),
        project in prop_oneof![Just(None), Just(Some(OWN.to_string())), "[a-z0-9-]{1,20}".prop_map(Some)],
        journaled in any::<bool>(),
    ) {
        let guard = ProjectGuard::new(Some(OWN.into()), Naming::new("convos-agent-", OWN, "staging").unwrap());
        let a = agent(legacy, project.clone(), journaled);
        let created_by_pool = !legacy && journaled && project.as_deref().is_some_and(|p| p != OWN);
        match guard.agent_project(&a) {
            Ok(cleared) => {
                prop_assert!(created_by_pool);
                prop_assert_eq!(Some(cleared.id()), project.as_deref());
                prop_assert_ne!(cleared.id(), OWN);
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
        description in prop_oneof![Just(None), "[ -~]{0,80}".prop_map(Some), Just(Some("[agent-pool pool=pool-own-project env=staging] agent x".to_string()))],
        own in any::<bool>(),
    ) {
        let naming = Naming::new("convos-agent-", OWN, "staging").unwrap();
        let guard = ProjectGuard::new(Some(OWN.into()), naming.clone());
        let project = railway_api::ProjectSummary {
            id: if own { OWN.into() } else { "prj-1".into() },
            name: name.clone(),
            description: description.clone(),
            created_at: chrono::Utc::now(),
        };
        let ok = guard.marked_project(&project).is_ok();
        prop_assert_eq!(ok, !own && naming.is_marked(description.as_deref()) && naming.agent_id(&name).is_some());
    }
}
