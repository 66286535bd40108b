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
//! - priorities: claim-path and teardown calls go before status reads, which go before
//!   replenishment; lower priorities may also use only a share of the hourly budget, so the
//!   last requests of an hour are kept for claims and teardowns.

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
    /// Status reads of the reconcile tick.
    Status = 1,
    /// Creating new agents.
    Replenish = 2,
}

impl Priority {
    const COUNT: usize = 3;

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
    /// The hourly limit.
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

    fn decide(&self, state: &mut State, priority: Priority, now: Instant) -> Decision {
        let second = SECOND + self.config.window_margin;
        let hour = HOUR + self.config.window_margin;
        while state.last_second.front().is_some_and(|t| *t + second <= now) {
            state.last_second.pop_front();
        }
        while state.last_hour.front().is_some_and(|t| *t + hour <= now) {
            state.last_hour.pop_front();
        }
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
        Decision::Go
    }

    fn hourly_limit(&self, priority: Priority) -> usize {
        let total = self.config.requests_per_hour.max(1);
        let share = match priority {
            Priority::Critical => 1.0,
            Priority::Status => self.config.status_share,
            Priority::Replenish => self.config.replenish_share,
        };
        ((total as f64 * share.clamp(0.0, 1.0)) as usize).max(1)
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

    /// Records Railway's `X-RateLimit-Remaining`; at zero, pauses until `reset_in`.
    pub fn observe_remaining(&self, remaining: u64, reset_in: Option<Duration>) {
        let mut state = self.lock();
        state.server_remaining = Some(remaining);
        if remaining == 0 {
            let until = Instant::now() + reset_in.unwrap_or(SECOND);
            state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
        }
    }

    /// Current numbers.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let mut state = self.lock();
        let now = Instant::now();
        let hour = HOUR + self.config.window_margin;
        while state.last_hour.front().is_some_and(|t| *t + hour <= now) {
            state.last_hour.pop_front();
        }
        BudgetSnapshot {
            used_last_hour: state.last_hour.len(),
            requests_per_hour: self.config.requests_per_hour,
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
    async fn critical_requests_go_before_waiting_status_reads() {
        let budget = budget(1, 10_000);
        drop(budget.acquire(Priority::Status).await);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, p) in [Priority::Replenish, Priority::Status, Priority::Critical]
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
            vec![Priority::Critical, Priority::Status, Priority::Replenish]
        );
    }
}
