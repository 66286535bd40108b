//! The `POOL_IDLE_SCHEDULE` syntax: splitting a value into rules and each rule into days, a
//! time range, a time zone and a count, with an error that names the rule and what is wrong.

use chrono::Weekday;
use chrono_tz::Tz;

use super::{DaySet, DefaultRule, IdleSchedule, TimedRule};
use crate::error::{RuleProblem, ScheduleError};

/// Minutes in a day, and the largest time of day a rule may name (`24:00`, as an end).
const DAY_MINUTES: u16 = 24 * 60;

enum Rule {
    Timed(TimedRule),
    Default(u32),
}

pub(super) fn parse(value: &str) -> Result<IdleSchedule, ScheduleError> {
    let mut texts: Vec<&str> = value.split(';').map(str::trim).collect();
    // One trailing `;` is common when rules are written one per line; it is not a rule.
    if texts.len() > 1 && texts.last().is_some_and(|t| t.is_empty()) {
        texts.pop();
    }
    let mut schedule = IdleSchedule {
        rules: Vec::new(),
        default: None,
    };
    let mut default_at = None;
    for (index, text) in texts.into_iter().enumerate() {
        let number = index + 1;
        let error = |problem| ScheduleError {
            rule: number,
            text: text.to_string(),
            problem,
        };
        match parse_rule(text).map_err(error)? {
            Rule::Timed(rule) => schedule.rules.push(rule),
            Rule::Default(count) => {
                if let Some(first) = default_at {
                    return Err(error(RuleProblem::DuplicateDefault(first)));
                }
                default_at = Some(number);
                schedule.default = Some(DefaultRule {
                    text: text.to_string(),
                    count,
                });
            }
        }
    }
    Ok(schedule)
}

fn parse_rule(text: &str) -> Result<Rule, RuleProblem> {
    if text.is_empty() {
        return Err(RuleProblem::Empty);
    }
    let (when, count) = text.split_once('=').ok_or(RuleProblem::MissingCount)?;
    let count = count.trim();
    let count = count
        .parse::<u32>()
        .map_err(|_| RuleProblem::BadCount(count.to_string()))?;
    let normalized = tolerate_spaces(when);
    let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    let (days, time, rest) = match words.as_slice() {
        ["*"] => return Ok(Rule::Default(count)),
        [] => return Err(RuleProblem::MissingDays),
        [first, ..] if starts_with_digit(first) => return Err(RuleProblem::MissingDays),
        [_] => return Err(RuleProblem::MissingTimeRange),
        [_, time, ..] if !starts_with_digit(time) => return Err(RuleProblem::MissingTimeRange),
        [days, time, rest @ ..] => (*days, *time, rest),
    };
    let days = parse_days(days)?;
    let (start, end) = parse_time_range(time)?;
    let zone = match rest.split_first() {
        None => Tz::UTC,
        Some((zone, extra)) => {
            let zone = parse_zone(zone)?;
            if !extra.is_empty() {
                return Err(RuleProblem::Unexpected(extra.join(" ")));
            }
            zone
        }
    };
    Ok(Rule::Timed(TimedRule {
        text: text.to_string(),
        days,
        start,
        end,
        zone,
        count,
    }))
}

/// Collapses whitespace and drops it around `-` and `,`, so `mon - fri` and `sat, sun` and
/// `08:00 - 20:00` read like their compact forms.
fn tolerate_spaces(when: &str) -> String {
    when.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" -", "-")
        .replace("- ", "-")
        .replace(" ,", ",")
        .replace(", ", ",")
}

fn starts_with_digit(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit())
}

fn parse_days(text: &str) -> Result<DaySet, RuleProblem> {
    let mut set = 0u8;
    for part in text.split(',') {
        if part == "*" {
            set |= DaySet::EVERY_DAY.0;
        } else if let Some((from, to)) = part.split_once('-') {
            let (from, to) = (parse_day(from)?, parse_day(to)?);
            // Walk forward from `from` so that `fri-mon` wraps over the weekend.
            let mut day = from;
            loop {
                set |= 1 << day.num_days_from_monday();
                if day == to {
                    break;
                }
                day = day.succ();
            }
        } else {
            set |= 1 << parse_day(part)?.num_days_from_monday();
        }
    }
    Ok(DaySet(set))
}

fn parse_day(text: &str) -> Result<Weekday, RuleProblem> {
    match text.to_ascii_lowercase().as_str() {
        "mon" => Ok(Weekday::Mon),
        "tue" => Ok(Weekday::Tue),
        "wed" => Ok(Weekday::Wed),
        "thu" => Ok(Weekday::Thu),
        "fri" => Ok(Weekday::Fri),
        "sat" => Ok(Weekday::Sat),
        "sun" => Ok(Weekday::Sun),
        _ => Err(RuleProblem::UnknownDay(text.to_string())),
    }
}

/// `HH:MM-HH:MM` as minutes after midnight. An end of `00:00` means midnight at the end of
/// the day, the same as `24:00`.
fn parse_time_range(text: &str) -> Result<(u16, u16), RuleProblem> {
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| RuleProblem::BadTimeRange(text.to_string()))?;
    let start_minutes = parse_time(start)?;
    if start_minutes == DAY_MINUTES {
        return Err(RuleProblem::BadTime(start.to_string()));
    }
    let end_minutes = parse_time(end)?;
    if start_minutes == end_minutes {
        return Err(RuleProblem::EmptyTimeRange(text.to_string()));
    }
    let end_minutes = if end_minutes == 0 {
        DAY_MINUTES
    } else {
        end_minutes
    };
    Ok((start_minutes, end_minutes))
}

/// `H:MM` or `HH:MM`, from `00:00` to `24:00`, as minutes after midnight.
fn parse_time(text: &str) -> Result<u16, RuleProblem> {
    let bad = || RuleProblem::BadTime(text.to_string());
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    let digits =
        |s: &str, lengths: &[usize]| lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours, &[1, 2]) || !digits(minutes, &[2]) {
        return Err(bad());
    }
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

fn parse_zone(text: &str) -> Result<Tz, RuleProblem> {
    text.parse::<Tz>()
        .map_err(|_| RuleProblem::UnknownTimeZone(text.to_string()))
}
