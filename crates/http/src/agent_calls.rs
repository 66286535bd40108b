//! The agents' own calls to the pool ([`crate::route_table::agent_calls_table`]): each reads
//! `{"instanceId", "gatewayToken"}` from its JSON body ([`AgentCredentials`]; 400 naming a
//! missing field, 403 for a wrong pair), counts the call against the agent's
//! `POOL_AGENT_CALLS_PER_MINUTE` (429 beyond), and acts on that agent only. Answers as the
//! Node pool's (`pool/src/index.ts:148-179,368-391`).

use axum::Json;
use axum::extract::State;
use axum::routing::{MethodRouter, post};
use pool_provisioner::SelfDestructed;
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
    }
}

/// A body of credentials only (other fields, such as the runtime's `error`, are ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct CredentialsBody {
    #[serde(flatten)]
    credentials: AgentCredentials,
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
