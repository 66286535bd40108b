//! The reconciler's one error type: what went wrong in a tick, kept in its report.

use std::sync::Arc;

use pool_provisioner::ProvisionError;
use pool_store::{AgentId, StoreError};
use railway_api::RailwayError;

/// A problem a tick met. The tick goes on where it can; the next tick tries again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The database could not be read.
    #[error("loading agents: {0}")]
    Load(#[source] Arc<StoreError>),
    /// Some of Railway's status batches failed; those agents kept their status.
    #[error("status read: {0}")]
    StatusRead(#[source] RailwayError),
    /// A decision about one agent could not be written.
    #[error("agent {agent}: {source}")]
    Apply {
        /// The agent.
        agent: AgentId,
        /// Why.
        #[source]
        source: Arc<StoreError>,
    },
    /// Creations could not start.
    #[error("replenish: {0}")]
    Replenish(#[source] Arc<ProvisionError>),
    /// The redeploy step failed.
    #[error("redeploy: {0}")]
    Redeploy(#[source] Arc<ProvisionError>),
    /// The rollout step failed (it goes on next tick from its rows).
    #[error("rollout: {0}")]
    Rollout(#[source] Arc<ProvisionError>),
    /// The stored settings cannot be used (the tick goes on with what it can).
    #[error("settings: {0}")]
    Settings(String),
    /// The retention pass failed (it runs again at its next interval).
    #[error("retention: {0}")]
    Retention(#[source] Arc<StoreError>),
    /// The orphan sweep met a problem (it went on with the rest).
    #[error("orphan sweep, {what}: {source}")]
    Sweep {
        /// What it was doing.
        what: String,
        /// Why.
        #[source]
        source: Arc<ProvisionError>,
    },
}

impl ReconcileError {
    pub(crate) fn load(e: StoreError) -> Self {
        Self::Load(Arc::new(e))
    }

    pub(crate) fn apply(agent: &AgentId, e: StoreError) -> Self {
        Self::Apply {
            agent: agent.clone(),
            source: Arc::new(e),
        }
    }

    pub(crate) fn sweep(what: impl Into<String>, e: impl Into<ProvisionError>) -> Self {
        Self::Sweep {
            what: what.into(),
            source: Arc::new(e.into()),
        }
    }
}
