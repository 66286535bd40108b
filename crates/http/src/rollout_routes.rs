//! `POST /api/pool/rollout` and `POST /api/pool/rollout/cancel`: rollouts, mapped onto the
//! provisioner ([`pool_provisioner::Provisioner::start_rollout`]). The reconciler advances a
//! running rollout once a tick; `/api/pool/status` and the console show where it stands.

use axum::Json;
use axum::extract::State;
use pool_provisioner::{RolloutRequest, RolloutView};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::body::JsonBody;
use crate::error::ApiError;

/// The caller, as rollouts record it. One admin key for now.
const ADMIN: &str = "admin key";

/// The health pause when none is given: half a minute healthy before an agent counts.
const DEFAULT_PAUSE_MS: i64 = 30_000;

/// `POST /api/pool/rollout`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutBody {
    /// The runtime (shape).
    pub runtime: String,
    /// `repository:tag` or `repository@sha256:…`; the image new agents get when left out.
    pub image: Option<String>,
    /// `idle`, `claimed`, `parked`; both idle and claimed when left out.
    pub include: Option<Vec<String>>,
    /// Agents down at once after the canary.
    pub batch: i64,
    /// How long each agent must stay healthy.
    pub pause_ms: Option<i64>,
}

/// `POST /api/pool/rollout/cancel`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutCancelBody {
    /// The runtime whose rollout stops.
    pub runtime: String,
}

pub(crate) async fn rollout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RolloutBody>,
) -> Result<Json<RolloutView>, ApiError> {
    let request = RolloutRequest {
        runtime: body.runtime,
        image: body.image,
        include: body
            .include
            .unwrap_or_else(|| vec!["idle".into(), "claimed".into()]),
        batch: body.batch,
        pause_ms: body.pause_ms.unwrap_or(DEFAULT_PAUSE_MS),
    };
    let view = state.provisioner.start_rollout(&request, Some(ADMIN)).await?;
    state.control.tick_soon();
    Ok(Json(view))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RolloutCancelBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cancelled = state.provisioner.cancel_rollout(&body.runtime, ADMIN).await?;
    Ok(Json(json!({ "cancelled": cancelled })))
}
