use std::time::Duration;

use chrono::{DateTime, Utc};

use super::pool::claim_history;
use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// A trace on 2026-06-01 (a Monday) from `HH:MM:SS` times.
fn trace(times: &[&str]) -> ClaimTrace {
    ClaimTrace::from_claims(times.iter().map(|t| at(&format!("2026-06-01T{t}Z"))).collect())
}

fn run(trace: &ClaimTrace, policy: Policy, model: &RailwayModel) -> PolicyRow {
    replay(trace, &policy, model, &ReplayConfig::default())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn a_claim_takes_an_idle_agent_and_the_pool_replaces_it() {
    let row = run(
        &trace(&["12:00:00"]),
        Policy::FixedMinIdle(2),
        &RailwayModel::default(),
    );
    assert_eq!(
        (row.claims, row.served_at_once, row.refused, row.agents_created),
        (1, 1, 0, 1)
    );
    // Two idle all day, but one for the 150 s until the replacement is ready.
    assert!(close(row.idle_agent_hours, 48.0 - 150.0 / 3600.0), "{row:?}");
    assert_eq!(row.p99_wait_secs, 0.0);
}

#[test]
fn claims_without_an_idle_agent_wait_in_line_and_get_the_next_ready_one() {
    let model = RailwayModel {
        time_to_ready: Duration::from_secs(60),
        ..RailwayModel::default()
    };
    // One idle agent, three claims at once. The first is served; the replacement is ready
    // after 60 s and goes to the second; the third's is started then and is ready exactly when
    // its 120 s run out, which still counts as served.
    let row = run(
        &trace(&["12:00:00", "12:00:00", "12:00:00"]),
        Policy::FixedMinIdle(1),
        &model,
    );
    assert_eq!(
        (row.served_at_once, row.served_within_60s, row.refused),
        (1, 2, 0),
        "{row:?}"
    );
    assert_eq!(row.p99_wait_secs, 120.0);
    assert!(close(row.late_share, 1.0 / 3.0));
    // A fourth claim waits behind them and is refused.
    let row = run(&trace(&["12:00:00"; 4]), Policy::FixedMinIdle(1), &model);
    assert_eq!((row.served_at_once, row.refused), (1, 1), "{row:?}");
}

#[test]
fn creations_start_one_per_create_interval() {
    // Four claims drain four idle agents; their replacements start at 12:00, 12:00:30,
    // 12:01, 12:01:30 and are ready 150 s later. At 12:03 two are ready, the third claim
    // then waits 30 s.
    let mut times = vec!["12:00:00"; 4];
    times.extend(["12:03:00"; 3]);
    let row = run(&trace(&times), Policy::FixedMinIdle(4), &RailwayModel::default());
    assert_eq!(
        (row.served_at_once, row.served_within_60s, row.refused),
        (6, 7, 0),
        "{row:?}"
    );
    assert_eq!(row.p99_wait_secs, 30.0);
}

#[test]
fn no_more_creations_in_flight_than_the_concurrency() {
    let model = RailwayModel {
        create_concurrency: 1,
        ..RailwayModel::default()
    };
    // The second replacement can only start when the first is ready (12:02:30), so it is
    // ready at 12:05:00 and the second claim at 12:04 waits 60 s.
    let row = run(
        &trace(&["12:00:00", "12:00:00", "12:04:00", "12:04:00"]),
        Policy::FixedMinIdle(2),
        &model,
    );
    assert_eq!((row.served_at_once, row.served_within_60s), (3, 4), "{row:?}");
    assert_eq!(row.p99_wait_secs, 60.0);
}

#[test]
fn a_schedule_fills_for_its_hours_and_retires_the_surplus_after() {
    let schedule = IdleSchedule::parse("* 00:00-12:00=10; *=0").unwrap();
    let row = run(
        &trace(&["06:00:00"]),
        Policy::ScheduleOnly(schedule),
        &RailwayModel::default(),
    );
    assert_eq!((row.served_at_once, row.agents_created), (1, 1));
    assert!(close(row.idle_agent_hours, 120.0 - 150.0 / 3600.0), "{row:?}");
}

#[test]
fn demand_grows_the_pool_for_a_steady_stream_that_a_zero_floor_refuses() {
    let times: Vec<String> = (0..120)
        .map(|m| format!("{:02}:{:02}:00", 10 + m / 60, m % 60))
        .collect();
    let times: Vec<&str> = times.iter().map(String::as_str).collect();
    let trace = trace(&times);
    let model = RailwayModel::default();
    let fixed = run(&trace, Policy::FixedMinIdle(0), &model);
    let demand = run(&trace, Policy::DemandOnly { min_idle: 0 }, &model);
    assert_eq!(fixed.served_at_once, 0, "{fixed:?}");
    // The first claims are refused while the moving average warms up; then the target
    // (1 claim/min × 2.5 min × 1.5 → 4) keeps an agent idle for every claim.
    assert!(demand.served_at_once >= 90, "{demand:?}");
}

#[test]
fn max_total_stops_creations_while_agents_are_claimed() {
    let config = ReplayConfig {
        max_total: Some(5),
        ..ReplayConfig::default()
    };
    // Five claims take the whole allowance until their sessions end at 12:30; the claim at
    // 12:10 is refused, the one at 12:40 finds a new agent.
    let mut times = vec!["12:00:00"; 5];
    times.extend(["12:10:00", "12:40:00"]);
    let row = replay(
        &trace(&times),
        &Policy::FixedMinIdle(5),
        &RailwayModel::default(),
        &config,
    );
    assert_eq!((row.served_at_once, row.refused), (6, 1), "{row:?}");
    let unlimited = run(&trace(&times), Policy::FixedMinIdle(5), &RailwayModel::default());
    assert_eq!(unlimited.refused, 0);
}

#[test]
fn jitter_is_deterministic_and_moves_the_p90() {
    let model = RailwayModel {
        jitter: Some(Jitter {
            spread: Duration::from_secs(30),
            seed: 9,
        }),
        ..RailwayModel::default()
    };
    assert_eq!(model.p90_time_to_ready(), Duration::from_secs(174));
    assert_eq!(
        RailwayModel::default().p90_time_to_ready(),
        Duration::from_secs(150)
    );
    assert!(close(model.create_rate_per_min(), 2.0));
    let week = crate::synthetic::synthetic_week(1).trace;
    let policy = Policy::DemandOnly { min_idle: 2 };
    assert_eq!(run(&week, policy.clone(), &model), run(&week, policy, &model));
}

#[test]
fn an_empty_trace_replays_to_nothing() {
    let row = run(
        &ClaimTrace::default(),
        Policy::FixedMinIdle(3),
        &RailwayModel::default(),
    );
    assert_eq!((row.claims, row.agents_created), (0, 0));
    assert_eq!(row.idle_agent_hours, 0.0);
}

#[test]
fn history_buckets_end_at_now_and_last_week_appears_after_a_week() {
    const MIN: i64 = 60_000;
    let claims = [10_000, 20_000, 90_000, 3 * MIN];
    // At 3 min, with the claim at 3 min itself replayed: buckets [0,1), [1,2), [2,3] minutes.
    let history = claim_history(&claims, 4, 3 * MIN);
    assert_eq!(history.recent, vec![2, 1, 1]);
    assert_eq!(history.last_week_same_hour, None);
    // Claims not yet replayed do not count.
    assert_eq!(claim_history(&claims, 2, 3 * MIN).recent, vec![2, 0, 0]);
    // Long after, only the last two hours, and last week's coming hour from the whole trace.
    let week = 7 * 24 * 60 * MIN;
    let history = claim_history(&claims, 4, week);
    assert_eq!(history.recent.len(), crate::forecast::RECENT_MINUTES);
    assert!(history.recent.iter().all(|&n| n == 0));
    assert_eq!(history.last_week_same_hour, Some(4.0 / 60.0));
}

#[test]
fn policies_have_table_names() {
    assert_eq!(Policy::FixedMinIdle(20).name(), "fixed min idle 20");
    assert_eq!(
        Policy::DemandOnly { min_idle: 2 }.name(),
        "demand only (min idle 2)"
    );
}

#[test]
fn a_tiered_morning_ramp_wakes_parked_agents_and_creates_nothing() {
    let schedule = IdleSchedule::parse("* 08:00-12:00=10; *=2").unwrap();
    let times = ["06:00:00", "09:00:00", "13:00:00"];
    let model = RailwayModel::default();
    let today = run(
        &trace(&times),
        Policy::ScheduleAndDemand {
            schedule: schedule.clone(),
            min_idle: 2,
        },
        &model,
    );
    let tiered = run(
        &trace(&times),
        Policy::Tiered {
            schedule: Some(schedule),
            min_idle: 2,
            parked_min: 0,
            parked_max: 50,
        },
        &model,
    );
    // Today the ramp from 2 to 10 creates 8 agents besides the claims' replacements.
    assert!(today.agents_created >= 8 + 3, "{today:?}");
    // Tiered: the night parks the ramp (10 − 2 = 8); 08:00 wakes them; each claim's
    // replacement comes from the parked tier, which creates only to refill itself.
    assert!(tiered.wakes >= 8, "{tiered:?}");
    // (One more than the three claims: the forecast after a claim raises the parked target
    // for a while.)
    assert!(tiered.agents_created <= 4, "{tiered:?}");
    assert!(today.agents_created >= tiered.agents_created + 7, "{today:?}");
    assert_eq!(tiered.served_at_once, 3, "{tiered:?}");
    assert!(tiered.parked_agent_hours > 0.0);
    assert!(
        tiered.warm_agent_hours < today.warm_agent_hours + 1.0,
        "{tiered:?} {today:?}"
    );
}

#[test]
fn a_burst_beyond_the_warm_stock_is_served_by_wakes_within_their_time() {
    let model = RailwayModel::default();
    let config = ReplayConfig {
        claim_wait_limit: Duration::from_secs(300),
        ..ReplayConfig::default()
    };
    let burst = trace(&["12:00:00"; 12]);
    let policy = Policy::Tiered {
        schedule: None,
        min_idle: 2,
        parked_min: 20,
        parked_max: 50,
    };
    let row = replay(&burst, &policy, &model, &config);
    assert_eq!((row.served_at_once, row.refused), (2, 0), "{row:?}");
    // Ten waiting claims: the burst's rate wakes parked agents at once (more than ten: the
    // last minute's 12 claims over the wake horizon), none is created for a claim; the
    // parked tier refills afterwards.
    assert!(row.wakes >= 10, "{row:?}");
    assert!(row.agents_created >= 10, "{row:?}");
    // Wakes are log-normal around 45 s with a p95 of 120 s: every claim is served in time.
    assert!(row.p99_wait_secs <= 300.0 && row.p99_wait_secs > 0.0, "{row:?}");
}
