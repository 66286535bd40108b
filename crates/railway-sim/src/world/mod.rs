//! The simulated Railway's state and its rules.
//!
//! Everything Railway would remember lives here: projects (soft-deleted, never forgotten),
//! environments, services with their per-environment instances, volumes, domains, deployments
//! and the image registry. A deployment captures the image digest, variables, volume mounts and
//! domains that exist at the moment it is created, so "deployed before its variables were set"
//! and "deployed the old digest of a moving tag" are observable, and it moves through its
//! states as time passes. The rules of each subject live in `projects.rs`, `services.rs` and
//! `deployments.rs`; the live API's quirks they follow are in [`crate::Quirks`].

mod deployments;
mod index;
mod projects;
mod services;

pub(crate) use services::InstanceUpdate;

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::SimConfig;

/// A refusal, as Railway words it (returned as a GraphQL error with `extensions.code`; the
/// server rewrites the code to Railway's `INTERNAL_SERVER_ERROR` when that quirk is on).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The message.
    pub message: String,
    /// `extensions.code`.
    pub code: &'static str,
}

/// The code of the gateway's generic failure, which goes out with no `extensions` and a
/// top-level `traceId` instead.
pub(crate) const PROBLEM_PROCESSING: &str = "PROBLEM_PROCESSING_REQUEST";

impl Refusal {
    pub(crate) fn problem_processing() -> Self {
        Self {
            message: "Problem processing request".into(),
            code: PROBLEM_PROCESSING,
        }
    }

    pub(crate) fn throttled(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: "RATE_LIMITED",
        }
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: "TRANSIENT",
        }
    }

    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: "BAD_USER_INPUT",
        }
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self {
            message: format!("{what} not found"),
            code: "NOT_FOUND",
        }
    }

    pub(crate) fn not_authorized() -> Self {
        Self {
            message: "Not Authorized".into(),
            code: "UNAUTHORIZED",
        }
    }
}

/// What a deployment's agent will do, drawn when the deployment is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Deploys, becomes ready, provisions.
    Healthy,
    /// Fails while building.
    FailBuild,
    /// Crashes some time after succeeding.
    Crash,
    /// Succeeds, never becomes ready.
    NeverReady,
    /// `/pool/provision` never answers.
    ProvisionHang,
    /// `/pool/provision` answers 500.
    ProvisionFail,
}

/// A fault the next `/pool/provision` (to any agent) answers with, whatever its fate
/// ([`crate::SimHandle::fault_next_provision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionFault {
    /// 503 "Runtime not ready yet": the gateway is not up (pool-server/index.ts:410-413).
    NotReady,
    /// 400: the pool server refused the body (pool-server/index.ts:430-437).
    BadRequest,
    /// 500 after its retries, the runtime left clean (nothing was created).
    FailClean,
    /// 500 after its retries, the runtime left dirty (an identity was created and kept).
    FailDirty,
    /// 500 after its retries, with a conversation created (the answer was lost).
    FailWithConversation,
}

/// What the agent's runtime holds: what `/convos/status` reports
/// (`runtime/openclaw/src/convos/index.ts:89-105`) and `/convos/reset` clears (110-155).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentRuntime {
    /// The conversation it is bound to.
    pub conversation_id: Option<String>,
    /// A join waits for acceptance.
    pub pending_join: Option<String>,
    /// Identity, instructions or credentials left behind without a conversation.
    pub dirty: bool,
    /// Factory resets so far.
    pub resets: u32,
    /// The bodies of every `/pool/provision` it answered past auth, in order.
    pub provision_requests: Vec<serde_json::Value>,
}

impl AgentRuntime {
    /// `isClean()` (`runtime/openclaw/src/convos/index.ts:70-88`): no instance, credentials,
    /// instructions or identity.
    pub fn clean(&self) -> bool {
        self.conversation_id.is_none() && self.pending_join.is_none() && !self.dirty
    }
}

/// A project.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Workspace.
    pub workspace_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Soft-deleted at.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Soft-deleted at (simulator clock).
    #[serde(skip)]
    pub deleted: Option<Instant>,
    /// Environments: (id, name).
    pub environments: Vec<(String, String)>,
}

/// A service's settings in one environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Instance {
    /// Image source.
    pub image: Option<String>,
    /// Variables.
    pub variables: BTreeMap<String, String>,
    /// CPU limit.
    pub vcpus: Option<f64>,
    /// Memory limit.
    pub memory_gb: Option<f64>,
    /// Serverless sleep.
    pub sleep_application: Option<bool>,
    /// Restart policy.
    pub restart_policy: Option<String>,
    /// Registry credentials set on the instance.
    pub has_registry_credentials: bool,
    /// The command the container runs instead of the image's.
    pub start_command: Option<String>,
    /// Latest deployment.
    pub latest_deployment: Option<String>,
    /// Last request to its agent (sleep).
    #[serde(skip)]
    pub last_agent_request: Option<Instant>,
}

/// A service.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
    /// Registry credentials given at creation.
    pub has_registry_credentials: bool,
    /// Created (simulator clock): its instances land in their environments a moment later.
    #[serde(skip)]
    pub created: Option<Instant>,
    /// Per environment.
    pub instances: BTreeMap<String, Instance>,
}

/// A volume.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: Option<String>,
    /// Environment.
    pub environment_id: String,
    /// Mount path.
    pub mount_path: String,
    /// Deleted.
    pub deleted: bool,
    /// The files on it. The first container to mount it writes a `sentinel` (a random id),
    /// as the agent initialises its state directory on first boot; the files outlive every
    /// deployment.
    pub files: VolumeFiles,
}

/// What a volume holds (its files, by name): what survives a deployment's removal.
pub type VolumeFiles = BTreeMap<String, String>;

/// A public domain.
#[derive(Debug, Clone, Serialize)]
pub struct Domain {
    /// Id.
    pub id: String,
    /// Host name.
    pub domain: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: String,
    /// Environment.
    pub environment_id: String,
}

/// A deployment and what it captured.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: String,
    /// Environment.
    pub environment_id: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Created (simulator clock).
    #[serde(skip)]
    pub started: Instant,
    /// The image reference it runs.
    pub image: Option<String>,
    /// The digest that reference had when this deployment pulled it.
    pub image_digest: Option<String>,
    /// Why it was made (see [`DeployCause`]).
    pub reason: &'static str,
    /// The command it runs instead of the image's own, if one was set.
    pub start_command: Option<String>,
    /// Variables at creation.
    pub variables: BTreeMap<String, String>,
    /// Volume mount paths at creation.
    pub volume_mounts: Vec<String>,
    /// Domains at creation.
    pub domains: Vec<String>,
    /// Whether it could pull its image.
    pub can_pull: bool,
    /// What its agent will do.
    pub fate: Fate,
    /// Replaced by a newer deployment, removed (`deploymentRemove`), or its project deleted.
    pub removed: bool,
    /// When it was removed (simulator clock): its compute stops counting then.
    #[serde(skip)]
    pub removed_at: Option<Instant>,
    /// Removed by `deploymentRemove` (`railway down`), not replaced: its service is parked,
    /// and the next deploy of it is a wake.
    pub taken_down: bool,
    /// Stopped by `deploymentStop`: status stays `SUCCESS`, nothing serves, no compute.
    #[serde(skip)]
    pub stopped_at: Option<Instant>,
    /// Time from creation to `SUCCESS` when it was drawn for this deployment (a wake, from
    /// [`crate::WakeTimings`]); `None`: the fixed [`crate::DeployTimings`].
    #[serde(skip)]
    pub to_success: Option<std::time::Duration>,
    /// Crashed on request (`crash_service`).
    #[serde(skip)]
    pub crashed_at: Option<Instant>,
    /// Successful provisions of its agent.
    pub provisions: u32,
    /// Time the agent took to answer its successful provision, in microseconds.
    pub provision_micros: Option<u64>,
    /// What the pool told its agent through `/convos/update-metadata` (email, phone).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// What its runtime holds.
    pub runtime: AgentRuntime,
}

impl Deployment {
    /// Takes the deployment down at `now` (once: a second removal keeps the first time).
    pub(crate) fn take_down(&mut self, now: Instant) {
        if !self.removed {
            self.removed = true;
            self.removed_at = Some(now);
        }
    }
}

/// What made a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployCause {
    /// `serviceInstanceDeployV2`, or a service created with a source.
    Deploy,
    /// `serviceInstanceDeploy(latestCommit: true)`: the tag is pulled anew.
    Latest,
    /// `deploymentRedeploy`, or a variable upsert without `skipDeploys`.
    Redeploy,
    /// A `serviceInstanceUpdate` that changed the source image, deploying by itself.
    InstanceUpdate,
}

impl DeployCause {
    /// As Railway's deployment records word it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Latest => "deploy_latest",
            Self::Redeploy => "redeploy",
            Self::InstanceUpdate => "instance_update",
        }
    }
}

/// A deployment's status, as Railway names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Status {
    Queued,
    Building,
    Deploying,
    Success,
    Failed,
    Crashed,
    Removed,
    Sleeping,
}

/// An OpenRouter key.
#[derive(Debug, Clone, Serialize)]
pub struct Key {
    /// Hash (its id).
    pub hash: String,
    /// Name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
}

/// An AgentMail inbox.
#[derive(Debug, Clone, Serialize)]
pub struct Inbox {
    /// Id (an address).
    pub inbox_id: String,
    /// User name.
    pub username: String,
    /// Idempotency key.
    pub client_id: Option<String>,
    /// Deleted.
    pub deleted: bool,
    /// Its messages, newest last.
    #[serde(skip)]
    pub messages: Vec<crate::server::mail::MailMessage>,
}

/// Request counts, for tests and benchmarks.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Counters {
    /// GraphQL requests by root operation.
    pub requests: BTreeMap<String, u64>,
    /// All GraphQL requests.
    pub requests_total: u64,
    /// 429s served (all causes).
    pub rate_limited: u64,
    /// Requests without a query string.
    pub without_query_string: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Health checks served.
    pub health_checks: u64,
    /// Health checks answered other than 200, by status: 404 (no agent at that domain), 502
    /// (its deployment is down: crashed, removed, not serving), 503 (not ready yet).
    #[serde(default)]
    pub health_failures: BTreeMap<u16, u64>,
    /// The bearer token of the last health check per agent domain (`""` without one): which
    /// token the pool sent to which agent.
    pub health_tokens: BTreeMap<String, String>,
    /// Provisions answered 200.
    pub provisions: u64,
    /// Highest number of requests one token sent in any one-second window.
    pub max_requests_in_one_second: usize,
    /// Ids `projectsByIds` left out of successful answers (the quirk).
    pub ids_omitted: u64,
    /// Refusals the quirks caused, by message start.
    pub quirks: BTreeMap<String, u64>,
    /// Requests to the fake AgentMail (any route).
    pub agentmail_requests: u64,
    /// Requests to the fake Telnyx (any route).
    pub telnyx_requests: u64,
}

/// Whose deployments: a project's or a service's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owner<'a> {
    Project(&'a str),
    Service(&'a str),
}

/// The simulated world.
#[derive(Debug, Default)]
pub struct World {
    pub(crate) config: SimConfig,
    pub(crate) projects: BTreeMap<String, Project>,
    pub(crate) services: BTreeMap<String, Service>,
    pub(crate) volumes: BTreeMap<String, Volume>,
    pub(crate) domains: BTreeMap<String, Domain>,
    pub(crate) deployments: BTreeMap<String, Deployment>,
    pub(crate) keys: BTreeMap<String, Key>,
    pub(crate) inboxes: BTreeMap<String, Inbox>,
    pub(crate) telnyx: crate::server::sms::TelnyxWorld,
    pub(crate) counters: Counters,
    /// Last `projectCreate` per throttle key (workspace or token).
    pub(crate) last_project_create: BTreeMap<String, Instant>,
    /// Last `environmentCreate` per token.
    pub(crate) last_environment_create: BTreeMap<String, Instant>,
    /// Recent `volumeCreate` per workspace.
    pub(crate) volume_creates: BTreeMap<String, VecDeque<Instant>>,
    /// The registry: the current version of every image reference pushed (moving tags move).
    pub(crate) images: BTreeMap<String, u64>,
    /// Faults the next provisions answer with, first in first out.
    pub(crate) provision_faults: VecDeque<ProvisionFault>,
    /// Digests whose image fails to boot: every deployment of one ends `FAILED`.
    pub(crate) unbootable: std::collections::BTreeSet<String>,
    /// Recent deploys per workspace (the deploy rate limit quirk).
    pub(crate) recent_deploys: BTreeMap<String, VecDeque<Instant>>,
    /// Services, volumes, domains and deployments by their project and service.
    index: index::Index,
    next_id: u64,
}

impl World {
    pub(crate) fn new(config: SimConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Counts a refusal a quirk caused.
    pub(crate) fn quirk(&mut self, refusal: Refusal) -> Refusal {
        let key: String = refusal.message.chars().take(40).collect();
        *self.counters.quirks.entry(key).or_default() += 1;
        refusal
    }

    pub(crate) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let salt: u32 = rand::rng().random();
        format!("{prefix}-{:06}-{salt:08x}", self.next_id)
    }

    /// The workspaces a token may act on (`None`: unknown token).
    pub(crate) fn token_workspaces(&self, token: &str) -> Option<&Vec<String>> {
        self.config.tokens.get(token)
    }

    pub(crate) fn live_project(&self, id: &str) -> Result<&Project, Refusal> {
        self.projects
            .get(id)
            .filter(|p| p.deleted_at.is_none())
            .ok_or_else(|| Refusal::not_found("Project"))
    }

    pub(crate) fn project_visible(&self, token: &str, id: &str) -> Result<&Project, Refusal> {
        let project = self.live_project(id)?;
        let workspaces = self.token_workspaces(token).ok_or_else(Refusal::not_authorized)?;
        match &project.workspace_id {
            Some(ws) if workspaces.contains(ws) => Ok(project),
            _ => Err(Refusal::not_authorized()),
        }
    }

    pub(crate) fn live_service(&self, id: &str) -> Result<&Service, Refusal> {
        let service = self
            .services
            .get(id)
            .filter(|s| !s.deleted)
            .ok_or_else(|| Refusal::not_found("Service"))?;
        self.live_project(&service.project_id)?;
        Ok(service)
    }

    pub(crate) fn check_token_for_service(&self, token: &str, service_id: &str) -> Result<(), Refusal> {
        let project_id = self.live_service(service_id)?.project_id.clone();
        self.project_visible(token, &project_id).map(|_| ())
    }

    pub(crate) fn check_environment(&self, project_id: &str, environment_id: &str) -> Result<(), Refusal> {
        if self
            .live_project(project_id)?
            .environments
            .iter()
            .any(|(id, _)| id == environment_id)
        {
            Ok(())
        } else {
            Err(Refusal::not_found("Environment"))
        }
    }
}
