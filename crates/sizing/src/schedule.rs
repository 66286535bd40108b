//! The idle schedule (`POOL_IDLE_SCHEDULE`): which floor of idle agents applies at a given
//! instant, e.g. `mon-fri 08:00-20:00 Europe/Berlin=20; *=2`. This module owns the schedule's
//! meaning (first matching rule wins, the `*` default otherwise, each rule in its own time
//! zone); `parse.rs` owns its syntax.

mod parse;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::error::ScheduleError;

/// A parsed `POOL_IDLE_SCHEDULE`: timed rules tried in order, and an optional default. It can
/// only be built by [`IdleSchedule::parse`], so every rule in it is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleSchedule {
    rules: Vec<TimedRule>,
    default: Option<DefaultRule>,
}

/// The floor a schedule gives at one instant, and the rule it came from (as written), so a
/// sizing decision can say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledFloor {
    /// The number of idle agents the matching rule asks for.
    pub count: u32,
    /// The matching rule's text, e.g. `mon-fri 08:00-20:00 Europe/Berlin=20` or `*=2`.
    pub rule: String,
}

/// `<days> <HH:MM>-<HH:MM> [time zone]=<count>`.
#[derive(Debug, Clone, PartialEq)]
struct TimedRule {
    text: String,
    days: DaySet,
    /// Minutes after local midnight, `0..1440`.
    start: u16,
    /// Minutes after local midnight, `1..=1440`; below `start` when the range crosses midnight.
    end: u16,
    zone: Tz,
    count: u32,
}

/// `*=<count>`: used when no timed rule matches, wherever it stands in the value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DefaultRule {
    text: String,
    count: u32,
}

/// A set of weekdays, one bit per day from Monday (bit 0) to Sunday (bit 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DaySet(u8);

impl DaySet {
    const EVERY_DAY: DaySet = DaySet(0b111_1111);

    fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }
}

impl IdleSchedule {
    /// Parses a `POOL_IDLE_SCHEDULE` value. Rules are separated by `;` (one trailing `;` is
    /// allowed); each is `<days> <HH:MM>-<HH:MM> [IANA time zone]=<count>` or the default
    /// `*=<count>`. Days are `mon`..`sun` in any case, ranges (`mon-fri`, also wrapping the week
    /// as `fri-mon`), lists (`sat,sun`) or `*`. The zone defaults to UTC.
    pub fn parse(value: &str) -> Result<IdleSchedule, ScheduleError> {
        parse::parse(value)
    }

    /// The floor at `now`: the first timed rule whose days and hours contain `now` in that
    /// rule's own time zone, else the default, else `None`.
    ///
    /// Time ranges are half-open, `[start, end)`, on the local wall clock. A range that ends
    /// before it starts crosses midnight and belongs to the day it starts on, so
    /// `fri 22:00-06:00` covers Friday night into Saturday morning. Because the wall clock is
    /// what matters, a rule in a zone with daylight saving time starts at a different UTC
    /// instant in summer and winter, does not occur in the hour the clocks skip, and occurs
    /// twice in the hour they repeat.
    pub fn floor_at(&self, now: DateTime<Utc>) -> Option<ScheduledFloor> {
        self.rules
            .iter()
            .find(|rule| rule.contains(now))
            .map(|rule| ScheduledFloor {
                count: rule.count,
                rule: rule.text.clone(),
            })
            .or_else(|| {
                self.default.as_ref().map(|rule| ScheduledFloor {
                    count: rule.count,
                    rule: rule.text.clone(),
                })
            })
    }

    /// The highest floor the schedule ever gives. Without a `*` default, `fallback`
    /// (`POOL_MIN_IDLE`, which applies where no rule matches) counts too.
    pub fn peak_floor(&self, fallback: u32) -> u32 {
        let default = self.default.as_ref().map_or(fallback, |rule| rule.count);
        self.rules.iter().map(|rule| rule.count).fold(default, u32::max)
    }
}

impl TimedRule {
    fn contains(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.zone);
        let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(u16::MAX);
        let day = local.weekday();
        if self.start < self.end {
            self.days.contains(day) && (self.start..self.end).contains(&minute)
        } else {
            // Crossing midnight: the evening part is on a listed day, the morning part on the
            // day after one.
            (self.days.contains(day) && minute >= self.start)
                || (self.days.contains(day.pred()) && minute < self.end)
        }
    }
}
