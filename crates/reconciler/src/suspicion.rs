//! When Railway is read about a steady agent: only on real suspicion.
//!
//! - A failed health check is not news yet: the agent is checked again, on a fresh
//!   connection, a few seconds later (`reprobe_delay`; by the prober, which the tick never
//!   waits for), and only a second failure makes it a suspect, read from Railway.
//! - Suspects' reads draw on a bucket of their own within the Railway budget
//!   (`BudgetConfig::suspicion_share`, [`railway_api::Priority::Suspicion`]), claimed agents
//!   first: the tick asks how much is left and reads no more than that (never waiting for
//!   the hour to roll over); the rest stay suspects for a later tick.
//! - An agent Railway has confirmed down that stays (a crashed claimed agent, a claimed agent
//!   whose deployment runs but does not answer) backs off: read again after 30 s, then 1, 2,
//!   4… minutes up to 10 (`down_backoff`, `down_backoff_max`); a webhook look reads it in
//!   between.
//! - A breaker: when more agents fail in one tick than max(20, 1 %) of the fleet
//!   (`breaker_min_failures`, `breaker_fraction`), the fault is likelier ours (our CPU, our
//!   network) than the fleet's. Per-agent reads and demotions stop; one sample batch is read
//!   to tell which, and the status, the metrics and an event say so. It releases when a tick's
//!   failures fall back under the threshold.
//! - The full sweep rolls: every tick reads the steady agents of one slice of the fleet (by a
//!   hash of the id), so each is read once per `full_sweep_interval` and no tick sweeps whole.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pool_store::{AgentId, AgentStatus, LeaderLock, TickRow};
use railway_api::DeploymentStatus;
use serde::Serialize;

use crate::Reconciler;
use crate::decide::Observation;
use crate::error::ReconcileError;
use crate::observe::{Checked, read_status};
use crate::phases::timed;
use crate::reads::PutOff;
use crate::report::TickReport;
use crate::tick::{MAX_CONFIRMATIONS_PER_TICK, PAGE, checked_every_tick};

/// Suspects read while the breaker is open: one batch of Railway's (`projectsByIds` takes 50).
const SAMPLE: usize = 50;

/// A stable hash of an agent's id (FNV-1a): the rolling sweep's slices (and later, shards).
pub(crate) fn id_hash(id: &AgentId) -> u64 {
    id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The most of the hourly Railway budget the rolling full sweep may take: past the fleet size
/// where the full-sweep interval would cost more, the sweep takes longer (see [`sweep_slices`]).
pub const FULL_SWEEP_BUDGET_SHARE: f64 = 0.04;

/// The rolling sweep's pace: how many slices one sweep has, and on what share of the ticks a
/// slice is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepPace {
    /// Slices in one sweep (by a hash of the id).
    pub slices: u64,
    /// This replica's share of the hourly budget (its lease over the whole; 1 alone): the
    /// share of its ticks that read a slice.
    reading: f64,
}

impl SweepPace {
    /// The slice tick `n` reads, if any. Alone, every tick reads one. A replica that leases a
    /// share of the budget reads one on that share of its ticks, spread evenly, so that the
    /// replicas together spend the sweep's share of the budget once, not once each: four
    /// replicas at 100,000 agents each read 3 requests' worth every fourth tick (3.6 % of the
    /// budget together), where reading a batch every tick would take 4.8 %, and eight 9.6 %.
    pub fn slot(&self, n: u64) -> Option<u64> {
        if self.reading >= 1.0 {
            return Some(n % self.slices);
        }
        let rate = self.reading.max(0.0);
        let (before, after) = ((n as f64 * rate).floor(), ((n + 1) as f64 * rate).floor());
        (after > before).then(|| before as u64 % self.slices)
    }
}

/// How many ticks one rolling sweep takes: the full-sweep interval over the tick interval, or
/// more for a fleet so large that reading a slice that size every tick would take more than
/// [`FULL_SWEEP_BUDGET_SHARE`] of `requests_per_hour`. A tick may then spend that share of one
/// tick's worth of the budget (whole `projectsByIds` requests, at least one), and the slices
/// are as many as it takes to read `fleet` agents at that rate. At production's defaults
/// (30 s ticks, 10 min sweep, 10,000 requests an hour) that is 3 requests a tick: 150 agents,
/// 20 slices up to 3,000 agents, 34 at 5,000, 67 (a sweep every 33.5 min) at 10,000.
pub fn sweep_slices(
    full_sweep_interval: Duration,
    tick_interval: Duration,
    fleet: usize,
    requests_per_hour: usize,
) -> u64 {
    sweep_pace(
        full_sweep_interval,
        tick_interval,
        fleet,
        requests_per_hour,
        requests_per_hour,
    )
    .slices
}

/// The rolling sweep's pace for a replica that leases `leased_per_hour` of the
/// `configured_per_hour` budget and walks `fleet` agents: [`sweep_slices`] at the whole
/// budget, read on the lease's share of the ticks ([`SweepPace::slot`]).
pub fn sweep_pace(
    full_sweep_interval: Duration,
    tick_interval: Duration,
    fleet: usize,
    leased_per_hour: usize,
    configured_per_hour: usize,
) -> SweepPace {
    let reading = if configured_per_hour == 0 || leased_per_hour >= configured_per_hour {
        1.0
    } else {
        leased_per_hour as f64 / configured_per_hour as f64
    };
    if tick_interval.is_zero() {
        return SweepPace { slices: 1, reading };
    }
    let by_interval = full_sweep_interval
        .as_millis()
        .div_ceil(tick_interval.as_millis())
        .max(1);
    let per_tick =
        configured_per_hour as f64 * FULL_SWEEP_BUDGET_SHARE * tick_interval.as_secs_f64() / 3600.0;
    let agents_per_tick = (per_tick.floor() as u128).max(1) * railway_api::STATUS_BATCH_SIZE as u128;
    let by_budget = (fleet as u128).div_ceil(agents_per_tick).max(1);
    SweepPace {
        slices: by_interval.max(by_budget).min(u128::from(u32::MAX)) as u64,
        reading,
    }
}

/// An agent Railway confirmed down: when it may be read again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    step: u32,
    next_read: Instant,
}

/// The breaker, as the status and the metrics show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BreakerState {
    /// When it tripped.
    pub since: DateTime<Utc>,
    /// Agents that failed their checks in the last tick.
    pub failures: usize,
    /// The threshold they crossed: max(minimum, fraction of the fleet).
    pub threshold: usize,
    /// What the sample read said, in words (our fault or the fleet's).
    pub verdict: String,
}

/// The reconciler's memory of suspicion between ticks.
#[derive(Debug, Default)]
pub(crate) struct Suspicion {
    down: HashMap<AgentId, Backoff>,
    pub breaker: Option<BreakerState>,
}

impl Suspicion {
    /// True when `id` is backing off and not due for a read at `now`.
    pub fn backing_off(&self, id: &AgentId, now: Instant) -> bool {
        self.down.get(id).is_some_and(|b| b.next_read > now)
    }

    /// True when `id` is known down (backing off, due or not).
    pub fn known_down(&self, id: &AgentId) -> bool {
        self.down.contains_key(id)
    }

    /// `id` was read and is still down: its next read waits one step longer. An agent new to
    /// this memory whose row says it has been down for `down_for` already (confirmed before a
    /// restart, or by another replica that held its shard) starts at the step that long a
    /// backoff would have reached, not at the first: a pool restarting with hundreds of
    /// long-crashed agents does not read each of them after 30 s, 1, 2, 4 and 8 min again.
    pub fn still_down(
        &mut self,
        id: &AgentId,
        now: Instant,
        down_for: Option<Duration>,
        base: Duration,
        max: Duration,
    ) {
        let wait_at = |step: u32| base.checked_mul(1u32 << step.min(20)).unwrap_or(max).min(max);
        let step = match (self.down.get(id), down_for) {
            (Some(b), _) => b.step.saturating_add(1),
            // The last step whose wait that long a time down has covered.
            (None, Some(down_for)) => (1..=20)
                .take_while(|s| wait_at(*s) <= down_for)
                .last()
                .unwrap_or(0),
            (None, None) => 0,
        };
        self.down.insert(
            id.clone(),
            Backoff {
                step,
                next_read: now + wait_at(step),
            },
        );
    }

    /// `id` answered ready, or left the fleet: no longer down.
    pub fn recovered(&mut self, id: &AgentId) {
        self.down.remove(id);
    }

    /// Forgets agents that no longer fail (left the fleet, or not steady any more).
    pub fn retain(&mut self, live: impl Fn(&AgentId) -> bool) {
        self.down.retain(|id, _| live(id));
    }
}

/// The breaker's threshold for a fleet of `fleet` agents.
pub(crate) fn breaker_threshold(fleet: usize, min_failures: usize, fraction: f64) -> usize {
    min_failures.max((fleet as f64 * fraction.clamp(0.0, 1.0)).ceil() as usize)
}

/// Steady agents read from Railway whatever their health.
pub(crate) enum ReadAnyway {
    /// All of them (a look).
    All,
    /// This tick's slice of the rolling sweep (`slot` of `slices`, by a hash of the id), and
    /// those Railway's events named.
    Slice {
        /// The slice read this tick (none on a tick whose share of the budget does not add up
        /// to a request: see [`SweepPace::slot`]).
        slot: Option<u64>,
        /// Slices in one sweep.
        slices: u64,
        /// Named by Railway's events.
        looks: BTreeSet<AgentId>,
    },
}

impl ReadAnyway {
    pub(crate) fn contains(&self, id: &AgentId) -> bool {
        match self {
            Self::All => true,
            Self::Slice { slot, slices, looks } => {
                looks.contains(id) || *slot == Some(id_hash(id) % (*slices).max(1))
            }
        }
    }

    /// Named by Railway's events (read even while backing off).
    pub(crate) fn named(&self, id: &AgentId) -> bool {
        match self {
            Self::All => true,
            Self::Slice { looks, .. } => looks.contains(id),
        }
    }
}

/// How a pass observes its agents.
pub(crate) enum Mode {
    /// The walk over the fleet: checks every steady agent; a failed check is not acted on
    /// yet but noted as a suspect (unless the agent is backing off). The agents to read from
    /// Railway are put off until the walk is over, and read together in full batches.
    Walk(Suspects, PutOff),
    /// The reads the walk put off, with the checks it had for them: every agent given is
    /// read, confirming at most `confirmations` agents a batch left out.
    Reads {
        /// The checks to decide on.
        health: HashMap<AgentId, Checked>,
        /// Single reads allowed for agents a batch left out.
        confirmations: usize,
    },
    /// A look: checks and reads every agent named, and acts on what it finds.
    Look,
    /// Suspects, with their latest checks (the re-probes): every one still failing is read
    /// from Railway, from the suspicion bucket, confirming at most `confirmations` agents a
    /// batch left out.
    Suspects {
        /// The checks to decide on.
        health: HashMap<AgentId, Checked>,
        /// Single reads allowed for agents a batch left out.
        confirmations: usize,
    },
}

/// What every pass of a tick shares: what to read anyway, the agents rollouts hold, the
/// database's clock.
#[derive(Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub read_anyway: &'a ReadAnyway,
    pub held: &'a BTreeSet<AgentId>,
    pub now: DateTime<Utc>,
}

/// What the walk noted for the suspicion pass.
#[derive(Default)]
pub(crate) struct Suspects {
    /// Agents whose check failed and that are due for a read, each with whether it is not
    /// claimed (claimed ones are read first).
    pub ids: Vec<(bool, AgentId)>,
    /// Of those, idle or claimed agents not known down: the breaker counts them.
    pub new_failures: usize,
    /// When the first of them failed (the tick's own re-probe waits `reprobe_delay` from it).
    pub first_at: Option<Instant>,
    /// Every steady agent whose check failed this walk (backing off or not).
    pub failing: std::collections::HashSet<AgentId>,
    /// The prober's walk number, while the prober runs: the walk enlists each page's steady
    /// agents and decides on the prober's latest results instead of checking them.
    pub walk: Option<u64>,
}

impl Reconciler {
    /// After the walk: the suspects. Too many at once trips the breaker (one sample batch is
    /// read to tell our fault from the fleet's; nothing is demoted); otherwise they are read
    /// from Railway and decided, claimed agents first, as far as the suspicion bucket allows.
    /// While the prober runs, suspects are failures its re-probes confirmed; in a tick driven
    /// without it, the tick checks each again on a fresh connection `reprobe_delay` after it
    /// failed and reads those that fail again.
    pub(crate) async fn suspicion_pass(
        &self,
        mut suspects: Suspects,
        read_anyway: &ReadAnyway,
        held: &BTreeSet<AgentId>,
        now: DateTime<Utc>,
        lock: Option<&LeaderLock>,
        report: &mut TickReport,
    ) -> Result<Option<bool>, ReconcileError> {
        let config = &self.config;
        let store = self.provisioner.store();
        report.suspects = suspects.ids.len();
        report.new_failures = suspects.new_failures;
        let failing = std::mem::take(&mut suspects.failing);
        self.suspicion().retain(|id| failing.contains(id));
        let threshold = breaker_threshold(
            report.agents,
            config.breaker_min_failures,
            config.breaker_fraction,
        );
        let railway = self
            .provisioner
            .railway()
            .with_priority(railway_api::Priority::Suspicion);
        // Claimed agents first: a user is waiting on them.
        suspects.ids.sort_by_key(|(not_claimed, _)| *not_claimed);
        if suspects.new_failures > threshold {
            let sample: Vec<AgentId> = if railway.budget_available(railway_api::Priority::Suspicion) > 0 {
                suspects
                    .ids
                    .iter()
                    .take(SAMPLE)
                    .map(|(_, id)| id.clone())
                    .collect()
            } else {
                Vec::new()
            };
            let rows = timed(&mut report.phases.load_ms, store.tick_rows(&sample))
                .await
                .map_err(ReconcileError::load)?;
            let refs: Vec<&TickRow> = rows.iter().collect();
            let reading = read_status(&self.provisioner, &railway, &refs, 0);
            let read = timed(&mut report.phases.railway_ms, reading).await;
            report.read += refs.len();
            let running = read
                .by_agent
                .values()
                .filter(|o| {
                    matches!(
                        o,
                        Observation::Deployment {
                            status: DeploymentStatus::Success,
                            ..
                        }
                    )
                })
                .count();
            let read_count = read
                .by_agent
                .values()
                .filter(|o| **o != Observation::Unread)
                .count();
            let verdict = if sample.is_empty() {
                "no sample read: the suspicion reads' bucket is spent for this hour".to_string()
            } else if read_count == 0 {
                "the sample read failed too: Railway or our network".to_string()
            } else if running * 2 >= read_count {
                format!(
                    "{running} of {read_count} sampled run on Railway: the failures are likely ours (network, CPU)"
                )
            } else {
                format!(
                    "{} of {read_count} sampled are not running on Railway: the fleet's",
                    read_count - running
                )
            };
            let tripped = {
                let mut suspicion = self.suspicion();
                let since = suspicion.breaker.as_ref().map_or_else(Utc::now, |b| b.since);
                let tripped = suspicion.breaker.is_none();
                suspicion.breaker = Some(BreakerState {
                    since,
                    failures: suspects.new_failures,
                    threshold,
                    verdict: verdict.clone(),
                });
                report.breaker = suspicion.breaker.clone();
                tripped
            };
            if tripped {
                tracing::warn!(failures = suspects.new_failures, threshold, %verdict, "breaker tripped: per-agent reads and demotions stopped");
                let detail = serde_json::json!({
                    "failures": suspects.new_failures,
                    "threshold": threshold,
                    "fleet": report.agents,
                    "verdict": verdict,
                });
                if let Err(e) = store.append_pool_event("breaker_tripped", "pool", &detail).await {
                    report.error(ReconcileError::load(e));
                }
            }
            return Ok(Some(read.failed.is_none()));
        }
        let released = self.suspicion().breaker.take();
        if let Some(was) = released {
            tracing::info!(failures = suspects.new_failures, threshold, "breaker released");
            let detail = serde_json::json!({
                "failures": suspects.new_failures,
                "threshold": threshold,
                "since": was.since,
            });
            if let Err(e) = store.append_pool_event("breaker_released", "pool", &detail).await {
                report.error(ReconcileError::load(e));
            }
        }
        if suspects.ids.is_empty() {
            return Ok(Some(true));
        }
        // While the prober runs, its re-probes have confirmed these failures already.
        let probed = suspects.walk.is_some();
        if !probed && let Some(first) = suspects.first_at {
            let waiting = tokio::time::sleep(config.reprobe_delay.saturating_sub(first.elapsed()));
            timed(&mut report.phases.checks_ms, waiting).await;
        }
        let mut read_ok = true;
        let ids: Vec<AgentId> = std::mem::take(&mut suspects.ids)
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        for chunk in ids.chunks(PAGE) {
            // No more than the bucket holds: the tick never waits for the hour to roll over.
            let left = railway.budget_available(railway_api::Priority::Suspicion);
            let take = chunk
                .len()
                .min(left.saturating_mul(railway_api::STATUS_BATCH_SIZE));
            report.deferred += chunk.len() - take;
            if take == 0 {
                continue;
            }
            let confirmations = left
                .saturating_sub(take.div_ceil(railway_api::STATUS_BATCH_SIZE))
                .min(MAX_CONFIRMATIONS_PER_TICK);
            let mut rows = timed(&mut report.phases.load_ms, store.tick_rows(&chunk[..take]))
                .await
                .map_err(ReconcileError::load)?;
            rows.retain(checked_every_tick);
            rows.sort_by_key(|a| a.status != AgentStatus::Claimed);
            let refs: Vec<&TickRow> = rows.iter().collect();
            let health = if probed {
                self.prober
                    .results(&refs)
                    .into_iter()
                    .map(|(id, probe)| (id, probe.checked))
                    .collect()
            } else {
                self.checks_of_its_own(&self.fresh_agents, &refs, report, |r| &mut r.reprobes)
                    .await
            };
            let Some(ok) = self
                .observe_decide_apply(
                    &rows,
                    &Frame {
                        read_anyway,
                        held,
                        now,
                    },
                    lock,
                    report,
                    &mut Mode::Suspects {
                        health,
                        confirmations,
                    },
                )
                .await?
            else {
                return Ok(None);
            };
            read_ok &= ok;
        }
        Ok(Some(read_ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_maximum() {
        let mut s = Suspicion::default();
        let id = AgentId::random();
        let now = Instant::now();
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(600);
        let mut waits = Vec::new();
        for _ in 0..7 {
            s.still_down(&id, now, None, base, max);
            waits.push(s.down[&id].next_read - now);
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![30, 60, 120, 240, 480, 600, 600]);
        assert!(s.backing_off(&id, now));
        s.recovered(&id);
        assert!(!s.backing_off(&id, now));
    }

    #[test]
    fn an_agent_down_for_long_already_starts_at_the_step_its_time_down_reached() {
        let mut s = Suspicion::default();
        let (base, max) = (Duration::from_secs(30), Duration::from_secs(600));
        let now = Instant::now();
        let wait = |s: &Suspicion, id: &AgentId| (s.down[id].next_read - now).as_secs();
        let ids: Vec<AgentId> = (0..5).map(|_| AgentId::random()).collect();
        // Down for 10 s, 45 s, 5 min, a day; and a first confirmation (no time down known).
        s.still_down(&ids[0], now, Some(Duration::from_secs(10)), base, max);
        s.still_down(&ids[1], now, Some(Duration::from_secs(45)), base, max);
        s.still_down(&ids[2], now, Some(Duration::from_secs(300)), base, max);
        s.still_down(&ids[3], now, Some(Duration::from_secs(86_400)), base, max);
        s.still_down(&ids[4], now, None, base, max);
        let waits: Vec<u64> = ids.iter().map(|id| wait(&s, id)).collect();
        assert_eq!(waits, vec![30, 30, 240, 600, 30]);
        // Then each doubles from there, as any other.
        s.still_down(&ids[2], now, Some(Duration::from_secs(330)), base, max);
        assert_eq!(wait(&s, &ids[2]), 480);
    }

    #[test]
    fn the_threshold_is_twenty_or_one_percent() {
        assert_eq!(breaker_threshold(100, 20, 0.01), 20);
        assert_eq!(breaker_threshold(10_000, 20, 0.01), 100);
    }

    #[test]
    fn the_sweep_lengthens_with_the_fleet_to_stay_within_its_share_of_the_budget() {
        let (sweep, tick, hour) = (Duration::from_secs(600), Duration::from_secs(30), 10_000);
        // Up to 3,000 agents the interval rules: 20 slices of 10 min over 30 s.
        assert_eq!(sweep_slices(sweep, tick, 0, hour), 20);
        assert_eq!(sweep_slices(sweep, tick, 1_000, hour), 20);
        assert_eq!(sweep_slices(sweep, tick, 3_000, hour), 20);
        // Beyond, 3 requests a tick (4 % of 10,000 an hour, prorated to 30 s: 3.33): 150 agents.
        assert_eq!(sweep_slices(sweep, tick, 3_001, hour), 21);
        assert_eq!(sweep_slices(sweep, tick, 5_000, hour), 34);
        assert_eq!(sweep_slices(sweep, tick, 10_000, hour), 67);
        assert_eq!(sweep_slices(sweep, tick, 100_000, hour), 667);
        // The sweep's cost stays within its share: requests a tick × ticks an hour.
        for fleet in [1_000, 5_000, 10_000, 100_000] {
            let slices = sweep_slices(sweep, tick, fleet, hour) as usize;
            let per_tick = fleet.div_ceil(slices).div_ceil(railway_api::STATUS_BATCH_SIZE);
            assert!(
                per_tick * 120 <= 400,
                "{fleet} agents: {per_tick} requests a tick"
            );
        }
        // A replica with a quarter of the budget sweeps its agents more slowly (its share is
        // under one request a tick: one).
        assert_eq!(sweep_slices(sweep, tick, 2_500, hour / 4), 50);
        // A zero interval sweeps every tick while the budget allows it.
        assert_eq!(sweep_slices(Duration::ZERO, tick, 100, hour), 1);
        assert_eq!(sweep_slices(Duration::ZERO, tick, 1_000, hour), 7);
        assert_eq!(sweep_slices(sweep, Duration::ZERO, 1_000, hour), 1);
    }

    #[test]
    fn replicas_leasing_shares_of_the_budget_sweep_within_its_share_together() {
        let (sweep, tick, hour) = (Duration::from_secs(600), Duration::from_secs(30), 10_000);
        // 100,000 agents over 4 replicas: each walks 25,000 and leases 2,500 requests an hour.
        let pace = sweep_pace(sweep, tick, 25_000, hour / 4, hour);
        assert_eq!(pace.slices, 167, "3 batches of 50 agents a slice");
        let read: Vec<u64> = (0..120).filter_map(|n| pace.slot(n)).collect();
        // A slice every fourth tick: 30 an hour, 90 requests; 360 for the four, 3.6 % of the
        // budget (within the sweep's 4 %).
        assert_eq!(read.len(), 30);
        let per_slice = 25_000_usize
            .div_ceil(167)
            .div_ceil(railway_api::STATUS_BATCH_SIZE);
        assert!(
            4 * read.len() * per_slice <= 400,
            "{} requests",
            4 * read.len() * per_slice
        );
        // The slices come in order, none skipped and none twice: a sweep covers them all.
        assert_eq!(read, (0..30).collect::<Vec<u64>>());
        let sweep_ticks: Vec<u64> = (0..668).filter_map(|n| pace.slot(n)).collect();
        assert_eq!(sweep_ticks, (0..167).collect::<Vec<u64>>());
        // Alone (the whole budget), every tick reads a slice.
        let alone = sweep_pace(sweep, tick, 25_000, hour, hour);
        assert!((0..120).all(|n| alone.slot(n) == Some(n % alone.slices)));
    }
}
