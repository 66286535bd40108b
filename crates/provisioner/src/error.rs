//! The provisioner's one error type.

use pool_store::{AgentId, AgentStatus, CreationStep, StoreError};
use railway_api::RailwayError;

use crate::agent_client::ProvisionFailure;
use crate::guard::GuardRefusal;
use crate::resources::ResourceError;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Railway failed.
    #[error(transparent)]
    Railway(#[from] RailwayError),
    /// OpenRouter or AgentMail failed.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A creation step failed (the creation was compensated).
    #[error("creation step {step} failed: {message}")]
    Step {
        /// The step.
        step: CreationStep,
        /// Why.
        message: String,
    },
    /// The guard refused a deletion.
    #[error(transparent)]
    Guard(#[from] GuardRefusal),
    /// A claim request is invalid; nothing was changed.
    #[error("{field}: {message}")]
    InvalidRequest {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No idle agent.
    #[error("No idle instances available. Try again in a few minutes.")]
    PoolEmpty,
    /// A claim with this idempotency key is still running.
    #[error("a claim with this Idempotency-Key is still in progress")]
    ClaimInProgress,
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
}

/// Result of a provisioner operation.
pub type Result<T, E = ProvisionError> = std::result::Result<T, E>;
