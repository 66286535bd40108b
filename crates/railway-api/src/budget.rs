//! The one request budget every Railway call goes through.
//!
//! Railway counts requests per token per second and per hour and answers 429 past either. A
//! fleet that runs into a 429 storm loses its claim path along with everything else, so the
//! client keeps itself under the limits instead of discovering them:
//!
//! - sliding windows (not token buckets): no one-second and no one-hour window ever holds more
//!   than the configured number of requests, measured on our side with a small margin;
//! - an in-flight cap;
//! - after any 429 (or `X-RateLimit-Remaining: 0`), nothing at all is sent until the pause ends;
//! - priorities: claim-path and teardown calls go before suspicion reads, which go before
//!   status reads, which go before replenishment; lower priorities may also use only a share
//!   of the hourly budget, so the last requests of an hour are kept for claims and teardowns;
//! - a bucket of their own for suspicion reads (agents that failed their health checks):
//!   within the hourly budget, no hour holds more of them than `suspicion_share` of it, so a
//!   fleet that fails at once cannot spend the budget on reads, and the reader can ask how
//!   many it may still send ([`Budget::available`]) and choose whom to read first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::BudgetConfig;

/// Who is asking, in the order they are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Claims and teardowns: a user is waiting, or money is being spent.
    Critical = 0,
    /// Reads of agents that failed their health checks (suspects): a bucket of their own.
    Suspicion = 1,
    /// Status reads of the reconcile tick.
    Status = 2,
    /// Creating new agents.
    Replenish = 3,
}

impl Priority {
    const COUNT: usize = 4;

    fn index(self) -> usize {
        self as usize
    }
}

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
struct State {
    last_second: VecDeque<Instant>,
    last_hour: VecDeque<Instant>,
    /// The suspicion bucket's requests in the last hour.
    suspicion_hour: VecDeque<Instant>,
    paused_until: Option<Instant>,
    waiting: [usize; Priority::COUNT],
    in_flight: usize,
    server_remaining: Option<u64>,
    sent_total: u64,
    rate_limited_total: u64,
}

/// A snapshot of the budget, for metrics and the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSnapshot {
    /// Requests sent in the last hour.
    pub used_last_hour: usize,
    /// Of those, suspicion reads (their own bucket).
    pub suspicion_last_hour: usize,
    /// The hourly limit (this process's lease when several share the budget).
    pub requests_per_hour: usize,
    /// Requests in flight.
    pub in_flight: usize,
    /// Time left in a 429 pause, if any.
    pub paused_for: Option<Duration>,
    /// Railway's own `X-RateLimit-Remaining`, last seen.
    pub server_remaining: Option<u64>,
    /// Requests sent since start.
    pub sent_total: u64,
    /// 429 answers since start.
    pub rate_limited_total: u64,
}

enum Decision {
    Go,
    WaitUntil(Instant),
    WaitForChange,
}

/// The shared budget. Clone the `Arc` to share it between tasks.
#[derive(Debug)]
pub struct Budget {
    config: BudgetConfig,
    /// The slice of the hourly budget this process leased among several (0: none, the whole
    /// configured budget is its own).
    leased_per_hour: std::sync::atomic::AtomicUsize,
    state: Mutex<State>,
    changed: Notify,
}

/// Permission to send one request; dropping it frees its in-flight slot.
#[derive(Debug)]
pub struct BudgetPermit {
    budget: Arc<Budget>,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.lock().in_flight -= 1;
        self.budget.changed.notify_waiters();
    }
}

/// Keeps a waiter counted while it waits, also when its future is dropped mid-wait.
struct Waiting<'a> {
    budget: &'a Budget,
    priority: Priority,
    counted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.budget.lock().waiting[self.priority.index()] -= 1;
            self.budget.changed.notify_waiters();
        }
    }
}

impl Budget {
    /// A budget with these limits.
    pub fn new(config: BudgetConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            leased_per_hour: std::sync::atomic::AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under panic (plain counters), so a poisoned lock is safe.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request of this priority may be sent, and counts it as sent.
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> BudgetPermit {
        self.lock().waiting[priority.index()] += 1;
        let mut waiting = Waiting {
            budget: self,
            priority,
            counted: true,
        };
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let decision = {
                let mut state = self.lock();
                let now = Instant::now();
                let decision = self.decide(&mut state, priority, now);
                if let Decision::Go = decision {
                    state.last_second.push_back(now);
                    state.last_hour.push_back(now);
                    if priority == Priority::Suspicion {
                        state.suspicion_hour.push_back(now);
                    }
                    state.in_flight += 1;
                    state.sent_total += 1;
                    state.waiting[priority.index()] -= 1;
                    waiting.counted = false;
                }
                decision
            };
            match decision {
                Decision::Go => {
                    self.changed.notify_waiters();
                    return BudgetPermit { budget: self.clone() };
                }
                Decision::WaitUntil(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut changed => {}
                    }
                }
                Decision::WaitForChange => changed.await,
            }
        }
    }

    /// Drops what fell out of the windows.
    fn expire(&self, state: &mut State, now: Instant) {
        let second = SECOND + self.config.window_margin;
        let hour = HOUR + self.config.window_margin;
        while state.last_second.front().is_some_and(|t| *t + second <= now) {
            state.last_second.pop_front();
        }
        for window in [&mut state.last_hour, &mut state.suspicion_hour] {
            while window.front().is_some_and(|t| *t + hour <= now) {
                window.pop_front();
            }
        }
    }

    fn decide(&self, state: &mut State, priority: Priority, now: Instant) -> Decision {
        let second = SECOND + self.config.window_margin;
        let hour = HOUR + self.config.window_margin;
        self.expire(state, now);
        if let Some(until) = state.paused_until {
            if until > now {
                return Decision::WaitUntil(until);
            }
            state.paused_until = None;
        }
        if state.waiting[..priority.index()].iter().any(|n| *n > 0) {
            return Decision::WaitForChange;
        }
        if state.in_flight >= self.config.max_in_flight.max(1) {
            return Decision::WaitForChange;
        }
        let per_second = self.config.requests_per_second.max(1);
        if state.last_second.len() >= per_second {
            let oldest = state.last_second[state.last_second.len() - per_second];
            return Decision::WaitUntil(oldest + second);
        }
        let hourly = self.hourly_limit(priority);
        if state.last_hour.len() >= hourly {
            let oldest = state.last_hour[state.last_hour.len() - hourly];
            return Decision::WaitUntil(oldest + hour);
        }
        if priority == Priority::Suspicion {
            let bucket = self.suspicion_bucket();
            if state.suspicion_hour.len() >= bucket {
                let oldest = state.suspicion_hour[state.suspicion_hour.len() - bucket];
                return Decision::WaitUntil(oldest + hour);
            }
        }
        Decision::Go
    }

    /// Limits this process to `requests` an hour (its lease of a budget shared by several;
    /// `None`: the whole configured budget). Requests already sent in the last hour count.
    pub fn lease_hourly(&self, requests: Option<usize>) {
        let leased = requests.map_or(0, |r| r.clamp(1, self.config.requests_per_hour.max(1)));
        self.leased_per_hour
            .store(leased, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Requests an hour this process may send: its lease, or the configured budget.
    fn per_hour(&self) -> usize {
        match self.leased_per_hour.load(std::sync::atomic::Ordering::SeqCst) {
            0 => self.config.requests_per_hour,
            leased => leased.min(self.config.requests_per_hour),
        }
    }

    /// The hourly budget as configured (what several processes share).
    pub fn configured_per_hour(&self) -> usize {
        self.config.requests_per_hour
    }

    fn hourly_limit(&self, priority: Priority) -> usize {
        let share = match priority {
            Priority::Critical => 1.0,
            // Within the status reads' share; its own bucket is counted apart.
            Priority::Suspicion | Priority::Status => self.config.status_share,
            Priority::Replenish => self.config.replenish_share,
        };
        self.share_of_hour(share)
    }

    fn share_of_hour(&self, share: f64) -> usize {
        // This process's lease when several share the budget.
        let total = self.per_hour().max(1);
        ((total as f64 * share.clamp(0.0, 1.0)) as usize).max(1)
    }

    /// The suspicion bucket: requests of [`Priority::Suspicion`] in any hour.
    fn suspicion_bucket(&self) -> usize {
        self.share_of_hour(self.config.suspicion_share)
    }

    /// Requests of this priority that may still be sent in the current hour without waiting
    /// for the hourly windows (the per-second pace and the in-flight cap aside): what is left
    /// of its share of the hourly budget and, for suspicion reads, of their own bucket. Zero
    /// during a 429 pause.
    pub fn available(&self, priority: Priority) -> usize {
        let mut state = self.lock();
        let now = Instant::now();
        self.expire(&mut state, now);
        if state.paused_until.is_some_and(|until| until > now) {
            return 0;
        }
        let left = self.hourly_limit(priority).saturating_sub(state.last_hour.len());
        match priority {
            Priority::Suspicion => {
                left.min(self.suspicion_bucket().saturating_sub(state.suspicion_hour.len()))
            }
            _ => left,
        }
    }

    /// Stops all sending for `retry_after` (after a 429).
    pub fn pause(&self, retry_after: Duration) {
        let mut state = self.lock();
        let until = Instant::now() + retry_after;
        state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
        state.rate_limited_total += 1;
        drop(state);
        tracing::warn!(?retry_after, "Railway rate limit: pausing all requests");
        self.changed.notify_waiters();
    }

    /// Records Railway's `X-RateLimit-Remaining`; at zero, pauses until `reset_in`. Railway's
    /// count is the token's truth (it sees every user of the token, which our own count does
    /// not), so a zero pauses whatever our count says; but its window is an hour, so no pause
    /// is longer than an hour, whatever `X-RateLimit-Reset` says.
    pub fn observe_remaining(&self, remaining: u64, reset_in: Option<Duration>) {
        let mut state = self.lock();
        state.server_remaining = Some(remaining);
        if remaining == 0 {
            let until = Instant::now() + reset_in.unwrap_or(SECOND).min(HOUR);
            state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
        }
    }

    /// Current numbers.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let mut state = self.lock();
        let now = Instant::now();
        self.expire(&mut state, now);
        BudgetSnapshot {
            used_last_hour: state.last_hour.len(),
            suspicion_last_hour: state.suspicion_hour.len(),
            requests_per_hour: self.per_hour(),
            in_flight: state.in_flight,
            paused_for: state.paused_until.and_then(|u| u.checked_duration_since(now)),
            server_remaining: state.server_remaining,
            sent_total: state.sent_total,
            rate_limited_total: state.rate_limited_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_second: usize, per_hour: usize) -> Arc<Budget> {
        Budget::new(BudgetConfig {
            requests_per_second: per_second,
            requests_per_hour: per_hour,
            max_in_flight: 1000,
            window_margin: Duration::ZERO,
            status_share: 0.5,
            replenish_share: 0.25,
            suspicion_share: 0.25,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn no_one_second_window_holds_more_than_the_limit() {
        let budget = budget(10, 10_000);
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..35 {
            drop(budget.acquire(Priority::Status).await);
            sent.push(Instant::now() - start);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().filter(|u| **u < *t + SECOND).count();
            assert!(in_window <= 10, "{in_window} requests within 1 s of {t:?}");
        }
        assert!(sent[34] >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_request_until_it_ends() {
        let budget = budget(100, 10_000);
        budget.pause(Duration::from_secs(2));
        let start = Instant::now();
        drop(budget.acquire(Priority::Critical).await);
        assert!(Instant::now() - start >= Duration::from_secs(2));
        assert_eq!(budget.snapshot().rate_limited_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn railway_saying_none_remain_pauses_until_its_reset_and_never_beyond_an_hour() {
        let budget = budget(100, 10_000);
        budget.observe_remaining(0, Some(Duration::from_secs(90)));
        assert_eq!(budget.snapshot().paused_for, Some(Duration::from_secs(90)));
        budget.observe_remaining(0, Some(Duration::from_secs(10 * 3600)));
        assert_eq!(budget.snapshot().paused_for, Some(HOUR));
    }

    #[tokio::test(start_paused = true)]
    async fn lower_priorities_keep_off_the_last_of_the_hourly_budget() {
        let budget = budget(1000, 8);
        for _ in 0..2 {
            drop(budget.acquire(Priority::Replenish).await);
        }
        // Replenishment may use 25% of 8 = 2: the next one waits for the hour to roll over.
        let replenish =
            tokio::time::timeout(Duration::from_secs(60), budget.acquire(Priority::Replenish)).await;
        assert!(replenish.is_err());
        for _ in 0..2 {
            drop(budget.acquire(Priority::Status).await);
        }
        assert!(
            tokio::time::timeout(Duration::from_secs(60), budget.acquire(Priority::Status))
                .await
                .is_err()
        );
        for _ in 0..4 {
            drop(budget.acquire(Priority::Critical).await);
        }
        assert_eq!(budget.snapshot().used_last_hour, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn suspicion_reads_draw_on_a_bucket_of_their_own() {
        // An hour of 8: the suspicion bucket holds 25% = 2, within the status reads' 50% = 4.
        let budget = budget(1000, 8);
        assert_eq!(budget.available(Priority::Suspicion), 2);
        for _ in 0..2 {
            drop(budget.acquire(Priority::Suspicion).await);
        }
        assert_eq!(budget.available(Priority::Suspicion), 0);
        assert!(
            tokio::time::timeout(Duration::from_secs(60), budget.acquire(Priority::Suspicion))
                .await
                .is_err(),
            "the bucket is empty until its oldest request is an hour old"
        );
        // Status reads still have their share (4, of which the suspicion reads took 2).
        assert_eq!(budget.available(Priority::Status), 2);
        for _ in 0..2 {
            drop(budget.acquire(Priority::Status).await);
        }
        assert_eq!(budget.available(Priority::Status), 0);
        // Status reads that used the whole share leave suspicion reads nothing either: the
        // bucket is within the budget, not on top of it.
        let budget = self::budget(1000, 8);
        for _ in 0..4 {
            drop(budget.acquire(Priority::Status).await);
        }
        assert_eq!(budget.available(Priority::Suspicion), 0);
        // An hour later the bucket is whole again.
        tokio::time::advance(HOUR + Duration::from_secs(1)).await;
        assert_eq!(budget.available(Priority::Suspicion), 2);
        budget.pause(Duration::from_secs(5));
        assert_eq!(budget.available(Priority::Suspicion), 0, "nothing during a pause");
    }

    #[tokio::test(start_paused = true)]
    async fn critical_requests_go_before_suspicion_reads_before_status_reads() {
        let budget = budget(1, 10_000);
        drop(budget.acquire(Priority::Status).await);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, p) in [
            Priority::Replenish,
            Priority::Status,
            Priority::Suspicion,
            Priority::Critical,
        ]
        .into_iter()
        .enumerate()
        {
            let budget = budget.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                // Stagger arrival so the lowest priority arrives first.
                tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
                drop(budget.acquire(p).await);
                order.lock().unwrap().push(p);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec![
                Priority::Critical,
                Priority::Suspicion,
                Priority::Status,
                Priority::Replenish
            ]
        );
    }
}
