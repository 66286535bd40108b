//! The provisioner's one error type.

use pool_store::{AgentId, AgentStatus, CreationStep, StoreError};
use railway_api::RailwayError;

use crate::agent_client::ProvisionFailure;
use crate::capacity::CreationLimit;
use crate::guard::GuardRefusal;
use crate::resources::ResourceError;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The settings cannot work (a name prefix too long for Railway, a TLS setup that fails).
    #[error("provisioner configuration: {0}")]
    Config(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Railway failed.
    #[error(transparent)]
    Railway(#[from] RailwayError),
    /// OpenRouter or AgentMail failed.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A creation step failed (the creation was compensated, or is left to recovery when the
    /// failure was a passing one).
    #[error("creation step {step} failed: {source}")]
    Step {
        /// The step.
        step: CreationStep,
        /// Why.
        #[source]
        source: Box<ProvisionError>,
    },
    /// The guard refused a deletion.
    #[error(transparent)]
    Guard(#[from] GuardRefusal),
    /// No creation could start: a capacity limit holds.
    #[error("no agent can be created now: {0}")]
    Capacity(CreationLimit),
    /// A claim request is invalid; nothing was changed.
    #[error("{field}: {message}")]
    InvalidRequest {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An agent's credentials (`instanceId` and `gatewayToken`) name no agent, or the wrong
    /// one: the words of the Node pool (`pool/src/middleware/instanceAuth.ts:59-62`).
    #[error("Invalid instance ID or token")]
    AgentCredentials,
    /// The agent has no such service (the Node pool's words, e.g. "No inbox provisioned for
    /// this instance").
    #[error("{0}")]
    ServiceNotProvisioned(&'static str),
    /// The pool has no key for this service ("Email service not configured").
    #[error("{0}")]
    ServiceNotConfigured(&'static str),
    /// Another provisioning of this service for this agent is running.
    #[error("{0} is being provisioned for this agent; try again in a moment")]
    ServiceBusy(&'static str),
    /// What the agent asked for is not its own, or does not exist (a message id of another
    /// inbox or number): one answer for both.
    #[error("{0}")]
    NotTheAgents(String),
    /// A provider refused the request for a reason the agent can act on (400, 404, 409, 422):
    /// its status and its own short message, scrubbed of the organisation's key.
    #[error("{message}")]
    UpstreamRefused {
        /// The provider's status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// A provider failed (no answer in time, 5xx, 429, or it refused the pool's key): no text
    /// of the provider's reaches the agent.
    #[error("{service} proxy failed: {reason}")]
    UpstreamFailed {
        /// `Email` or `SMS`.
        service: &'static str,
        /// What happened, in the pool's words.
        reason: String,
    },
    /// Too many requests of one kind from one caller.
    #[error("{what}: too many requests; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// What is limited.
        what: String,
        /// When the window ends.
        retry_after: std::time::Duration,
    },
    /// No idle agent.
    #[error("No idle instances available. Try again in a few minutes.")]
    PoolEmpty,
    /// The caller holds as many waiting claims as it may; nothing was changed.
    #[error("this key has {max} claims waiting already; wait for one of them to be answered")]
    TooManyWaiting {
        /// The cap (`POOL_MAX_WAITING_CLAIMS_PER_KEY`).
        max: u32,
    },
    /// A claim with this idempotency key is still running.
    #[error("a claim with this Idempotency-Key is still in progress")]
    ClaimInProgress,
    /// The idempotency key was used before with a different request; nothing was changed.
    #[error("this Idempotency-Key was used before with a different request; use a new key for a new claim")]
    IdempotencyMismatch,
    /// The agent could not be provisioned; it was quarantined and is being torn down.
    #[error("provisioning agent {agent} failed: {failure}")]
    ProvisionFailed {
        /// The agent (quarantined).
        agent: AgentId,
        /// Why.
        failure: ProvisionFailure,
    },
    /// A repeated claim whose first attempt failed.
    #[error("the first claim with this Idempotency-Key failed: {0}")]
    RepeatedFailure(String),
    /// A rollout of this runtime runs already; nothing was changed.
    #[error("rollout {} of {} to {} is running; cancel it first (POST /api/pool/rollout/cancel)", .0.id, .0.runtime, .0.image)]
    RolloutRunning(Box<pool_store::Rollout>),
    /// No such agent.
    #[error("no agent {0}")]
    NotFound(AgentId),
    /// The agent's state forbids the action.
    #[error("agent {agent} is {status}: {message}")]
    Conflict {
        /// The agent.
        agent: AgentId,
        /// Its status.
        status: AgentStatus,
        /// What was refused.
        message: String,
    },
    /// A creation stopped because its row left `creating` under it (the reconciler abandoned
    /// it, an operator killed it): nothing to compensate, the row's new owner finishes it.
    #[error("creation of agent {agent} stopped: it is {status} now")]
    CreationStopped {
        /// The agent.
        agent: AgentId,
        /// Its status now.
        status: AgentStatus,
    },
}

impl ProvisionError {
    /// A step's failure, with its cause kept.
    pub(crate) fn step(step: CreationStep, source: ProvisionError) -> Self {
        Self::Step {
            step,
            source: Box::new(source),
        }
    }

    /// True when the failure is a passing one (a throttle, a transient refusal, a network
    /// failure): the same step is worth doing again later, and no compensation is due.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Railway(e) => e.is_transient(),
            Self::Resource(e) => e.transient,
            // A secret sealed under a key this replica lacks: one that has it reads it.
            Self::Store(e) => e.is_unreachable() || e.is_missing_secrets_key(),
            Self::Step { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// Result of a provisioner operation.
pub type Result<T, E = ProvisionError> = std::result::Result<T, E>;
