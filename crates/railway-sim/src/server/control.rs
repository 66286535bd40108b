//! The inspection and control API under `/_sim`: the state, faults, agents' behaviour, outages,
//! quirks, the webhook's target, image pushes and crashes.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use crate::config::{AgentBehaviour, Faults};
use crate::quirks::Quirks;

use super::Sim;

/// Its routes.
pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/faults", put(set_faults))
        .route("/_sim/agents", put(set_agents))
        .route("/_sim/outage", put(set_outage))
        .route("/_sim/services/{id}/crash", post(crash_service))
        .route("/_sim/quirks", put(set_quirks))
        .route("/_sim/webhook", put(set_webhook))
        .route("/_sim/images", post(push_image))
}

async fn state(State(sim): State<Sim>) -> Response {
    Json(crate::SimSnapshot::of(&sim.world(), Instant::now())).into_response()
}

async fn set_faults(State(sim): State<Sim>, Json(faults): Json<Faults>) -> Response {
    crate::apply_faults(&sim, faults);
    StatusCode::NO_CONTENT.into_response()
}

async fn set_agents(State(sim): State<Sim>, Json(agents): Json<AgentBehaviour>) -> Response {
    sim.world().config.agents = agents;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct Outage {
    enabled: bool,
}

async fn set_outage(State(sim): State<Sim>, Json(outage): Json<Outage>) -> Response {
    sim.control().outage = outage.enabled;
    StatusCode::NO_CONTENT.into_response()
}

async fn set_quirks(State(sim): State<Sim>, Json(quirks): Json<Quirks>) -> Response {
    sim.world().config.quirks = quirks;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct WebhookTarget {
    url: Option<String>,
}

async fn set_webhook(State(sim): State<Sim>, Json(target): Json<WebhookTarget>) -> Response {
    sim.set_webhook_url(target.url);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct PushImage {
    reference: String,
    /// The image fails to boot: every deployment of it ends `FAILED`.
    #[serde(default)]
    unbootable: bool,
}

async fn push_image(State(sim): State<Sim>, Json(push): Json<PushImage>) -> Response {
    let digest = if push.unbootable {
        sim.world().push_unbootable_image(&push.reference)
    } else {
        sim.world().push_image(&push.reference)
    };
    Json(json!({"reference": push.reference, "digest": digest})).into_response()
}

async fn crash_service(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    if crate::crash(&sim, &id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no live deployment for that service"})),
        )
            .into_response()
    }
}
