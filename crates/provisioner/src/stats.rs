//! Counters for the metrics endpoint: creations, teardowns and claims by outcome, and claim
//! latency. Plain atomics and one small lock; never on a hot path's critical section.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the claim latency histogram.
pub const CLAIM_LATENCY_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 120.0,
];

/// Counters since start.
#[derive(Debug, Default)]
pub struct ProvisionerStats {
    creations_ok: AtomicU64,
    creations_failed: AtomicU64,
    teardowns_ok: AtomicU64,
    teardowns_failed: AtomicU64,
    claims: Mutex<ClaimStats>,
    claims_by_runtime: Mutex<BTreeMap<(String, &'static str), u64>>,
    waiting: std::sync::atomic::AtomicI64,
    waits: Mutex<WaitStats>,
}

/// How long claims waited for an agent.
#[derive(Debug, Default, Clone)]
pub struct WaitStats {
    /// Cumulative counts per bucket of [`CLAIM_LATENCY_BUCKETS`] (then +Inf).
    pub buckets: [u64; CLAIM_LATENCY_BUCKETS.len() + 1],
    /// Sum of waits, seconds.
    pub sum: f64,
    /// Number of waits.
    pub count: u64,
}

/// Claims by outcome and their latency.
#[derive(Debug, Default, Clone)]
pub struct ClaimStats {
    /// Outcome → count (`claimed`, `pool_empty`, `failed`, `repeated`).
    pub by_outcome: BTreeMap<&'static str, u64>,
    /// Cumulative counts per bucket of [`CLAIM_LATENCY_BUCKETS`] (then +Inf).
    pub latency_buckets: [u64; CLAIM_LATENCY_BUCKETS.len() + 1],
    /// Sum of latencies, seconds.
    pub latency_sum: f64,
    /// Number of latencies.
    pub latency_count: u64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    /// Creations that reached `starting`.
    pub creations_ok: u64,
    /// Creations that failed and were compensated.
    pub creations_failed: u64,
    /// Teardowns that finished.
    pub teardowns_ok: u64,
    /// Teardown attempts that failed (retried later).
    pub teardowns_failed: u64,
    /// Claims.
    pub claims: ClaimStats,
    /// Claims of a known runtime by (runtime, result): `served` (an agent handed out, a
    /// repeated answer included), `refused` (no agent of that runtime: the 503), `failed`
    /// (anything else).
    pub claims_by_runtime: BTreeMap<(String, &'static str), u64>,
    /// Claims waiting for an agent now (on this replica).
    pub waiting: i64,
    /// How long claims waited.
    pub waits: WaitStats,
}

impl ProvisionerStats {
    pub(crate) fn creation(&self, ok: bool) {
        let c = if ok {
            &self.creations_ok
        } else {
            &self.creations_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn teardown(&self, ok: bool) {
        let c = if ok {
            &self.teardowns_ok
        } else {
            &self.teardowns_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn claim(&self, outcome: &'static str, latency: Duration) {
        let mut c = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        *c.by_outcome.entry(outcome).or_default() += 1;
        let secs = latency.as_secs_f64();
        for (i, bound) in CLAIM_LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                c.latency_buckets[i] += 1;
            }
        }
        c.latency_buckets[CLAIM_LATENCY_BUCKETS.len()] += 1;
        c.latency_sum += secs;
        c.latency_count += 1;
    }

    pub(crate) fn claim_of_runtime(&self, runtime: &str, result: &crate::Result<crate::ClaimResponse>) {
        let result = match result {
            Ok(_) => "served",
            Err(crate::ProvisionError::PoolEmpty) => "refused",
            Err(_) => "failed",
        };
        *self
            .claims_by_runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((runtime.to_string(), result))
            .or_default() += 1;
    }

    pub(crate) fn waiting(&self, change: i64) {
        self.waiting.fetch_add(change, Ordering::Relaxed);
    }

    pub(crate) fn waited(&self, wait: Duration) {
        let mut w = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        let secs = wait.as_secs_f64();
        for (i, bound) in CLAIM_LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                w.buckets[i] += 1;
            }
        }
        w.buckets[CLAIM_LATENCY_BUCKETS.len()] += 1;
        w.sum += secs;
        w.count += 1;
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            creations_ok: self.creations_ok.load(Ordering::Relaxed),
            creations_failed: self.creations_failed.load(Ordering::Relaxed),
            teardowns_ok: self.teardowns_ok.load(Ordering::Relaxed),
            teardowns_failed: self.teardowns_failed.load(Ordering::Relaxed),
            claims: self.claims.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            claims_by_runtime: self
                .claims_by_runtime
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            waiting: self.waiting.load(Ordering::Relaxed),
            waits: self.waits.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
