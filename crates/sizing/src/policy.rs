//! The sizing policy: how many warm agents the pool should hold now, and why.
//!
//! `target = clamp(max(floor, ⌈claims/min × refill horizon × headroom⌉), 0, max_total − live)`
//!
//! The floor is the schedule's at `now` when a schedule is set and one of its rules (or its
//! `*` default) matches, else `POOL_MIN_IDLE`: a schedule replaces the fixed minimum rather
//! than adding to it, so an operator can let the pool shrink at night. The demand term is the
//! stock that covers the claims expected before a creation started now could be handed out.
//!
//! Pausing is not an input: a paused pool has the same target, and not creating towards it is
//! the caller's business.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::schedule::IdleSchedule;

/// Headroom over the expected demand: Poisson arrivals at the forecast rate exceed their mean
/// over a few minutes often enough that stocking exactly the mean would make every other
/// refill window short.
pub const DEFAULT_HEADROOM: f64 = 1.5;

/// Railway creates one project per workspace every 30 s, i.e. two a minute.
pub const DEFAULT_CREATE_RATE_PER_MIN: f64 = 2.0;

/// Everything the policy looks at, gathered by the caller at `now`.
#[derive(Debug, Clone, Copy)]
pub struct SizingInputs<'a> {
    /// The instant the target is for (the schedule is evaluated at it).
    pub now: DateTime<Utc>,
    /// `POOL_MIN_IDLE`: the floor when no schedule is set or none of its rules matches.
    pub min_idle: u32,
    /// `POOL_IDLE_SCHEDULE`, if set.
    pub schedule: Option<&'a IdleSchedule>,
    /// `POOL_MAX_TOTAL`, if set: live agents of every status never exceed it.
    pub max_total: Option<u32>,
    /// Live agents that are not warm: claimed, claiming, crashed and deleting. They count
    /// against `max_total`.
    pub live_non_warm: u32,
    /// The demand forecast (see [`crate::ClaimHistory::forecast`]).
    pub claims_per_min: f64,
    /// The measured 90th percentile of creation-to-ready time.
    pub p90_time_to_ready: Duration,
    /// Creations waiting for a Railway create slot: each puts a new one further back.
    pub creation_queue: u32,
    /// Railway's project creation rate, normally [`DEFAULT_CREATE_RATE_PER_MIN`]. A rate that
    /// is not positive leaves the queue out of the horizon (the caller validates its config).
    pub create_rate_per_min: f64,
    /// Multiplier over the expected demand, normally [`DEFAULT_HEADROOM`].
    pub headroom: f64,
}

/// The policy's answer: how many warm agents (idle, starting or creating) to hold.
#[derive(Debug, Clone, PartialEq)]
pub struct SizingTarget {
    /// The target number of warm agents.
    pub idle: u32,
    /// Why, for logs and the console. `SizingTarget` displays as `target <idle> = <reason>`.
    pub reason: TargetReason,
}

/// Where the floor came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorSource {
    /// A rule of `POOL_IDLE_SCHEDULE`, as written.
    Schedule {
        /// The matching rule's text.
        rule: String,
    },
    /// `POOL_MIN_IDLE`: no schedule, or no rule of it matched.
    MinIdle,
}

/// Which term decided the target.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetReason {
    /// The floor was at least the demand.
    Floor {
        /// The floor.
        floor: u32,
        /// Where it came from.
        source: FloorSource,
        /// The demand term, rounded up, which it beat.
        demand: u32,
    },
    /// The demand term was above the floor.
    Demand {
        /// The forecast used.
        claims_per_min: f64,
        /// p90 time to ready plus the creation queue's wait, in minutes.
        horizon_min: f64,
        /// The headroom used.
        headroom: f64,
        /// The floor it beat.
        floor: u32,
        /// Where the floor came from.
        source: FloorSource,
    },
    /// `POOL_MAX_TOTAL` left less room than the floor or the demand asked for.
    CappedByMaxTotal {
        /// `POOL_MAX_TOTAL`.
        max_total: u32,
        /// Live agents that are not warm.
        live_non_warm: u32,
        /// What the target would have been without the cap.
        wanted: u32,
    },
}

/// The target number of warm agents at `inputs.now`, and why.
pub fn size_pool(inputs: &SizingInputs<'_>) -> SizingTarget {
    let (floor, source) = match inputs.schedule.and_then(|s| s.floor_at(inputs.now)) {
        Some(scheduled) => (scheduled.count, FloorSource::Schedule { rule: scheduled.rule }),
        None => (inputs.min_idle, FloorSource::MinIdle),
    };
    let horizon_min = refill_horizon_min(inputs);
    let claims_per_min = non_negative(inputs.claims_per_min);
    let headroom = non_negative(inputs.headroom);
    let demand = round_up(claims_per_min * horizon_min * headroom);
    let (wanted, reason) = if demand > floor {
        let reason = TargetReason::Demand {
            claims_per_min,
            horizon_min,
            headroom,
            floor,
            source,
        };
        (demand, reason)
    } else {
        (
            floor,
            TargetReason::Floor {
                floor,
                source,
                demand,
            },
        )
    };
    match inputs.max_total {
        Some(max_total) if wanted > max_total.saturating_sub(inputs.live_non_warm) => SizingTarget {
            idle: max_total.saturating_sub(inputs.live_non_warm),
            reason: TargetReason::CappedByMaxTotal {
                max_total,
                live_non_warm: inputs.live_non_warm,
                wanted,
            },
        },
        _ => SizingTarget { idle: wanted, reason },
    }
}

/// How many creations to start: the target's shortfall of warm agents (idle, starting and
/// creating all count, since a creation already under way will arrive).
pub fn replenish_deficit(target: u32, warm: u32) -> u32 {
    target.saturating_sub(warm)
}

/// How many idle agents could be retired: the warm agents beyond the target, but never more
/// than are idle (a creation under way is not cancelled; it becomes surplus when ready).
pub fn idle_surplus(target: u32, warm: u32, idle: u32) -> u32 {
    warm.saturating_sub(target).min(idle)
}

/// The time, in minutes, before a creation started now would be ready: the p90 time to ready
/// plus the wait for a create slot behind the queue.
fn refill_horizon_min(inputs: &SizingInputs<'_>) -> f64 {
    let ready = inputs.p90_time_to_ready.as_secs_f64() / 60.0;
    let rate = inputs.create_rate_per_min;
    let queue_wait = if rate > 0.0 && rate.is_finite() {
        f64::from(inputs.creation_queue) / rate
    } else {
        0.0
    };
    ready + queue_wait
}

fn non_negative(x: f64) -> f64 {
    if x.is_finite() { x.max(0.0) } else { 0.0 }
}

/// Rounds up, forgiving float noise: 0.4 × 25 × 1.5 is 15, not 16.
fn round_up(x: f64) -> u32 {
    // `as` saturates: a huge demand becomes u32::MAX, which max_total then caps.
    (x - 1e-9).ceil().max(0.0) as u32
}

/// A number with at most two decimals and no trailing zeros: `0.4`, `2.75`, `23`.
fn short(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl fmt::Display for SizingTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "target {} = {}", self.idle, self.reason)
    }
}

impl fmt::Display for TargetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetReason::Floor {
                floor,
                source,
                demand,
            } => match source {
                FloorSource::Schedule { rule } => {
                    write!(f, "floor {floor} from schedule \"{rule}\" (demand {demand})")
                }
                FloorSource::MinIdle => write!(f, "floor {floor} from minIdle (demand {demand})"),
            },
            TargetReason::Demand {
                claims_per_min,
                horizon_min,
                headroom,
                floor,
                source,
            } => {
                write!(
                    f,
                    "{} claims/min × {} min horizon × {} headroom (floor {floor} from ",
                    short(*claims_per_min),
                    short(*horizon_min),
                    short(*headroom)
                )?;
                match source {
                    FloorSource::Schedule { rule } => write!(f, "\"{rule}\")"),
                    FloorSource::MinIdle => write!(f, "minIdle)"),
                }
            }
            TargetReason::CappedByMaxTotal {
                max_total,
                live_non_warm,
                wanted,
            } => write!(
                f,
                "capped by POOL_MAX_TOTAL {max_total} with {live_non_warm} live (wanted {wanted})"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
