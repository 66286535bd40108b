//! From the wire types of [`crate::operations`] to the plain types of [`crate::types`].

use secrecy::ExposeSecret;

use crate::ids::{DeploymentId, EnvironmentId, ProjectId, ServiceId, VolumeId};
use crate::operations as op;
use crate::types::*;

pub(crate) fn credentials(c: &RegistryCredentials) -> op::RegistryCredentialsInput {
    op::RegistryCredentialsInput {
        username: c.username.clone(),
        password: c.password.expose_secret().to_string(),
    }
}

pub(crate) fn environments(connection: op::EnvironmentConnection) -> Vec<Environment> {
    connection
        .edges
        .into_iter()
        .map(|e| Environment {
            id: EnvironmentId::new(e.node.id.into_inner()),
            name: e.node.name,
        })
        .collect()
}

pub(crate) fn deployment(d: op::DeploymentNode) -> Deployment {
    Deployment {
        id: DeploymentId::new(d.id.into_inner()),
        status: d.status,
        created_at: d.created_at.0,
    }
}

pub(crate) fn project_status(project: op::ProjectStatusNode) -> ProjectStatus {
    let mut services = Vec::new();
    for env in project.environments.edges {
        let env = env.node;
        for instance in env.service_instances.edges {
            let i = instance.node;
            services.push(ServiceStatus {
                service_id: ServiceId::new(i.service_id),
                service_name: i.service_name,
                environment_id: EnvironmentId::new(i.environment_id),
                environment_name: env.name.clone(),
                latest_deployment: i.latest_deployment.map(deployment),
                domains: i.domains.service_domains.into_iter().map(|d| d.domain).collect(),
                image: i.source.and_then(|s| s.image),
            });
        }
    }
    ProjectStatus {
        project_id: ProjectId::new(project.id.into_inner()),
        services,
    }
}

pub(crate) fn volumes(project: op::ProjectVolumesNode) -> Vec<VolumeInfo> {
    project
        .volumes
        .edges
        .into_iter()
        .map(|e| VolumeInfo {
            id: VolumeId::new(e.node.id.into_inner()),
            name: e.node.name,
            mounts: e
                .node
                .volume_instances
                .edges
                .into_iter()
                .map(|i| VolumeMount {
                    service_id: i.node.service_id.map(ServiceId::new),
                    environment_id: EnvironmentId::new(i.node.environment_id),
                    mount_path: i.node.mount_path,
                })
                .collect(),
        })
        .collect()
}

pub(crate) fn projects_page(page: op::ProjectsConnection) -> ProjectsPage {
    ProjectsPage {
        next: page
            .page_info
            .has_next_page
            .then_some(page.page_info.end_cursor)
            .flatten(),
        projects: page
            .edges
            .into_iter()
            .map(|e| ProjectSummary {
                id: ProjectId::new(e.node.id.into_inner()),
                name: e.node.name,
                description: e.node.description,
                created_at: e.node.created_at.0,
            })
            .collect(),
    }
}

pub(crate) fn service_domain(d: op::ServiceDomainNode) -> ServiceDomain {
    ServiceDomain {
        id: d.id.into_inner(),
        domain: d.domain,
    }
}

pub(crate) fn instance_settings(settings: &InstanceSettings) -> op::ServiceInstanceUpdateInput {
    op::ServiceInstanceUpdateInput {
        healthcheck_path: settings.healthcheck_path.clone(),
        num_replicas: settings.num_replicas,
        registry_credentials: settings.registry_credentials.as_ref().map(credentials),
        restart_policy_max_retries: settings.restart_policy.map(|(_, n)| n),
        restart_policy_type: settings.restart_policy.map(|(t, _)| t),
        sleep_application: settings.sleep_application,
        source: settings.image.as_ref().map(|image| op::ServiceSourceInput {
            image: Some(image.clone()),
            repo: None,
        }),
        start_command: settings.start_command.clone(),
    }
}
