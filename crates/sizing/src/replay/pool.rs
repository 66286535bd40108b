//! The replay's simulated clock and pool: events in time order, the pool's counts, the claims'
//! outcomes. Time is milliseconds since the replay's start, so ordering is exact.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{PolicyRow, RailwayModel, ReplayConfig};
use crate::forecast::{ClaimHistory, RECENT_MINUTES};
use crate::policy::{SizingTarget, TargetReason, idle_surplus, replenish_deficit};
use crate::rng::SplitMix64;
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
    SessionEnd,
    CreateSlot,
    Claim(usize),
    Timeout(usize),
    Tick,
}

pub(super) struct Simulation {
    start: DateTime<Utc>,
    end: i64,
    claims: Vec<i64>,
    create_interval: i64,
    time_to_ready: i64,
    spread: i64,
    jitter: Option<SplitMix64>,
    concurrency: u32,
    wait_limit: i64,
    tick: i64,
    session: i64,
    events: BinaryHeap<Reverse<(i64, Event, u64)>>,
    sequence: u64,
    now: i64,
    arrived: usize,
    idle: u32,
    deploying: u32,
    queued: u32,
    claimed: u32,
    waiting: VecDeque<(usize, i64)>,
    next_slot: i64,
    slot_pending: bool,
    idle_agent_ms: f64,
    accounted_until: i64,
    waits: Vec<i64>,
    served_at_once: u32,
    served_within_60s: u32,
    served_late: u32,
    refused: u32,
    created: u32,
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
            concurrency: model.create_concurrency,
            wait_limit: millis(config.claim_wait_limit),
            // A zero tick would never let the clock move on.
            tick: millis(config.tick).max(1_000),
            session: millis(config.session_length),
            events: BinaryHeap::new(),
            sequence: 0,
            now: 0,
            arrived: 0,
            idle: 0,
            deploying: 0,
            queued: 0,
            claimed: 0,
            waiting: VecDeque::new(),
            next_slot: 0,
            slot_pending: false,
            idle_agent_ms: 0.0,
            accounted_until: 0,
            waits: Vec::new(),
            served_at_once: 0,
            served_within_60s: 0,
            served_late: 0,
            refused: 0,
            created: 0,
        }
    }

    /// Runs to the end of the window and until every claim is served or refused. `size` is
    /// the policy: (simulation, now, live non-warm agents, creation queue) → target.
    pub(super) fn run(&mut self, size: impl Fn(&Simulation, DateTime<Utc>, u32, u32) -> SizingTarget) {
        if self.claims.is_empty() {
            return;
        }
        // Start warm, as a pool that has been running would be.
        self.idle = size(self, self.start, 0, 0).idle;
        self.schedule(0, Event::Tick);
        for index in 0..self.claims.len() {
            self.schedule(self.claims[index], Event::Claim(index));
        }
        while let Some(Reverse((at, event, _))) = self.events.pop() {
            if at >= self.end && self.arrived == self.claims.len() && self.waiting.is_empty() {
                break;
            }
            self.account_idle(at);
            self.now = at;
            match event {
                Event::Claim(index) => {
                    self.arrived = index + 1;
                    if self.idle > 0 {
                        self.idle -= 1;
                        self.serve(0);
                    } else {
                        self.waiting.push_back((index, at));
                        self.schedule(at.saturating_add(self.wait_limit), Event::Timeout(index));
                    }
                    self.evaluate(&size);
                }
                Event::Ready => {
                    self.deploying = self.deploying.saturating_sub(1);
                    match self.waiting.pop_front() {
                        Some((_, arrival)) => self.serve(at - arrival),
                        None => self.idle += 1,
                    }
                }
                Event::Timeout(index) => {
                    // Claims wait in arrival order with the same limit, so a claim still
                    // waiting when its time runs out is first in line.
                    if self.waiting.front().is_some_and(|(first, _)| *first == index) {
                        self.waiting.pop_front();
                        self.refused += 1;
                        self.waits.push(self.wait_limit);
                    }
                }
                Event::SessionEnd => self.claimed = self.claimed.saturating_sub(1),
                Event::CreateSlot => self.start_creation(),
                Event::Tick => {
                    self.evaluate(&size);
                    if at + self.tick < self.end {
                        self.schedule(at + self.tick, Event::Tick);
                    }
                }
            }
        }
        self.account_idle(self.end);
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
            agents_created: self.created,
        }
    }

    fn evaluate(&mut self, size: &impl Fn(&Simulation, DateTime<Utc>, u32, u32) -> SizingTarget) {
        let now = self.start + TimeDelta::milliseconds(self.now);
        let target = size(self, now, self.claimed, self.queued);
        let warm = self.idle + self.deploying + self.queued;
        // Retiring idle agents because of POOL_MAX_TOTAL would free nothing a claim could use.
        if !matches!(target.reason, TargetReason::CappedByMaxTotal { .. }) {
            self.idle -= idle_surplus(target.idle, warm, self.idle);
        }
        let free = self.concurrency.saturating_sub(self.deploying + self.queued);
        let start = replenish_deficit(target.idle, warm).min(free);
        self.queued += start;
        self.created += start;
        if self.queued > 0 && !self.slot_pending {
            self.slot_pending = true;
            self.schedule(self.now.max(self.next_slot), Event::CreateSlot);
        }
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
            _ => self.served_late += 1,
        }
        self.schedule(self.now.saturating_add(self.session), Event::SessionEnd);
    }

    fn schedule(&mut self, at: i64, event: Event) {
        self.sequence += 1;
        self.events.push(Reverse((at, event, self.sequence)));
    }

    fn account_idle(&mut self, until: i64) {
        let until = until.min(self.end);
        if until > self.accounted_until {
            self.idle_agent_ms += f64::from(self.idle) * (until - self.accounted_until) as f64;
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

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
