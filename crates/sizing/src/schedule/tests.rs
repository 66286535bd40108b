use chrono::{DateTime, TimeDelta, Utc};

use super::IdleSchedule;
use crate::error::RuleProblem;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn count_at(schedule: &str, now: &str) -> Option<u32> {
    IdleSchedule::parse(schedule)
        .unwrap()
        .floor_at(at(now))
        .map(|f| f.count)
}

fn problem(schedule: &str) -> (usize, RuleProblem) {
    let error = IdleSchedule::parse(schedule).unwrap_err();
    (error.rule, error.problem)
}

/// Minutes of the UTC day starting at `day` during which the schedule gives a floor.
fn matching_minutes(schedule: &str, day: &str) -> usize {
    let schedule = IdleSchedule::parse(schedule).unwrap();
    let start = at(day);
    (0..24 * 60)
        .filter(|m| schedule.floor_at(start + TimeDelta::minutes(*m)).is_some())
        .count()
}

const OFFICE: &str = "mon-fri 08:00-20:00 Europe/Berlin=20; *=2";

#[test]
fn office_hours_rule_applies_on_weekdays_in_berlin_and_the_default_otherwise() {
    let schedule = IdleSchedule::parse(OFFICE).unwrap();
    // Wednesday 2026-06-03, Berlin is UTC+2 in summer.
    let floor = schedule.floor_at(at("2026-06-03T10:00:00Z")).unwrap();
    assert_eq!(floor.count, 20);
    assert_eq!(floor.rule, "mon-fri 08:00-20:00 Europe/Berlin=20");
    let night = schedule.floor_at(at("2026-06-03T19:00:00Z")).unwrap();
    assert_eq!((night.count, night.rule.as_str()), (2, "*=2"));
    assert_eq!(count_at(OFFICE, "2026-06-06T10:00:00Z"), Some(2), "Saturday");
}

#[test]
fn time_ranges_are_half_open() {
    assert_eq!(count_at(OFFICE, "2026-06-03T06:00:00Z"), Some(20), "08:00 is in");
    assert_eq!(count_at(OFFICE, "2026-06-03T05:59:59Z"), Some(2));
    assert_eq!(count_at(OFFICE, "2026-06-03T17:59:59Z"), Some(20));
    assert_eq!(count_at(OFFICE, "2026-06-03T18:00:00Z"), Some(2), "20:00 is out");
    assert_eq!(count_at("* 08:00-24:00=4", "2026-06-03T23:59:00Z"), Some(4));
    assert_eq!(
        count_at("* 08:00-00:00=4", "2026-06-03T23:59:00Z"),
        Some(4),
        "00:00 = 24:00"
    );
}

#[test]
fn without_a_default_no_match_gives_no_floor() {
    assert_eq!(
        count_at("mon 08:00-09:00=3", "2026-06-02T08:30:00Z"),
        None,
        "a Tuesday"
    );
    assert_eq!(
        count_at("mon 08:00-09:00=3", "2026-06-01T08:30:00Z"),
        Some(3),
        "UTC by default"
    );
}

#[test]
fn the_first_matching_rule_wins_and_the_default_is_a_fallback_wherever_it_stands() {
    let schedule = "*=1; mon-fri 00:00-24:00=5; mon 08:00-09:00=9";
    assert_eq!(count_at(schedule, "2026-06-01T08:30:00Z"), Some(5));
    assert_eq!(count_at(schedule, "2026-06-06T08:30:00Z"), Some(1));
}

#[test]
fn whitespace_around_separators_and_the_case_of_days_do_not_matter() {
    let schedule = "  MON - Fri  08:00 - 20:00   Europe/Berlin = 20 ;  Sat, SUN 10:00-12:00=3; * = 2 ;";
    assert_eq!(count_at(schedule, "2026-06-03T10:00:00Z"), Some(20));
    assert_eq!(count_at(schedule, "2026-06-07T11:00:00Z"), Some(3), "Sunday, UTC");
    assert_eq!(count_at(schedule, "2026-06-07T13:00:00Z"), Some(2));
}

#[test]
fn day_ranges_wrap_over_the_weekend() {
    let schedule = "fri-mon 00:00-24:00=7";
    for (day, expected) in [
        ("2026-06-05", Some(7)), // Friday
        ("2026-06-06", Some(7)),
        ("2026-06-07", Some(7)),
        ("2026-06-08", Some(7)), // Monday
        ("2026-06-09", None),    // Tuesday
        ("2026-06-11", None),    // Thursday
    ] {
        assert_eq!(count_at(schedule, &format!("{day}T12:00:00Z")), expected, "{day}");
    }
    assert_eq!(
        count_at("mon,wed-thu 00:00-24:00=1", "2026-06-02T12:00:00Z"),
        None
    );
    assert_eq!(
        count_at("mon,wed-thu 00:00-24:00=1", "2026-06-04T12:00:00Z"),
        Some(1)
    );
}

#[test]
fn a_range_crossing_midnight_belongs_to_the_day_it_starts() {
    let schedule = "fri 22:00-06:00=5";
    assert_eq!(count_at(schedule, "2026-06-05T21:59:00Z"), None, "Friday before");
    assert_eq!(
        count_at(schedule, "2026-06-05T23:00:00Z"),
        Some(5),
        "Friday night"
    );
    assert_eq!(
        count_at(schedule, "2026-06-06T05:59:00Z"),
        Some(5),
        "Saturday morning"
    );
    assert_eq!(count_at(schedule, "2026-06-06T06:00:00Z"), None);
    assert_eq!(count_at(schedule, "2026-06-06T23:00:00Z"), None, "Saturday night");
    assert_eq!(count_at(schedule, "2026-06-05T03:00:00Z"), None, "Friday morning");
    // Sunday night runs into Monday morning across the end of the week.
    assert_eq!(count_at("sun 22:00-06:00=5", "2026-06-08T03:00:00Z"), Some(5));
}

#[test]
fn berlin_rules_follow_the_wall_clock_across_the_march_change() {
    // 2026-03-29 is the last Sunday of March: CET (UTC+1) becomes CEST (UTC+2).
    let schedule = "* 08:00-20:00 Europe/Berlin=20";
    assert_eq!(count_at(schedule, "2026-03-28T06:30:00Z"), None, "07:30 CET");
    assert_eq!(count_at(schedule, "2026-03-28T07:00:00Z"), Some(20), "08:00 CET");
    assert_eq!(count_at(schedule, "2026-03-29T05:59:00Z"), None, "07:59 CEST");
    assert_eq!(count_at(schedule, "2026-03-29T06:00:00Z"), Some(20), "08:00 CEST");
    assert_eq!(count_at(schedule, "2026-03-29T18:00:00Z"), None, "20:00 CEST");
    // The skipped hour never happens.
    assert_eq!(
        matching_minutes("sun 02:00-03:00 Europe/Berlin=9", "2026-03-29T00:00:00Z"),
        0
    );
    assert_eq!(
        matching_minutes("sat 02:00-03:00 Europe/Berlin=9", "2026-03-28T00:00:00Z"),
        60
    );
}

#[test]
fn berlin_rules_follow_the_wall_clock_across_the_october_change() {
    // 2026-10-25 is the last Sunday of October: CEST (UTC+2) becomes CET (UTC+1).
    let schedule = "* 08:00-20:00 Europe/Berlin=20";
    assert_eq!(count_at(schedule, "2026-10-24T06:00:00Z"), Some(20), "08:00 CEST");
    assert_eq!(count_at(schedule, "2026-10-25T06:30:00Z"), None, "07:30 CET");
    assert_eq!(count_at(schedule, "2026-10-25T07:00:00Z"), Some(20), "08:00 CET");
    assert_eq!(count_at(schedule, "2026-10-25T19:00:00Z"), None, "20:00 CET");
    // The repeated hour happens twice.
    assert_eq!(
        matching_minutes("sun 02:00-03:00 Europe/Berlin=9", "2026-10-25T00:00:00Z"),
        120
    );
    // A whole Berlin day is 25 hours long that day.
    assert_eq!(
        matching_minutes("sun 00:00-24:00 Europe/Berlin=1", "2026-10-24T22:00:00Z")
            + matching_minutes("sun 00:00-24:00 Europe/Berlin=1", "2026-10-25T22:00:00Z"),
        25 * 60
    );
}

#[test]
fn the_error_names_the_rule_and_the_unknown_day() {
    let error = IdleSchedule::parse("*=2; mon-fry 08:00-20:00=3").unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"POOL_IDLE_SCHEDULE rule 2 "mon-fry 08:00-20:00=3": unknown day "fry" (use mon..sun)"#
    );
}

#[test]
fn every_kind_of_mistake_is_named() {
    use RuleProblem::*;
    let cases: &[(&str, usize, RuleProblem)] = &[
        ("", 1, Empty),
        ("   ", 1, Empty),
        ("mon 08:00-09:00=1;;*=2", 2, Empty),
        ("mon 08:00-09:00", 1, MissingCount),
        ("*=two", 1, BadCount("two".into())),
        ("*=2.5", 1, BadCount("2.5".into())),
        ("*=-1", 1, BadCount("-1".into())),
        ("*=", 1, BadCount("".into())),
        ("08:00-09:00=1", 1, MissingDays),
        ("=1", 1, MissingDays),
        ("mon=1", 1, MissingTimeRange),
        ("mon Europe/Berlin=1", 1, MissingTimeRange),
        ("mon,,tue 08:00-09:00=1", 1, UnknownDay("".into())),
        ("Monday 08:00-09:00=1", 1, UnknownDay("Monday".into())),
        ("mon 0800=1", 1, BadTimeRange("0800".into())),
        ("mon 08:00-25:00=1", 1, BadTime("25:00".into())),
        ("mon 08:60-09:00=1", 1, BadTime("08:60".into())),
        ("mon 8:0-09:00=1", 1, BadTime("8:0".into())),
        ("mon 24:00-06:00=1", 1, BadTime("24:00".into())),
        ("mon 08:00-24:30=1", 1, BadTime("24:30".into())),
        ("mon 08:00-08:00=1", 1, EmptyTimeRange("08:00-08:00".into())),
        (
            "mon 08:00-09:00 Mars/Olympus=1",
            1,
            UnknownTimeZone("Mars/Olympus".into()),
        ),
        (
            "mon 08:00-09:00 europe/berlin=1",
            1,
            UnknownTimeZone("europe/berlin".into()),
        ),
        ("mon 08:00-09:00 UTC now=1", 1, Unexpected("now".into())),
        ("*=1; mon 08:00-09:00=3; * = 2", 3, DuplicateDefault(1)),
    ];
    for (schedule, rule, expected) in cases {
        assert_eq!(problem(schedule), (*rule, expected.clone()), "{schedule:?}");
    }
}

#[test]
fn error_messages_fit_on_one_line() {
    for schedule in ["", "*=x", "mon 8-9=1", "mon 08:00-09:00 Nowhere=1", "*=1;*=2"] {
        let message = IdleSchedule::parse(schedule).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.starts_with("POOL_IDLE_SCHEDULE rule "), "{message}");
    }
}
