//! The replay's simulated clock and pool: events in time order, the pool's counts, the claims'
//! outcomes. Time is milliseconds since the replay's start, so ordering is exact.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{PolicyRow, RailwayModel, ReplayConfig};
use crate::forecast::{ClaimHistory, RECENT_MINUTES};
use crate::rng::SplitMix64;
use crate::tiers::TierCounts;
use crate::trace::ClaimTrace;

const MINUTE: i64 = 60_000;
const DAY_SECS: i64 = 24 * 60 * 60;
const WEEK: i64 = 7 * 24 * 60 * MINUTE;
const LATE: i64 = 60_000;

/// What happens at an instant. At equal instants the order below holds: an agent that becomes
/// ready serves a claim before that claim's wait runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Ready,
    Woken,
    SessionEnd,
    CreateSlot,
    Claim(usize),
    Timeout(usize),
    Tick,
}

/// What the policy asks for at one evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Decision {
    /// Agents to create (capped by the creation concurrency).
    pub create: u32,
    /// Parked agents to wake.
    pub wake: u32,
    /// Idle agents to park.
    pub park: u32,
    /// Idle agents to delete.
    pub drain: u32,
    /// Parked agents to delete.
    pub delete_parked: u32,
}

/// The pool as the policy sees it at one evaluation.
#[derive(Debug, Clone, Copy)]
pub(super) struct View {
    /// The simulated now.
    pub now: DateTime<Utc>,
    /// The counts by tier.
    pub tiers: TierCounts,
    /// Creations waiting for a Railway create slot.
    pub creation_queue: u32,
    /// Claimed agents (live, not warm).
    pub claimed: u32,
    /// Claims in the last minute.
    pub claims_last_minute: u32,
}

pub(super) struct Simulation {
    start: DateTime<Utc>,
    end: i64,
    claims: Vec<i64>,
    create_interval: i64,
    time_to_ready: i64,
    spread: i64,
    jitter: Option<SplitMix64>,
    wake_rng: SplitMix64,
    wake_median: f64,
    wake_sigma: f64,
    park_after: i64,
    concurrency: u32,
    wait_limit: i64,
    tick: i64,
    session: i64,
    events: BinaryHeap<Reverse<(i64, Event, u64)>>,
    sequence: u64,
    now: i64,
    arrived: usize,
    /// Idle agents, by when they became idle (oldest first).
    idle: VecDeque<i64>,
    deploying: u32,
    waking: u32,
    parked: u32,
    queued: u32,
    claimed: u32,
    waiting: VecDeque<(usize, i64)>,
    next_slot: i64,
    slot_pending: bool,
    idle_agent_ms: f64,
    warm_agent_ms: f64,
    parked_agent_ms: f64,
    accounted_until: i64,
    waits: Vec<i64>,
    served_at_once: u32,
    served_within_60s: u32,
    served_late: u32,
    refused: u32,
    /// Arrival times of the claims that waited more than 60 s or were refused.
    late: Vec<i64>,
    created: u32,
    created_on_day: Vec<u32>,
    wakes: u32,
    parks: u32,
    drains: u32,
    parked_deleted: u32,
}

impl Simulation {
    pub(super) fn new(trace: &ClaimTrace, model: &RailwayModel, config: &ReplayConfig) -> Simulation {
        let (start, end) = window(trace);
        let claims = trace
            .claims()
            .iter()
            .map(|c| (*c - start).num_milliseconds())
            .collect();
        Simulation {
            start,
            end: (end - start).num_milliseconds(),
            claims,
            create_interval: millis(model.create_interval),
            time_to_ready: millis(model.time_to_ready),
            spread: model.jitter.map_or(0, |j| millis(j.spread)),
            jitter: model.jitter.map(|j| SplitMix64::new(j.seed)),
            wake_rng: SplitMix64::new(model.wake.seed),
            wake_median: model.wake.median.as_secs_f64() * 1000.0,
            wake_sigma: model.wake.sigma(),
            park_after: millis(config.park_after),
            concurrency: model.create_concurrency,
            wait_limit: millis(config.claim_wait_limit),
            // A zero tick would never let the clock move on.
            tick: millis(config.tick).max(1_000),
            session: millis(config.session_length),
            events: BinaryHeap::new(),
            sequence: 0,
            now: 0,
            arrived: 0,
            idle: VecDeque::new(),
            deploying: 0,
            waking: 0,
            parked: 0,
            queued: 0,
            claimed: 0,
            waiting: VecDeque::new(),
            next_slot: 0,
            slot_pending: false,
            idle_agent_ms: 0.0,
            warm_agent_ms: 0.0,
            parked_agent_ms: 0.0,
            accounted_until: 0,
            waits: Vec::new(),
            served_at_once: 0,
            served_within_60s: 0,
            served_late: 0,
            refused: 0,
            late: Vec::new(),
            created: 0,
            created_on_day: Vec::new(),
            wakes: 0,
            parks: 0,
            drains: 0,
            parked_deleted: 0,
        }
    }

    /// Runs to the end of the window and until every claim is served or refused. `start` is
    /// the stock a pool that has been running would hold at the first instant (warm, parked);
    /// `decide` is the policy.
    pub(super) fn run(
        &mut self,
        start: impl Fn(&Simulation, &View) -> (u32, u32),
        decide: impl Fn(&Simulation, &View) -> Decision,
    ) {
        if self.claims.is_empty() {
            return;
        }
        let (warm, parked) = start(self, &self.view());
        self.idle = std::iter::repeat_n(-self.park_after, warm as usize).collect();
        self.parked = parked;
        self.schedule(0, Event::Tick);
        for index in 0..self.claims.len() {
            self.schedule(self.claims[index], Event::Claim(index));
        }
        while let Some(Reverse((at, event, _))) = self.events.pop() {
            if at >= self.end && self.arrived == self.claims.len() && self.waiting.is_empty() {
                break;
            }
            self.account(at);
            self.now = at;
            match event {
                Event::Claim(index) => {
                    self.arrived = index + 1;
                    if self.idle.pop_front().is_some() {
                        self.serve(0);
                    } else {
                        self.waiting.push_back((index, at));
                        self.schedule(at.saturating_add(self.wait_limit), Event::Timeout(index));
                    }
                    self.evaluate(&decide);
                }
                Event::Ready | Event::Woken => {
                    if event == Event::Ready {
                        self.deploying = self.deploying.saturating_sub(1);
                    } else {
                        self.waking = self.waking.saturating_sub(1);
                    }
                    match self.waiting.pop_front() {
                        Some((_, arrival)) => self.serve(at - arrival),
                        None => self.idle.push_back(at),
                    }
                }
                Event::Timeout(index) => {
                    // Claims wait in arrival order with the same limit, so a claim still
                    // waiting when its time runs out is first in line.
                    if self.waiting.front().is_some_and(|(first, _)| *first == index) {
                        self.waiting.pop_front();
                        self.refused += 1;
                        self.late.push(self.claims[index]);
                        self.waits.push(self.wait_limit);
                    }
                }
                Event::SessionEnd => self.claimed = self.claimed.saturating_sub(1),
                Event::CreateSlot => self.start_creation(),
                Event::Tick => {
                    self.evaluate(&decide);
                    if at + self.tick < self.end {
                        self.schedule(at + self.tick, Event::Tick);
                    }
                }
            }
        }
        self.account(self.end);
    }

    /// The claim history as the database would return it at the simulated now.
    pub(super) fn history(&self) -> ClaimHistory {
        claim_history(&self.claims, self.arrived, self.now)
    }

    pub(super) fn row(&self, policy: String) -> PolicyRow {
        let mut waits = self.waits.clone();
        waits.sort_unstable();
        let p99 = match waits.len() {
            0 => 0,
            n => waits[(n * 99).div_ceil(100) - 1],
        };
        let claims = u32::try_from(self.claims.len()).unwrap_or(u32::MAX);
        let late = self.refused + self.served_late;
        PolicyRow {
            policy,
            claims,
            served_at_once: self.served_at_once,
            served_within_60s: self.served_within_60s,
            refused: self.refused,
            p99_wait_secs: p99 as f64 / 1000.0,
            late_share: if claims == 0 {
                0.0
            } else {
                f64::from(late) / f64::from(claims)
            },
            idle_agent_hours: self.idle_agent_ms / 3_600_000.0,
            warm_agent_hours: self.warm_agent_ms / 3_600_000.0,
            parked_agent_hours: self.parked_agent_ms / 3_600_000.0,
            agents_created: self.created,
            created_per_day: self.created_per_day(),
            wakes: self.wakes,
            parks: self.parks,
            drains: self.drains,
            parked_deleted: self.parked_deleted,
            late_claims: self
                .late
                .iter()
                .map(|&at| self.start + TimeDelta::milliseconds(at))
                .collect(),
        }
    }

    /// The pool as the policy sees it now.
    fn view(&self) -> View {
        let parkable_since = self.now - self.park_after;
        let idle_parkable = self
            .idle
            .iter()
            .take_while(|&&since| since <= parkable_since)
            .count();
        let from = self.claims[..self.arrived].partition_point(|&c| c <= self.now - MINUTE);
        View {
            now: self.start + TimeDelta::milliseconds(self.now),
            tiers: TierCounts {
                idle: count(self.idle.len()),
                idle_parkable: count(idle_parkable),
                in_flight: self.deploying + self.queued,
                waking: self.waking,
                parking: 0,
                parked: self.parked,
                parked_over_age: 0,
                waiting: count(self.waiting.len()),
            },
            creation_queue: self.queued,
            claimed: self.claimed,
            claims_last_minute: count(self.arrived - from),
        }
    }

    fn evaluate(&mut self, decide: &impl Fn(&Simulation, &View) -> Decision) {
        let view = self.view();
        let decision = decide(self, &view);
        let wake = decision.wake.min(self.parked);
        self.parked -= wake;
        self.wakes += wake;
        for _ in 0..wake {
            self.waking += 1;
            let woken = self.now.saturating_add(self.draw_wake_time());
            self.schedule(woken, Event::Woken);
        }
        // Parking and draining take the agents idle longest (those past parkAfterMs first).
        let park = decision.park.min(count(self.idle.len()));
        for _ in 0..park {
            self.idle.pop_front();
        }
        self.parked += park;
        self.parks += park;
        let drain = decision.drain.min(count(self.idle.len()));
        for _ in 0..drain {
            self.idle.pop_front();
        }
        self.drains += drain;
        let delete = decision.delete_parked.min(self.parked);
        self.parked -= delete;
        self.parked_deleted += delete;
        let free = self.concurrency.saturating_sub(self.deploying + self.queued);
        let start = decision.create.min(free);
        self.queued += start;
        self.created += start;
        let day = usize::try_from(self.now / (DAY_SECS * 1000)).unwrap_or(0);
        if self.created_on_day.len() <= day {
            self.created_on_day.resize(day + 1, 0);
        }
        self.created_on_day[day] += start;
        if self.queued > 0 && !self.slot_pending {
            self.slot_pending = true;
            self.schedule(self.now.max(self.next_slot), Event::CreateSlot);
        }
    }

    /// Creations started per day of the window (days past its end folded into the last).
    fn created_per_day(&self) -> Vec<u32> {
        let days = usize::try_from(self.end / (DAY_SECS * 1000)).unwrap_or(1).max(1);
        let mut per_day = vec![0; days];
        for (day, &n) in self.created_on_day.iter().enumerate() {
            per_day[day.min(days - 1)] += n;
        }
        per_day
    }

    /// A wake's duration: log-normal with the model's median and 95th percentile.
    fn draw_wake_time(&mut self) -> i64 {
        // Box–Muller on two uniform draws; 1 − u keeps the logarithm finite.
        let u1 = 1.0 - self.wake_rng.unit();
        let u2 = self.wake_rng.unit();
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (self.wake_median * (self.wake_sigma * normal).exp()).round() as i64
    }

    /// Railway takes the next queued creation; the one after it waits for the next slot.
    fn start_creation(&mut self) {
        self.slot_pending = false;
        if self.queued == 0 {
            return;
        }
        self.queued -= 1;
        self.deploying += 1;
        let ready = self.now.saturating_add(self.draw_time_to_ready());
        self.schedule(ready, Event::Ready);
        self.next_slot = self.now.saturating_add(self.create_interval);
        if self.queued > 0 {
            self.slot_pending = true;
            self.schedule(self.next_slot, Event::CreateSlot);
        }
    }

    fn draw_time_to_ready(&mut self) -> i64 {
        match &mut self.jitter {
            Some(rng) => {
                let offset = rng.below(u64::try_from(2 * self.spread + 1).unwrap_or(1));
                (self.time_to_ready - self.spread + offset as i64).max(0)
            }
            None => self.time_to_ready,
        }
    }

    fn serve(&mut self, wait: i64) {
        self.claimed += 1;
        self.waits.push(wait);
        match wait {
            0 => {
                self.served_at_once += 1;
                self.served_within_60s += 1;
            }
            ..=LATE => self.served_within_60s += 1,
            _ => {
                self.served_late += 1;
                self.late.push(self.now - wait);
            }
        }
        self.schedule(self.now.saturating_add(self.session), Event::SessionEnd);
    }

    fn schedule(&mut self, at: i64, event: Event) {
        self.sequence += 1;
        self.events.push(Reverse((at, event, self.sequence)));
    }

    /// Agent-time up to `until`: idle (ready), warm (idle, booting after a create slot, or
    /// waking: every deployment that runs unclaimed) and parked.
    fn account(&mut self, until: i64) {
        let until = until.min(self.end);
        if until > self.accounted_until {
            let span = (until - self.accounted_until) as f64;
            let idle = self.idle.len() as f64;
            self.idle_agent_ms += idle * span;
            self.warm_agent_ms += (idle + f64::from(self.deploying + self.waking)) * span;
            self.parked_agent_ms += f64::from(self.parked) * span;
            self.accounted_until = until;
        }
    }
}

/// The claim history at `now` (milliseconds since the start) when the first `arrived` claims
/// have been replayed: per-minute counts of those claims over the last [`RECENT_MINUTES`]
/// (fewer right after the start, where the trace has no history), and last week's rate for
/// the coming hour once a week has passed.
pub(super) fn claim_history(claims: &[i64], arrived: usize, now: i64) -> ClaimHistory {
    let minutes = ((now + MINUTE - 1) / MINUTE).clamp(1, RECENT_MINUTES as i64);
    let mut recent = vec![0u32; minutes as usize];
    let replayed = &claims[..arrived.min(claims.len())];
    let first = replayed.partition_point(|&c| c <= now - minutes * MINUTE);
    for &claim in &replayed[first..] {
        let age_minutes = ((now - claim) / MINUTE).clamp(0, minutes - 1);
        recent[(minutes - 1 - age_minutes) as usize] += 1;
    }
    let week_ago = now - WEEK;
    let last_week_same_hour = (week_ago >= 0).then(|| {
        let from = claims.partition_point(|&c| c < week_ago);
        let to = claims.partition_point(|&c| c < week_ago + 60 * MINUTE);
        (to - from) as f64 / 60.0
    });
    ClaimHistory {
        recent,
        last_week_same_hour,
    }
}

/// Whole UTC days around the trace: midnight before the first claim to midnight after the last.
fn window(trace: &ClaimTrace) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = |t: DateTime<Utc>| {
        let secs = t.timestamp();
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs - secs.rem_euclid(DAY_SECS))
    };
    match (trace.claims().first(), trace.claims().last()) {
        (Some(first), Some(last)) => (midnight(*first), midnight(*last) + TimeDelta::days(1)),
        _ => (DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::UNIX_EPOCH),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
