//! How many idle agents the pool should keep warm: the `POOL_IDLE_SCHEDULE` floor
//! ([`IdleSchedule`]), a demand forecast from the claim history ([`ClaimHistory`]), the sizing
//! policy that combines them under Railway's bounded refill rate ([`size_pool`]), and a
//! replay in simulated time that compares policies on a claim trace ([`replay`],
//! [`compare_policies`]), with a synthetic week to run it on ([`synthetic_week`]).
//!
//! **Architecture invariant:** pure. No I/O, no clock reads, no environment: every function
//! takes `now` and its data as arguments, and the replay advances a simulated clock that never
//! sleeps. The crate knows nothing about Railway's API, Postgres or HTTP; the reconciler
//! gathers the inputs (counts, claim history, measured time to ready) and acts on the target.
//!
//! ```
//! use std::time::Duration;
//! use pool_sizing::{ClaimHistory, IdleSchedule, SizingInputs, size_pool};
//!
//! let schedule = IdleSchedule::parse("mon-fri 08:00-20:00 Europe/Berlin=20; *=2")?;
//! let history = ClaimHistory { recent: vec![1; 120], last_week_same_hour: None };
//! let target = size_pool(&SizingInputs {
//!     now: "2026-06-03T21:00:00Z".parse()?, // Wednesday 23:00 in Berlin
//!     min_idle: 1,
//!     schedule: Some(&schedule),
//!     max_total: Some(40),
//!     live_non_warm: 5,
//!     claims_per_min: history.forecast().claims_per_min,
//!     p90_time_to_ready: Duration::from_secs(150),
//!     creation_queue: 0,
//!     create_rate_per_min: pool_sizing::DEFAULT_CREATE_RATE_PER_MIN,
//!     headroom: pool_sizing::DEFAULT_HEADROOM,
//! });
//! assert_eq!(
//!     target.to_string(),
//!     r#"target 4 = 1 claims/min × 2.5 min horizon × 1.5 headroom (floor 2 from "*=2")"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod compare;
mod cost;
mod error;
mod forecast;
mod policy;
mod replay;
mod rng;
mod schedule;
mod slots;
mod synthetic;
mod tiered;
mod tiers;
mod trace;

pub use compare::{
    ComparisonSetup, GOAL_LATE_SHARE, GOAL_MAX_IDLE_HOURS_RATIO, PolicyComparison, SYNTHETIC_WEEK_SCHEDULE,
    compare_policies,
};
pub use cost::{AgentSize, CPU_PER_VCPU_MINUTE, HOURS_PER_MONTH, MEMORY_PER_GB_MINUTE, VOLUME_PER_GB_MONTH};
pub use error::{RuleProblem, ScheduleError, TraceError};
pub use forecast::{ClaimHistory, DemandForecast, EWMA_HALF_LIFE_MINUTES, LAST_WEEK_WEIGHT, RECENT_MINUTES};
pub use policy::{
    DEFAULT_CREATE_RATE_PER_MIN, DEFAULT_HEADROOM, FloorSource, SizingInputs, SizingTarget, TargetReason,
    idle_surplus, replenish_deficit, size_pool,
};
pub use replay::{Jitter, Policy, PolicyRow, RailwayModel, ReplayConfig, WakeModel, replay};
pub use schedule::{IdleSchedule, ScheduledFloor};
pub use slots::{SlotDemand, next_creation_slot, share_creation_slots};
pub use synthetic::{Burst, SYNTHETIC_WEEK_SEED, SyntheticWeek, synthetic_week};
pub use tiered::{
    DEFAULT_PARK_AFTER, DEFAULT_PARKED_MAX, DEFAULT_PARKED_MIN, GOAL_MAX_DOLLARS_RATIO,
    GOAL_MAX_WARM_HOURS_RATIO, Launch, LaunchRow, TIERED_WEEK_SCHEDULE, TierComparison, TierSetup,
    WAIT_LIMIT_WITH_TIERS, compare_tiers, launch_markdown, launch_rows, rows_table,
};
pub use tiers::{ParkedReason, ParkedTarget, TierCounts, TierInputs, TierPlan, plan_tiers};
pub use trace::{ClaimTrace, TRACE_HEADER};
