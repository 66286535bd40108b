//! Plain types the client takes and returns (the wire types stay in `operations`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

pub use crate::operations::{DeploymentStatus, RestartPolicyType};

/// A workspace the token can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// Id (`workspaceId`).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// An environment of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Id.
    pub id: String,
    /// Name (`production`, `staging`, …).
    pub name: String,
}

/// What `projectCreate` needs.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// Name (Railway refuses more than 32 characters).
    pub name: String,
    /// Description.
    pub description: String,
    /// Workspace to create it in.
    pub workspace_id: String,
    /// Name of the environment created with it.
    pub default_environment_name: Option<String>,
}

/// A project just created, with its environments.
#[derive(Debug, Clone)]
pub struct CreatedProject {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Environments created with it.
    pub environments: Vec<Environment>,
}

/// A project as the workspace listing shows it.
#[derive(Debug, Clone)]
pub struct ProjectSummary {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description (the pool marks its projects here).
    pub description: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// One page of a workspace's projects.
#[derive(Debug, Clone)]
pub struct ProjectsPage {
    /// Projects on this page.
    pub projects: Vec<ProjectSummary>,
    /// Cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// Registry credentials for a private image.
#[derive(Clone)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or token (GHCR: a PAT with `read:packages`).
    pub password: SecretString,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What `serviceCreate` needs. No source: the service is configured before its one deploy.
#[derive(Debug, Clone)]
pub struct NewService {
    /// Project.
    pub project_id: String,
    /// Environment.
    pub environment_id: String,
    /// Name.
    pub name: String,
    /// Credentials for a private image.
    pub registry_credentials: Option<RegistryCredentials>,
}

/// A service, volume or other resource just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// Settings of a service in an environment (`serviceInstanceUpdate`).
#[derive(Debug, Clone, Default)]
pub struct InstanceSettings {
    /// Image to deploy.
    pub image: Option<String>,
    /// Credentials to pull it.
    pub registry_credentials: Option<RegistryCredentials>,
    /// Serverless sleep (pool agents: off).
    pub sleep_application: Option<bool>,
    /// Restart policy and its retry count.
    pub restart_policy: Option<(RestartPolicyType, i32)>,
    /// Health check path.
    pub healthcheck_path: Option<String>,
    /// Replicas (≥ 1).
    pub num_replicas: Option<i32>,
}

/// Variables for `variableCollectionUpsert`.
pub type Variables = BTreeMap<String, String>;

/// A volume and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Mounts: (service id, environment id, mount path).
    pub mounts: Vec<VolumeMount>,
}

/// Where a volume is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// Service.
    pub service_id: Option<String>,
    /// Environment.
    pub environment_id: String,
    /// Path.
    pub mount_path: String,
}

/// A public domain of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDomain {
    /// Id.
    pub id: String,
    /// Host name (`x.up.railway.app`).
    pub domain: String,
}

/// A deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Id.
    pub id: String,
    /// Status.
    pub status: DeploymentStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Status of one service in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Service.
    pub service_id: String,
    /// Its name.
    pub service_name: String,
    /// Environment.
    pub environment_id: String,
    /// Environment name.
    pub environment_name: String,
    /// Latest deployment, if any.
    pub latest_deployment: Option<Deployment>,
    /// Public domains.
    pub domains: Vec<String>,
    /// Image source.
    pub image: Option<String>,
}

/// Status of every service of one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectStatus {
    /// Project.
    pub project_id: String,
    /// Its services, per environment.
    pub services: Vec<ServiceStatus>,
}

/// The result of a batched status read: what was read, and which projects could not be.
#[derive(Debug, Clone, Default)]
pub struct StatusRead {
    /// Projects read, by id. A requested id that is absent here and not in `unread` was not
    /// returned by Railway: deleted, or not visible to the token.
    pub projects: BTreeMap<String, ProjectStatus>,
    /// Ids whose batch failed: their status is unknown this time.
    pub unread: Vec<String>,
    /// Requests sent.
    pub requests: usize,
    /// The last error, when a batch failed.
    pub last_error: Option<crate::RailwayError>,
}
