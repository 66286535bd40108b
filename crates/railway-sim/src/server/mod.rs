//! The simulator's HTTP surface, one module per service it plays: Railway's GraphQL endpoint
//! ([`railway`]), the fake agents ([`agents`]), fake OpenRouter ([`resources`]), AgentMail
//! ([`mail`]) and Telnyx ([`sms`]) — what the pool's service proxy calls —, the image
//! registry the pool resolves digests from ([`registry`]), and the
//! inspection/control API under `/_sim` ([`control`]). Here: the shared state, the
//! router, and what the modules share (the bearer key, the fault draw).

mod agents;
mod control;
pub(crate) mod mail;
mod railway;
mod registry;
mod resources;
pub(crate) mod sms;

pub(crate) use agents::{agent_at, agent_health, agent_provision, convos_reset, convos_status};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;
use tokio::time::Instant;

use crate::config::OperationFaults;
use crate::graphql::{RailwaySchema, SharedWorld};
use crate::limits::RateLimiter;
use crate::world::World;

/// Shared server state.
#[derive(Clone)]
pub(crate) struct Sim {
    pub world: SharedWorld,
    pub schema: RailwaySchema,
    pub limiter: Arc<Mutex<RateLimiter>>,
    pub control: Arc<Mutex<Control>>,
    pub webhooks: crate::webhooks::SharedWebhooks,
    /// The real program agent deployments run, when one is set ([`crate::ExternalAgent`]).
    pub external: crate::external_agents::SharedExternalAgents,
}

/// Switches the control API flips.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// Every GraphQL request answers 503 while set.
    pub outage: bool,
    /// End of a 429 storm.
    pub storm_until: Option<Instant>,
    /// The storm answers with the edge's HTML page.
    pub storm_html: bool,
    /// `Retry-After` of the storm.
    pub storm_retry_after: u64,
}

impl Sim {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where deploy events go from now on (`None`: nowhere).
    pub(crate) fn set_webhook_url(&self, url: Option<String>) {
        let world = self.world();
        self.webhooks.lock().unwrap_or_else(|p| p.into_inner()).set_url(
            url,
            &world,
            tokio::time::Instant::now(),
        );
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn router(sim: Sim) -> axum::Router {
    axum::Router::new()
        .merge(railway::routes())
        .merge(agents::routes())
        .merge(resources::routes())
        .merge(mail::routes())
        .merge(sms::routes())
        .merge(control::routes())
        .merge(registry::routes())
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            crate::external_agents::edge_layer,
        ))
        .with_state(sim)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Draws an injected fault for one call from its odds, if any.
fn draw(faults: &OperationFaults) -> Option<&'static str> {
    let x: f64 = rand::rng().random();
    let mut edge = 0.0;
    for (p, kind) in [
        (faults.server_error, "server_error"),
        (faults.graphql_error, "graphql_error"),
        (faults.timeout_after_apply, "timeout_after_apply"),
        (faults.timeout_before_apply, "timeout_before_apply"),
        (faults.refused, "refused"),
    ] {
        edge += p;
        if x < edge {
            return Some(kind);
        }
    }
    None
}

/// Live resources by kind, for leak checks.
pub(crate) fn live_counts(w: &World) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("projects", w.live_projects().count()),
        ("keys", w.keys.values().filter(|k| !k.deleted).count()),
        ("inboxes", w.inboxes.values().filter(|i| !i.deleted).count()),
        ("phone_numbers", w.telnyx.owned.len()),
    ])
}

/// An injected failure of a resource API call (`openrouter.createKey`, …), if one is drawn.
pub(crate) fn resource_fault(w: &mut World, operation: &str) -> Option<Response> {
    let faults = w
        .config
        .faults
        .operations
        .get(operation)
        .unwrap_or(&w.config.faults.all);
    let kind = draw(faults)?;
    *w.counters
        .faults
        .entry(format!("{operation}:{kind}"))
        .or_default() += 1;
    let status = if kind == "refused" {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Some((status, Json(json!({"error": {"message": "injected failure"}}))).into_response())
}

pub(crate) fn check_bearer(headers: &HeaderMap, expected: &str) -> Result<(), Box<Response>> {
    if bearer(headers) == Some(expected) {
        Ok(())
    } else {
        let refusal = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "Invalid credentials"}})),
        );
        Err(Box::new(refusal.into_response()))
    }
}
