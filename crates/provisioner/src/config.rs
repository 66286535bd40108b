//! The provisioner's settings, parsed by the binary from the environment.

use std::collections::BTreeMap;
use std::time::Duration;

use railway_api::https::ExtraRoots;
use railway_api::{ProjectId, RegistryCredentials, WorkspaceId};
use secrecy::SecretString;

use crate::image::ImageRef;
use crate::resources::{AgentMailConfig, OpenRouterConfig};

/// The agent runtime's pool server: what the Node pool manager sets as every agent's start
/// command (xmtplabs/convos-managed-agent-runtime `pool/src/services/providers/railway.ts`).
pub const DEFAULT_START_COMMAND: &str = "node convos-platform/pool-server/dist/index.js";

/// Everything the provisioner needs.
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// Workspace agents' projects are created in.
    pub workspace_id: WorkspaceId,
    /// The pool's own Railway environment name (agents get an environment of the same name).
    pub environment_name: String,
    /// The pool manager's own project (`RAILWAY_PROJECT_ID`): legacy agents live there, and
    /// it is never deleted.
    pub pool_project_id: Option<ProjectId>,
    /// Prefix of agent names.
    pub name_prefix: String,
    /// The image new agents run.
    pub image: ImageRef,
    /// Credentials to pull it (none for a public image).
    pub registry: Option<RegistryCredentials>,
    /// How an agent's base URL is formed from its domain: `{domain}` is replaced.
    pub agent_url_template: String,
    /// Certificates trusted for agents besides the public roots (a test's self-signed agents).
    pub agent_roots: ExtraRoots,
    /// Variables every agent gets besides its own secrets.
    pub agent_variables: AgentVariables,
    /// CPU limit per agent.
    pub vcpus: Option<f64>,
    /// Memory limit per agent (GB).
    pub memory_gb: Option<f64>,
    /// Per-agent OpenRouter keys, when configured.
    pub openrouter: Option<OpenRouterConfig>,
    /// Per-agent AgentMail inboxes, when configured.
    pub agentmail: Option<AgentMailConfig>,
    /// Time allowed for `/pool/health`.
    pub health_timeout: Duration,
    /// Time allowed for `/pool/provision` (longer than the agent's own ~5 minute retries).
    pub provision_timeout: Duration,
    /// Creations in flight at once, across replicas (rows in `creating`).
    pub create_concurrency: usize,
    /// While the creation brake is engaged, one probe creation per this interval
    /// (`POOL_CREATE_PROBE_INTERVAL_MS`).
    pub brake_probe_interval: Duration,
    /// The command agents run instead of their image's own: the agent runtime's pool server,
    /// which serves `/pool/health` and `/pool/provision` (the image's `CMD`, `pnpm start`, runs
    /// OpenClaw without it). `None` keeps the image's command.
    pub start_command: Option<String>,
    /// How long one creation step keeps retrying a throttle or a passing failure before the
    /// saga gives the creation up to recovery (never to compensation).
    pub step_retry_deadline: Duration,
    /// After the instance update, how long the saga waits for the deployment Railway may
    /// start by itself before it deploys.
    pub self_deploy_grace: Duration,
    /// Share of idle agents redeployed at a time.
    pub redeploy_fraction: f64,
    /// How long a creation or teardown holds its row before recovery may take it over.
    pub work_lease: Duration,
}

/// The non-secret and pass-through variables agents get.
#[derive(Clone, Default)]
pub struct AgentVariables {
    /// `OPENCLAW_PRIMARY_MODEL`.
    pub primary_model: Option<String>,
    /// `XMTP_ENV`.
    pub xmtp_env: String,
    /// `POOL_URL`: where the pool manager is reachable, if agents should know.
    pub pool_url: Option<String>,
    /// Passed through unchanged (`BANKR_API_KEY`, `TELNYX_*`).
    pub pass_through: BTreeMap<String, SecretString>,
}

impl std::fmt::Debug for AgentVariables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentVariables")
            .field("primary_model", &self.primary_model)
            .field("xmtp_env", &self.xmtp_env)
            .field("pass_through", &self.pass_through.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ProvisionerConfig {
    /// Settings with the defaults for everything but where and what to deploy.
    pub fn new(workspace_id: WorkspaceId, environment_name: impl Into<String>, image: ImageRef) -> Self {
        Self {
            workspace_id,
            environment_name: environment_name.into(),
            pool_project_id: None,
            name_prefix: "convos-agent-".into(),
            image,
            registry: None,
            agent_url_template: "https://{domain}".into(),
            agent_roots: ExtraRoots::default(),
            agent_variables: AgentVariables {
                xmtp_env: "dev".into(),
                ..AgentVariables::default()
            },
            vcpus: None,
            memory_gb: None,
            openrouter: None,
            agentmail: None,
            health_timeout: Duration::from_secs(5),
            provision_timeout: Duration::from_secs(360),
            create_concurrency: 8,
            brake_probe_interval: Duration::from_secs(300),
            start_command: Some(DEFAULT_START_COMMAND.into()),
            step_retry_deadline: Duration::from_secs(300),
            self_deploy_grace: Duration::from_secs(3),
            redeploy_fraction: 0.25,
            work_lease: Duration::from_secs(300),
        }
    }

    /// The agent's base URL for a Railway domain.
    pub fn agent_url(&self, domain: &str) -> String {
        self.agent_url_template.replace("{domain}", domain)
    }

    /// True in the production environment (join-URL rules differ).
    pub fn is_production(&self) -> bool {
        self.environment_name == "production"
    }
}
