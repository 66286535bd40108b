//! `GET /metrics` in Prometheus text format. Counts only: no label ever carries a token, key
//! or password.
//!
//! A scrape costs no query: the database's part (agents by status, the creation brake) is
//! held and read again in the background once it is older than
//! [`crate::SecurityConfig::metrics_refresh`]; only the first scrape waits for it. Everything
//! else is counted in memory. With `POOL_METRICS_KEY` set, a scrape needs it (or the admin
//! key) as a bearer key.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use pool_provisioner::CLAIM_LATENCY_BUCKETS;
use pool_store::{AgentStatus, BrakeState, StatusCounts};

use crate::{AppState, Shared};

/// The database's part of the metrics, as last read.
#[derive(Debug, Clone)]
pub struct DatabaseFacts {
    /// When it was read.
    pub read_at: Instant,
    /// Live agents by status, per runtime: every configured runtime, in order, then any other
    /// the rows name (`None`: the read failed).
    pub counts: Option<Vec<(String, StatusCounts)>>,
    /// The creation brake (`None`: the read failed).
    pub brake: Option<BrakeState>,
    /// Live agents by runtime and version (`None`: the read failed).
    pub runtime_versions: Option<Vec<(String, String, i64)>>,
    /// The replicas sharing the fleet (`None`: the read failed).
    pub replicas: Option<Vec<crate::replicas::ReplicaView>>,
}

impl DatabaseFacts {
    async fn read(state: &AppState) -> Self {
        let store = state.provisioner.store();
        let counts = crate::stock::counts_by_runtime(store, &crate::stock::configured(state))
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "metrics: counts unavailable"))
            .ok();
        let brake = store
            .brake()
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "metrics: brake unavailable"))
            .ok();
        let runtime_versions = store
            .runtime_versions()
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "metrics: runtime versions unavailable"))
            .ok();
        let replicas = crate::replicas::read(store, state.control.reconciler().replica.as_deref())
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "metrics: replicas unavailable"))
            .ok();
        Self {
            read_at: Instant::now(),
            counts,
            brake,
            runtime_versions,
            replicas,
        }
    }
}

/// The [`DatabaseFacts`] `/metrics` serves, read again in the background when stale.
pub(crate) struct MetricsCache {
    max_age: Duration,
    held: Mutex<Option<DatabaseFacts>>,
    refreshing: AtomicBool,
}

impl MetricsCache {
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            held: Mutex::new(None),
            refreshing: AtomicBool::new(false),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<DatabaseFacts>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Clears the "refresh running" mark however the refresh ends.
struct Refreshing(Arc<Shared>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.metrics.refreshing.store(false, Ordering::SeqCst);
    }
}

/// The facts held: fresh ones as they are; stale ones while one background read (at most)
/// replaces them; none yet, read now.
pub(crate) async fn database_facts(shared: &Arc<Shared>, state: &AppState) -> DatabaseFacts {
    let cache = &shared.metrics;
    let held = cache.held().clone();
    match held {
        Some(facts) if facts.read_at.elapsed() < cache.max_age => facts,
        Some(stale) => {
            if !cache.refreshing.swap(true, Ordering::SeqCst) {
                let guard = Refreshing(shared.clone());
                let state = state.clone();
                tokio::spawn(async move {
                    let fresh = DatabaseFacts::read(&state).await;
                    *guard.0.metrics.held() = Some(fresh);
                    drop(guard);
                });
            }
            stale
        }
        None => {
            let fresh = DatabaseFacts::read(state).await;
            *cache.held() = Some(fresh.clone());
            fresh
        }
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric, the database's part from `facts`.
pub fn render(state: &AppState, facts: &DatabaseFacts) -> String {
    let mut out = String::new();
    metric(
        &mut out,
        "pool_metrics_database_age_seconds",
        "gauge",
        "Age of the database counts served here (pool_agents, the brake).",
    );
    let _ = writeln!(
        out,
        "pool_metrics_database_age_seconds {:.3}",
        facts.read_at.elapsed().as_secs_f64()
    );
    if let Some(by_runtime) = &facts.counts {
        metric(
            &mut out,
            "pool_agents",
            "gauge",
            "Live agents by stored status and runtime (sum by status for the whole pool).",
        );
        for (runtime, counts) in by_runtime {
            for (status, n) in [
                (AgentStatus::Creating, counts.creating),
                (AgentStatus::Starting, counts.starting),
                (AgentStatus::Idle, counts.idle),
                (AgentStatus::Claiming, counts.claiming),
                (AgentStatus::Claimed, counts.claimed),
                (AgentStatus::PendingAcceptance, counts.pending_acceptance),
                (AgentStatus::Crashed, counts.crashed),
                (AgentStatus::Parking, counts.parking),
                (AgentStatus::Parked, counts.parked),
                (AgentStatus::Waking, counts.waking),
                (AgentStatus::Deleting, counts.deleting),
            ] {
                let _ = writeln!(
                    out,
                    "pool_agents{{status=\"{status}\",runtime=\"{}\"}} {n}",
                    label(runtime)
                );
            }
        }
        metric(
            &mut out,
            "pool_stock_monthly_dollars",
            "gauge",
            "What each runtime's stock costs a month at Railway Pro prices, estimated for an agent of the assumed size (see /api/pool/status costAssumptions): running stock and parked stock.",
        );
        let size = pool_sizing::AgentSize::ASSUMED;
        for (runtime, counts) in by_runtime {
            let cost = crate::stock::MonthlyCost::of(counts, &size);
            for (tier, dollars) in [("running", cost.running_dollars), ("parked", cost.parked_dollars)] {
                let _ = writeln!(
                    out,
                    "pool_stock_monthly_dollars{{runtime=\"{}\",tier=\"{tier}\"}} {dollars}",
                    label(runtime)
                );
            }
        }
    }
    if let Some(versions) = &facts.runtime_versions {
        metric(
            &mut out,
            "pool_agents_by_runtime_version",
            "gauge",
            "Live agents by the runtime and version their /pool/health reported.",
        );
        for (runtime, version, n) in versions {
            let _ = writeln!(
                out,
                "pool_agents_by_runtime_version{{runtime=\"{}\",version=\"{}\"}} {n}",
                label(runtime),
                label(version)
            );
        }
    }

    let stats = state.provisioner.stats();
    metric(&mut out, "pool_claims_total", "counter", "Claims by outcome.");
    for (outcome, n) in &stats.claims.by_outcome {
        let _ = writeln!(out, "pool_claims_total{{outcome=\"{outcome}\"}} {n}");
    }
    metric(
        &mut out,
        "pool_claims_by_runtime_total",
        "counter",
        "Claims of a known runtime by result: served, refused (no agent of that runtime), failed.",
    );
    for ((runtime, result), n) in &stats.claims_by_runtime {
        let _ = writeln!(
            out,
            "pool_claims_by_runtime_total{{runtime=\"{}\",result=\"{result}\"}} {n}",
            label(runtime)
        );
    }
    metric(
        &mut out,
        "pool_claim_duration_seconds",
        "histogram",
        "Claim latency, provisioning included.",
    );
    for (i, bound) in CLAIM_LATENCY_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "pool_claim_duration_seconds_bucket{{le=\"{bound}\"}} {}",
            stats.claims.latency_buckets[i]
        );
    }
    let _ = writeln!(
        out,
        "pool_claim_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        stats.claims.latency_buckets[CLAIM_LATENCY_BUCKETS.len()]
    );
    let _ = writeln!(
        out,
        "pool_claim_duration_seconds_sum {}",
        stats.claims.latency_sum
    );
    let _ = writeln!(
        out,
        "pool_claim_duration_seconds_count {}",
        stats.claims.latency_count
    );
    metric(
        &mut out,
        "pool_creations_total",
        "counter",
        "Agent creations by outcome.",
    );
    let _ = writeln!(
        out,
        "pool_creations_total{{outcome=\"ok\"}} {}",
        stats.creations_ok
    );
    let _ = writeln!(
        out,
        "pool_creations_total{{outcome=\"failed\"}} {}",
        stats.creations_failed
    );
    metric(
        &mut out,
        "pool_teardowns_total",
        "counter",
        "Teardown attempts by outcome.",
    );
    let _ = writeln!(
        out,
        "pool_teardowns_total{{outcome=\"ok\"}} {}",
        stats.teardowns_ok
    );
    let _ = writeln!(
        out,
        "pool_teardowns_total{{outcome=\"failed\"}} {}",
        stats.teardowns_failed
    );

    metric(
        &mut out,
        "pool_claims_waiting",
        "gauge",
        "Claims waiting for an agent on this replica (Prefer: wait).",
    );
    let _ = writeln!(out, "pool_claims_waiting {}", stats.waiting);
    metric(
        &mut out,
        "pool_claim_wait_seconds",
        "histogram",
        "How long claims waited for an agent.",
    );
    for (i, bound) in CLAIM_LATENCY_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "pool_claim_wait_seconds_bucket{{le=\"{bound}\"}} {}",
            stats.waits.buckets[i]
        );
    }
    let _ = writeln!(
        out,
        "pool_claim_wait_seconds_bucket{{le=\"+Inf\"}} {}",
        stats.waits.buckets[CLAIM_LATENCY_BUCKETS.len()]
    );
    let _ = writeln!(out, "pool_claim_wait_seconds_sum {}", stats.waits.sum);
    let _ = writeln!(out, "pool_claim_wait_seconds_count {}", stats.waits.count);
    if let Some(brake) = &facts.brake {
        metric(
            &mut out,
            "pool_creation_brake_engaged",
            "gauge",
            "1 while the creation brake stops creation (after too many failed creations in a row).",
        );
        let _ = writeln!(out, "pool_creation_brake_engaged {}", u8::from(brake.engaged()));
        metric(
            &mut out,
            "pool_creation_failures_in_a_row",
            "gauge",
            "Failed creations since the last success.",
        );
        let _ = writeln!(
            out,
            "pool_creation_failures_in_a_row {}",
            brake.consecutive_failures
        );
    }

    let railway = state.provisioner.railway();
    metric(
        &mut out,
        "railway_requests_total",
        "counter",
        "Railway API requests by operation and outcome.",
    );
    for ((operation, outcome), n) in railway.stats().by_operation {
        let _ = writeln!(
            out,
            "railway_requests_total{{operation=\"{}\",outcome=\"{}\"}} {n}",
            escape(&operation),
            escape(&outcome)
        );
    }
    let budget = railway.budget();
    metric(
        &mut out,
        "railway_rate_limited_total",
        "counter",
        "429 answers from Railway.",
    );
    let _ = writeln!(out, "railway_rate_limited_total {}", budget.rate_limited_total);
    metric(
        &mut out,
        "railway_budget_used_last_hour",
        "gauge",
        "Requests sent in the last hour.",
    );
    let _ = writeln!(out, "railway_budget_used_last_hour {}", budget.used_last_hour);
    metric(
        &mut out,
        "railway_budget_limit_per_hour",
        "gauge",
        "The configured hourly limit.",
    );
    let _ = writeln!(out, "railway_budget_limit_per_hour {}", budget.requests_per_hour);
    metric(
        &mut out,
        "railway_budget_remaining",
        "gauge",
        "Requests left this hour (our count).",
    );
    let _ = writeln!(
        out,
        "railway_budget_remaining {}",
        budget.requests_per_hour.saturating_sub(budget.used_last_hour)
    );
    if let Some(remaining) = budget.server_remaining {
        metric(
            &mut out,
            "railway_server_remaining",
            "gauge",
            "Railway's own X-RateLimit-Remaining, last seen.",
        );
        let _ = writeln!(out, "railway_server_remaining {remaining}");
    }
    metric(
        &mut out,
        "railway_paused_seconds",
        "gauge",
        "Time left in a 429 pause.",
    );
    let _ = writeln!(
        out,
        "railway_paused_seconds {}",
        budget.paused_for.map_or(0.0, |d| d.as_secs_f64())
    );

    let status = state.control.reconciler();
    metric(
        &mut out,
        "pool_is_leader",
        "gauge",
        "1 when this replica runs the reconciler.",
    );
    let _ = writeln!(out, "pool_is_leader {}", u8::from(status.is_leader));
    if let Some(replicas) = &facts.replicas {
        crate::replicas::write_metrics(&mut out, replicas);
    }
    metric(
        &mut out,
        "pool_ticks_total",
        "counter",
        "Ticks run by this replica.",
    );
    let _ = writeln!(out, "pool_ticks_total {}", status.ticks);
    metric(
        &mut out,
        "pool_sizing_passes_total",
        "counter",
        "Sizing passes run by this replica (claims ask for them instead of ticks).",
    );
    let _ = writeln!(out, "pool_sizing_passes_total {}", status.sizings);
    metric(
        &mut out,
        "pool_looks_total",
        "counter",
        "Looks run by this replica (Railway's deploy events ask for them).",
    );
    let _ = writeln!(out, "pool_looks_total {}", status.looks);
    metric(
        &mut out,
        "pool_breaker_open",
        "gauge",
        "1 while the breaker is open: too many agents failed at once, per-agent Railway reads and demotions stopped.",
    );
    let _ = writeln!(out, "pool_breaker_open {}", u8::from(status.breaker.is_some()));
    if let Some(prober) = &status.prober {
        prober_metrics(&mut out, prober);
    }
    if let Some(tick) = &status.last_tick {
        metric(
            &mut out,
            "pool_tick_duration_seconds",
            "gauge",
            "Duration of the last tick.",
        );
        let _ = writeln!(
            out,
            "pool_tick_duration_seconds {}",
            tick.duration_ms as f64 / 1000.0
        );
        metric(
            &mut out,
            "pool_tick_railway_requests",
            "gauge",
            "Railway requests of the last tick's reads.",
        );
        let _ = writeln!(out, "pool_tick_railway_requests {}", tick.railway_requests);
        metric(
            &mut out,
            "pool_tick_health_checks",
            "gauge",
            "Health checks the last tick sent.",
        );
        let _ = writeln!(out, "pool_tick_health_checks {}", tick.health_checks);
        metric(
            &mut out,
            "pool_tick_agents_read",
            "gauge",
            "Agents whose Railway status the last tick read.",
        );
        let _ = writeln!(out, "pool_tick_agents_read {}", tick.read);
        metric(
            &mut out,
            "pool_tick_full_sweep",
            "gauge",
            "1 when the last tick read every steady agent from Railway (a full sweep).",
        );
        let _ = writeln!(out, "pool_tick_full_sweep {}", u8::from(tick.full_sweep));
        metric(
            &mut out,
            "pool_tick_problems",
            "gauge",
            "Problems the last tick met.",
        );
        let _ = writeln!(out, "pool_tick_problems {}", tick.problems.len());
        if let Some(target) = tick.target {
            metric(
                &mut out,
                "pool_target_warm",
                "gauge",
                "Warm agents the sizing policy wants (with waiting claims).",
            );
            let _ = writeln!(out, "pool_target_warm {target}");
        }
    }
    out
}

/// The prober's counters (see [`crate::ProberView`]).
fn prober_metrics(out: &mut String, p: &crate::ProberView) {
    for (name, kind, help, value) in [
        (
            "pool_prober_agents",
            "gauge",
            "Agents on the prober's roster (each checked once an interval).",
            p.agents as f64,
        ),
        (
            "pool_prober_interval_seconds",
            "gauge",
            "The interval every agent is checked once in.",
            p.interval_ms as f64 / 1000.0,
        ),
        (
            "pool_prober_intervals_total",
            "counter",
            "Whole intervals the prober went through.",
            p.intervals as f64,
        ),
        (
            "pool_prober_checks_total",
            "counter",
            "Health checks the prober finished.",
            p.checks as f64,
        ),
        (
            "pool_prober_check_failures_total",
            "counter",
            "Of those, failed (not ready, no answer).",
            p.failures as f64,
        ),
        (
            "pool_prober_reprobes_total",
            "counter",
            "Re-probes on a fresh connection after a first failure.",
            p.reprobes as f64,
        ),
        (
            "pool_prober_reprobe_failures_total",
            "counter",
            "Of those, failed again (confirmed failures).",
            p.reprobe_failures as f64,
        ),
        (
            "pool_prober_in_flight",
            "gauge",
            "Checks in flight now.",
            p.in_flight as f64,
        ),
    ] {
        metric(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The handler (behind `POOL_METRICS_KEY` when it is set: the route table's
/// [`crate::route_table::Access::Metrics`]).
pub(crate) async fn metrics(
    State(state): State<AppState>,
    axum::Extension(shared): axum::Extension<Arc<Shared>>,
) -> Response {
    let facts = database_facts(&shared, &state).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(&state, &facts),
    )
        .into_response()
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
