//! What one tick saw and did: its report, kept in the status, sent to the metrics and read by
//! the benches.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::ReconcileError;
use crate::phases::TickPhases;
use crate::suspicion::BreakerState;

/// What one tick saw and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickReport {
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// How long it took.
    pub duration_ms: u64,
    /// Live agents.
    pub agents: usize,
    /// Agents whose Railway status was read.
    pub read: usize,
    /// Whether every steady agent was read too (a rolling sweep of one slice).
    pub full_sweep: bool,
    /// The rolling sweep's slices: this tick read the steady agents of one of them.
    pub sweep_slices: u64,
    /// Steady agents whose check failed and that were due for suspicion (re-probed, then
    /// read if they failed again), and how many of them were new failures (the breaker's
    /// count).
    pub suspects: usize,
    /// See `suspects`.
    pub new_failures: usize,
    /// Re-probes the tick sent itself (fresh connections; none while the prober runs: it
    /// re-probes on its own, and the tick reads only the failures a re-probe confirmed).
    pub reprobes: usize,
    /// Suspects left unread because the suspicion reads' bucket of the Railway budget was
    /// spent (claimed agents are read first); they stay suspects for the next tick.
    pub deferred: usize,
    /// The breaker, when this tick found it open.
    pub breaker: Option<BreakerState>,
    /// Railway requests sent during the tick.
    pub railway_requests: u64,
    /// Health checks sent by the tick itself (none for steady agents while the prober runs).
    pub health_checks: usize,
    /// Steady agents decided on the prober's latest results, and those it had not checked
    /// yet (no news: left as they are unless read from Railway anyway).
    pub probed: usize,
    /// See `probed`.
    pub unprobed: usize,
    /// Agents a successful status batch left out, and how many of them were confirmed by a
    /// read of their own.
    pub omitted: usize,
    /// See `omitted`.
    pub confirmed: usize,
    /// The status read failed for some agents (their statuses were kept).
    pub read_failed: bool,
    /// Status changes applied.
    pub transitions: usize,
    /// Teardowns started.
    pub teardowns: usize,
    /// Creations started.
    pub creations: usize,
    /// The sizing policy's target of warm agents (with waiting claims), and why.
    pub target: Option<u32>,
    /// See `target`.
    pub target_reason: String,
    /// Idle agents recycled (past the maximum idle age) or drained (above the target), and
    /// parked agents deleted (above the parked target or past their age).
    pub retired: usize,
    /// Parked agents woken (for the warm tier).
    pub wakes: usize,
    /// Idle agents parked (above the warm target).
    pub parks: usize,
    /// Creations recovered after a crash.
    pub recoveries: usize,
    /// Rows the retention pass deleted (old events, archived agents, expired sessions and keys).
    pub pruned: u64,
    /// The tick stopped early: leadership was lost.
    pub lost_leadership: bool,
    /// Where its wall time went.
    pub phases: TickPhases,
    /// The walk stopped early: this replica's shards were lost with its lock connection.
    pub lost_shards: bool,
    /// Problems met.
    #[serde(serialize_with = "as_messages")]
    pub errors: Vec<Arc<ReconcileError>>,
}

fn as_messages<S: serde::Serializer>(errors: &[Arc<ReconcileError>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(errors.iter().map(|e| e.to_string()))
}

impl TickReport {
    pub(crate) fn error(&mut self, e: ReconcileError) {
        self.errors.push(Arc::new(e));
    }
}
