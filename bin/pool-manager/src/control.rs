//! The binary's bridge between the reconciler and the HTTP layer: `pool-http` knows only the
//! small [`PoolControl`] interface, and this adapter is the one place that knows both.

use pool_http::{PoolControl, ProberView, ReconcilerView, TickView};
use pool_reconciler::Reconciler;

/// The reconciler behind [`PoolControl`].
pub struct ReconcilerControl {
    reconciler: Reconciler,
}

impl ReconcilerControl {
    /// Wraps the reconciler of this replica.
    pub fn new(reconciler: Reconciler) -> Self {
        Self { reconciler }
    }
}

impl PoolControl for ReconcilerControl {
    fn tick_soon(&self) {
        self.reconciler.trigger_everywhere();
    }

    fn size_soon(&self) {
        self.reconciler.size_everywhere();
    }

    fn look_soon(&self, agent: &pool_store::AgentId) {
        self.reconciler.look_everywhere(agent.clone());
    }

    fn reconciler(&self) -> ReconcilerView {
        let status = self.reconciler.status();
        let prober = self.reconciler.prober();
        let probed = prober.stats();
        ReconcilerView {
            prober: Some(ProberView {
                agents: probed.agents,
                interval_ms: u64::try_from(prober.interval().as_millis()).unwrap_or(u64::MAX),
                intervals: probed.intervals,
                checks: probed.checks,
                failures: probed.failures,
                reprobes: probed.reprobes,
                reprobe_failures: probed.confirmed,
                in_flight: probed.in_flight,
                checks_per_interval: ProberView::mean_checks_per_interval(probed.checks, probed.intervals),
            }),
            is_leader: status.is_leader,
            replica: Some(self.reconciler.replica_id().to_string()),
            ticks: status.ticks,
            sizings: status.sizings,
            looks: status.looks,
            breaker: status.breaker.map(|b| {
                format!(
                    "open since {}: {} agents failed (threshold {}); {}",
                    b.since, b.failures, b.threshold, b.verdict
                )
            }),
            last_tick: status.last_tick.map(|t| TickView {
                started_at: t.started_at,
                duration_ms: t.duration_ms,
                agents: t.agents,
                health_checks: t.health_checks,
                read: t.read,
                full_sweep: t.full_sweep,
                railway_requests: t.railway_requests,
                target: t.target,
                target_reason: t.target_reason.clone(),
                problems: t.errors.iter().map(|e| e.to_string()).collect(),
            }),
        }
    }
}
