//! The crate's errors: what can be wrong with a `POOL_IDLE_SCHEDULE` value and with a claim
//! trace. They are separate types because they come from separate places (an environment
//! variable read by the binary, a CSV file read by a benchmark) and no caller handles both.

use thiserror::Error;

/// A `POOL_IDLE_SCHEDULE` value that does not parse: which rule (1-based, as the operator
/// counts them), its text, and what is wrong with it. Displays as one line an operator can act
/// on, e.g. `POOL_IDLE_SCHEDULE rule 2 "mon-fry 08:00-20:00=3": unknown day "fry" (use mon..sun)`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("POOL_IDLE_SCHEDULE rule {rule} \"{text}\": {problem}")]
pub struct ScheduleError {
    /// The rule's position in the value, counting from 1.
    pub rule: usize,
    /// The rule as written, without surrounding whitespace.
    pub text: String,
    /// What is wrong with it.
    pub problem: RuleProblem,
}

/// What is wrong with one rule of a `POOL_IDLE_SCHEDULE` value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleProblem {
    /// Nothing between two `;` (or an empty value).
    #[error("empty rule (rules are \"<days> <HH:MM>-<HH:MM> [time zone]=<count>\" or \"*=<count>\")")]
    Empty,
    /// No `=<count>` at the end.
    #[error("missing \"=<count>\"")]
    MissingCount,
    /// The count is not a non-negative whole number.
    #[error("count \"{0}\" is not a whole number")]
    BadCount(String),
    /// A rule with a time range but no days.
    #[error("missing days before the time range (use mon..sun, mon-fri, sat,sun or *)")]
    MissingDays,
    /// A rule with days but no time range.
    #[error("missing time range after the days (use HH:MM-HH:MM, e.g. 00:00-24:00 for all day)")]
    MissingTimeRange,
    /// A day that is not one of `mon`..`sun` (or `*`).
    #[error("unknown day \"{0}\" (use mon..sun)")]
    UnknownDay(String),
    /// A time range that is not `HH:MM-HH:MM`.
    #[error("bad time range \"{0}\" (use HH:MM-HH:MM)")]
    BadTimeRange(String),
    /// A time that is not `HH:MM` between `00:00` and `24:00` (`24:00` only as an end).
    #[error("bad time \"{0}\" (use HH:MM from 00:00 to 23:59; 24:00 only as an end)")]
    BadTime(String),
    /// A time range that starts where it ends, so it is either empty or the whole day.
    #[error("time range \"{0}\" starts where it ends (use 00:00-24:00 for all day)")]
    EmptyTimeRange(String),
    /// A time zone that is not in the IANA database.
    #[error("unknown time zone \"{0}\" (use an IANA name such as Europe/Berlin; names are case-sensitive)")]
    UnknownTimeZone(String),
    /// Words after the time zone.
    #[error("unexpected \"{0}\" after the time zone")]
    Unexpected(String),
    /// A second `*=<count>` default.
    #[error("a second default (\"*=<count>\"); rule {0} is already the default")]
    DuplicateDefault(usize),
}

/// A claim trace line that is not an RFC 3339 timestamp, e.g.
/// `trace line 17: "2026-13-01T08:00:00Z" is not an RFC 3339 timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("trace line {line}: \"{text}\" is not an RFC 3339 timestamp")]
pub struct TraceError {
    /// The line number, counting from 1 (the header line counts).
    pub line: usize,
    /// The line's text, without surrounding whitespace.
    pub text: String,
}
