//! The agents' own calls to the pool ([`crate::route_table::agent_calls_table`]): each reads
//! `{"instanceId", "gatewayToken"}` from its JSON body ([`AgentCredentials`]; 400 naming a
//! missing field, 403 for a wrong pair), counts the call against the agent's
//! `POOL_AGENT_CALLS_PER_MINUTE` (429 beyond), and acts on that agent only. Answers as the
//! Node pool's (`pool/src/index.ts:148-179,368-391`).

use axum::Json;
use axum::extract::State;
use axum::routing::{MethodRouter, post};
use pool_provisioner::{Recovered, SelfDestructed};
use pool_store::Agent;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::agent_auth::AgentCredentials;
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::route_table::AgentCallEndpoint;

/// The handler of one of the agents' calls.
pub(crate) fn handler(endpoint: AgentCallEndpoint) -> MethodRouter<AppState> {
    match endpoint {
        AgentCallEndpoint::SelfDestruct => post(self_destruct),
        AgentCallEndpoint::SelfInfo => post(self_info),
        AgentCallEndpoint::SelfUpgrade => post(self_upgrade),
        AgentCallEndpoint::PendingComplete => post(pending_complete),
        AgentCallEndpoint::PendingFail => post(pending_fail),
    }
}

/// A body of credentials only (other fields, such as the runtime's `error`, are ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct CredentialsBody {
    #[serde(flatten)]
    credentials: AgentCredentials,
}

/// A pending join's outcome: `conversationId` (required to complete; the runtime's Hermes
/// sends `null` and an `error` on a failure, `runtime/hermes/src/server/server.py:481-500`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PendingBody {
    #[serde(flatten)]
    credentials: AgentCredentials,
    #[serde(default)]
    conversation_id: Option<String>,
}

/// The calling agent, authenticated and charged one call.
pub(crate) async fn caller(state: &AppState, credentials: &AgentCredentials) -> Result<Agent, ApiError> {
    let agent = credentials.authenticate(state).await?;
    state.provisioner.charge_agent_call(&agent).await?;
    Ok(agent)
}

/// `POST /api/pool/self-destruct`: `{ok: true, instanceId, alreadyDeleting}`.
async fn self_destruct(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CredentialsBody>,
) -> Result<Json<Value>, ApiError> {
    let agent = caller(&state, &body.credentials).await?;
    let done = state.provisioner.self_destruct(&agent).await?;
    if done == SelfDestructed::Started {
        state.control.tick_soon();
    }
    Ok(Json(json!({
        "ok": true,
        "instanceId": agent.id,
        "alreadyDeleting": done == SelfDestructed::AlreadyDeleting,
    })))
}

/// `POST /api/pool/self-info`: `{ok, instanceId, runtimeVersion, runtimeImage, latestImage}`.
async fn self_info(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CredentialsBody>,
) -> Result<Json<Value>, ApiError> {
    let agent = caller(&state, &body.credentials).await?;
    let info = state.provisioner.self_info(&agent);
    Ok(Json(json!({
        "ok": true,
        "instanceId": info.instance_id,
        "runtimeVersion": info.runtime_version,
        "runtimeImage": info.runtime_image,
        "latestImage": info.latest_image,
    })))
}

/// `POST /api/pool/pending-acceptance/complete`: the pending join was accepted; the agent is
/// `claimed` with its conversation. `{ok: true, instanceId, conversationId}`; 409 when it is
/// not pending.
async fn pending_complete(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PendingBody>,
) -> Result<Json<Value>, ApiError> {
    let agent = caller(&state, &body.credentials).await?;
    let conversation_id = body
        .conversation_id
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("conversationId: required"))?;
    state
        .provisioner
        .complete_pending_acceptance(&agent.id, &conversation_id)
        .await?;
    state.control.tick_soon();
    Ok(Json(json!({
        "ok": true,
        "instanceId": agent.id,
        "conversationId": conversation_id.trim(),
    })))
}

/// `POST /api/pool/pending-acceptance/fail`: the pending join failed; the agent's runtime is
/// reset and the agent goes back to idle when it is clean, torn down otherwise.
/// `{ok: true, instanceId, outcome: "idle" | "torn_down"}`; 409 when it is not pending.
async fn pending_fail(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PendingBody>,
) -> Result<Json<Value>, ApiError> {
    let agent = caller(&state, &body.credentials).await?;
    let outcome = match state.provisioner.fail_pending_acceptance(&agent.id).await? {
        Recovered::Idle => "idle",
        Recovered::TornDown => "torn_down",
        Recovered::Moved { actual } => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "agent {} is {}: not pending acceptance",
                    agent.id,
                    actual.map_or("gone", |s| s.as_str())
                ),
            ));
        }
    };
    state.control.tick_soon();
    Ok(Json(
        json!({"ok": true, "instanceId": agent.id, "outcome": outcome}),
    ))
}

/// `POST /api/pool/self-upgrade`: `{ok, instanceId, image, rollout}` (the Node pool's
/// `{ok, instanceId, image}`, `pool/src/index.ts` self-upgrade, with the rollout that moves it).
async fn self_upgrade(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CredentialsBody>,
) -> Result<Json<Value>, ApiError> {
    let agent = caller(&state, &body.credentials).await?;
    let view = state.provisioner.self_upgrade(&agent).await?;
    state.control.tick_soon();
    Ok(Json(json!({
        "ok": true,
        "instanceId": agent.id,
        "image": view.rollout.target,
        "rollout": view.rollout.id,
    })))
}
