//! The agent's life on Railway: creation saga, teardown, claim and redeploy.
//!
//! ```no_run
//! use pool_provisioner::{CreationDemand, Provisioner, ProvisionerConfig, select_image};
//! use pool_store::{PoolSettings, Store, StoreConfig};
//! use railway_api::{ClientConfig, DEFAULT_ENDPOINT, RailwayClient, WorkspaceId};
//! use secrecy::SecretString;
//!
//! # async fn example(settings: PoolSettings) -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::connect(StoreConfig::new("postgres://postgres@127.0.0.1/pool")).await?;
//! // The first start seeds the runtime settings (`POOL_MAX_TOTAL`, …); later starts keep them.
//! store.seed_settings(&settings).await?;
//! let token = SecretString::from("a workspace token".to_string());
//! let (railway, deleter) =
//!     RailwayClient::with_project_deleter(ClientConfig::new(DEFAULT_ENDPOINT, vec![token]))?;
//! let image = select_image("ghcr.io/xmtplabs/convos-agent", None, "staging")?;
//! let mut config = ProvisionerConfig::new(WorkspaceId::new("my-workspace"), "staging", image);
//! // Every project's marker names the pool by its database's random id.
//! config.pool_id = Some(store.pool_id().await?);
//! let provisioner = Provisioner::new(config, store, railway, deleter)?;
//! // One agent: its row first, then project → … → one deploy, in a task the provisioner owns.
//! let started = provisioner.start_creations(CreationDemand::Exactly(1)).await?;
//! for outcome in started.finished().await {
//!     println!("{outcome:?}");
//! }
//! provisioner.shutdown(std::time::Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```
//!
//! `pool-provisioner` owns the creation saga (project → environment → external resources →
//! service → variables/limits → volume → domain → image → exactly one deploy; crash-safe,
//! retried through Railway's throttles and passing failures, compensated on real failure),
//! teardown (external resources, then `projectDelete` through the guard, then the row;
//! retried forever), the claim, redeploys, image tag selection, the agent client
//! (`/pool/health`, `/pool/provision`) and the external resources (OpenRouter keys, AgentMail
//! inboxes). Every task it starts is its own ([`Provisioner::shutdown`] waits for them).
//!
//! Architecture invariants: it talks to Railway only through `railway-api` and to the
//! database only through `pool-store`; it never reads environment variables; `projectDelete`
//! is reached only by [`guard::ProjectGuard`], which holds the pool's only
//! [`railway_api::ProjectDeleter`]. It also owns the service proxy (`proxy/`), the only code
//! that talks to AgentMail and Telnyx for an agent, and the agents' credentials
//! ([`agent_auth`]); only the creation saga sets an agent's variables, and none is ever an
//! organisation's key (`cargo xtask tidy`: `provider-call`, `agent-variables`,
//! `organisation-key-name`).

pub mod agent_auth;
mod agent_calls;
pub mod agent_client;
mod capacity;
mod claim;
mod claim_input;
mod claim_policy;
mod config;
mod creation;
mod error;
pub mod guard;
pub mod image;
pub mod naming;
pub mod outbound;
pub mod proxy;
mod redeploy;
mod registry;
mod reset;
pub mod resources;
mod rollout;
mod saga;
mod settings;
pub mod shape;
mod stats;
mod teardown;
#[cfg(feature = "testing")]
pub mod testing;
mod tiers;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pool_store::{Agent, AgentId, CreationStep, Listener, Store};
use railway_api::{ProjectDeleter, RailwayClient};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

pub use agent_calls::{SelfDestructed, SelfInfo, agent_actor};
pub use agent_client::{
    AgentClient, Health, ProvisionFailure, ProvisionStatus, ProvisionTokens, Provisioned, RuntimeIdentity,
    RuntimeStatus,
};
pub use capacity::{CreationDemand, CreationLimit, creations_allowed};
pub use claim::{ADMIN_CLAIMANT, CONSOLE_CLAIMANT, ClaimResponse, MAX_CLAIM_WAIT, request_fingerprint};
pub use claim_input::{
    CheckedClaim, ClaimInput, DEFAULT_AGENT_NAME, DEFAULT_INSTRUCTIONS, DEFAULT_SOURCE, MAX_AGENT_NAME,
    MAX_INSTRUCTIONS, MAX_JOIN_URL, MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_RUNTIME, pick_shape,
};
pub use config::{
    AgentVariables, DEFAULT_AGENT_DOMAIN_SUFFIX, DEFAULT_START_COMMAND, ProvisionerConfig, ProxyLimits,
    UnsafeUrl,
};
pub use creation::{CreationFigures, Recovery, StartedCreations};
pub use error::{ProvisionError, Result};
pub use guard::{DeletableProject, GuardRefusal, ProjectGuard};
pub use image::{ImageError, ImageRef, select_image};
pub use naming::{InvalidNaming, MarkerForm, Naming};
pub use pool_sizing::{DEFAULT_PARK_AFTER, DEFAULT_PARKED_MAX, DEFAULT_PARKED_MIN};
pub use proxy::{EmailCall, Passthrough, ServiceInfo, ServiceProvisioned, SmsCall};
pub use redeploy::{RedeployProgress, redeploy_batch};
pub use reset::Recovered;
pub use resources::{AgentMailConfig, OpenRouterConfig, TelnyxConfig};
pub use rollout::{
    MAX_ROLLOUT_BATCH, MAX_ROLLOUT_PAUSE_MS, RolloutIncludes, RolloutRequest, RolloutView, validate_rollout,
};
pub use settings::{MAX_MAX_TOTAL, MAX_MIN_IDLE, SettingsPatch, validate as validate_settings};
pub use shape::{DEFAULT_SHAPE, Shape, ShapeError, Shapes};
pub use stats::{CLAIM_LATENCY_BUCKETS, ClaimStats, ProvisionerStats, StatsSnapshot, WaitStats};
pub use teardown::teardown_backoff;
pub use tiers::{DEFAULT_MAX_WAKE_FAILURES, MAX_MAX_WAKE_FAILURES, TIER_LEASE, WakeOutcome};

/// Called after each creation step's remote call, before it is journaled. Tests use it to
/// drop the saga at exactly that point (a simulated crash).
pub type StepHook = Arc<dyn Fn(CreationStep) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Inner {
    config: ProvisionerConfig,
    store: Store,
    railway: RailwayClient,
    naming: Naming,
    guard: ProjectGuard,
    agents: AgentClient,
    openrouter: Option<resources::OpenRouter>,
    agentmail: Option<resources::AgentMail>,
    telnyx: Option<resources::Telnyx>,
    registry: registry::Registry,
    create_permits: Semaphore,
    teardown_permits: Arc<Semaphore>,
    tasks: TaskTracker,
    step_hook: Option<StepHook>,
    stats: ProvisionerStats,
    retrying_teardowns: Arc<tokio::sync::Mutex<()>>,
    recovering: Arc<tokio::sync::Mutex<()>>,
    listener: Listener,
}

/// Creates, claims, redeploys and tears down agents. Cheap to clone.
#[derive(Clone)]
pub struct Provisioner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Teardowns in flight at once.
const TEARDOWN_CONCURRENCY: usize = 8;

impl Provisioner {
    /// A provisioner. The pool's own project, naming and clients come from `config`; `deleter`
    /// is the capability to delete projects, which only its guard will hold. It starts this
    /// replica's notification [`Listener`] (so it must be called inside a Tokio runtime).
    pub fn new(
        config: ProvisionerConfig,
        store: Store,
        railway: RailwayClient,
        deleter: ProjectDeleter,
    ) -> Result<Self> {
        Self::with_step_hook(config, store, railway, deleter, None)
    }

    /// A provisioner that calls `step_hook` after each creation step's remote call (tests).
    pub fn with_step_hook(
        config: ProvisionerConfig,
        store: Store,
        railway: RailwayClient,
        deleter: ProjectDeleter,
        step_hook: Option<StepHook>,
    ) -> Result<Self> {
        config
            .check_urls()
            .map_err(|problems| ProvisionError::Config(problems.join("; ")))?;
        // The marker names the pool by its database's random id (`Store::pool_id`); the old
        // form (`pool=<RAILWAY_PROJECT_ID or local>`) is honoured only for rows V12 adopted.
        let Some(pool_id) = config.pool_id.clone() else {
            return Err(ProvisionError::Config(
                "the pool id is not set: read it from the database (Store::pool_id) into ProvisionerConfig::pool_id".into(),
            ));
        };
        let legacy_pool = config
            .pool_project_id
            .as_ref()
            .map_or_else(|| "local".to_string(), ToString::to_string);
        let naming = Naming::new(&config.name_prefix, &pool_id, &config.environment_name)
            .map_err(|e| ProvisionError::Config(e.to_string()))?
            .with_adopted(&legacy_pool, &config.environment_name);
        let http = outbound::OutboundClient::for_agents(&config.agent_roots, config.agent_keep_alive)
            .map_err(|e| ProvisionError::Config(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                guard: ProjectGuard::new(
                    config.pool_project_id.clone(),
                    config.workspace_id.clone(),
                    naming.clone(),
                    deleter,
                ),
                agents: AgentClient::new(http.clone(), config.health_timeout, config.provision_timeout),
                openrouter: config
                    .openrouter
                    .clone()
                    .map(|c| resources::OpenRouter::new(c, http.clone())),
                agentmail: config
                    .agentmail
                    .clone()
                    .map(|c| resources::AgentMail::new(c, http.clone())),
                telnyx: config
                    .telnyx
                    .clone()
                    .map(|c| resources::Telnyx::new(c, http.clone())),
                registry: registry::Registry::new(http.clone(), config.registry_url.clone()),
                create_permits: Semaphore::new(config.create_concurrency.max(1)),
                teardown_permits: Arc::new(Semaphore::new(TEARDOWN_CONCURRENCY)),
                tasks: TaskTracker::new(),
                step_hook,
                stats: ProvisionerStats::default(),
                retrying_teardowns: Arc::default(),
                recovering: Arc::default(),
                listener: Listener::start(&store),
                naming,
                config,
                store,
                railway,
            }),
        })
    }

    /// Settings.
    pub fn config(&self) -> &ProvisionerConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The Railway client.
    pub fn railway(&self) -> &RailwayClient {
        &self.inner.railway
    }

    /// Naming and marking.
    pub fn naming(&self) -> &Naming {
        &self.inner.naming
    }

    /// The deletion guard.
    pub fn guard(&self) -> &ProjectGuard {
        &self.inner.guard
    }

    /// This replica's notification listener (wake-ups from every replica).
    pub fn listener(&self) -> &Listener {
        &self.inner.listener
    }

    /// The agent client.
    pub fn agents(&self) -> &AgentClient {
        &self.inner.agents
    }

    /// Counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Creations whose saga runs in this process now.
    pub fn creations_in_flight(&self) -> usize {
        self.inner.config.create_concurrency.max(1) - self.inner.create_permits.available_permits()
    }

    /// Tasks this provisioner started that have not finished (creations, teardowns,
    /// recoveries).
    pub fn tasks_running(&self) -> usize {
        self.inner.tasks.len()
    }

    /// Stops taking new tasks and waits up to `timeout` for the running ones. Returns whether
    /// they all finished; those that did not are left to crash recovery (their rows hold
    /// leases that run out).
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.tasks.close();
        tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_ok()
    }

    /// An agent's base URL, once it has a domain, and only if the domain is an agent domain
    /// ([`ProvisionerConfig::agent_url`]): an agent whose domain is refused is never called.
    pub fn agent_url(&self, agent: &Agent) -> Option<String> {
        self.agent_url_at(&agent.id, agent.domain.as_deref())
    }

    /// [`Self::agent_url`] from an agent's id and domain alone (the tick's narrow rows).
    pub fn agent_url_at(&self, id: &AgentId, domain: Option<&str>) -> Option<String> {
        match self.inner.config.agent_url(domain?) {
            Ok(url) => Some(url),
            Err(e) => {
                tracing::warn!(agent = %id, error = %e, "agent URL refused; the agent is not called");
                None
            }
        }
    }

    /// The OpenRouter client, when keys are configured (orphan sweeps).
    pub fn openrouter(&self) -> Option<&resources::OpenRouter> {
        self.inner.openrouter.as_ref()
    }

    /// The Telnyx client, when phone numbers are configured.
    pub fn telnyx(&self) -> Option<&resources::Telnyx> {
        self.inner.telnyx.as_ref()
    }

    /// The AgentMail client, when inboxes are configured (orphan sweeps).
    pub fn agentmail(&self) -> Option<&resources::AgentMail> {
        self.inner.agentmail.as_ref()
    }

    pub(crate) async fn load(&self, id: &AgentId) -> Result<Agent> {
        self.inner
            .store
            .agent(id)
            .await?
            .ok_or_else(|| ProvisionError::NotFound(id.clone()))
    }
}
