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

use crate::policy::{DEFAULT_HEADROOM, SizingInputs, size_pool};
use crate::schedule::IdleSchedule;
use crate::trace::ClaimTrace;

use pool::Simulation;

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
}

impl Default for ReplayConfig {
    fn default() -> ReplayConfig {
        ReplayConfig {
            headroom: DEFAULT_HEADROOM,
            max_total: None,
            claim_wait_limit: Duration::from_secs(120),
            tick: Duration::from_secs(30),
            session_length: Duration::from_secs(30 * 60),
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
}

impl Policy {
    /// A short name for tables, e.g. `fixed min idle 20`.
    pub fn name(&self) -> String {
        match self {
            Policy::FixedMinIdle(n) => format!("fixed min idle {n}"),
            Policy::ScheduleOnly(_) => "schedule only".to_string(),
            Policy::DemandOnly { min_idle } => format!("demand only (min idle {min_idle})"),
            Policy::ScheduleAndDemand { .. } => "schedule + demand".to_string(),
        }
    }

    fn schedule(&self) -> Option<&IdleSchedule> {
        match self {
            Policy::ScheduleOnly(s) | Policy::ScheduleAndDemand { schedule: s, .. } => Some(s),
            Policy::FixedMinIdle(_) | Policy::DemandOnly { .. } => None,
        }
    }

    fn min_idle(&self) -> u32 {
        match self {
            Policy::FixedMinIdle(n) => *n,
            Policy::ScheduleOnly(_) => 0,
            Policy::DemandOnly { min_idle } | Policy::ScheduleAndDemand { min_idle, .. } => *min_idle,
        }
    }

    fn uses_demand(&self) -> bool {
        matches!(self, Policy::DemandOnly { .. } | Policy::ScheduleAndDemand { .. })
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
    /// Agents created, the initial pool excluded.
    pub agents_created: u32,
}

/// Replays `trace` against `policy` from midnight UTC before its first claim to midnight UTC
/// after its last. The pool starts at its target, as if it had been running.
pub fn replay(trace: &ClaimTrace, policy: &Policy, model: &RailwayModel, config: &ReplayConfig) -> PolicyRow {
    let mut simulation = Simulation::new(trace, model, config);
    simulation.run(|sim, now, live_non_warm, creation_queue| {
        let claims_per_min = if policy.uses_demand() {
            sim.history().forecast().claims_per_min
        } else {
            0.0
        };
        size_pool(&SizingInputs {
            now,
            min_idle: policy.min_idle(),
            schedule: policy.schedule(),
            max_total: config.max_total,
            live_non_warm,
            claims_per_min,
            p90_time_to_ready: model.p90_time_to_ready(),
            creation_queue,
            create_rate_per_min: model.create_rate_per_min(),
            headroom: config.headroom,
        })
    });
    simulation.row(policy.name())
}
