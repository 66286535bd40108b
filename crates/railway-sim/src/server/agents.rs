//! The fake agents: each agent's pool server (`/pool/health`, `/pool/provision`) behind its
//! domain, as the deployment behind that domain would answer; and the runtime's
//! `/convos/update-metadata`, which the service proxy calls.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::world::{Fate, Status, World};

use super::{Sim, bearer};

/// Its routes (the agents' TLS hosts, `crate::agent_hosts`, serve the same handlers).
pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/agents/{domain}/pool/health", get(agent_health))
        .route("/agents/{domain}/pool/provision", post(agent_provision))
        .route(
            "/agents/{domain}/convos/update-metadata",
            post(agent_update_metadata),
        )
}

/// The agent behind a domain, as its pool server sees itself.
pub(crate) struct AgentAt {
    pub deployment_id: String,
    pub status: Status,
    pub ready: bool,
    /// Its pool server runs: the deployment's start command is the pool server's.
    pub serving: bool,
}

/// Looks up the agent behind a domain: its deployment, status and readiness.
pub(crate) fn agent_at(w: &World, domain: &str, now: Instant) -> Option<AgentAt> {
    let d = w.domains.get(domain)?;
    let service = w.services.get(&d.service_id).filter(|s| !s.deleted)?;
    let deployment_id = service
        .instances
        .get(&d.environment_id)?
        .latest_deployment
        .clone()?;
    let deployment = w.deployments.get(&deployment_id)?;
    let status = w.status(deployment, now);
    let serving = deployment.start_command.as_deref() == Some(crate::AGENT_START_COMMAND);
    let ready = status == Status::Success
        && serving
        && deployment.fate != Fate::NeverReady
        && now >= w.success_at(deployment) + w.config.agents.ready_after;
    Some(AgentAt {
        deployment_id,
        status,
        ready,
        serving,
    })
}

/// `/pool/provision` checks `Authorization: Bearer <GATEWAY_TOKEN>`; agents of older images
/// checked `POOL_API_KEY` instead (xmtplabs/convos-managed-agent-runtime
/// `runtime/convos-platform/pool-server/index.ts` `checkAuth`; `pool/src/authFetch.ts`).
fn agent_authorized(w: &World, deployment_id: &str, headers: &HeaderMap) -> bool {
    let variables = w.deployments.get(deployment_id).map(|d| &d.variables);
    let expected = variables.and_then(|v| v.get("GATEWAY_TOKEN").or_else(|| v.get("POOL_API_KEY")));
    matches!((expected, bearer(headers)), (Some(e), Some(got)) if e == got)
}

pub(crate) async fn agent_health(State(sim): State<Sim>, Path(domain): Path<String>) -> Response {
    let now = Instant::now();
    let mut w = sim.world();
    w.counters.health_checks += 1;
    let Some(agent) = agent_at(&w, &domain, now) else {
        return (StatusCode::NOT_FOUND, "Application not found").into_response();
    };
    if agent.status != Status::Success || !agent.serving {
        return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
    }
    // The pool server answers `/pool/health` without auth (its route comment: "used by
    // Railway health checks and CI").
    touch(&mut w, &agent.deployment_id, now);
    if agent.ready {
        Json(json!({"ready": true, "runtime": "openclaw"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false}))).into_response()
    }
}

fn touch(w: &mut World, deployment_id: &str, now: Instant) {
    let Some(d) = w.deployments.get(deployment_id).cloned() else {
        return;
    };
    if let Some(instance) = w
        .services
        .get_mut(&d.service_id)
        .and_then(|s| s.instances.get_mut(&d.environment_id))
    {
        instance.last_agent_request = Some(now);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProvisionBody {
    agent_name: Option<String>,
    instructions: Option<String>,
    join_url: Option<String>,
}

pub(crate) async fn agent_provision(
    State(sim): State<Sim>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let (deployment_id, fate, provision_time) = {
        let mut w = sim.world();
        let Some(AgentAt {
            deployment_id,
            status,
            ready,
            serving,
        }) = agent_at(&w, &domain, now)
        else {
            return (StatusCode::NOT_FOUND, "Application not found").into_response();
        };
        if status != Status::Success || !serving {
            return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
        }
        if !agent_authorized(&w, &deployment_id, &headers) {
            return (StatusCode::UNAUTHORIZED, Json(json!({"error": "Unauthorized"}))).into_response();
        }
        if !ready {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "not ready"})),
            )
                .into_response();
        }
        touch(&mut w, &deployment_id, now);
        let fate = w.deployments[&deployment_id].fate;
        (deployment_id, fate, w.config.agents.provision_time)
    };
    let Ok(request) = serde_json::from_slice::<ProvisionBody>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid JSON"}))).into_response();
    };
    if request.agent_name.as_deref().is_none_or(str::is_empty) || request.instructions.is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "agentName and instructions are required"})),
        )
            .into_response();
    }
    match fate {
        Fate::ProvisionHang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Fate::ProvisionFail => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "provision failed after retries"})),
            )
                .into_response();
        }
        _ => {}
    }
    if !provision_time.is_zero() {
        tokio::time::sleep(provision_time).await;
    }
    let mut w = sim.world();
    let Some(d) = w.deployments.get_mut(&deployment_id) else {
        return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
    };
    // One container serves one conversation.
    if d.provisions > 0 {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": "already provisioned"})),
        )
            .into_response();
    }
    d.provisions += 1;
    d.provision_micros = Some(now.elapsed().as_micros() as u64);
    w.counters.provisions += 1;
    let conversation: u64 = rand::rng().random();
    Json(json!({
        "ok": true,
        "inviteUrl": format!("https://popup.convos.org/v2?i={conversation:016x}"),
        "conversationId": format!("conv-{conversation:016x}"),
        "joined": request.join_url.is_some(),
    }))
    .into_response()
}

/// The runtime's `POST /convos/update-metadata` (`runtime/openclaw/src/convos/index.ts:619`,
/// `runtime/hermes/src/server/server.py:1075-1081`), which the pool calls with the agent's
/// gateway token after the service proxy gave it an address (`pool/src/routes/serviceProxy.ts:27-41`).
/// The simulator's agent records what it was told.
pub(crate) async fn agent_update_metadata(
    State(sim): State<Sim>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut w = sim.world();
    let Some(agent) = agent_at(&w, &domain, now) else {
        return (StatusCode::NOT_FOUND, "Application not found").into_response();
    };
    if !agent_authorized(&w, &agent.deployment_id, &headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "Unauthorized"}))).into_response();
    }
    let Some(metadata) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("metadata").cloned())
        .and_then(|m| m.as_object().cloned())
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "metadata required"})),
        )
            .into_response();
    };
    if let Some(d) = w.deployments.get_mut(&agent.deployment_id) {
        for (k, v) in metadata {
            d.metadata.insert(k, v);
        }
    }
    Json(json!({"ok": true})).into_response()
}
