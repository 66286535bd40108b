//! `GET /metrics` in Prometheus text format. Counts only: no label ever carries a token, key
//! or password.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use pool_provisioner::CLAIM_LATENCY_BUCKETS;
use pool_store::AgentStatus;

use crate::AppState;

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

/// Renders every metric.
pub async fn render(state: &AppState) -> String {
    let mut out = String::new();
    match state.provisioner.store().counts().await {
        Ok(counts) => {
            metric(&mut out, "pool_agents", "gauge", "Live agents by stored status.");
            for (status, n) in [
                (AgentStatus::Creating, counts.creating),
                (AgentStatus::Starting, counts.starting),
                (AgentStatus::Idle, counts.idle),
                (AgentStatus::Claiming, counts.claiming),
                (AgentStatus::Claimed, counts.claimed),
                (AgentStatus::Crashed, counts.crashed),
                (AgentStatus::Deleting, counts.deleting),
            ] {
                let _ = writeln!(out, "pool_agents{{status=\"{status}\"}} {n}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: counts unavailable"),
    }

    let stats = state.provisioner.stats();
    metric(&mut out, "pool_claims_total", "counter", "Claims by outcome.");
    for (outcome, n) in &stats.claims.by_outcome {
        let _ = writeln!(out, "pool_claims_total{{outcome=\"{outcome}\"}} {n}");
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
    match state.provisioner.store().brake().await {
        Ok(brake) => {
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
        Err(e) => tracing::warn!(error = %e, "metrics: brake unavailable"),
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
    metric(
        &mut out,
        "pool_ticks_total",
        "counter",
        "Ticks run by this replica.",
    );
    let _ = writeln!(out, "pool_ticks_total {}", status.ticks);
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

/// The handler.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(&state).await,
    )
        .into_response()
}
