//! The simulator's world as plain data, for assertions, the chaos run and `/_sim/state`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::server;
use crate::world::{Counters, Fate, World};

/// Everything the simulator knows, for assertions and the chaos run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimSnapshot {
    /// Every project ever created.
    pub projects: Vec<ProjectView>,
    /// Every service.
    pub services: Vec<ServiceView>,
    /// Every deployment, with what it captured.
    pub deployments: Vec<DeploymentView>,
    /// Every volume.
    pub volumes: Vec<VolumeView>,
    /// Every OpenRouter key (by hash).
    pub keys: Vec<ResourceView>,
    /// Every AgentMail inbox.
    pub inboxes: Vec<ResourceView>,
    /// Live resources by kind.
    pub live: BTreeMap<String, usize>,
    /// Request counters.
    pub counters: Counters,
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Deleted.
    pub deleted: bool,
    /// Environment names.
    pub environments: Vec<String>,
}

/// A service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
    /// Registry credentials given.
    pub has_registry_credentials: bool,
    /// Image source (first environment).
    pub image: Option<String>,
    /// Serverless sleep.
    pub sleep_application: Option<bool>,
    /// CPU limit.
    pub vcpus: Option<f64>,
    /// Memory limit.
    pub memory_gb: Option<f64>,
    /// Restart policy.
    pub restart_policy: Option<String>,
    /// Current variables.
    pub variables: BTreeMap<String, String>,
}

/// A deployment and what it captured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentView {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: String,
    /// Environment.
    pub environment_id: String,
    /// Status now.
    pub status: String,
    /// Image reference.
    pub image: Option<String>,
    /// The digest it pulled.
    pub image_digest: Option<String>,
    /// What made it (`deploy`, `deploy_latest`, `redeploy`, `instance_update`).
    pub reason: String,
    /// The command it runs instead of the image's.
    pub start_command: Option<String>,
    /// Variables at creation.
    pub variables: BTreeMap<String, String>,
    /// Volume mounts at creation.
    pub volume_mounts: Vec<String>,
    /// Domains at creation.
    pub domains: Vec<String>,
    /// Times its agent was provisioned.
    pub provisions: u32,
    /// Time its agent took to answer the provision, in microseconds.
    pub provision_micros: Option<u64>,
    /// Its drawn fate.
    pub fate: Fate,
}

/// A volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeView {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: Option<String>,
    /// Mount path.
    pub mount_path: String,
    /// Deleted.
    pub deleted: bool,
}

/// An OpenRouter key or AgentMail inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceView {
    /// Hash or inbox id.
    pub id: String,
    /// Key name or inbox user name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
}

impl SimSnapshot {
    pub(crate) fn of(w: &World, now: Instant) -> Self {
        Self {
            projects: w
                .projects
                .values()
                .map(|p| ProjectView {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    description: p.description.clone(),
                    created_at: p.created_at,
                    deleted: p.deleted_at.is_some(),
                    environments: p.environments.iter().map(|(_, n)| n.clone()).collect(),
                })
                .collect(),
            services: w
                .services
                .values()
                .map(|s| {
                    let instance = s.instances.values().next().cloned().unwrap_or_default();
                    ServiceView {
                        id: s.id.clone(),
                        project_id: s.project_id.clone(),
                        name: s.name.clone(),
                        deleted: s.deleted,
                        has_registry_credentials: s.has_registry_credentials
                            || instance.has_registry_credentials,
                        image: instance.image,
                        sleep_application: instance.sleep_application,
                        vcpus: instance.vcpus,
                        memory_gb: instance.memory_gb,
                        restart_policy: instance.restart_policy,
                        variables: instance.variables,
                    }
                })
                .collect(),
            deployments: w
                .deployments
                .values()
                .map(|d| DeploymentView {
                    id: d.id.clone(),
                    project_id: d.project_id.clone(),
                    service_id: d.service_id.clone(),
                    environment_id: d.environment_id.clone(),
                    status: serde_json::to_value(w.status(d, now))
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    image: d.image.clone(),
                    image_digest: d.image_digest.clone(),
                    reason: d.reason.to_string(),
                    start_command: d.start_command.clone(),
                    variables: d.variables.clone(),
                    volume_mounts: d.volume_mounts.clone(),
                    domains: d.domains.clone(),
                    provisions: d.provisions,
                    provision_micros: d.provision_micros,
                    fate: d.fate,
                })
                .collect(),
            volumes: w
                .volumes
                .values()
                .map(|v| VolumeView {
                    id: v.id.clone(),
                    project_id: v.project_id.clone(),
                    service_id: v.service_id.clone(),
                    mount_path: v.mount_path.clone(),
                    deleted: v.deleted,
                })
                .collect(),
            keys: w
                .keys
                .values()
                .map(|k| ResourceView {
                    id: k.hash.clone(),
                    name: k.name.clone(),
                    deleted: k.deleted,
                })
                .collect(),
            inboxes: w
                .inboxes
                .values()
                .map(|i| ResourceView {
                    id: i.inbox_id.clone(),
                    name: i.username.clone(),
                    deleted: i.deleted,
                })
                .collect(),
            live: server::live_counts(w)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            counters: w.counters.clone(),
        }
    }

    /// Deployments of one service, oldest first.
    pub fn deployments_of(&self, service_id: &str) -> Vec<&DeploymentView> {
        self.deployments
            .iter()
            .filter(|d| d.service_id == service_id)
            .collect()
    }

    /// Projects not deleted.
    pub fn live_projects(&self) -> Vec<&ProjectView> {
        self.projects.iter().filter(|p| !p.deleted).collect()
    }
}
