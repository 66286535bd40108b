//! The decision table.

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
        runtime_mismatch: false,
    }
}

fn deployed(status: DeploymentStatus, health: Option<Health>) -> Observation {
    Observation::Deployment { status, health }
}

#[test]
fn the_reference_table_and_the_new_rules() {
    use AgentStatus::*;
    use DeploymentStatus as D;
    use Reason as R;
    let unreachable = || Some(Health::Unreachable("502".into()));
    let rows: Vec<(AgentStatus, Duration, Observation, Decision)> = vec![
        // SLEEPING: not dead. Out of the pool if idle.
        (
            Idle,
            OLD,
            deployed(D::Sleeping, None),
            Decision::Become(Starting, R::Sleeping),
        ),
        (Starting, OLD, deployed(D::Sleeping, None), Decision::Keep),
        (Claimed, OLD, deployed(D::Sleeping, None), Decision::Keep),
        // FAILED, CRASHED, REMOVED, SKIPPED: dead unclaimed → teardown; claimed → crashed.
        (
            Idle,
            YOUNG,
            deployed(D::Failed, None),
            Decision::Teardown(R::DeploymentDead),
        ),
        (
            Starting,
            YOUNG,
            deployed(D::Crashed, None),
            Decision::Teardown(R::DeploymentDead),
        ),
        (
            Idle,
            OLD,
            deployed(D::Removed, None),
            Decision::Teardown(R::DeploymentDead),
        ),
        (
            Starting,
            YOUNG,
            deployed(D::Skipped, None),
            Decision::Teardown(R::DeploymentDead),
        ),
        (
            Claimed,
            OLD,
            deployed(D::Crashed, None),
            Decision::Become(Crashed, R::DiedWhileClaimed),
        ),
        (
            Claimed,
            OLD,
            deployed(D::Failed, None),
            Decision::Become(Crashed, R::DiedWhileClaimed),
        ),
        (
            Claimed,
            OLD,
            deployed(D::Removed, None),
            Decision::Become(Crashed, R::DiedWhileClaimed),
        ),
        (
            Claimed,
            OLD,
            deployed(D::Skipped, None),
            Decision::Become(Crashed, R::DiedWhileClaimed),
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
            Decision::Teardown(R::StuckStarting),
        ),
        (
            Idle,
            OLD,
            deployed(D::Deploying, None),
            Decision::Become(Starting, R::DeploymentInProgress),
        ),
        (Claimed, OLD, deployed(D::Building, None), Decision::Keep),
        // SUCCESS + ready: idle; claimed stays claimed.
        (
            Starting,
            YOUNG,
            deployed(D::Success, Some(Health::Ready)),
            Decision::Become(Idle, R::Healthy),
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
            Decision::Teardown(R::StuckStarting),
        ),
        (
            Starting,
            OLD,
            deployed(D::Success, unreachable()),
            Decision::Teardown(R::StuckStarting),
        ),
        (Claimed, OLD, deployed(D::Success, unreachable()), Decision::Keep),
        // An idle agent failing its health check leaves the pool before it is judged.
        (
            Idle,
            OLD,
            deployed(D::Success, unreachable()),
            Decision::Become(Starting, R::HealthCheckFailed),
        ),
        (
            Idle,
            OLD,
            deployed(D::Success, Some(Health::Unauthorized)),
            Decision::Become(Starting, R::HealthCheckFailed),
        ),
        // Only a health check: a verdict on readiness, never on death.
        (Idle, OLD, Observation::HealthOnly(Health::Ready), Decision::Keep),
        (
            Idle,
            OLD,
            Observation::HealthOnly(Health::NotReady),
            Decision::Become(Starting, R::HealthCheckFailed),
        ),
        (
            Starting,
            YOUNG,
            Observation::HealthOnly(Health::Ready),
            Decision::Become(Idle, R::Healthy),
        ),
        (
            Starting,
            YOUNG,
            Observation::HealthOnly(Health::NotReady),
            Decision::Keep,
        ),
        (
            Claimed,
            OLD,
            Observation::HealthOnly(Health::NotReady),
            Decision::Keep,
        ),
        // Anything else or none: unknown until the stuck timeout.
        (Starting, YOUNG, Observation::Missing, Decision::Keep),
        (
            Starting,
            OLD,
            Observation::Missing,
            Decision::Teardown(R::MissingPastTimeout),
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
            Decision::Teardown(R::UnknownPastTimeout),
        ),
        (Idle, OLD, deployed(D::Removing, None), Decision::Keep),
        // A failed read, or an id a batch left out, is no news, whatever the age.
        (Starting, OLD, Observation::Unread, Decision::Keep),
        (Idle, OLD, Observation::Unread, Decision::Keep),
        (Claimed, OLD, Observation::Unread, Decision::Keep),
        // Only a project confirmed gone is gone.
        (Idle, YOUNG, Observation::Gone, Decision::Teardown(R::ProjectGone)),
        (
            Starting,
            YOUNG,
            Observation::Gone,
            Decision::Teardown(R::ProjectGone),
        ),
        (
            Claimed,
            YOUNG,
            Observation::Gone,
            Decision::Become(Crashed, R::ProjectGone),
        ),
        (Crashed, YOUNG, Observation::Gone, Decision::Keep),
        // Crashed stays until dismissed — or until it runs and is healthy again.
        (Crashed, OLD, deployed(D::Crashed, None), Decision::Keep),
        (
            Crashed,
            OLD,
            deployed(D::Success, Some(Health::NotReady)),
            Decision::Keep,
        ),
        (
            Crashed,
            OLD,
            deployed(D::Success, Some(Health::Ready)),
            Decision::Become(Claimed, R::Recovered),
        ),
        (
            Crashed,
            OLD,
            Observation::HealthOnly(Health::Ready),
            Decision::Become(Claimed, R::Recovered),
        ),
        (
            Crashed,
            OLD,
            Observation::HealthOnly(Health::NotReady),
            Decision::Keep,
        ),
        // Workflows own creating, claiming and deleting.
        (Creating, YOUNG, deployed(D::Failed, None), Decision::Keep),
        (Creating, OLD, Observation::Unread, Decision::Keep),
        (
            Creating,
            STUCK * 5,
            Observation::Unread,
            Decision::AbandonCreation(R::StuckCreating),
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
    creating.in_status_for = OLD;
    assert_eq!(
        decide(&creating, &Observation::Unread, STUCK),
        Decision::AbandonCreation(Reason::StuckCreating),
        "a creation whose worker keeps giving up is abandoned once stuck"
    );
    let mut claiming = facts(AgentStatus::Claiming, YOUNG);
    claiming.claim_lease_expired = true;
    assert_eq!(
        decide(&claiming, &Observation::Unread, STUCK),
        Decision::QuarantineAndTeardown(Reason::ClaimLeaseExpired)
    );
}

#[test]
fn legacy_agents_are_cycled_out_unless_claimed() {
    let mut legacy = facts(AgentStatus::Starting, YOUNG);
    legacy.legacy = true;
    let healthy = deployed(DeploymentStatus::Success, Some(Health::Ready));
    assert_eq!(
        decide(&legacy, &healthy, STUCK),
        Decision::Teardown(Reason::LegacyCycledOut)
    );
    legacy.status = AgentStatus::Claimed;
    assert_eq!(decide(&legacy, &healthy, STUCK), Decision::Keep);
    let dead = deployed(DeploymentStatus::Crashed, None);
    assert_eq!(
        decide(&legacy, &dead, STUCK),
        Decision::Become(AgentStatus::Crashed, Reason::DiedWhileClaimed)
    );
}

#[test]
fn an_agent_reporting_another_runtime_is_torn_down_unless_a_user_has_it() {
    let healthy = deployed(DeploymentStatus::Success, Some(Health::Ready));
    for status in [AgentStatus::Starting, AgentStatus::Idle] {
        let mut wrong = facts(status, YOUNG);
        wrong.runtime_mismatch = true;
        assert_eq!(
            decide(&wrong, &healthy, STUCK),
            Decision::Teardown(Reason::WrongRuntime),
            "{status}"
        );
        assert_eq!(
            decide(&wrong, &Observation::HealthOnly(Health::Ready), STUCK),
            Decision::Teardown(Reason::WrongRuntime),
            "{status}"
        );
    }
    for status in [
        AgentStatus::Claimed,
        AgentStatus::Claiming,
        AgentStatus::PendingAcceptance,
        AgentStatus::Creating,
        AgentStatus::Deleting,
    ] {
        let mut wrong = facts(status, YOUNG);
        wrong.runtime_mismatch = true;
        assert_eq!(decide(&wrong, &healthy, STUCK), Decision::Keep, "{status}");
    }
}

#[test]
fn an_agent_held_for_a_redeploy_is_not_returned_to_the_pool_early() {
    let mut held = facts(AgentStatus::Starting, YOUNG);
    held.redeploy_hold = true;
    let old_deployment_still_up = deployed(DeploymentStatus::Success, Some(Health::Ready));
    assert_eq!(decide(&held, &old_deployment_still_up, STUCK), Decision::Keep);
    assert_eq!(
        decide(&held, &Observation::HealthOnly(Health::Ready), STUCK),
        Decision::Keep
    );
}

#[test]
fn parked_agents_are_left_alone_and_interrupted_parks_and_wakes_are_resumed() {
    use DeploymentStatus as D;
    // A parked agent's deployment is REMOVED on purpose, and it answers no health check.
    for observation in [
        deployed(D::Removed, None),
        deployed(D::Removed, Some(Health::Unreachable("refused".into()))),
        Observation::Missing,
        Observation::Unread,
    ] {
        assert_eq!(
            decide(&facts(AgentStatus::Parked, OLD), &observation, STUCK),
            Decision::Keep,
            "{observation:?}"
        );
    }
    for status in [AgentStatus::Parking, AgentStatus::Waking] {
        let mut moving = facts(status, OLD);
        assert_eq!(
            decide(&moving, &deployed(D::Removed, None), STUCK),
            Decision::Keep,
            "{status}: its worker lives"
        );
        moving.worker_lease_expired = true;
        assert_eq!(
            decide(&moving, &Observation::Unread, STUCK),
            Decision::RecoverTierMotion,
            "{status}: its worker is gone"
        );
    }
}
