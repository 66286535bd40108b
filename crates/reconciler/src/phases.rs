//! Where a tick's wall time goes, phase by phase: kept in its report and sent as a debug event
//! of its own (target `pool_reconciler::phases`, message `tick phases`), which `cargo xtask
//! bench tick` turns on and reads.

use std::time::Instant;

use serde::Serialize;

/// A tick's time by phase, in milliseconds. Phases do not overlap; what is left of the wall
/// time is the tick's own work between them (deciding, enlisting, bookkeeping).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TickPhases {
    /// Loading: the database's clock, the agents rollouts hold, the pages of rows, suspects'
    /// rows.
    pub load_ms: u64,
    /// Railway status reads (the slice, agents in motion, suspects, the breaker's sample).
    pub railway_ms: u64,
    /// Leader-lock checks (one per page, one before the upkeep).
    pub leader_ms: u64,
    /// Writing decisions back (transitions, teardowns begun, what was seen).
    pub apply_ms: u64,
    /// Health checks the tick waits for: starting agents' first checks, and the tick's own
    /// checks and re-probes when no prober runs (none otherwise).
    pub checks_ms: u64,
    /// Sizing and replenishing.
    pub sizing_ms: u64,
    /// Pending acceptances, redeploys, rollouts, retention (the orphan sweep runs apart).
    pub upkeep_ms: u64,
}

impl TickPhases {
    /// Sends them as a debug event (target `pool_reconciler::phases`).
    pub(crate) fn log(&self, duration_ms: u64) {
        tracing::debug!(
            target: "pool_reconciler::phases",
            duration_ms,
            load_ms = self.load_ms,
            railway_ms = self.railway_ms,
            leader_ms = self.leader_ms,
            apply_ms = self.apply_ms,
            checks_ms = self.checks_ms,
            sizing_ms = self.sizing_ms,
            upkeep_ms = self.upkeep_ms,
            "tick phases"
        );
    }
}

/// Adds the milliseconds since `start` to `phase`.
pub(crate) fn add(phase: &mut u64, start: Instant) {
    *phase += start.elapsed().as_millis() as u64;
}

/// Awaits `work`, adding the time it took to `phase`.
pub(crate) async fn timed<T>(phase: &mut u64, work: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = work.await;
    add(phase, start);
    out
}
