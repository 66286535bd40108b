//! The decision: what one agent's stored status should become, given what was observed.
//!
//! A pure function of (stored facts, observation, stuck timeout), pinned down by a table test.
//! It starts from the original pool's table (`deployment status × health × claimed`) with the
//! rules the original lacked:
//! - agents in `creating`, `claiming` or `deleting` are never overridden by observation
//!   (their own workflows own them; the tick only rescues them when those workflows died);
//! - a status read that failed is no news: the agent keeps its status;
//! - an unknown or missing deployment status is unknown, not dead, until the stuck timeout;
//! - an idle agent that fails its health check leaves the pool (back to `starting`) before it
//!   is judged dead, so one lost health check never deletes a healthy agent;
//! - sleeping is not dead.

use std::time::Duration;

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
    /// `creating`: the saga's work lease ran out (its worker died).
    pub worker_lease_expired: bool,
    /// `starting` because a redeploy is being sent: hold until it is recorded.
    pub redeploy_hold: bool,
    /// Adopted from the shared-project era: it answers only to the pool's admin key, which
    /// this pool never sends, so it cannot be handed out; unclaimed ones are cycled out.
    pub legacy: bool,
}

/// What Railway and the agent said this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Railway was not asked, or the read failed: no news.
    Unread,
    /// Railway does not know the agent's project or service (deleted, or not visible).
    Missing,
    /// The latest deployment's status, and the health check if one ran (only on `SUCCESS`).
    Deployment {
        /// Status.
        status: DeploymentStatus,
        /// Health check result.
        health: Option<Health>,
    },
}

/// What to do with the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Keep,
    /// Change the stored status (expected old status: the stored one).
    Become(AgentStatus, &'static str),
    /// Tear the unclaimed agent down.
    Teardown(&'static str),
    /// The claimer died mid-provision: quarantine and tear down, never back to the pool.
    QuarantineAndTeardown(&'static str),
    /// Its creation's worker died: resume or compensate it.
    RecoverCreation,
    /// Stuck in `creating` too long even with a live worker: give up on it.
    AbandonCreation(&'static str),
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

/// Decides one agent.
pub fn decide(facts: &AgentFacts, observation: &Observation, stuck_timeout: Duration) -> Decision {
    use AgentStatus as S;
    let stuck = facts.in_status_for > stuck_timeout;
    match facts.status {
        S::Deleted | S::Deleting => Decision::Keep,
        S::Creating if facts.worker_lease_expired => Decision::RecoverCreation,
        S::Creating if stuck => Decision::AbandonCreation("stuck in creating past the stuck timeout"),
        S::Creating => Decision::Keep,
        S::Claiming if facts.claim_lease_expired => {
            Decision::QuarantineAndTeardown("claim lease expired: the claimer died mid-provision")
        }
        S::Claiming => Decision::Keep,
        S::Crashed => Decision::Keep,
        S::Claimed => match observation {
            Observation::Deployment { status, .. } if is_dead(status) => {
                Decision::Become(S::Crashed, "deployment died while claimed")
            }
            _ => Decision::Keep,
        },
        S::Idle | S::Starting if facts.legacy => Decision::Teardown(
            "legacy agent from the shared project: cycled out, it cannot be provisioned safely",
        ),
        S::Idle | S::Starting => unclaimed(facts, observation, stuck),
    }
}

fn unclaimed(facts: &AgentFacts, observation: &Observation, stuck: bool) -> Decision {
    use AgentStatus as S;
    let idle = facts.status == S::Idle;
    // Not ready (yet): out of the pool if idle; dead once stuck in starting.
    let not_ready = |why: &'static str| {
        if idle {
            Decision::Become(S::Starting, why)
        } else if stuck {
            Decision::Teardown("stuck in starting past the stuck timeout")
        } else {
            Decision::Keep
        }
    };
    match observation {
        Observation::Unread => Decision::Keep,
        Observation::Missing => {
            if stuck {
                Decision::Teardown("deployment missing past the stuck timeout")
            } else {
                Decision::Keep
            }
        }
        Observation::Deployment { status, health } => match status {
            s if is_dead(s) => Decision::Teardown("deployment failed, crashed or was removed"),
            s if is_in_progress(s) => not_ready("deployment in progress"),
            DeploymentStatus::Success => match health {
                Some(Health::Ready) if idle => Decision::Keep,
                Some(Health::Ready) if facts.redeploy_hold => Decision::Keep,
                Some(Health::Ready) => Decision::Become(S::Idle, "healthy"),
                Some(_) => not_ready("health check failed"),
                None if idle => Decision::Keep,
                None => not_ready("not health-checked yet"),
            },
            DeploymentStatus::Sleeping if idle => Decision::Become(S::Starting, "sleeping"),
            DeploymentStatus::Sleeping => Decision::Keep,
            // NEEDS_APPROVAL, REMOVING, and values Railway adds later: unknown.
            _ if idle => Decision::Keep,
            _ if stuck => Decision::Teardown("deployment status unknown past the stuck timeout"),
            _ => Decision::Keep,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUCK: Duration = Duration::from_secs(900);
    const YOUNG: Duration = Duration::from_secs(60);
    const OLD: Duration = Duration::from_secs(901);

    fn facts(status: AgentStatus, in_status_for: Duration) -> AgentFacts {
        AgentFacts {
            status,
            in_status_for,
            claim_lease_expired: false,
            worker_lease_expired: false,
            redeploy_hold: false,
            legacy: false,
        }
    }

    fn deployed(status: DeploymentStatus, health: Option<Health>) -> Observation {
        Observation::Deployment { status, health }
    }

    #[test]
    fn the_reference_table_and_the_new_rules() {
        use AgentStatus::*;
        use DeploymentStatus as D;
        let unreachable = || Some(Health::Unreachable("502".into()));
        let rows: Vec<(AgentStatus, Duration, Observation, Decision)> = vec![
            // SLEEPING: not dead. Out of the pool if idle.
            (
                Idle,
                OLD,
                deployed(D::Sleeping, None),
                Decision::Become(Starting, "sleeping"),
            ),
            (Starting, OLD, deployed(D::Sleeping, None), Decision::Keep),
            (Claimed, OLD, deployed(D::Sleeping, None), Decision::Keep),
            // FAILED, CRASHED, REMOVED, SKIPPED: dead unclaimed → teardown; claimed → crashed.
            (
                Idle,
                YOUNG,
                deployed(D::Failed, None),
                Decision::Teardown("deployment failed, crashed or was removed"),
            ),
            (
                Starting,
                YOUNG,
                deployed(D::Crashed, None),
                Decision::Teardown("deployment failed, crashed or was removed"),
            ),
            (
                Idle,
                OLD,
                deployed(D::Removed, None),
                Decision::Teardown("deployment failed, crashed or was removed"),
            ),
            (
                Starting,
                YOUNG,
                deployed(D::Skipped, None),
                Decision::Teardown("deployment failed, crashed or was removed"),
            ),
            (
                Claimed,
                OLD,
                deployed(D::Crashed, None),
                Decision::Become(Crashed, "deployment died while claimed"),
            ),
            (
                Claimed,
                OLD,
                deployed(D::Failed, None),
                Decision::Become(Crashed, "deployment died while claimed"),
            ),
            (
                Claimed,
                OLD,
                deployed(D::Removed, None),
                Decision::Become(Crashed, "deployment died while claimed"),
            ),
            (
                Claimed,
                OLD,
                deployed(D::Skipped, None),
                Decision::Become(Crashed, "deployment died while claimed"),
            ),
            // QUEUED, WAITING, BUILDING, DEPLOYING: starting; dead once stuck; claimed stays.
            (Starting, YOUNG, deployed(D::Queued, None), Decision::Keep),
            (Starting, YOUNG, deployed(D::Waiting, None), Decision::Keep),
            (Starting, YOUNG, deployed(D::Building, None), Decision::Keep),
            (Starting, YOUNG, deployed(D::Deploying, None), Decision::Keep),
            (
                Starting,
                OLD,
                deployed(D::Deploying, None),
                Decision::Teardown("stuck in starting past the stuck timeout"),
            ),
            (
                Idle,
                OLD,
                deployed(D::Deploying, None),
                Decision::Become(Starting, "deployment in progress"),
            ),
            (Claimed, OLD, deployed(D::Building, None), Decision::Keep),
            // SUCCESS + ready: idle; claimed stays claimed.
            (
                Starting,
                YOUNG,
                deployed(D::Success, Some(Health::Ready)),
                Decision::Become(Idle, "healthy"),
            ),
            (
                Idle,
                OLD,
                deployed(D::Success, Some(Health::Ready)),
                Decision::Keep,
            ),
            (
                Claimed,
                OLD,
                deployed(D::Success, Some(Health::Ready)),
                Decision::Keep,
            ),
            // SUCCESS + not ready / unreachable: starting while young, else dead.
            (
                Starting,
                YOUNG,
                deployed(D::Success, Some(Health::NotReady)),
                Decision::Keep,
            ),
            (
                Starting,
                YOUNG,
                deployed(D::Success, unreachable()),
                Decision::Keep,
            ),
            (
                Starting,
                OLD,
                deployed(D::Success, Some(Health::NotReady)),
                Decision::Teardown("stuck in starting past the stuck timeout"),
            ),
            (
                Starting,
                OLD,
                deployed(D::Success, unreachable()),
                Decision::Teardown("stuck in starting past the stuck timeout"),
            ),
            (Claimed, OLD, deployed(D::Success, unreachable()), Decision::Keep),
            // An idle agent failing its health check leaves the pool before it is judged.
            (
                Idle,
                OLD,
                deployed(D::Success, unreachable()),
                Decision::Become(Starting, "health check failed"),
            ),
            (
                Idle,
                OLD,
                deployed(D::Success, Some(Health::Unauthorized)),
                Decision::Become(Starting, "health check failed"),
            ),
            // Anything else or none: unknown until the stuck timeout.
            (Starting, YOUNG, Observation::Missing, Decision::Keep),
            (
                Starting,
                OLD,
                Observation::Missing,
                Decision::Teardown("deployment missing past the stuck timeout"),
            ),
            (Idle, YOUNG, Observation::Missing, Decision::Keep),
            (Claimed, OLD, Observation::Missing, Decision::Keep),
            (
                Starting,
                YOUNG,
                deployed(D::Unknown("TELEPORTING".into()), None),
                Decision::Keep,
            ),
            (
                Starting,
                OLD,
                deployed(D::NeedsApproval, None),
                Decision::Teardown("deployment status unknown past the stuck timeout"),
            ),
            (Idle, OLD, deployed(D::Removing, None), Decision::Keep),
            // A failed read is no news, whatever the age.
            (Starting, OLD, Observation::Unread, Decision::Keep),
            (Idle, OLD, Observation::Unread, Decision::Keep),
            (Claimed, OLD, Observation::Unread, Decision::Keep),
            // Crashed stays until dismissed, whatever is observed.
            (
                Crashed,
                OLD,
                deployed(D::Success, Some(Health::Ready)),
                Decision::Keep,
            ),
            // Workflows own creating, claiming and deleting.
            (Creating, YOUNG, deployed(D::Failed, None), Decision::Keep),
            (
                Creating,
                OLD,
                Observation::Unread,
                Decision::AbandonCreation("stuck in creating past the stuck timeout"),
            ),
            (Claiming, OLD, deployed(D::Crashed, None), Decision::Keep),
            (
                Deleting,
                OLD,
                deployed(D::Success, Some(Health::Ready)),
                Decision::Keep,
            ),
            (Deleted, OLD, Observation::Missing, Decision::Keep),
        ];
        for (status, age, observation, expected) in rows {
            let got = decide(&facts(status, age), &observation, STUCK);
            assert_eq!(got, expected, "{status} for {age:?} with {observation:?}");
        }
    }

    #[test]
    fn dead_workers_and_claimers_are_rescued() {
        let mut creating = facts(AgentStatus::Creating, YOUNG);
        creating.worker_lease_expired = true;
        assert_eq!(
            decide(&creating, &Observation::Unread, STUCK),
            Decision::RecoverCreation
        );
        let mut claiming = facts(AgentStatus::Claiming, YOUNG);
        claiming.claim_lease_expired = true;
        assert!(matches!(
            decide(&claiming, &Observation::Unread, STUCK),
            Decision::QuarantineAndTeardown(_)
        ));
    }

    #[test]
    fn legacy_agents_are_cycled_out_unless_claimed() {
        let mut legacy = facts(AgentStatus::Starting, YOUNG);
        legacy.legacy = true;
        let healthy = deployed(DeploymentStatus::Success, Some(Health::Ready));
        assert!(matches!(decide(&legacy, &healthy, STUCK), Decision::Teardown(_)));
        legacy.status = AgentStatus::Claimed;
        assert_eq!(decide(&legacy, &healthy, STUCK), Decision::Keep);
        let dead = deployed(DeploymentStatus::Crashed, None);
        assert_eq!(
            decide(&legacy, &dead, STUCK),
            Decision::Become(AgentStatus::Crashed, "deployment died while claimed")
        );
    }

    #[test]
    fn an_agent_held_for_a_redeploy_is_not_returned_to_the_pool_early() {
        let mut held = facts(AgentStatus::Starting, YOUNG);
        held.redeploy_hold = true;
        let old_deployment_still_up = deployed(DeploymentStatus::Success, Some(Health::Ready));
        assert_eq!(decide(&held, &old_deployment_still_up, STUCK), Decision::Keep);
    }
}
