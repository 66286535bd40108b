//! The fake agents: each agent's pool server (`/pool/health`, `/pool/provision`) behind its
//! domain, as the deployment behind that domain would answer — the runtime's pool server at
//! the pinned commit (xmtplabs/convos-managed-agent-runtime 723ba978,
//! `runtime/convos-platform/pool-server/index.ts`, cited as pool-server/index.ts:LINE) —; and
//! the runtime's `/convos/status`, `/convos/reset` and `/convos/update-metadata`, which its
//! pool server proxies through.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::world::{Fate, ProvisionFault, Status, World};

use super::{Sim, bearer};

/// Its routes (the agents' TLS hosts, `crate::agent_hosts`, serve the same handlers).
pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/agents/{domain}/pool/health", get(agent_health))
        .route("/agents/{domain}/pool/provision", post(agent_provision))
        .route("/agents/{domain}/convos/status", get(convos_status))
        .route("/agents/{domain}/convos/reset", post(convos_reset))
        .route(
            "/agents/{domain}/convos/update-metadata",
            post(agent_update_metadata),
        )
        .route("/agents/{domain}/sentinel", get(volume_sentinel))
}

/// `GET /sentinel`: the `sentinel` file of the volume behind a domain, served only while a
/// deployment runs (`SUCCESS`, not stopped). This is what the contract's container serves
/// from its `/data` (`cargo xtask railway-contract`): a parked service answers nothing, and
/// a woken one the same file it wrote on its first boot.
async fn volume_sentinel(State(sim): State<Sim>, Path(domain): Path<String>) -> Response {
    let now = Instant::now();
    let w = sim.world();
    let Some(agent) = agent_at(&w, &domain, now) else {
        return (StatusCode::NOT_FOUND, "Application not found").into_response();
    };
    let running = w
        .deployments
        .get(&agent.deployment_id)
        .is_some_and(|d| d.stopped_at.is_none());
    if agent.status != Status::Success || !running {
        return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
    }
    let Some(d) = w.domains.get(&domain) else {
        return (StatusCode::NOT_FOUND, "Application not found").into_response();
    };
    let file = w
        .volumes_of_service(&d.service_id)
        .filter(|v| !v.deleted)
        .find_map(|v| v.files.get("sentinel").cloned());
    match file {
        Some(text) => (StatusCode::OK, text).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// The agent behind a domain, as its pool server sees itself.
pub(crate) struct AgentAt {
    pub deployment_id: String,
    pub status: Status,
    pub fate: Fate,
    /// Stage one: the runtime answers the pool server's readiness poll (half the agent's
    /// `ready_after`).
    pub gateway_ready: bool,
    /// Stage two: the runtime's `/convos/status` answers too (the whole `ready_after`).
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
    // A stopped deployment (`deploymentStop`) keeps its SUCCESS status but serves nothing.
    let serving = serving && deployment.stopped_at.is_none();
    let up = status == Status::Success && serving && deployment.fate != Fate::NeverReady;
    let since = w.success_at(deployment);
    let ready_after = w.config.agents.ready_after;
    Some(AgentAt {
        deployment_id,
        status,
        fate: deployment.fate,
        gateway_ready: up && now >= since + ready_after / 2,
        ready: up && now >= since + ready_after,
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

/// `GET /pool/health`, without auth (pool-server/index.ts:342-361): 503 `{ready: false}`
/// until the gateway answers its readiness poll (stage one, 215-233), then 503 `{ready:
/// false, version, runtime}` until the runtime's `/convos/status` answers (stage two,
/// 348-358), then 200 `{ready: true, version, runtime}`.
pub(crate) async fn agent_health(
    State(sim): State<Sim>,
    Path(domain): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = health_answer(&sim, domain, &headers);
    let status = answer.status();
    if status != StatusCode::OK {
        *sim.world()
            .counters
            .health_failures
            .entry(status.as_u16())
            .or_default() += 1;
    }
    answer
}

fn health_answer(sim: &Sim, domain: String, headers: &HeaderMap) -> Response {
    let now = Instant::now();
    let mut w = sim.world();
    w.counters.health_checks += 1;
    let token = bearer(headers).unwrap_or_default().to_string();
    w.counters.health_tokens.insert(domain.clone(), token);
    let Some(agent) = agent_at(&w, &domain, now) else {
        return (StatusCode::NOT_FOUND, "Application not found").into_response();
    };
    if agent.status != Status::Success || !agent.serving {
        return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
    }
    touch(&mut w, &agent.deployment_id, now);
    if !agent.gateway_ready {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false}))).into_response();
    }
    let Some(runtime) = runtime_type(&w, &agent.deployment_id) else {
        // Any other RUNTIME_TYPE: the pool server exits at start (index.ts:59-63), and
        // nothing answers on the agent's port.
        return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
    };
    let version = runtime_version(&w, &agent.deployment_id);
    let body = json!({"ready": agent.ready, "version": version, "runtime": runtime});
    let status = if agent.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The runtime the pool server runs and reports (`runtime: config.name`, index.ts:359): its
/// deployment's `RUNTIME_TYPE` variable, `openclaw` when unset (index.ts:59); `None` for any
/// other value, on which the pool server exits at start (index.ts:60-63). The image plays no
/// part: neither runtime's Dockerfile sets `RUNTIME_TYPE` (`runtime/{openclaw,hermes}/
/// Dockerfile`); the Node pool set it as a service variable from the image's name
/// (`pool/src/services/providers/railway.ts:351`), as this pool's creation saga sets it from
/// the agent's shape, so an agent reports another runtime only when its variable says so.
fn runtime_type(w: &World, deployment_id: &str) -> Option<&'static str> {
    let variable = w
        .deployments
        .get(deployment_id)
        .and_then(|d| d.variables.get("RUNTIME_TYPE"));
    match variable.map(String::as_str) {
        None | Some("openclaw") => Some("openclaw"),
        Some("hermes") => Some("hermes"),
        Some(_) => None,
    }
}

/// The version the pool server reads from the image's `runtime-version.json`
/// (pool-server/index.ts:112-127): here the image's tag, "unknown" without one.
fn runtime_version(w: &World, deployment_id: &str) -> String {
    w.deployments
        .get(deployment_id)
        .and_then(|d| d.image.as_deref())
        .and_then(|image| image.rsplit_once(':'))
        .map(|(_, tag)| tag.to_string())
        .filter(|tag| !tag.contains('/'))
        .unwrap_or_else(|| "unknown".into())
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

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// The runtime's answer to `/convos/join` or `/convos/conversation` behind the pool server.
enum Outcome {
    Created,
    Joined,
    Pending,
    Failed { dirty: bool, conversation: bool },
}

/// `POST /pool/provision` (pool-server/index.ts:406-454), behaviour for behaviour: auth
/// first (408), 503 "Runtime not ready yet" before the gateway is up (410-413), 400 for a body
/// that is not JSON (415-421) or an empty or non-string `agentName` or `instructions`
/// (430-437); then the runtime is called with up to 30 attempts 1 s apart (277-335: here the
/// agent's `provision_time`, one attempt's worth), and answers 200 `{ok, inviteUrl|null,
/// conversationId|null, joined, status}` (441-447) or 500 after its retries (448-452). A join
/// whose `joinUrl` contains `pending` waits for acceptance: `conversationId: null`, `status:
/// "pending_acceptance"`, `inviteUrl` the join URL (304-306).
pub(crate) async fn agent_provision(
    State(sim): State<Sim>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let (deployment_id, outcome, provision_time) = {
        let mut w = sim.world();
        let Some(agent) = agent_at(&w, &domain, now) else {
            return (StatusCode::NOT_FOUND, "Application not found").into_response();
        };
        if agent.status != Status::Success || !agent.serving {
            return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
        }
        if !agent_authorized(&w, &agent.deployment_id, &headers) {
            return answer(StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}));
        }
        touch(&mut w, &agent.deployment_id, now);
        let fault = w.provision_faults.pop_front();
        if !agent.gateway_ready || fault == Some(ProvisionFault::NotReady) {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "Runtime not ready yet"}),
            );
        }
        let Ok(request) = serde_json::from_slice::<Value>(&body) else {
            return answer(StatusCode::BAD_REQUEST, json!({"error": "Invalid JSON body"}));
        };
        let deployment = w.deployments.get_mut(&agent.deployment_id);
        if let Some(d) = deployment {
            d.runtime.provision_requests.push(request.clone());
        }
        let text = |field: &str| {
            request
                .get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        if text("agentName").is_none() || fault == Some(ProvisionFault::BadRequest) {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "agentName (string) is required"}),
            );
        }
        if text("instructions").is_none() {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "instructions (string) is required"}),
            );
        }
        let join_url = text("joinUrl");
        let outcome = match (fault, agent.fate) {
            (Some(ProvisionFault::FailClean), _) => Outcome::Failed {
                dirty: false,
                conversation: false,
            },
            (Some(ProvisionFault::FailDirty), _) => Outcome::Failed {
                dirty: true,
                conversation: false,
            },
            // A deployment fated to fail provisions fails as the worst case does: it created
            // the conversation, then the answer was lost.
            (Some(ProvisionFault::FailWithConversation), _) | (None, Fate::ProvisionFail) => {
                Outcome::Failed {
                    dirty: true,
                    conversation: true,
                }
            }
            _ if join_url.is_some_and(|u| u.contains("pending")) => Outcome::Pending,
            _ if join_url.is_some() => Outcome::Joined,
            _ => Outcome::Created,
        };
        let provision_time = if agent.fate == Fate::ProvisionHang && fault.is_none() {
            // It never answers (the client's timeout ends the wait).
            Duration::from_secs(3600)
        } else {
            w.config.agents.provision_time
        };
        (
            agent.deployment_id,
            (outcome, join_url.map(str::to_string)),
            provision_time,
        )
    };
    if !provision_time.is_zero() {
        tokio::time::sleep(provision_time).await;
    }
    let (outcome, join_url) = outcome;
    let mut w = sim.world();
    let Some(d) = w.deployments.get_mut(&deployment_id) else {
        return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
    };
    // One runtime serves one conversation: a second provision finds it bound (the runtime's
    // 409, which the pool server's retries turn into a 500 after 30 attempts).
    if d.runtime.conversation_id.is_some() || d.runtime.pending_join.is_some() {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "Convos invite failed after 30 attempts: /convos/conversation returned 409: already bound"}),
        );
    }
    let conversation: u64 = rand::rng().random();
    let conversation_id = format!("conv-{conversation:016x}");
    let body = match outcome {
        Outcome::Failed { dirty, conversation } => {
            d.runtime.dirty |= dirty;
            if conversation {
                d.runtime.conversation_id = Some(conversation_id);
            }
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "Convos invite failed after 30 attempts: /convos/conversation returned 500"}),
            );
        }
        Outcome::Pending => {
            let url = join_url.unwrap_or_default();
            d.runtime.pending_join = Some(url.clone());
            json!({"ok": true, "inviteUrl": url, "conversationId": null, "joined": false, "status": "pending_acceptance"})
        }
        Outcome::Joined => {
            d.runtime.conversation_id = Some(conversation_id.clone());
            json!({"ok": true, "inviteUrl": join_url, "conversationId": conversation_id, "joined": true, "status": "joined"})
        }
        Outcome::Created => {
            d.runtime.conversation_id = Some(conversation_id.clone());
            let invite = format!("https://popup.convos.org/v2?i={conversation:016x}");
            json!({"ok": true, "inviteUrl": invite, "conversationId": conversation_id, "joined": false, "status": "created"})
        }
    };
    d.provisions += 1;
    d.provision_micros = Some(now.elapsed().as_micros() as u64);
    w.counters.provisions += 1;
    Json(body).into_response()
}

/// The runtime's `GET /convos/status` behind the pool server's proxy
/// (`runtime/openclaw/src/convos/index.ts:721-735`, body `buildRuntimeStatus`, 89-105: note
/// that it always says `pending: false`).
pub(crate) async fn convos_status(
    State(sim): State<Sim>,
    Path(domain): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let w = sim.world();
    let Some(agent) = agent_at(&w, &domain, now) else {
        return (StatusCode::NOT_FOUND, "Application not found").into_response();
    };
    if !agent.gateway_ready {
        return answer(StatusCode::BAD_GATEWAY, json!({"error": "Runtime unavailable"}));
    }
    if !agent_authorized(&w, &agent.deployment_id, &headers) {
        return answer(StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}));
    }
    let runtime = &w.deployments[&agent.deployment_id].runtime;
    Json(status_body(runtime)).into_response()
}

fn status_body(runtime: &crate::world::AgentRuntime) -> Value {
    json!({
        "conversationId": runtime.conversation_id,
        "inboxId": runtime.conversation_id.as_ref().map(|_| "inbox-sim"),
        "pending": false,
        "clean": runtime.clean(),
    })
}

/// The runtime's `POST /convos/reset` (`runtime/openclaw/src/convos/index.ts:738-757`): a
/// factory reset (110-155) that clears the conversation, identity and instructions, and
/// answers `{ok, reset, status}`.
pub(crate) async fn convos_reset(
    State(sim): State<Sim>,
    Path(domain): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let mut w = sim.world();
    let Some(agent) = agent_at(&w, &domain, now) else {
        return (StatusCode::NOT_FOUND, "Application not found").into_response();
    };
    if !agent.gateway_ready {
        return answer(StatusCode::BAD_GATEWAY, json!({"error": "Runtime unavailable"}));
    }
    if !agent_authorized(&w, &agent.deployment_id, &headers) {
        return answer(StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}));
    }
    let Some(d) = w.deployments.get_mut(&agent.deployment_id) else {
        return (StatusCode::BAD_GATEWAY, "Application failed to respond").into_response();
    };
    let provision_requests = std::mem::take(&mut d.runtime.provision_requests);
    let resets = d.runtime.resets + 1;
    d.runtime = crate::world::AgentRuntime {
        resets,
        provision_requests,
        ..Default::default()
    };
    Json(json!({"ok": true, "reset": true, "status": status_body(&d.runtime)})).into_response()
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
