//! A discrete-event replay of a claim trace against a sizing policy, in simulated time (it
//! never sleeps and never reads the clock): a week takes well under a second in release.
//!
//! The pool is evaluated every tick and right after each claim, with the real [`size_pool`] on
//! the real forecast of the claims replayed so far. Like the reconciler, it counts idle agents
//! and creations in flight as warm, and starts the deficit: at most `create_concurrency`
//! creations in flight (`POOL_CREATE_CONCURRENCY`), Railway starting one every
//! `create_interval`, each ready `time_to_ready` later. Claims take idle agents first come,
//! first served; a claim that finds none waits in line up to `claim_wait_limit` (the API's
//! `Prefer: wait` maximum), then is refused.
//!
//! Two modelling choices matter for the numbers. Idle agents beyond the target are retired at
//! once: the reconciler does not do that today, but without it a schedule saves nothing. And
//! the creation queue the policy sees is bounded by the concurrency, as in production: the
//! horizon counts the queue, and an unbounded queue of the pool's own creations would feed
//! the target back into itself (each queued creation adds 30 s of horizon, which above
//! 1.33 claims/min at 1.5 headroom asks for more than one more agent).

mod pool;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::policy::{
    DEFAULT_HEADROOM, SizingInputs, TargetReason, idle_surplus, replenish_deficit, size_pool,
};
use crate::schedule::IdleSchedule;
use crate::tiers::{TierInputs, plan_tiers};
use crate::trace::ClaimTrace;

use pool::{Decision, Simulation, View};

/// How Railway creates agents, as the replay models it.
#[derive(Debug, Clone, PartialEq)]
pub struct RailwayModel {
    /// One project creation per workspace per interval (Railway: 30 s).
    pub create_interval: Duration,
    /// From the start of a creation to an agent ready to hand out.
    pub time_to_ready: Duration,
    /// Spread of the time to ready, if any.
    pub jitter: Option<Jitter>,
    /// At most this many creations in flight, waiting for a slot or becoming ready
    /// (`POOL_CREATE_CONCURRENCY`). It also bounds the creation queue the policy sees.
    pub create_concurrency: u32,
    /// How long a parked agent takes to wake.
    pub wake: WakeModel,
}

/// A parked agent's wake time (one deploy, `serviceInstanceDeployV2`, to a healthy agent):
/// log-normal, given by its median and 95th percentile. Railway documents the deploy phase
/// at 30 s to 2 min; the defaults are the p50 45 s and p95 120 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeModel {
    /// The median wake time.
    pub median: Duration,
    /// The 95th percentile wake time.
    pub p95: Duration,
    /// The seed of the draws, so a replay is repeatable.
    pub seed: u64,
}

/// The standard normal's 95th and 90th percentiles.
const Z95: f64 = 1.644_853_626_951_472_2;
const Z90: f64 = 1.281_551_565_544_600_4;

impl Default for WakeModel {
    fn default() -> WakeModel {
        WakeModel {
            median: Duration::from_secs(45),
            p95: Duration::from_secs(120),
            seed: 45,
        }
    }
}

impl WakeModel {
    /// The log-normal's σ: ln(p95 / median) / z₀.₉₅ (0 when the p95 is not above the median).
    pub fn sigma(&self) -> f64 {
        let (median, p95) = (self.median.as_secs_f64(), self.p95.as_secs_f64());
        if median > 0.0 && p95 > median {
            (p95 / median).ln() / Z95
        } else {
            0.0
        }
    }

    /// The 90th percentile, what the reconciler would measure (about 97 s for the defaults).
    pub fn p90(&self) -> Duration {
        self.median.mul_f64((self.sigma() * Z90).exp())
    }
}

/// A deterministic spread of the time to ready: uniform in `time_to_ready ± spread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter {
    /// Half the width of the spread.
    pub spread: Duration,
    /// The seed of the draws, so a replay is repeatable.
    pub seed: u64,
}

impl Default for RailwayModel {
    fn default() -> RailwayModel {
        RailwayModel {
            create_interval: Duration::from_secs(30),
            time_to_ready: Duration::from_secs(150),
            jitter: None,
            create_concurrency: 8,
            wake: WakeModel::default(),
        }
    }
}

impl RailwayModel {
    /// The 90th percentile of the time to ready, what the reconciler would measure.
    pub fn p90_time_to_ready(&self) -> Duration {
        match self.jitter {
            // Uniform on [t − s, t + s]: the 90th percentile is t + 0.8 s.
            Some(jitter) => self.time_to_ready.saturating_sub(jitter.spread) + jitter.spread.mul_f64(1.8),
            None => self.time_to_ready,
        }
    }

    /// Project creations per minute.
    pub fn create_rate_per_min(&self) -> f64 {
        let secs = self.create_interval.as_secs_f64();
        if secs > 0.0 { 60.0 / secs } else { f64::INFINITY }
    }
}

/// The pool's side of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// The policy's headroom.
    pub headroom: f64,
    /// `POOL_MAX_TOTAL`, if any.
    pub max_total: Option<u32>,
    /// How long a claim waits for an agent before it is refused (`Prefer: wait` maximum).
    pub claim_wait_limit: Duration,
    /// How often the pool is evaluated besides right after each claim (the reconciler tick).
    pub tick: Duration,
    /// How long a claimed agent stays live; it only matters under `max_total`.
    pub session_length: Duration,
    /// How long an idle agent above the warm target stays warm before it is parked
    /// (`parkAfterMs`; tiered policies only).
    pub park_after: Duration,
}

impl Default for ReplayConfig {
    fn default() -> ReplayConfig {
        ReplayConfig {
            headroom: DEFAULT_HEADROOM,
            max_total: None,
            claim_wait_limit: Duration::from_secs(120),
            tick: Duration::from_secs(30),
            session_length: Duration::from_secs(30 * 60),
            park_after: Duration::from_secs(10 * 60),
        }
    }
}

/// A sizing policy to replay.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Today's `POOL_MIN_IDLE`: always this many warm agents.
    FixedMinIdle(u32),
    /// The schedule's floor alone (`POOL_MIN_IDLE` 0 where no rule matches).
    ScheduleOnly(IdleSchedule),
    /// The demand forecast above a fixed minimum.
    DemandOnly {
        /// The floor.
        min_idle: u32,
    },
    /// The demand forecast above the schedule's floor.
    ScheduleAndDemand {
        /// The floor's schedule.
        schedule: IdleSchedule,
        /// The floor where no rule matches.
        min_idle: u32,
    },
    /// Schedule + demand over the tiers ([`plan_tiers`]): a warm target over the wake
    /// horizon, a parked tier between `parked_min` and `parked_max`, idle agents above the
    /// warm target parked after the config's `park_after`.
    Tiered {
        /// The warm floor's schedule, if any.
        schedule: Option<IdleSchedule>,
        /// The warm floor where no rule matches.
        min_idle: u32,
        /// `parkedMin`.
        parked_min: u32,
        /// `parkedMax` (0: the tier is off).
        parked_max: u32,
    },
}

impl Policy {
    /// A short name for tables, e.g. `fixed min idle 20`.
    pub fn name(&self) -> String {
        match self {
            Policy::FixedMinIdle(n) => format!("fixed min idle {n}"),
            Policy::ScheduleOnly(_) => "schedule only".to_string(),
            Policy::DemandOnly { min_idle } => format!("demand only (min idle {min_idle})"),
            Policy::ScheduleAndDemand { .. } => "schedule + demand".to_string(),
            Policy::Tiered {
                schedule,
                min_idle,
                parked_min,
                parked_max,
            } => format!(
                "tiered ({}, parked {parked_min}..{parked_max})",
                if schedule.is_some() {
                    "schedule + demand".to_string()
                } else {
                    format!("min idle {min_idle} + demand")
                }
            ),
        }
    }

    fn schedule(&self) -> Option<&IdleSchedule> {
        match self {
            Policy::ScheduleOnly(s) | Policy::ScheduleAndDemand { schedule: s, .. } => Some(s),
            Policy::Tiered { schedule, .. } => schedule.as_ref(),
            Policy::FixedMinIdle(_) | Policy::DemandOnly { .. } => None,
        }
    }

    fn min_idle(&self) -> u32 {
        match self {
            Policy::FixedMinIdle(n) => *n,
            Policy::ScheduleOnly(_) => 0,
            Policy::DemandOnly { min_idle }
            | Policy::ScheduleAndDemand { min_idle, .. }
            | Policy::Tiered { min_idle, .. } => *min_idle,
        }
    }

    fn uses_demand(&self) -> bool {
        matches!(
            self,
            Policy::DemandOnly { .. } | Policy::ScheduleAndDemand { .. } | Policy::Tiered { .. }
        )
    }
}

/// What one policy did on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRow {
    /// The policy's name.
    pub policy: String,
    /// Claims in the trace.
    pub claims: u32,
    /// Claims that found an idle agent.
    pub served_at_once: u32,
    /// Claims served within 60 s, those served at once included.
    pub served_within_60s: u32,
    /// Claims that waited the whole limit and were refused.
    pub refused: u32,
    /// The 99th percentile wait, in seconds, a refused claim counting as the wait limit.
    pub p99_wait_secs: f64,
    /// The share of claims that waited more than 60 s or were refused.
    pub late_share: f64,
    /// The integral of idle (ready, unclaimed) agents over the trace's days, in agent-hours.
    pub idle_agent_hours: f64,
    /// The integral of unclaimed agents running a deployment (idle, booting after their
    /// create slot, waking), in agent-hours: what costs compute.
    pub warm_agent_hours: f64,
    /// The integral of parked agents, in agent-hours: what costs only storage.
    pub parked_agent_hours: f64,
    /// Agents created (`projectCreate`), the initial pool excluded.
    pub agents_created: u32,
    /// Agents created per day of the replay's window.
    pub created_per_day: Vec<u32>,
    /// Parked agents woken.
    pub wakes: u32,
    /// Idle agents parked.
    pub parks: u32,
    /// Idle agents deleted.
    pub drains: u32,
    /// Parked agents deleted.
    pub parked_deleted: u32,
    /// When the claims that waited more than 60 s or were refused arrived.
    pub late_claims: Vec<DateTime<Utc>>,
}

/// Replays `trace` against `policy` from midnight UTC before its first claim to midnight UTC
/// after its last. The pool starts at its targets, as if it had been running.
pub fn replay(trace: &ClaimTrace, policy: &Policy, model: &RailwayModel, config: &ReplayConfig) -> PolicyRow {
    let mut simulation = Simulation::new(trace, model, config);
    let sizing = |sim: &Simulation, view: &View| {
        let claims_per_min = if policy.uses_demand() {
            sim.history().forecast().claims_per_min
        } else {
            0.0
        };
        SizingInputs {
            now: view.now,
            min_idle: policy.min_idle(),
            schedule: policy.schedule(),
            max_total: config.max_total,
            live_non_warm: view.claimed,
            claims_per_min,
            p90_time_to_ready: model.p90_time_to_ready(),
            creation_queue: view.creation_queue,
            create_rate_per_min: model.create_rate_per_min(),
            headroom: config.headroom,
        }
    };
    match policy {
        Policy::Tiered {
            parked_min,
            parked_max,
            ..
        } => {
            let plan = |sim: &Simulation, view: &View| {
                plan_tiers(&TierInputs {
                    sizing: sizing(sim, view),
                    p90_wake: model.wake.p90(),
                    claims_last_minute: view.claims_last_minute,
                    parked_min: *parked_min,
                    parked_max: *parked_max,
                    counts: view.tiers,
                })
            };
            simulation.run(
                |sim, view| {
                    let plan = plan(sim, view);
                    (plan.desired_warm, plan.parked.count)
                },
                |sim, view| {
                    let plan = plan(sim, view);
                    Decision {
                        create: plan.create,
                        wake: plan.wake,
                        park: plan.park,
                        drain: plan.drain,
                        delete_parked: plan.delete_parked,
                    }
                },
            );
        }
        _ => simulation.run(
            |sim, view| (size_pool(&sizing(sim, view)).idle, 0),
            |sim, view| {
                let target = size_pool(&sizing(sim, view));
                let tiers = view.tiers;
                let warm = tiers.idle + tiers.in_flight;
                // Retiring idle agents because of POOL_MAX_TOTAL would free nothing a claim
                // could use.
                let drain = if matches!(target.reason, TargetReason::CappedByMaxTotal { .. }) {
                    0
                } else {
                    idle_surplus(target.idle, warm, tiers.idle)
                };
                Decision {
                    create: replenish_deficit(target.idle, warm),
                    drain,
                    ..Decision::default()
                }
            },
        ),
    }
    simulation.row(policy.name())
}
