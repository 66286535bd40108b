use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;

const OFFICE: &str = "mon-fri 08:00-20:00 Europe/Berlin=20; *=2";
const OFFICE_RULE: &str = "mon-fri 08:00-20:00 Europe/Berlin=20";
/// Wednesday 12:00 in Berlin.
const OFFICE_HOURS: &str = "2026-06-03T10:00:00Z";
/// Wednesday 23:00 in Berlin.
const NIGHT: &str = "2026-06-03T21:00:00Z";

/// One row: the inputs that differ from the defaults, and the expected target and reason.
struct Row {
    name: &'static str,
    schedule: Option<&'static str>,
    now: &'static str,
    min_idle: u32,
    max_total: Option<u32>,
    live_non_warm: u32,
    claims_per_min: f64,
    p90_secs: u64,
    creation_queue: u32,
    create_rate_per_min: f64,
    headroom: f64,
    expected: &'static str,
}

const BASE: Row = Row {
    name: "",
    schedule: None,
    now: OFFICE_HOURS,
    min_idle: 1,
    max_total: None,
    live_non_warm: 0,
    claims_per_min: 0.0,
    p90_secs: 150,
    creation_queue: 0,
    create_rate_per_min: DEFAULT_CREATE_RATE_PER_MIN,
    headroom: DEFAULT_HEADROOM,
    expected: "",
};

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "no schedule, no demand: POOL_MIN_IDLE",
            min_idle: 3,
            expected: "target 3 = floor 3 from minIdle (demand 0)",
            ..BASE
        },
        Row {
            name: "demand above POOL_MIN_IDLE rounds up",
            claims_per_min: 0.4,
            expected: "target 2 = 0.4 claims/min × 2.5 min horizon × 1.5 headroom (floor 1 from minIdle)",
            ..BASE
        },
        Row {
            name: "the creation queue lengthens the horizon",
            claims_per_min: 0.4,
            creation_queue: 41,
            expected: "target 14 = 0.4 claims/min × 23 min horizon × 1.5 headroom (floor 1 from minIdle)",
            ..BASE
        },
        Row {
            name: "an exact product is not rounded up by float noise",
            claims_per_min: 0.4,
            p90_secs: 25 * 60,
            expected: "target 15 = 0.4 claims/min × 25 min horizon × 1.5 headroom (floor 1 from minIdle)",
            ..BASE
        },
        Row {
            name: "headroom 1 stocks the expected demand",
            claims_per_min: 0.4,
            headroom: 1.0,
            min_idle: 0,
            expected: "target 1 = 0.4 claims/min × 2.5 min horizon × 1 headroom (floor 0 from minIdle)",
            ..BASE
        },
        Row {
            name: "office hours: the schedule's floor beats the demand",
            schedule: Some(OFFICE),
            claims_per_min: 0.8,
            expected: "target 20 = floor 20 from schedule \"mon-fri 08:00-20:00 Europe/Berlin=20\" (demand 3)",
            ..BASE
        },
        Row {
            name: "at night the default rule applies; a tie goes to the floor",
            schedule: Some(OFFICE),
            now: NIGHT,
            claims_per_min: 0.4,
            expected: "target 2 = floor 2 from schedule \"*=2\" (demand 2)",
            ..BASE
        },
        Row {
            name: "demand beats the night floor",
            schedule: Some(OFFICE),
            now: NIGHT,
            claims_per_min: 0.4,
            creation_queue: 41,
            expected: "target 14 = 0.4 claims/min × 23 min horizon × 1.5 headroom (floor 2 from \"*=2\")",
            ..BASE
        },
        Row {
            name: "no rule matches and no default: POOL_MIN_IDLE",
            schedule: Some(OFFICE_RULE),
            now: NIGHT,
            min_idle: 5,
            expected: "target 5 = floor 5 from minIdle (demand 0)",
            ..BASE
        },
        Row {
            name: "a matching schedule replaces POOL_MIN_IDLE, even with 0",
            schedule: Some("* 00:00-24:00=0"),
            min_idle: 5,
            expected: "target 0 = floor 0 from schedule \"* 00:00-24:00=0\" (demand 0)",
            ..BASE
        },
        Row {
            name: "POOL_MAX_TOTAL caps the floor",
            schedule: Some(OFFICE),
            max_total: Some(40),
            live_non_warm: 35,
            expected: "target 5 = capped by POOL_MAX_TOTAL 40 with 35 live (wanted 20)",
            ..BASE
        },
        Row {
            name: "POOL_MAX_TOTAL caps the demand",
            claims_per_min: 0.4,
            creation_queue: 41,
            max_total: Some(10),
            live_non_warm: 2,
            expected: "target 8 = capped by POOL_MAX_TOTAL 10 with 2 live (wanted 14)",
            ..BASE
        },
        Row {
            name: "POOL_MAX_TOTAL with room to spare changes nothing",
            schedule: Some(OFFICE),
            max_total: Some(40),
            live_non_warm: 20,
            expected: "target 20 = floor 20 from schedule \"mon-fri 08:00-20:00 Europe/Berlin=20\" (demand 0)",
            ..BASE
        },
        Row {
            name: "more live than POOL_MAX_TOTAL: nothing more",
            max_total: Some(10),
            live_non_warm: 12,
            expected: "target 0 = capped by POOL_MAX_TOTAL 10 with 12 live (wanted 1)",
            ..BASE
        },
        Row {
            name: "a forecast that is not a number counts as no demand",
            claims_per_min: f64::NAN,
            min_idle: 2,
            expected: "target 2 = floor 2 from minIdle (demand 0)",
            ..BASE
        },
        Row {
            name: "a create rate of 0 leaves the queue out",
            claims_per_min: 0.4,
            creation_queue: 41,
            create_rate_per_min: 0.0,
            expected: "target 2 = 0.4 claims/min × 2.5 min horizon × 1.5 headroom (floor 1 from minIdle)",
            ..BASE
        },
    ]
}

#[test]
fn sizing_table() {
    let rows = rows();
    assert!(rows.len() >= 12);
    for row in rows {
        let schedule = row.schedule.map(|s| IdleSchedule::parse(s).unwrap());
        let inputs = SizingInputs {
            now: DateTime::parse_from_rfc3339(row.now).unwrap().with_timezone(&Utc),
            min_idle: row.min_idle,
            schedule: schedule.as_ref(),
            max_total: row.max_total,
            live_non_warm: row.live_non_warm,
            claims_per_min: row.claims_per_min,
            p90_time_to_ready: Duration::from_secs(row.p90_secs),
            creation_queue: row.creation_queue,
            create_rate_per_min: row.create_rate_per_min,
            headroom: row.headroom,
        };
        let target = size_pool(&inputs);
        assert_eq!(target.to_string(), row.expected, "{}", row.name);
        let shown: u32 = row.expected["target ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(target.idle, shown, "{}", row.name);
    }
}

#[test]
fn the_deficit_counts_creations_under_way() {
    assert_eq!(replenish_deficit(10, 4), 6);
    assert_eq!(replenish_deficit(10, 10), 0);
    assert_eq!(replenish_deficit(3, 10), 0);
}

#[test]
fn only_idle_agents_beyond_the_target_are_surplus() {
    assert_eq!(idle_surplus(2, 10, 10), 8);
    assert_eq!(idle_surplus(2, 10, 3), 3, "creations under way are not cancelled");
    assert_eq!(idle_surplus(10, 4, 4), 0);
}
