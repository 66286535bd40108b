//! The tier comparison (`cargo xtask bench sizing`, issue 21): the fixed `POOL_MIN_IDLE`
//! levels, today's schedule + demand and the tiered policy replayed on one trace with wakes
//! modelled, each row with its warm and parked agent-hours and its dollars at Railway Pro
//! prices; and an unscheduled launch (several hundred claims within one hour) replayed under
//! the default settings for a few `parkedMin` values.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::compare::GOAL_LATE_SHARE;
use crate::cost::AgentSize;
use crate::error::ScheduleError;
use crate::replay::{Policy, PolicyRow, RailwayModel, ReplayConfig, replay};
use crate::rng::SplitMix64;
use crate::schedule::IdleSchedule;
use crate::trace::ClaimTrace;

/// The tiered policy may use at most this share of the warm agent-hours of the smallest fixed
/// `POOL_MIN_IDLE` that meets [`GOAL_LATE_SHARE`].
pub const GOAL_MAX_WARM_HOURS_RATIO: f64 = 0.20;
/// ... and at most this share of its dollars, parked storage included.
pub const GOAL_MAX_DOLLARS_RATIO: f64 = 0.25;

/// `parkedMin` when the environment does not say (`POOL_PARKED_MIN`).
pub const DEFAULT_PARKED_MIN: u32 = 300;
/// `parkedMax` when the environment does not say (`POOL_PARKED_MAX`).
pub const DEFAULT_PARKED_MAX: u32 = 500;
/// `parkAfterMs` when the environment does not say (`POOL_PARK_AFTER_MS`): ten minutes.
pub const DEFAULT_PARK_AFTER: Duration = Duration::from_secs(10 * 60);
/// How long a claim may wait (`Prefer: wait`) once a wake may serve it: a wake's p95 is
/// about 120 s, and a claim behind a few others waits for the wake started for the first.
pub const WAIT_LIMIT_WITH_TIERS: Duration = Duration::from_secs(300);

/// The warm schedule of the tiered policy on the synthetic week: a smaller office-hours floor
/// than [`crate::SYNTHETIC_WEEK_SCHEDULE`]'s 48, because bursts are now met by waking parked
/// agents at once; the floor keeps the first claims of a burst from waiting at all.
pub const TIERED_WEEK_SCHEDULE: &str = "mon-fri 08:00-19:00 Europe/Berlin=12; *=2";

/// What to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct TierSetup {
    /// The fixed `POOL_MIN_IDLE` levels to show.
    pub fixed_levels: Vec<u32>,
    /// Today's schedule (schedule + demand, no tiers).
    pub schedule: IdleSchedule,
    /// The tiered policy's warm schedule.
    pub tiered_schedule: IdleSchedule,
    /// `POOL_MIN_IDLE` where no rule matches.
    pub min_idle: u32,
    /// `parkedMin` of the tiered policy.
    pub parked_min: u32,
    /// `parkedMax` of the tiered policy.
    pub parked_max: u32,
    /// The pool's side of every replay (wait limit, `parkAfterMs`).
    pub config: ReplayConfig,
    /// The agent's size the dollars assume.
    pub size: AgentSize,
}

impl TierSetup {
    /// The setup for the shipped synthetic week.
    pub fn for_synthetic_week() -> Result<TierSetup, ScheduleError> {
        Ok(TierSetup {
            fixed_levels: vec![10, 20, 30, 40, 50, 60],
            schedule: IdleSchedule::parse(crate::compare::SYNTHETIC_WEEK_SCHEDULE)?,
            tiered_schedule: IdleSchedule::parse(TIERED_WEEK_SCHEDULE)?,
            min_idle: 2,
            parked_min: DEFAULT_PARKED_MIN,
            parked_max: DEFAULT_PARKED_MAX,
            config: ReplayConfig {
                claim_wait_limit: WAIT_LIMIT_WITH_TIERS,
                park_after: DEFAULT_PARK_AFTER,
                ..ReplayConfig::default()
            },
            size: AgentSize::ASSUMED,
        })
    }

    fn tiered(&self) -> Policy {
        Policy::Tiered {
            schedule: Some(self.tiered_schedule.clone()),
            min_idle: self.min_idle,
            parked_min: self.parked_min,
            parked_max: self.parked_max,
        }
    }
}

/// The outcome of [`compare_tiers`].
#[derive(Debug, Clone, PartialEq)]
pub struct TierComparison {
    /// One row per policy: fixed levels, schedule + demand, tiered.
    pub rows: Vec<PolicyRow>,
    /// The smallest fixed level at or below [`GOAL_LATE_SHARE`] late, with its row.
    pub smallest_fixed: Option<(u32, PolicyRow)>,
    /// Today's schedule + demand (no tiers).
    pub schedule_and_demand: PolicyRow,
    /// The tiered policy.
    pub tiered: PolicyRow,
    /// The agent's size the dollars assume.
    pub size: AgentSize,
}

impl TierComparison {
    /// A row's dollars over the replay.
    pub fn dollars(&self, row: &PolicyRow) -> f64 {
        self.size.dollars(row.warm_agent_hours, row.parked_agent_hours)
    }

    /// Tiered warm agent-hours over the smallest fixed level's.
    pub fn warm_hours_ratio(&self) -> Option<f64> {
        let (_, fixed) = self.smallest_fixed.as_ref()?;
        (fixed.warm_agent_hours > 0.0).then(|| self.tiered.warm_agent_hours / fixed.warm_agent_hours)
    }

    /// Tiered dollars over the smallest fixed level's.
    pub fn dollars_ratio(&self) -> Option<f64> {
        let (_, fixed) = self.smallest_fixed.as_ref()?;
        let fixed = self.dollars(fixed);
        (fixed > 0.0).then(|| self.dollars(&self.tiered) / fixed)
    }

    /// Whether the tiered policy is at most 1 % late within both ratios.
    pub fn goal_met(&self) -> bool {
        self.tiered.late_share <= GOAL_LATE_SHARE
            && self
                .warm_hours_ratio()
                .is_some_and(|r| r <= GOAL_MAX_WARM_HOURS_RATIO)
            && self.dollars_ratio().is_some_and(|r| r <= GOAL_MAX_DOLLARS_RATIO)
    }

    /// The comparison as a Markdown table and a summary.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&rows_table(&self.rows, &self.size));
        let tiered = &self.tiered;
        let _ = write!(out, "\n{} claims. ", tiered.claims);
        match (
            &self.smallest_fixed,
            self.warm_hours_ratio(),
            self.dollars_ratio(),
        ) {
            (Some((level, fixed)), Some(warm), Some(dollars)) => {
                let _ = writeln!(
                    out,
                    "Smallest fixed POOL_MIN_IDLE at ≤ {}: {level} ({:.0} warm agent-hours, ${:.2}). \
                     Tiered: {} late, {:.0} warm agent-hours (ratio {warm:.3}, goal ≤ {}), ${:.2} \
                     (ratio {dollars:.3}, goal ≤ {}). Goal: {}.",
                    percent(GOAL_LATE_SHARE),
                    fixed.warm_agent_hours,
                    self.dollars(fixed),
                    percent(tiered.late_share),
                    tiered.warm_agent_hours,
                    GOAL_MAX_WARM_HOURS_RATIO,
                    self.dollars(tiered),
                    GOAL_MAX_DOLLARS_RATIO,
                    if self.goal_met() { "met" } else { "NOT met" },
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "No fixed POOL_MIN_IDLE in the comparison keeps late claims at or below {}.",
                    percent(GOAL_LATE_SHARE)
                );
            }
        }
        let per_day = |row: &PolicyRow| {
            row.created_per_day
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "\nprojectCreate per simulated day (Mon..Sun): schedule + demand [{}]; tiered [{}].",
            per_day(&self.schedule_and_demand),
            per_day(tiered)
        );
        out
    }
}

/// Replays `trace` under the fixed levels (refining to the smallest one meeting the goal),
/// today's schedule + demand and the tiered policy.
pub fn compare_tiers(trace: &ClaimTrace, model: &RailwayModel, setup: &TierSetup) -> TierComparison {
    let run = |policy: &Policy| replay(trace, policy, model, &setup.config);
    let mut levels = setup.fixed_levels.clone();
    levels.sort_unstable();
    levels.dedup();
    let mut fixed: Vec<(u32, PolicyRow)> = levels
        .iter()
        .map(|&n| (n, run(&Policy::FixedMinIdle(n))))
        .collect();
    let meets = |row: &PolicyRow| row.late_share <= GOAL_LATE_SHARE;
    let smallest_fixed = fixed.iter().position(|(_, row)| meets(row)).map(|index| {
        let below = if index == 0 { 0 } else { fixed[index - 1].0 + 1 };
        let found = (below..fixed[index].0)
            .map(|n| (n, run(&Policy::FixedMinIdle(n))))
            .find(|(_, row)| meets(row))
            .unwrap_or_else(|| fixed[index].clone());
        if !levels.contains(&found.0) {
            fixed.push(found.clone());
            fixed.sort_by_key(|(n, _)| *n);
        }
        found
    });
    let mut rows: Vec<PolicyRow> = fixed
        .into_iter()
        .map(|(n, mut row)| {
            if smallest_fixed.as_ref().is_some_and(|(level, _)| *level == n) {
                row.policy.push_str(" (smallest ≤ 1 %)");
            }
            row
        })
        .collect();
    let schedule_and_demand = run(&Policy::ScheduleAndDemand {
        schedule: setup.schedule.clone(),
        min_idle: setup.min_idle,
    });
    rows.push(schedule_and_demand.clone());
    let tiered = run(&setup.tiered());
    rows.push(tiered.clone());
    TierComparison {
        rows,
        smallest_fixed,
        schedule_and_demand,
        tiered,
        size: setup.size,
    }
}

/// An unscheduled launch: `claims` claims spread uniformly over `over` from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// When the first claim may arrive.
    pub start: DateTime<Utc>,
    /// How many claims.
    pub claims: u32,
    /// Over how long.
    pub over: Duration,
    /// The seed of the arrival times.
    pub seed: u64,
}

impl Launch {
    /// 400 claims within the hour from Wednesday 2026-06-03 21:00 in Berlin (19:00 UTC),
    /// outside every schedule's office hours: nobody planned for it.
    pub fn synthetic_week_launch() -> Launch {
        Launch {
            start: DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(1_780_513_200),
            claims: 400,
            over: Duration::from_secs(3600),
            seed: 21,
        }
    }

    /// `trace` with the launch's claims added.
    pub fn add_to(&self, trace: &ClaimTrace) -> ClaimTrace {
        let mut rng = SplitMix64::new(self.seed);
        let span = u64::try_from(self.over.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut claims = trace.claims().to_vec();
        for _ in 0..self.claims {
            let offset = i64::try_from(rng.below(span)).unwrap_or(0);
            claims.push(self.start + TimeDelta::milliseconds(offset));
        }
        ClaimTrace::from_claims(claims)
    }
}

/// One row of the launch table: the default settings with one `parkedMin`.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRow {
    /// `parkedMin`.
    pub parked_min: u32,
    /// The replay.
    pub row: PolicyRow,
    /// Claims arriving within the launch's hour (the launch and the background) that waited
    /// more than 60 s or were refused.
    pub late_in_launch: u32,
    /// Claims arriving within the launch's hour.
    pub claims_in_launch: u32,
    /// What `parkedMin` parked agents cost a month.
    pub parked_min_monthly: f64,
}

/// The default settings (`POOL_MIN_IDLE` 1, no schedule, `parkedMax`
/// [`DEFAULT_PARKED_MAX`]) on `trace` with and without `launch`, for each `parkedMin`.
pub fn launch_rows(
    trace: &ClaimTrace,
    launch: &Launch,
    parked_mins: &[u32],
    model: &RailwayModel,
    setup: &TierSetup,
) -> Vec<LaunchRow> {
    let with_launch = launch.add_to(trace);
    parked_mins
        .iter()
        .map(|&parked_min| {
            let policy = Policy::Tiered {
                schedule: None,
                min_idle: 1,
                parked_min,
                parked_max: DEFAULT_PARKED_MAX.max(parked_min),
            };
            let row = replay(&with_launch, &policy, model, &setup.config);
            let end = launch.start + TimeDelta::from_std(launch.over).unwrap_or(TimeDelta::zero());
            let inside = |t: &&DateTime<Utc>| **t >= launch.start && **t < end;
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            LaunchRow {
                parked_min,
                late_in_launch: count(row.late_claims.iter().filter(inside).count()),
                claims_in_launch: count(with_launch.claims().iter().filter(inside).count()),
                parked_min_monthly: setup.size.monthly(0, parked_min),
                row,
            }
        })
        .collect()
}

/// The launch table as Markdown.
pub fn launch_markdown(rows: &[LaunchRow], launch: &Launch, size: &AgentSize) -> String {
    let mut out = format!(
        "Launch: {} claims from {} within {} min, on top of the week.\n\n",
        launch.claims,
        launch.start.to_rfc3339(),
        launch.over.as_secs() / 60
    );
    out.push_str(
        "| parkedMin | late claims in the launch's hour | late share of the week | refused | warm agent-hours \
         | parked agent-hours | $ / week | parkedMin's own cost / month | projectCreate |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let row = &r.row;
        let _ = writeln!(
            out,
            "| {} | {} of {} ({}) | {} | {} | {:.0} | {:.0} | ${:.2} | ${:.2} | {} |",
            r.parked_min,
            r.late_in_launch,
            r.claims_in_launch,
            percent(f64::from(r.late_in_launch) / f64::from(r.claims_in_launch.max(1))),
            percent(row.late_share),
            row.refused,
            row.warm_agent_hours,
            row.parked_agent_hours,
            size.dollars(row.warm_agent_hours, row.parked_agent_hours),
            r.parked_min_monthly,
            row.agents_created,
        );
    }
    out
}

/// The rows with their tier columns and dollars, as Markdown.
pub fn rows_table(rows: &[PolicyRow], size: &AgentSize) -> String {
    let mut out = String::from(
        "| policy | served at once | waited > 60 s or refused | refused | p99 wait | warm agent-hours \
         | parked agent-hours | $ / week | projectCreate | wakes | parks |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} s | {:.0} | {:.0} | ${:.2} | {} | {} | {} |",
            row.policy,
            percent(f64::from(row.served_at_once) / f64::from(row.claims.max(1))),
            percent(row.late_share),
            row.refused,
            row.p99_wait_secs,
            row.warm_agent_hours,
            row.parked_agent_hours,
            size.dollars(row.warm_agent_hours, row.parked_agent_hours),
            row.agents_created,
            row.wakes,
            row.parks,
        );
    }
    out
}

fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}
