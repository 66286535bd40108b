//! Plain types the client takes and returns (the wire types stay in `operations`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::ids::{DeploymentId, EnvironmentId, ProjectId, ServiceId, VolumeId, WorkspaceId};
pub use crate::operations::{DeploymentStatus, RestartPolicyType};

/// A workspace the token can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// Id (`workspaceId`).
    pub id: WorkspaceId,
    /// Display name.
    pub name: String,
}

/// An environment of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Id.
    pub id: EnvironmentId,
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
    pub workspace_id: WorkspaceId,
    /// Name of the environment created with it.
    pub default_environment_name: Option<String>,
}

/// A project just created, with its environments.
#[derive(Debug, Clone)]
pub struct CreatedProject {
    /// Id.
    pub id: ProjectId,
    /// Name.
    pub name: String,
    /// Environments created with it.
    pub environments: Vec<Environment>,
}

/// A project as the workspace listing shows it.
#[derive(Debug, Clone)]
pub struct ProjectSummary {
    /// Id.
    pub id: ProjectId,
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
    pub project_id: ProjectId,
    /// Environment.
    pub environment_id: EnvironmentId,
    /// Name.
    pub name: String,
    /// Credentials for a private image.
    pub registry_credentials: Option<RegistryCredentials>,
}

/// A service just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedService {
    /// Id.
    pub id: ServiceId,
    /// Name.
    pub name: String,
}

/// A volume just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedVolume {
    /// Id.
    pub id: VolumeId,
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
    /// The command the container runs instead of the image's own.
    pub start_command: Option<String>,
}

/// Variables for `variableCollectionUpsert`.
pub type Variables = BTreeMap<String, String>;

/// A volume and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Id.
    pub id: VolumeId,
    /// Name.
    pub name: String,
    /// Mounts: (service id, environment id, mount path).
    pub mounts: Vec<VolumeMount>,
}

/// Where a volume is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// Service.
    pub service_id: Option<ServiceId>,
    /// Environment.
    pub environment_id: EnvironmentId,
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
    pub id: DeploymentId,
    /// Status.
    pub status: DeploymentStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Status of one service in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Service.
    pub service_id: ServiceId,
    /// Its name.
    pub service_name: String,
    /// Environment.
    pub environment_id: EnvironmentId,
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
    pub project_id: ProjectId,
    /// Its services, per environment.
    pub services: Vec<ServiceStatus>,
}

/// The result of a batched status read: what was read, and which projects were not.
#[derive(Debug, Clone, Default)]
pub struct StatusRead {
    /// Projects read, by id.
    pub projects: BTreeMap<ProjectId, ProjectStatus>,
    /// Ids whose batch failed: their status is unknown this time.
    pub failed: Vec<ProjectId>,
    /// Ids a successful batch left out. `projectsByIds` "skips ids the caller cannot access
    /// (does not throw on partial denial)", and the live API leaves out others now and then:
    /// an id missing from its answer is no evidence that the project is gone.
    /// [`crate::RailwayClient::project_presence`] tells.
    pub omitted: Vec<ProjectId>,
    /// Requests sent.
    pub requests: usize,
    /// The last error, when a batch failed.
    pub last_error: Option<crate::RailwayError>,
}

/// Whether a project exists, as one `project(id)` read tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectPresence {
    /// It exists and is not deleted.
    Exists,
    /// It is deleted (`deletedAt` is set: Railway's grace period after a delete).
    Deleted,
    /// Railway says "not found": deleted and gone.
    NotFound,
    /// Railway answers "Not Authorized": deleted, or moved out of this token's reach. Railway
    /// answers so for deleted projects too, but a token that lost access gets the same answer;
    /// whoever treats this as gone should check the token still reaches the workspace.
    NotVisible,
}

/// A project as one `project(id)` read shows it: what the deletion guard re-reads just before
/// every `projectDelete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRead {
    /// It exists: its name and description now.
    Exists {
        /// Its name.
        name: String,
        /// Its description (the pool's marker is there).
        description: Option<String>,
    },
    /// Deleted or not found.
    Gone,
    /// "Not Authorized" (see [`ProjectPresence::NotVisible`]).
    NotVisible,
}

/// What start-up learns about one configured token.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    /// Position of the token in the configuration (the token itself is never shown).
    pub index: usize,
    /// The workspaces it can act on, or why that could not be read.
    pub workspaces: Result<Vec<Workspace>, crate::RailwayError>,
}
