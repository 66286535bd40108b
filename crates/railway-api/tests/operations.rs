//! Every operation against the simulator, and the exact text of each (insta snapshots).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{WORKSPACE, client, sim};
use railway_api::{
    DeploymentStatus, InstanceSettings, NewProject, NewService, ProjectId, ProjectPresence,
    RegistryCredentials, RestartPolicyType, WorkspaceId,
};
use railway_sim::SimConfig;
use secrecy::SecretString;

fn new_project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        description: "created by a test".into(),
        workspace_id: WorkspaceId::new(WORKSPACE),
        default_environment_name: Some("staging".into()),
    }
}

#[tokio::test]
async fn a_service_is_configured_then_deployed_once_with_everything_in_place() {
    let sim = sim(SimConfig::without_quirks()).await;
    let client = client(&sim);

    let workspaces = client.token_workspaces().await.unwrap();
    assert_eq!(
        workspaces.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        vec![WORKSPACE]
    );

    let project = client
        .create_project(&new_project("convos-agent-abc"))
        .await
        .unwrap();
    assert_eq!(project.environments.len(), 1);
    assert_eq!(project.environments[0].name, "staging");
    let other = client
        .create_environment(&project.id, "production")
        .await
        .unwrap();
    let envs = client.project_environments(&project.id).await.unwrap();
    assert_eq!(
        envs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        vec!["staging", "production"]
    );
    assert_eq!(envs[1], other);
    let env = project.environments[0].id.clone();

    let service = client
        .create_service(&NewService {
            project_id: project.id.clone(),
            environment_id: env.clone(),
            name: "agent".into(),
            registry_credentials: Some(RegistryCredentials {
                username: "xmtplabs".into(),
                password: SecretString::from("ghp_secret"),
            }),
        })
        .await
        .unwrap();
    let variables = BTreeMap::from([("POOL_API_KEY".to_string(), "agent-token".to_string())]);
    client
        .upsert_variables(&project.id, &env, &service.id, &variables, true)
        .await
        .unwrap();
    client
        .update_limits(&env, &service.id, Some(2.0), Some(4.0))
        .await
        .unwrap();
    client
        .update_service_instance(
            &env,
            &service.id,
            &InstanceSettings {
                image: Some("ghcr.io/xmtplabs/convos-agent:staging".into()),
                sleep_application: Some(false),
                restart_policy: Some((RestartPolicyType::OnFailure, 10)),
                ..InstanceSettings::default()
            },
        )
        .await
        .unwrap();
    let volume = client
        .create_volume(&project.id, &env, &service.id, "/data")
        .await
        .unwrap();
    let volumes = client.project_volumes(&project.id).await.unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].id, volume.id);
    assert_eq!(volumes[0].mounts[0].mount_path, "/data");
    assert_eq!(volumes[0].mounts[0].service_id.as_ref(), Some(&service.id));
    let domain = client
        .create_service_domain(&env, &service.id, Some(8080))
        .await
        .unwrap();
    assert!(domain.domain.ends_with(".up.railway.app"));
    assert_eq!(
        client
            .service_domains(&project.id, &env, &service.id)
            .await
            .unwrap(),
        vec![domain.clone()]
    );

    let deployment_id = client.deploy_service(&env, &service.id).await.unwrap();
    let snapshot = sim.snapshot();
    let deployments = snapshot.deployments_of(service.id.as_str());
    assert_eq!(deployments.len(), 1, "exactly one deployment");
    let d = deployments[0];
    assert_eq!(d.id, deployment_id.as_str());
    assert_eq!(d.image.as_deref(), Some("ghcr.io/xmtplabs/convos-agent:staging"));
    assert_eq!(
        d.variables.get("POOL_API_KEY").map(String::as_str),
        Some("agent-token")
    );
    assert_eq!(d.volume_mounts, vec!["/data".to_string()]);
    assert_eq!(d.domains, vec![domain.domain.clone()]);
    let svc = snapshot
        .services
        .iter()
        .find(|s| s.id == service.id.as_str())
        .unwrap();
    assert_eq!((svc.vcpus, svc.memory_gb), (Some(2.0), Some(4.0)));
    assert_eq!(svc.sleep_application, Some(false));
    assert_eq!(svc.restart_policy.as_deref(), Some("ON_FAILURE"));
    assert!(svc.has_registry_credentials);

    // Status moves to SUCCESS; the batched read sees it with the domain and image.
    let mut status = None;
    for _ in 0..100 {
        let read = client.projects_status(std::slice::from_ref(&project.id)).await;
        let s = read.projects[&project.id].services[0].clone();
        if s.latest_deployment.as_ref().map(|d| &d.status) == Some(&DeploymentStatus::Success) {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("deployment reaches SUCCESS");
    assert_eq!(status.domains, vec![domain.domain.clone()]);
    assert_eq!(
        status.image.as_deref(),
        Some("ghcr.io/xmtplabs/convos-agent:staging")
    );
    assert_eq!(status.environment_name, "staging");

    // A redeploy replays the build as it is; a deploy of the latest source runs the new image.
    let redeployed = client.redeploy(&deployment_id, false).await.unwrap();
    client
        .update_service_instance(
            &env,
            &service.id,
            &InstanceSettings {
                image: Some("ghcr.io/xmtplabs/convos-agent:sha-abc".into()),
                ..InstanceSettings::default()
            },
        )
        .await
        .unwrap();
    client.deploy_latest_source(&env, &service.id).await.unwrap();
    let snapshot = sim.snapshot();
    let replayed = snapshot
        .deployments
        .iter()
        .find(|d| d.id == redeployed.id.as_str())
        .unwrap();
    assert_eq!(
        replayed.image.as_deref(),
        Some("ghcr.io/xmtplabs/convos-agent:staging")
    );
    let latest = client
        .service_deployments(&project.id, &env, &service.id)
        .await
        .unwrap();
    assert_eq!(latest.len(), 3, "deploy, redeploy, deploy of the latest source");
    let newest = snapshot
        .deployments
        .iter()
        .find(|d| d.id == latest[0].id.as_str())
        .unwrap();
    assert_eq!(
        newest.image.as_deref(),
        Some("ghcr.io/xmtplabs/convos-agent:sha-abc")
    );

    client.delete_volume(&volume.id).await.unwrap();
    client.delete_service(Some(&env), &service.id).await.unwrap();
    let (_, deleter) =
        railway_api::RailwayClient::with_project_deleter(common::config_for(&sim, &["sim-token"])).unwrap();
    deleter.delete_project(&project.id).await.unwrap();
    let snapshot = sim.snapshot();
    assert!(snapshot.projects.iter().all(|p| p.deleted));
    // A deleted project no longer appears in batched reads, and a read of its own says so.
    let read = client.projects_status(std::slice::from_ref(&project.id)).await;
    assert!(read.projects.is_empty() && read.failed.is_empty());
    assert_eq!(read.omitted, vec![project.id.clone()]);
    assert_eq!(
        client.project_presence(&project.id).await.unwrap(),
        ProjectPresence::NotFound
    );
}

#[tokio::test]
async fn the_workspace_listing_pages_through_every_project() {
    let sim = sim(SimConfig::without_quirks()).await;
    sim.seed_projects(250, "production", "ghcr.io/xmtplabs/convos-agent:production");
    let client = client(&sim);
    let workspace = WorkspaceId::new(WORKSPACE);
    let first = client.workspace_projects_page(&workspace, None).await.unwrap();
    assert_eq!(first.projects.len(), 100);
    assert!(first.next.is_some());
    let all = client.workspace_projects(&workspace).await.unwrap();
    assert_eq!(all.len(), 250);
    let ids: std::collections::BTreeSet<_> = all.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids.len(), 250);
}

#[tokio::test]
async fn the_batched_status_read_covers_500_agents_in_ten_requests() {
    let sim = sim(SimConfig::without_quirks()).await;
    let seeded = sim.seed_projects(500, "production", "ghcr.io/xmtplabs/convos-agent:production");
    let client = client(&sim);
    let ids: Vec<ProjectId> = seeded.iter().map(|s| ProjectId::new(&s.project_id)).collect();
    let before = sim.counters().requests.get("projectsByIds").copied().unwrap_or(0);
    let read = client.projects_status(&ids).await;
    let sent = sim.counters().requests.get("projectsByIds").copied().unwrap_or(0) - before;
    let bound = 500usize.div_ceil(railway_api::STATUS_BATCH_SIZE);
    assert_eq!(read.requests, bound);
    assert_eq!(sent as usize, bound, "at most ⌈500/N⌉ requests");
    assert_eq!(read.projects.len(), 500);
    for s in &seeded {
        let status = &read.projects[&ProjectId::new(&s.project_id)].services[0];
        assert_eq!(status.service_id.as_str(), s.service_id);
        assert_eq!(status.domains, vec![s.domain.clone()]);
        assert!(status.latest_deployment.is_some());
    }
}

#[tokio::test]
async fn the_shared_project_is_read_in_one_request() {
    let sim = sim(SimConfig::without_quirks()).await;
    let client = client(&sim);
    let project = client.create_project(&new_project("convos-pool")).await.unwrap();
    let env = project.environments[0].id.clone();
    for i in 0..5 {
        client
            .create_service(&NewService {
                project_id: project.id.clone(),
                environment_id: env.clone(),
                name: format!("agent-{i}"),
                registry_credentials: None,
            })
            .await
            .unwrap();
    }
    let before = sim.counters().requests_total;
    let status = client.project_status(&project.id).await.unwrap();
    assert_eq!(sim.counters().requests_total - before, 1);
    assert_eq!(status.services.len(), 5);
    assert!(status.services.iter().all(|s| s.latest_deployment.is_none()));
}
