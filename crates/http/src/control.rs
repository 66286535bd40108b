//! What the HTTP layer may ask of the reconciler. The binary hands it in, so this crate knows
//! nothing of the reconciler's internals: a "tick soon" and read-only views.

use chrono::{DateTime, Utc};
use pool_store::AgentId;
use serde::Serialize;

/// The reconciler as the API and the console see it.
pub trait PoolControl: Send + Sync + 'static {
    /// Asks for a tick soon (the leader runs it, on whichever replica leads).
    fn tick_soon(&self);
    /// Asks for a sizing pass soon (a claim: demand moved): the leader sizes the pool and
    /// creates, without a whole tick.
    fn size_soon(&self);
    /// Asks the leader to look at this agent now: read its deployment from Railway and check
    /// its health (Railway sent an event about it).
    fn look_soon(&self, agent: &AgentId);
    /// What the reconciler on this replica is doing.
    fn reconciler(&self) -> ReconcilerView;
}

/// The reconciler on this replica.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcilerView {
    /// This replica holds the leader lock.
    pub is_leader: bool,
    /// Ticks run by this replica.
    pub ticks: u64,
    /// Sizing passes run by this replica (what claims ask for).
    pub sizings: u64,
    /// Looks run by this replica (what Railway's events ask for).
    pub looks: u64,
    /// The last tick, if this replica ran one.
    pub last_tick: Option<TickView>,
    /// The breaker, while it is open: too many agents failed their checks at once, so
    /// per-agent Railway reads and demotions are stopped; what its sample read said.
    pub breaker: Option<String>,
    /// The prober of the fleet's health on this replica (`None`: none runs here).
    pub prober: Option<ProberView>,
    /// This replica's id among the fleet's replicas (`None`: it takes no shards).
    pub replica: Option<String>,
}

/// The prober: the health checks it spreads over each interval, since this replica started.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProberView {
    /// Agents on its roster (checked once an interval each).
    pub agents: usize,
    /// The interval every agent is checked once in, milliseconds.
    pub interval_ms: u64,
    /// Whole intervals gone through.
    pub intervals: u64,
    /// Checks finished.
    pub checks: u64,
    /// Of those, failed (not ready, no answer).
    pub failures: u64,
    /// Re-probes on a fresh connection after a first failure.
    pub reprobes: u64,
    /// Of those, failed again (confirmed failures).
    pub reprobe_failures: u64,
    /// Checks in flight now.
    pub in_flight: usize,
    /// Checks finished per whole interval, on average (`None` before the first interval
    /// ended).
    pub checks_per_interval: Option<f64>,
}

impl ProberView {
    /// The mean checks per interval of these counters.
    pub fn mean_checks_per_interval(checks: u64, intervals: u64) -> Option<f64> {
        (intervals > 0).then(|| (checks as f64 / intervals as f64 * 10.0).round() / 10.0)
    }
}

/// One tick, as far as an operator cares.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickView {
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// How long it took.
    pub duration_ms: u64,
    /// Live agents it looked at.
    pub agents: usize,
    /// Health checks it sent.
    pub health_checks: usize,
    /// Agents whose Railway status it read.
    pub read: usize,
    /// It read every steady agent (a full sweep).
    pub full_sweep: bool,
    /// Railway requests it sent.
    pub railway_requests: u64,
    /// Warm agents the sizing policy wanted.
    pub target: Option<u32>,
    /// Why, in words.
    pub target_reason: String,
    /// Problems it met, in words.
    pub problems: Vec<String>,
}

/// A [`PoolControl`] with no reconciler behind it: it counts the ticks asked for and shows a
/// fixed view. For tests and for embedders that run the reconciler elsewhere.
#[derive(Debug, Default)]
pub struct DetachedControl {
    ticks_asked: std::sync::atomic::AtomicU64,
    sizings_asked: std::sync::atomic::AtomicU64,
    looks_asked: std::sync::Mutex<Vec<AgentId>>,
    view: std::sync::Mutex<ReconcilerView>,
}

impl DetachedControl {
    /// How many ticks were asked for.
    pub fn ticks_asked(&self) -> u64 {
        self.ticks_asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many sizing passes were asked for.
    pub fn sizings_asked(&self) -> u64 {
        self.sizings_asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The agents looks were asked for, in order.
    pub fn looks_asked(&self) -> Vec<AgentId> {
        self.looks_asked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the view the API shows.
    pub fn set_view(&self, view: ReconcilerView) {
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = view;
    }
}

impl PoolControl for DetachedControl {
    fn tick_soon(&self) {
        self.ticks_asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn size_soon(&self) {
        self.sizings_asked
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn look_soon(&self, agent: &AgentId) {
        self.looks_asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(agent.clone());
    }

    fn reconciler(&self) -> ReconcilerView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
