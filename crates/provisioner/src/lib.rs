//! The agent's life on Railway: creation saga, teardown, claim and redeploy.
//!
//! `pool-provisioner` owns the creation saga (external resources → project → environment →
//! service → variables/limits → volume → domain → image → one deploy, crash-safe and
//! compensated on failure), teardown (external resources, then `projectDelete`, then the
//! row; retried forever), the claim, redeploys, image tag selection, the agent client
//! (`/pool/health`, `/pool/provision`) and the external resources (OpenRouter keys, AgentMail
//! inboxes).
//!
//! Architecture invariants: it talks to Railway only through `railway-api` and to the
//! database only through `pool-store`; it never reads environment variables; `projectDelete`
//! is called only by [`guard::ProjectGuard`].

pub mod agent_client;
mod claim;
mod config;
mod error;
pub mod guard;
pub mod http;
pub mod image;
pub mod naming;
mod redeploy;
pub mod resources;
mod saga;
mod stats;
mod teardown;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pool_store::{Agent, AgentId, AgentSecrets, AgentStatus, CreationStep, NewAgent, Store};
use railway_api::RailwayClient;
use rand::Rng;
use secrecy::SecretString;
use tokio::sync::Semaphore;

pub use agent_client::{AgentClient, Health, ProvisionFailure, Provisioned};
pub use claim::{ClaimInput, ClaimResponse, MAX_AGENT_NAME, MAX_INSTRUCTIONS, MAX_JOIN_URL};
pub use config::{AgentVariables, ProvisionerConfig};
pub use error::{ProvisionError, Result};
pub use guard::{DeletableProject, GuardRefusal, ProjectGuard};
pub use image::{ImageError, ImageRef, select_image};
pub use naming::Naming;
pub use redeploy::{RedeployProgress, redeploy_batch};
pub use resources::{AgentMailConfig, OpenRouterConfig};
pub use stats::{CLAIM_LATENCY_BUCKETS, ClaimStats, ProvisionerStats, StatsSnapshot};
pub use teardown::teardown_backoff;

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
    create_permits: Semaphore,
    step_hook: Option<StepHook>,
    stats: ProvisionerStats,
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

/// What crash recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Creations resumed to the end.
    pub resumed: Vec<AgentId>,
    /// Creations that could not be resumed and were compensated.
    pub compensated: Vec<AgentId>,
}

fn random_secret(bytes: usize) -> SecretString {
    let mut rng = rand::rng();
    let hex: String = (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    SecretString::from(hex)
}

impl Provisioner {
    /// A provisioner. The pool's own project, naming and clients come from `config`.
    pub fn new(config: ProvisionerConfig, store: Store, railway: RailwayClient) -> Result<Self, String> {
        Self::with_step_hook(config, store, railway, None)
    }

    /// A provisioner that calls `step_hook` after each creation step's remote call (tests).
    pub fn with_step_hook(
        config: ProvisionerConfig,
        store: Store,
        railway: RailwayClient,
        step_hook: Option<StepHook>,
    ) -> Result<Self, String> {
        let pool = config.pool_project_id.clone().unwrap_or_else(|| "local".into());
        let naming = Naming::new(&config.name_prefix, &pool, &config.environment_name)?;
        let http = http::HttpClient::new().map_err(|e| e.to_string())?;
        Ok(Self {
            inner: Arc::new(Inner {
                guard: ProjectGuard::new(config.pool_project_id.clone(), naming.clone()),
                agents: AgentClient::new(http.clone(), config.health_timeout, config.provision_timeout),
                openrouter: config
                    .openrouter
                    .clone()
                    .map(|c| resources::OpenRouter::new(c, http.clone())),
                agentmail: config
                    .agentmail
                    .clone()
                    .map(|c| resources::AgentMail::new(c, http.clone())),
                create_permits: Semaphore::new(config.create_concurrency.max(1)),
                step_hook,
                stats: ProvisionerStats::default(),
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

    /// The agent client.
    pub fn agents(&self) -> &AgentClient {
        &self.inner.agents
    }

    /// Counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Creations in flight now.
    pub fn creations_in_flight(&self) -> usize {
        self.inner.config.create_concurrency.max(1) - self.inner.create_permits.available_permits()
    }

    /// An agent's base URL, once it has a domain.
    pub fn agent_url(&self, agent: &Agent) -> Option<String> {
        agent.domain.as_deref().map(|d| self.inner.config.agent_url(d))
    }

    /// The OpenRouter client, when keys are configured (orphan sweeps).
    pub fn openrouter(&self) -> Option<&resources::OpenRouter> {
        self.inner.openrouter.as_ref()
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

    /// Creates one agent: writes its row, then runs the saga. Waits for a creation slot
    /// (`create_concurrency`). On failure the agent is compensated — everything it created is
    /// deleted — and the error names the step.
    pub async fn create_agent(&self) -> Result<AgentId> {
        let id = self.begin_creation().await?;
        self.continue_creation(&id).await.map(|()| id)
    }

    /// The first half of [`Self::create_agent`]: writes the new agent's row (`creating`, with
    /// its secrets and the work lease), so it is counted at once. Makes no remote call.
    pub async fn begin_creation(&self) -> Result<AgentId> {
        let id = naming::new_agent_id();
        let wallet = format!("0x{}", secrecy::ExposeSecret::expose_secret(&random_secret(32)));
        let agent = NewAgent {
            id: id.clone(),
            image: self.inner.config.image.to_string(),
            secrets: AgentSecrets {
                gateway_token: random_secret(32),
                setup_password: random_secret(16),
                wallet_private_key: SecretString::from(wallet),
                agent_api_token: random_secret(32),
            },
        };
        self.inner
            .store
            .insert_creating(&agent, self.inner.config.work_lease)
            .await?;
        tracing::info!(agent = %id, image = %agent.image, "creating agent");
        Ok(id)
    }

    /// The second half of [`Self::create_agent`]: waits for a creation slot, then runs the
    /// saga (or compensates).
    pub async fn continue_creation(&self, id: &AgentId) -> Result<()> {
        let _permit = self
            .inner
            .create_permits
            .acquire()
            .await
            .map_err(|_| ProvisionError::PoolEmpty)?;
        self.inner
            .store
            .renew_work_lease(id, self.inner.config.work_lease)
            .await?;
        self.finish_creation(id, None).await
    }

    /// Runs the saga to its end, or compensates.
    async fn finish_creation(&self, id: &AgentId, uncertain: Option<CreationStep>) -> Result<()> {
        match self.run_saga(id, uncertain).await {
            Ok(()) => {
                self.inner.stats.creation(true);
                Ok(())
            }
            Err(failure) => {
                self.inner.stats.creation(false);
                let message = format!("creation failed at step {}: {}", failure.step, failure.error);
                tracing::warn!(agent = %id, step = %failure.step, error = %failure.error, "creation failed; compensating");
                self.compensate(id, &message, Some(failure.step)).await?;
                Err(ProvisionError::Step {
                    step: failure.step,
                    message: failure.error.to_string(),
                })
            }
        }
    }

    /// Deletes everything a failed creation made and archives the row.
    async fn compensate(&self, id: &AgentId, reason: &str, uncertain: Option<CreationStep>) -> Result<()> {
        let store = &self.inner.store;
        store
            .append_event(id, pool_store::EventKind::CreationFailed, reason)
            .await?;
        store.record_error(id, reason).await?;
        let moved = store
            .begin_teardown(id, AgentStatus::Creating, reason, false)
            .await?;
        if !moved.applied() {
            tracing::warn!(agent = %id, ?moved, "agent left `creating` before compensation");
        }
        store.release_work_lease(id).await?;
        if let Err(e) = self.teardown_agent(id, uncertain).await {
            tracing::warn!(agent = %id, error = %e, "compensation will be retried by the tick");
        }
        Ok(())
    }

    /// Recovers creations whose worker died (a crash, a killed replica): each is resumed from
    /// its journal — looking up the step a crash may have left unrecorded — or, if that
    /// fails, compensated. Nothing is left in `creating`.
    pub async fn recover_abandoned_creations(&self) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        for agent in self.inner.store.abandoned_creations().await? {
            if !self
                .inner
                .store
                .take_work_lease(&agent.id, AgentStatus::Creating, self.inner.config.work_lease)
                .await?
            {
                continue;
            }
            let uncertain = self.first_open_step(&agent);
            tracing::info!(agent = %agent.id, step = ?uncertain, "resuming an abandoned creation");
            match self.finish_creation(&agent.id, uncertain).await {
                Ok(()) => recovery.resumed.push(agent.id),
                Err(_) => recovery.compensated.push(agent.id),
            }
        }
        Ok(recovery)
    }
}
