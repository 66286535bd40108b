//! Sizing over the tiers: `warm` (idle agents, as before), `parked` (provisioned agents whose
//! deployment is removed: no compute, only their volume's storage) and `cold` (created through
//! `projectCreate`, one per workspace every 30 s).
//!
//! Two targets:
//! - the **warm target** covers the claims that cannot wait for a wake: the forecast over the
//!   wake horizon (the measured p90 wake time) times the headroom, with the floor; while
//!   claims wait (a burst larger than the warm stock) the rate of the last minute counts if it
//!   is higher, so the burst is met by waking parked agents at once rather than one wake per
//!   waiting claim. With no parked agent to wake, the horizon is the creation's, as before;
//! - the **parked target** covers the largest burst the operator means to absorb:
//!   `parkedMin` always, raised (never lowered) by the schedule (the stock that lets the
//!   schedule's highest floor be reached by waking, so a morning ramp creates nothing) and by
//!   the forecast (the claims expected while a creation started now becomes ready), capped by
//!   `parkedMax` (0 turns the tier off) and by `POOL_MAX_TOTAL` after the warm tier.
//!
//! [`plan_tiers`] turns the two targets and the current counts into what to do: wake parked
//! agents for a warm shortfall first, create only what waking cannot cover — and nothing
//! while claims wait that the stock covers (a burst is served by waking; the forecast's
//! creations and the parked tier's refill start when no claim waits); park idle agents
//! above the warm target (those idle for `parkAfterMs`) while the parked tier has room, drain
//! the rest; delete parked agents only above the parked target or past their maximum age.

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use crate::policy::{SizingInputs, SizingTarget, size_pool};

/// Everything the tier plan looks at, gathered by the caller at `inputs.sizing.now`.
#[derive(Debug, Clone, Copy)]
pub struct TierInputs<'a> {
    /// The inputs of the warm policy as before: `p90_time_to_ready` and `creation_queue` are
    /// the creation's; `live_non_warm` counts claimed, claiming, crashed and deleting agents
    /// (not parked ones).
    pub sizing: SizingInputs<'a>,
    /// The measured 90th percentile of wake-to-ready time (a parked agent's deploy).
    pub p90_wake: Duration,
    /// Claims in the last minute: while claims wait, a burst's own rate.
    pub claims_last_minute: u32,
    /// `parkedMin`: agents kept parked at all times.
    pub parked_min: u32,
    /// `parkedMax`: never more parked agents than this; 0 turns the parked tier off.
    pub parked_max: u32,
    /// The pool now.
    pub counts: TierCounts,
}

/// The pool's agents as the tiers see them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierCounts {
    /// Ready, unclaimed agents.
    pub idle: u32,
    /// Idle agents that may be parked now: idle for at least `parkAfterMs`, neither protected
    /// nor legacy.
    pub idle_parkable: u32,
    /// Agents being created or starting: they will be idle.
    pub in_flight: u32,
    /// Parked agents being woken: they will be idle.
    pub waking: u32,
    /// Agents being parked: they will be parked.
    pub parking: u32,
    /// Parked agents.
    pub parked: u32,
    /// Parked agents past their maximum age (deleted and replaced).
    pub parked_over_age: u32,
    /// Claims waiting for an agent now (`Prefer: wait`).
    pub waiting: u32,
}

/// How many agents to keep parked, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedTarget {
    /// The target number of parked agents.
    pub count: u32,
    /// Why.
    pub reason: ParkedReason,
}

/// Which term decided the parked target.
#[derive(Debug, Clone, PartialEq)]
pub enum ParkedReason {
    /// `parkedMax` is 0: no parked tier.
    Off,
    /// `parkedMin` was at least the other terms.
    Minimum {
        /// `parkedMin`.
        parked_min: u32,
    },
    /// The schedule's highest floor minus the floor now: the stock a ramp wakes.
    ScheduleRamp {
        /// The highest floor the schedule (or `minIdle`) ever asks for.
        peak: u32,
        /// The floor now.
        floor: u32,
        /// `parkedMin`, which it beat.
        parked_min: u32,
    },
    /// The claims expected while a creation started now becomes ready.
    Demand {
        /// The forecast used.
        claims_per_min: f64,
        /// The creation's horizon, in minutes.
        horizon_min: f64,
        /// `parkedMin`, which it beat.
        parked_min: u32,
    },
    /// `parkedMax` left less room than the terms asked for.
    CappedByParkedMax {
        /// `parkedMax`.
        parked_max: u32,
        /// What the target would have been.
        wanted: u32,
    },
    /// `POOL_MAX_TOTAL`, after the live agents and the warm tier, left less room.
    CappedByMaxTotal {
        /// `POOL_MAX_TOTAL`.
        max_total: u32,
        /// What the target would have been.
        wanted: u32,
    },
}

/// What to do this tick, and the two targets it follows.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPlan {
    /// The warm target, with its reason.
    pub warm: SizingTarget,
    /// Warm agents to have: the warm target plus one per waiting claim.
    pub desired_warm: u32,
    /// Whether the last minute's claim rate (a burst) raised the warm target.
    pub burst: bool,
    /// Claims wait and the stock covers them (agents on their way to warm plus the parked
    /// ones are at least as many): the burst is served by waking alone, and creation (for the
    /// forecast and the parked tier's refill) waits until no claim waits.
    pub served_by_waking: bool,
    /// The parked target, with its reason.
    pub parked: ParkedTarget,
    /// Parked agents to wake now.
    pub wake: u32,
    /// Agents to create (warm shortfall that waking cannot cover first, then the parked one).
    pub create: u32,
    /// Idle agents to park.
    pub park: u32,
    /// Idle agents to delete (above the warm target, no room in the parked tier).
    pub drain: u32,
    /// Parked agents to delete (above the parked target, or past their maximum age).
    pub delete_parked: u32,
}

/// The two targets and what to do, at `inputs.sizing.now`.
pub fn plan_tiers(inputs: &TierInputs<'_>) -> TierPlan {
    let counts = inputs.counts;
    let tier_on = inputs.parked_max > 0;
    let burst =
        tier_on && counts.waiting > 0 && f64::from(inputs.claims_last_minute) > inputs.sizing.claims_per_min;
    let mut warm_inputs = inputs.sizing;
    if tier_on && counts.parked > 0 {
        // A warm shortfall is refilled by a wake, which needs no create slot.
        warm_inputs.p90_time_to_ready = inputs.p90_wake;
        warm_inputs.creation_queue = 0;
    }
    if burst {
        warm_inputs.claims_per_min = f64::from(inputs.claims_last_minute);
    }
    let warm = size_pool(&warm_inputs);
    let desired_warm = warm.idle.saturating_add(counts.waiting);
    let parked = parked_target(inputs, desired_warm);

    let warm_supply = counts.idle + counts.in_flight + counts.waking;
    let warm_deficit = desired_warm.saturating_sub(warm_supply);
    let wake = warm_deficit.min(counts.parked);
    let warm_surplus = warm_supply.saturating_sub(desired_warm);
    let parked_left = counts.parked - wake + counts.parking;
    // Surplus warm agents end up parked (or drained when the tier is full): no creation for
    // a parked shortfall they will fill.
    let parked_short = parked.count.saturating_sub(parked_left + warm_surplus);
    // A burst the stock covers is served by waking alone: every waiting claim will get an
    // agent already on its way or woken now, so nothing is created while claims wait —
    // neither for the forecast the burst raised nor to refill the parked tier. Creation
    // starts once no claim waits (the burst is over), or at once when the waiting claims
    // outnumber the whole stock (a burst larger than it: creating early is all that helps).
    let served_by_waking = tier_on && counts.waiting > 0 && counts.waiting <= warm_supply + counts.parked;
    let create = if served_by_waking {
        0
    } else {
        (warm_deficit - wake) + parked_short
    };

    // Creations in flight are not cancelled: only idle agents leave the warm tier.
    let leaving = warm_surplus.min(counts.idle);
    let (park, drain) = if tier_on {
        // Only ready agents above the warm target leave it: one still starting leaves once it
        // is idle, so a filling pool does not park its first ready agents and then wait for
        // the last ones to be claimable (a fresh pool's first claim, the demo's).
        let parkable = leaving
            .min(counts.idle.saturating_sub(desired_warm))
            .min(counts.idle_parkable);
        let park = parkable.min(parked.count.saturating_sub(parked_left));
        (park, parkable - park)
    } else {
        (0, leaving)
    };
    let parked_after = parked_left + park;
    let over_target = parked_after.saturating_sub(parked.count);
    let delete_parked = over_target.max(counts.parked_over_age).min(counts.parked - wake);
    TierPlan {
        warm,
        desired_warm,
        burst,
        served_by_waking,
        parked,
        wake,
        create,
        park,
        drain,
        delete_parked,
    }
}

fn parked_target(inputs: &TierInputs<'_>, desired_warm: u32) -> ParkedTarget {
    if inputs.parked_max == 0 {
        return ParkedTarget {
            count: 0,
            reason: ParkedReason::Off,
        };
    }
    let sizing = &inputs.sizing;
    let parked_min = inputs.parked_min;
    let floor = sizing
        .schedule
        .and_then(|s| s.floor_at(sizing.now))
        .map_or(sizing.min_idle, |f| f.count);
    let peak = sizing
        .schedule
        .map_or(sizing.min_idle, |s| s.peak_floor(sizing.min_idle));
    let ramp = peak.saturating_sub(floor);
    let claims_per_min = non_negative(sizing.claims_per_min);
    let horizon_min = creation_horizon_min(sizing);
    let demand = round_up(claims_per_min * horizon_min * non_negative(sizing.headroom));
    let (wanted, reason) = if ramp > parked_min && ramp >= demand {
        (
            ramp,
            ParkedReason::ScheduleRamp {
                peak,
                floor,
                parked_min,
            },
        )
    } else if demand > parked_min {
        (
            demand,
            ParkedReason::Demand {
                claims_per_min,
                horizon_min,
                parked_min,
            },
        )
    } else {
        (parked_min, ParkedReason::Minimum { parked_min })
    };
    let (mut count, mut reason) = if wanted > inputs.parked_max {
        (
            inputs.parked_max,
            ParkedReason::CappedByParkedMax {
                parked_max: inputs.parked_max,
                wanted,
            },
        )
    } else {
        (wanted, reason)
    };
    if let Some(max_total) = sizing.max_total {
        let room = max_total
            .saturating_sub(sizing.live_non_warm)
            .saturating_sub(desired_warm);
        if count > room {
            reason = ParkedReason::CappedByMaxTotal {
                max_total,
                wanted: count,
            };
            count = room;
        }
    }
    ParkedTarget { count, reason }
}

/// p90 time to ready plus the wait for a create slot behind the queue, in minutes.
fn creation_horizon_min(inputs: &SizingInputs<'_>) -> f64 {
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

fn round_up(x: f64) -> u32 {
    (x - 1e-9).ceil().max(0.0) as u32
}

fn short(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl fmt::Display for ParkedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parked target {} = {}", self.count, self.reason)
    }
}

impl fmt::Display for ParkedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParkedReason::Off => write!(f, "off (parkedMax 0)"),
            ParkedReason::Minimum { parked_min } => write!(f, "parkedMin {parked_min}"),
            ParkedReason::ScheduleRamp {
                peak,
                floor,
                parked_min,
            } => write!(
                f,
                "schedule's peak floor {peak} − floor now {floor} (parkedMin {parked_min})"
            ),
            ParkedReason::Demand {
                claims_per_min,
                horizon_min,
                parked_min,
            } => write!(
                f,
                "{} claims/min × {} min creation horizon (parkedMin {parked_min})",
                short(*claims_per_min),
                short(*horizon_min)
            ),
            ParkedReason::CappedByParkedMax { parked_max, wanted } => {
                write!(f, "capped by parkedMax {parked_max} (wanted {wanted})")
            }
            ParkedReason::CappedByMaxTotal { max_total, wanted } => {
                write!(f, "capped by POOL_MAX_TOTAL {max_total} (wanted {wanted})")
            }
        }
    }
}

impl fmt::Display for TierPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "warm {}", self.warm)?;
        if self.burst {
            write!(f, " (burst: last minute's rate)")?;
        }
        if self.desired_warm > self.warm.idle {
            write!(f, " + {} claim(s) waiting", self.desired_warm - self.warm.idle)?;
        }
        if self.served_by_waking {
            write!(f, " (served by waking: no creation while claims wait)")?;
        }
        write!(f, "; {}", self.parked)
    }
}
