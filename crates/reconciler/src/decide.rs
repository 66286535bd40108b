//! The decision: what one agent's stored status should become, given what was observed.
//!
//! A pure function of (stored facts, observation, stuck timeout), pinned down by a table test.
//! It starts from the original pool's table (`deployment status × health × claimed`) with the
//! rules the original lacked:
//! - agents in `creating`, `claiming` or `deleting` are never overridden by observation
//!   (their own workflows own them; the tick only rescues them when those workflows died);
//! - a status read that failed, or left the agent out, is no news: the agent keeps its status;
//!   only a project confirmed gone by a read of its own is gone;
//! - an unknown or missing deployment status is unknown, not dead, until the stuck timeout;
//! - an idle agent that fails its health check leaves the pool (back to `starting`) before it
//!   is judged dead, so one lost health check never deletes a healthy agent;
//! - a claimed agent whose deployment crashed or failed is `crashed`, and `claimed` again when
//!   its restart policy brings it back;
//! - sleeping is not dead;
//! - an unclaimed agent whose `/pool/health` reports another runtime than its shape's is
//!   never handed out: it is torn down (and the pool replaces it); a claimed one stays with
//!   its user (the mismatch is an event for the operator).

use std::time::Duration;

use chrono::{DateTime, Utc};

use pool_provisioner::Health;
use pool_store::AgentStatus;
use railway_api::DeploymentStatus;

/// What the database says about an agent, as far as the decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentFacts {
    /// Stored status.
    pub status: AgentStatus,
    /// Time since the status last changed.
    pub in_status_for: Duration,
    /// `claiming`: the claimer's lease ran out (it died mid-provision).
    pub claim_lease_expired: bool,
    /// `creating`: the saga's work lease ran out (its worker died or paused).
    pub worker_lease_expired: bool,
    /// `starting` because a redeploy is being sent: hold until it is recorded.
    pub redeploy_hold: bool,
    /// Adopted from the shared-project era: it answers only to the pool's admin key, which
    /// this pool never sends, so it cannot be handed out; unclaimed ones are cycled out.
    pub legacy: bool,
    /// Its `/pool/health` reported (this tick, or last time it answered) a runtime other than
    /// its shape's.
    pub runtime_mismatch: bool,
}

/// What Railway and the agent said this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Railway was not asked, the read failed or it left the agent out: no news.
    Unread,
    /// A read of the project itself confirmed it is gone (deleted, or no longer visible to a
    /// token that still reaches the workspace).
    Gone,
    /// The project exists, but not the agent's service or any deployment of it.
    Missing,
    /// The latest deployment's status, and the health check if one ran.
    Deployment {
        /// Status.
        status: DeploymentStatus,
        /// Health check result.
        health: Option<Health>,
    },
    /// Only the health check ran (Railway was not asked about this agent this tick).
    HealthOnly(Health),
}

/// Why a decision was taken (recorded in the agent's events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Deployed and ready.
    Healthy,
    /// A claimed agent's deployment crashed or failed.
    DiedWhileClaimed,
    /// A crashed agent's deployment runs and is ready again.
    Recovered,
    /// A deployment failed, crashed or was removed.
    DeploymentDead,
    /// A deployment is on its way up.
    DeploymentInProgress,
    /// The health check did not say ready.
    HealthCheckFailed,
    /// Deployed, not health-checked yet.
    NotCheckedYet,
    /// Railway put the service to sleep.
    Sleeping,
    /// Its project is gone.
    ProjectGone,
    /// Starting for longer than the stuck timeout.
    StuckStarting,
    /// Its deployment is missing past the stuck timeout.
    MissingPastTimeout,
    /// Its deployment status is unknown past the stuck timeout.
    UnknownPastTimeout,
    /// Creating for longer than the stuck timeout.
    StuckCreating,
    /// The claimer died mid-provision (its lease ran out).
    ClaimLeaseExpired,
    /// A legacy agent of the shared project: it cannot be provisioned safely.
    LegacyCycledOut,
    /// It reports a runtime other than its shape's: it must not serve its shape's claims.
    WrongRuntime,
}

impl Reason {
    /// In words, for events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::DiedWhileClaimed => "deployment died while claimed",
            Self::Recovered => "deployment running and healthy again",
            Self::DeploymentDead => "deployment failed, crashed or was removed",
            Self::DeploymentInProgress => "deployment in progress",
            Self::HealthCheckFailed => "health check failed",
            Self::NotCheckedYet => "not health-checked yet",
            Self::Sleeping => "sleeping",
            Self::ProjectGone => "its Railway project is gone",
            Self::StuckStarting => "stuck in starting past the stuck timeout",
            Self::MissingPastTimeout => "deployment missing past the stuck timeout",
            Self::UnknownPastTimeout => "deployment status unknown past the stuck timeout",
            Self::StuckCreating => "stuck in creating past the stuck timeout",
            Self::ClaimLeaseExpired => "claim lease expired: the claimer died mid-provision",
            Self::LegacyCycledOut => {
                "legacy agent from the shared project: cycled out, it cannot be provisioned safely"
            }
            Self::WrongRuntime => {
                "its /pool/health reports a runtime other than its shape's: never handed out, replaced"
            }
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Keep,
    /// Change the stored status (expected old status: the stored one).
    Become(AgentStatus, Reason),
    /// Tear the unclaimed agent down.
    Teardown(Reason),
    /// The claimer died mid-provision: quarantine and tear down, never back to the pool.
    QuarantineAndTeardown(Reason),
    /// Its creation's worker died: resume or compensate it.
    RecoverCreation,
    /// Its park or wake's worker died: resume it from its journal.
    RecoverTierMotion,
    /// Stuck in `creating` too long: give up on it.
    AbandonCreation(Reason),
}

/// Deployment statuses that mean the agent is gone.
fn is_dead(status: &DeploymentStatus) -> bool {
    matches!(
        status,
        DeploymentStatus::Failed
            | DeploymentStatus::Crashed
            | DeploymentStatus::Removed
            | DeploymentStatus::Skipped
    )
}

/// Deployment statuses of a deployment on its way up.
fn is_in_progress(status: &DeploymentStatus) -> bool {
    matches!(
        status,
        DeploymentStatus::Queued
            | DeploymentStatus::Waiting
            | DeploymentStatus::Building
            | DeploymentStatus::Deploying
            | DeploymentStatus::Initializing
    )
}

/// Whether a lease that ends at `until` has run out at `now` (no lease: run out).
pub(crate) fn lease_expired(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_none_or(|t| t < now)
}

/// Whether the worker that holds an agent in `status` is gone: creations, parks and wakes are
/// each held by one worker under a lease that ends at `until`.
pub(crate) fn worker_gone(status: AgentStatus, until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    matches!(
        status,
        AgentStatus::Creating | AgentStatus::Parking | AgentStatus::Waking
    ) && lease_expired(until, now)
}

/// How many stuck timeouts a creation with a live worker may take before it is given up.
const LIVE_CREATION_BOUND: u32 = 4;

/// Decides one agent.
pub fn decide(facts: &AgentFacts, observation: &Observation, stuck_timeout: Duration) -> Decision {
    use AgentStatus as S;
    let stuck = facts.in_status_for > stuck_timeout;
    match facts.status {
        S::Deleted | S::Deleting => Decision::Keep,
        // A creation whose worker is gone is resumed — unless it has been at it for longer
        // than the stuck timeout (a creation that keeps meeting passing failures); one whose
        // worker lives is left alone up to a generous bound (it may be waiting its turn
        // behind Railway's per-workspace throttle).
        S::Creating if facts.worker_lease_expired && stuck => {
            Decision::AbandonCreation(Reason::StuckCreating)
        }
        S::Creating if facts.worker_lease_expired => Decision::RecoverCreation,
        S::Creating if facts.in_status_for > stuck_timeout * LIVE_CREATION_BOUND => {
            Decision::AbandonCreation(Reason::StuckCreating)
        }
        S::Creating => Decision::Keep,
        S::Claiming if facts.claim_lease_expired => {
            Decision::QuarantineAndTeardown(Reason::ClaimLeaseExpired)
        }
        S::Claiming => Decision::Keep,
        S::Claimed => claimed(observation),
        // Its runtime resolves it (`pending-acceptance/{complete,fail}`); the tick's pending
        // pass tears it down past POOL_PENDING_ACCEPTANCE_TIMEOUT_MS. Observation does not
        // judge it: a user's join is waiting on it.
        S::PendingAcceptance => Decision::Keep,
        S::Crashed => crashed(observation),
        // A parked agent has no deployment running on purpose: its REMOVED deployment is no
        // news, and it answers no health check. A park or wake whose worker is gone is resumed
        // from its journal; one whose worker lives is left alone.
        S::Parked => Decision::Keep,
        S::Parking | S::Waking if facts.worker_lease_expired => Decision::RecoverTierMotion,
        S::Parking | S::Waking => Decision::Keep,
        S::Idle | S::Starting if facts.legacy => Decision::Teardown(Reason::LegacyCycledOut),
        S::Idle | S::Starting if facts.runtime_mismatch => Decision::Teardown(Reason::WrongRuntime),
        S::Idle | S::Starting => unclaimed(facts, observation, stuck),
    }
}

fn claimed(observation: &Observation) -> Decision {
    match observation {
        Observation::Deployment { status, .. } if is_dead(status) => {
            Decision::Become(AgentStatus::Crashed, Reason::DiedWhileClaimed)
        }
        Observation::Gone => Decision::Become(AgentStatus::Crashed, Reason::ProjectGone),
        // A failed health check alone is no verdict: the tick reads Railway for it at once.
        _ => Decision::Keep,
    }
}

fn crashed(observation: &Observation) -> Decision {
    match observation {
        Observation::Deployment {
            status: DeploymentStatus::Success,
            health: Some(Health::Ready),
        }
        | Observation::HealthOnly(Health::Ready) => Decision::Become(AgentStatus::Claimed, Reason::Recovered),
        _ => Decision::Keep,
    }
}

fn unclaimed(facts: &AgentFacts, observation: &Observation, stuck: bool) -> Decision {
    use AgentStatus as S;
    let idle = facts.status == S::Idle;
    // Not ready (yet): out of the pool if idle; dead once stuck in starting.
    let not_ready = |why: Reason| {
        if idle {
            Decision::Become(S::Starting, why)
        } else if stuck {
            Decision::Teardown(Reason::StuckStarting)
        } else {
            Decision::Keep
        }
    };
    let ready = || {
        if idle || facts.redeploy_hold {
            Decision::Keep
        } else {
            Decision::Become(S::Idle, Reason::Healthy)
        }
    };
    match observation {
        Observation::Unread => Decision::Keep,
        Observation::Gone => Decision::Teardown(Reason::ProjectGone),
        Observation::Missing if stuck => Decision::Teardown(Reason::MissingPastTimeout),
        Observation::Missing => Decision::Keep,
        Observation::HealthOnly(Health::Ready) => ready(),
        Observation::HealthOnly(_) => not_ready(Reason::HealthCheckFailed),
        Observation::Deployment { status, health } => match status {
            s if is_dead(s) => Decision::Teardown(Reason::DeploymentDead),
            s if is_in_progress(s) => not_ready(Reason::DeploymentInProgress),
            DeploymentStatus::Success => match health {
                Some(Health::Ready) => ready(),
                Some(_) => not_ready(Reason::HealthCheckFailed),
                None if idle => Decision::Keep,
                None => not_ready(Reason::NotCheckedYet),
            },
            DeploymentStatus::Sleeping if idle => Decision::Become(S::Starting, Reason::Sleeping),
            DeploymentStatus::Sleeping => Decision::Keep,
            // NEEDS_APPROVAL, REMOVING, and values Railway adds later: unknown.
            _ if idle => Decision::Keep,
            _ if stuck => Decision::Teardown(Reason::UnknownPastTimeout),
            _ => Decision::Keep,
        },
    }
}

#[cfg(test)]
mod tests;
