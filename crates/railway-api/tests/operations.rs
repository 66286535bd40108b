//! Every operation against the simulator, and the exact text of each (insta snapshots).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{WORKSPACE, client, sim};
use cynic::{MutationBuilder, QueryBuilder};
use railway_api::operations as op;
use railway_api::{
    DeploymentStatus, InstanceSettings, NewProject, NewService, RegistryCredentials, RestartPolicyType,
};
use railway_sim::SimConfig;
use secrecy::SecretString;

#[test]
fn the_text_of_every_operation_is_pinned() {
    let id = || op::ProjectIdVariables { id: "p".into() };
    let snapshots: Vec<(&str, String)> = vec![
        ("apiToken", op::TokenWorkspaces::build(()).query),
        (
            "projectCreate",
            op::ProjectCreate::build(op::ProjectCreateVariables {
                input: op::ProjectCreateInput {
                    default_environment_name: None,
                    description: None,
                    is_public: None,
                    name: None,
                    pr_deploys: None,
                    workspace_id: None,
                },
            })
            .query,
        ),
        ("projectEnvironments", op::ProjectEnvironments::build(id()).query),
        ("projectDelete", op::ProjectDelete::build(id()).query),
        (
            "projects",
            op::ProjectsPage::build(op::ProjectsPageVariables {
                workspace_id: None,
                first: None,
                after: None,
            })
            .query,
        ),
        (
            "environmentCreate",
            op::EnvironmentCreate::build(op::EnvironmentCreateVariables {
                input: op::EnvironmentCreateInput {
                    name: String::new(),
                    project_id: String::new(),
                    skip_initial_deploys: None,
                },
            })
            .query,
        ),
        (
            "serviceCreate",
            op::ServiceCreate::build(op::ServiceCreateVariables {
                input: op::ServiceCreateInput {
                    environment_id: None,
                    name: None,
                    project_id: String::new(),
                    registry_credentials: None,
                    source: None,
                    variables: None,
                },
            })
            .query,
        ),
        (
            "serviceDelete",
            op::ServiceDelete::build(op::ServiceDeleteVariables {
                id: String::new(),
                environment_id: None,
            })
            .query,
        ),
        (
            "variableCollectionUpsert",
            op::VariableCollectionUpsert::build(op::VariableCollectionUpsertVariables {
                input: op::VariableCollectionUpsertInput {
                    environment_id: String::new(),
                    project_id: String::new(),
                    replace: None,
                    service_id: None,
                    skip_deploys: None,
                    variables: op::EnvironmentVariables::default(),
                },
            })
            .query,
        ),
        (
            "serviceInstanceLimitsUpdate",
            op::ServiceInstanceLimitsUpdate::build(op::ServiceInstanceLimitsUpdateVariables {
                input: op::ServiceInstanceLimitsUpdateInput {
                    environment_id: String::new(),
                    memory_gb: None,
                    service_id: String::new(),
                    vcpus: None,
                },
            })
            .query,
        ),
        (
            "serviceInstanceUpdate",
            op::ServiceInstanceUpdate::build(op::ServiceInstanceUpdateVariables {
                service_id: String::new(),
                environment_id: None,
                input: op::ServiceInstanceUpdateInput::default(),
            })
            .query,
        ),
        (
            "volumeCreate",
            op::VolumeCreate::build(op::VolumeCreateVariables {
                input: op::VolumeCreateInput {
                    environment_id: None,
                    mount_path: String::new(),
                    project_id: String::new(),
                    service_id: None,
                },
            })
            .query,
        ),
        (
            "volumeDelete",
            op::VolumeDelete::build(op::VolumeDeleteVariables {
                volume_id: String::new(),
            })
            .query,
        ),
        ("projectVolumes", op::ProjectVolumes::build(id()).query),
        (
            "serviceDomainCreate",
            op::ServiceDomainCreate::build(op::ServiceDomainCreateVariables {
                input: op::ServiceDomainCreateInput {
                    environment_id: String::new(),
                    service_id: String::new(),
                    target_port: None,
                },
            })
            .query,
        ),
        (
            "domains",
            op::Domains::build(op::DomainsVariables {
                project_id: String::new(),
                environment_id: String::new(),
                service_id: String::new(),
            })
            .query,
        ),
        (
            "serviceInstanceDeployV2",
            op::ServiceInstanceDeploy::build(op::ServiceInstanceDeployVariables {
                service_id: String::new(),
                environment_id: String::new(),
            })
            .query,
        ),
        (
            "deploymentRedeploy",
            op::DeploymentRedeploy::build(op::DeploymentRedeployVariables {
                id: String::new(),
                use_previous_image_tag: None,
            })
            .query,
        ),
        (
            "projectsByIds",
            op::ProjectsStatus::build(op::ProjectsByIdsVariables { ids: Vec::new() }).query,
        ),
        ("projectStatus", op::ProjectStatus::build(id()).query),
    ];
    for (name, query) in snapshots {
        insta::assert_snapshot!(name, query);
    }
}

#[test]
fn an_unknown_deployment_status_decodes_to_unknown() {
    let status: op::DeploymentStatus = serde_json::from_str("\"TELEPORTING\"").unwrap();
    assert_eq!(status, DeploymentStatus::Unknown("TELEPORTING".into()));
    let status: op::DeploymentStatus = serde_json::from_str("\"SUCCESS\"").unwrap();
    assert_eq!(status, DeploymentStatus::Success);
}

fn new_project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        description: "created by a test".into(),
        workspace_id: WORKSPACE.into(),
        default_environment_name: Some("staging".into()),
    }
}

#[tokio::test]
async fn a_service_is_configured_then_deployed_once_with_everything_in_place() {
    let sim = sim(SimConfig::default()).await;
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
            &service.id,
            &env,
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
    assert_eq!(
        volumes[0].mounts[0].service_id.as_deref(),
        Some(service.id.as_str())
    );
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

    let deployment_id = client.deploy_service(&service.id, &env).await.unwrap();
    let snapshot = sim.snapshot();
    let deployments = snapshot.deployments_of(&service.id);
    assert_eq!(deployments.len(), 1, "exactly one deployment");
    let d = deployments[0];
    assert_eq!(d.id, deployment_id);
    assert_eq!(d.image.as_deref(), Some("ghcr.io/xmtplabs/convos-agent:staging"));
    assert_eq!(
        d.variables.get("POOL_API_KEY").map(String::as_str),
        Some("agent-token")
    );
    assert_eq!(d.volume_mounts, vec!["/data".to_string()]);
    assert_eq!(d.domains, vec![domain.domain.clone()]);
    let svc = snapshot.services.iter().find(|s| s.id == service.id).unwrap();
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

    // Redeploy to a new image: the new deployment runs it.
    client
        .update_service_instance(
            &service.id,
            &env,
            &InstanceSettings {
                image: Some("ghcr.io/xmtplabs/convos-agent:sha-abc".into()),
                ..InstanceSettings::default()
            },
        )
        .await
        .unwrap();
    let redeployed = client.redeploy(&deployment_id, false).await.unwrap();
    let snapshot = sim.snapshot();
    let new = snapshot
        .deployments
        .iter()
        .find(|d| d.id == redeployed.id)
        .unwrap();
    assert_eq!(
        new.image.as_deref(),
        Some("ghcr.io/xmtplabs/convos-agent:sha-abc")
    );

    client.delete_volume(&volume.id).await.unwrap();
    client.delete_service(&service.id, Some(&env)).await.unwrap();
    client.delete_project(&project.id).await.unwrap();
    let snapshot = sim.snapshot();
    assert!(snapshot.projects.iter().all(|p| p.deleted));
    // A deleted project no longer appears in batched reads.
    let read = client.projects_status(std::slice::from_ref(&project.id)).await;
    assert!(read.projects.is_empty() && read.unread.is_empty());
}

#[tokio::test]
async fn the_workspace_listing_pages_through_every_project() {
    let sim = sim(SimConfig::default()).await;
    sim.seed_projects(250, "production", "ghcr.io/xmtplabs/convos-agent:production");
    let client = client(&sim);
    let first = client.workspace_projects_page(WORKSPACE, None).await.unwrap();
    assert_eq!(first.projects.len(), 100);
    assert!(first.next.is_some());
    let all = client.workspace_projects(WORKSPACE).await.unwrap();
    assert_eq!(all.len(), 250);
    let ids: std::collections::BTreeSet<_> = all.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids.len(), 250);
}

#[tokio::test]
async fn the_batched_status_read_covers_500_agents_in_ten_requests() {
    let sim = sim(SimConfig::default()).await;
    let seeded = sim.seed_projects(500, "production", "ghcr.io/xmtplabs/convos-agent:production");
    let client = client(&sim);
    let ids: Vec<String> = seeded.iter().map(|s| s.project_id.clone()).collect();
    let before = sim.counters().requests.get("projectsByIds").copied().unwrap_or(0);
    let read = client.projects_status(&ids).await;
    let sent = sim.counters().requests.get("projectsByIds").copied().unwrap_or(0) - before;
    let bound = 500usize.div_ceil(railway_api::STATUS_BATCH_SIZE);
    assert_eq!(read.requests, bound);
    assert_eq!(sent as usize, bound, "at most ⌈500/N⌉ requests");
    assert_eq!(read.projects.len(), 500);
    for s in &seeded {
        let status = &read.projects[&s.project_id].services[0];
        assert_eq!(status.service_id, s.service_id);
        assert_eq!(status.domains, vec![s.domain.clone()]);
        assert!(status.latest_deployment.is_some());
    }
}

#[tokio::test]
async fn the_shared_project_is_read_in_one_request() {
    let sim = sim(SimConfig::default()).await;
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
