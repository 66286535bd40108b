//! A deterministic synthetic week of claims to replay policies on, shaped like a pool used
//! from Central Europe: quiet nights, busy office hours (Europe/Berlin), weekdays busier than
//! weekends, and a few bursts of 20–50 claims within a couple of minutes on weekday working
//! hours, when launches and demos happen. The shipped `data/synthetic-week.csv` is its output
//! for [`SYNTHETIC_WEEK_SEED`], and a test keeps the two equal.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Europe::Berlin;

use crate::rng::SplitMix64;
use crate::trace::ClaimTrace;

/// The seed of the shipped week.
pub const SYNTHETIC_WEEK_SEED: u64 = 2026;

/// Monday 2026-06-01 00:00 UTC, where the week starts (a week without a clock change).
const WEEK_START_UNIX: i64 = 1_780_272_000;

/// Claims per minute by Berlin hour on a weekday: near nothing at night, a morning ramp, a
/// lunch dip, a slow evening.
const WEEKDAY_RATE_BY_HOUR: [f64; 24] = [
    0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.15, // 00–07
    0.35, 0.6, 0.6, 0.6, 0.45, 0.6, 0.6, 0.6, // 08–15
    0.6, 0.45, 0.3, 0.2, 0.12, 0.12, 0.05, 0.05, // 16–23
];

/// Weekends see about a third of a weekday's traffic, and no bursts.
const WEEKEND_FACTOR: f64 = 0.3;

/// Burst windows on weekdays (Berlin hour each starts at); each holds a burst with
/// probability [`BURST_CHANCE`], starting within its first 90 minutes, so bursts on the same
/// day are at least half an hour apart.
const BURST_WINDOWS: [u32; 4] = [9, 11, 13, 15];
const BURST_CHANCE: f64 = 0.75;
const BURST_SIZES: std::ops::RangeInclusive<u64> = 20..=50;
/// A burst's claims arrive spread over one to three minutes.
const BURST_SPREAD_SECS: std::ops::RangeInclusive<u64> = 60..=180;

/// A burst the generator put into the week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// When its first claim may arrive.
    pub start: DateTime<Utc>,
    /// How many claims it adds.
    pub size: u32,
    /// Over how long after `start` they arrive.
    pub spread: Duration,
}

/// The generated week: the claims and, for tests and eyeballing, where the bursts are.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticWeek {
    /// Every claim, background and bursts, sorted.
    pub trace: ClaimTrace,
    /// The bursts, in time order.
    pub bursts: Vec<Burst>,
}

/// Generates the week starting Monday 2026-06-01 00:00 UTC from `seed`: Poisson arrivals per
/// minute at the Berlin-hour rate, plus the bursts. The same seed always gives the same week.
pub fn synthetic_week(seed: u64) -> SyntheticWeek {
    let start = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(WEEK_START_UNIX);
    let mut rng = SplitMix64::new(seed);
    let mut claims = Vec::new();
    for minute in 0..7 * 24 * 60 {
        let at = start + TimeDelta::minutes(minute);
        for _ in 0..rng.poisson(rate_at(at)) {
            claims.push(at + seconds(rng.below(60)));
        }
    }
    let mut bursts = Vec::new();
    for day in 0..5 {
        // Noon UTC is on the same date in Berlin, so this is the Berlin date of weekday `day`.
        let date = (start + TimeDelta::days(day) + TimeDelta::hours(12))
            .with_timezone(&Berlin)
            .date_naive();
        for hour in BURST_WINDOWS {
            if rng.unit() >= BURST_CHANCE {
                continue;
            }
            let offset = rng.below(90 * 60);
            let size = BURST_SIZES.start() + rng.below(BURST_SIZES.end() - BURST_SIZES.start() + 1);
            let spread = BURST_SPREAD_SECS.start()
                + rng.below(BURST_SPREAD_SECS.end() - BURST_SPREAD_SECS.start() + 1);
            let Some(burst_start) = berlin(date, hour).map(|t| t + seconds(offset)) else {
                continue;
            };
            for _ in 0..size {
                claims.push(burst_start + seconds(rng.below(spread)));
            }
            bursts.push(Burst {
                start: burst_start,
                size: u32::try_from(size).unwrap_or(u32::MAX),
                spread: Duration::from_secs(spread),
            });
        }
    }
    SyntheticWeek {
        trace: ClaimTrace::from_claims(claims),
        bursts,
    }
}

/// The background rate at `at`, in claims per minute.
fn rate_at(at: DateTime<Utc>) -> f64 {
    let local = at.with_timezone(&Berlin);
    let rate = WEEKDAY_RATE_BY_HOUR[local.hour() as usize % 24];
    match local.weekday() {
        Weekday::Sat | Weekday::Sun => rate * WEEKEND_FACTOR,
        _ => rate,
    }
}

/// `hour`:00 Berlin time on `date`, if that wall-clock time exists.
fn berlin(date: NaiveDate, hour: u32) -> Option<DateTime<Utc>> {
    let local = date.and_hms_opt(hour, 0, 0)?;
    Berlin.from_local_datetime(&local).earliest().map(|t| t.to_utc())
}

fn seconds(n: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../data/synthetic-week.csv");

    #[test]
    fn the_shipped_week_is_what_the_generator_produces() {
        let generated = synthetic_week(SYNTHETIC_WEEK_SEED).trace.to_csv();
        assert!(
            SHIPPED == generated,
            "data/synthetic-week.csv is stale; regenerate it with \
             `cargo run -p pool-sizing --example synthetic_week > crates/sizing/data/synthetic-week.csv`"
        );
    }

    #[test]
    fn the_week_starts_on_a_monday_at_midnight_utc() {
        let start = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(WEEK_START_UNIX);
        assert_eq!(start.to_rfc3339(), "2026-06-01T00:00:00+00:00");
        assert_eq!(start.weekday(), Weekday::Mon);
    }

    #[test]
    fn the_week_has_a_few_thousand_claims_busier_on_weekdays_and_by_day() {
        let trace = ClaimTrace::parse(SHIPPED).unwrap();
        assert!((2_000..5_000).contains(&trace.len()), "{}", trace.len());
        let local = |t: &DateTime<Utc>| t.with_timezone(&Berlin);
        let count = |keep: &dyn Fn(&DateTime<chrono_tz::Tz>) -> bool| {
            trace.claims().iter().filter(|t| keep(&local(t))).count()
        };
        let weekend = count(&|t| matches!(t.weekday(), Weekday::Sat | Weekday::Sun));
        let weekday = trace.len() - weekend;
        assert!(
            weekday / 5 > 2 * (weekend / 2),
            "weekday {weekday}, weekend {weekend}"
        );
        let nights = count(&|t| t.hour() < 6);
        let office = count(&|t| (9..17).contains(&t.hour()));
        assert!(office > 20 * nights, "office {office}, nights {nights}");
    }

    #[test]
    fn weekdays_have_bursts_of_20_to_50_claims_in_working_hours() {
        let week = synthetic_week(SYNTHETIC_WEEK_SEED);
        let trace = ClaimTrace::parse(SHIPPED).unwrap();
        assert!((8..=20).contains(&week.bursts.len()), "{}", week.bursts.len());
        for burst in &week.bursts {
            assert!((20..=50).contains(&burst.size), "{burst:?}");
            assert!(burst.spread <= Duration::from_secs(180), "{burst:?}");
            let local = burst.start.with_timezone(&Berlin);
            assert!(
                !matches!(local.weekday(), Weekday::Sat | Weekday::Sun),
                "{burst:?}"
            );
            assert!((9..17).contains(&local.hour()), "{burst:?}");
            // The burst is really in the shipped file: its window holds at least its claims.
            let end = burst.start + TimeDelta::from_std(burst.spread).unwrap();
            let inside = trace
                .claims()
                .iter()
                .filter(|t| **t >= burst.start && **t < end)
                .count();
            assert!(inside >= burst.size as usize, "{burst:?}: {inside}");
        }
        let days: std::collections::BTreeSet<_> = week
            .bursts
            .iter()
            .map(|b| b.start.with_timezone(&Berlin).weekday().num_days_from_monday())
            .collect();
        assert!(days.len() >= 4, "bursts on most weekdays: {days:?}");
    }
}
