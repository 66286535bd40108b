//! The handlers of the routes in [`crate::route_table`], and the router's view of the table:
//! each route with its handler.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use pool_provisioner::{ClaimInput, CreationDemand};
use pool_store::{AgentId, AgentStatus, MigrationState, StatusCounts};
use serde_json::json;

use crate::AppState;
use crate::body::JsonBody;
use crate::dto::{
    AgentReply, AgentView, ClaimBody, CountBody, Counts, CountsReply, EventView, RedeployBody, StatusReply,
};
use crate::error::ApiError;
use crate::route_table::{Endpoint, Route, table};
use crate::stock::{CostAssumptions, Stock};

/// An id from a path or body, parsed by the one rule ([`AgentId::parse`]). Text that is not
/// an id (NUL bytes, control characters, huge strings) names no agent: 404, and it never
/// reaches the database.
pub fn agent_id(raw: &str) -> Result<AgentId, ApiError> {
    AgentId::parse(raw).map_err(|e| ApiError::not_found(format!("no agent: {e}")))
}

/// Most agents one replenish or drain request may touch (as in the original API).
pub const MAX_BATCH: u32 = 20;

/// Every route of the table with its handler.
pub fn routes() -> Vec<(Route, MethodRouter<AppState>)> {
    table()
        .into_iter()
        .map(|route| {
            let handler = handler(route.endpoint);
            (route, handler)
        })
        .collect()
}

fn handler(endpoint: Endpoint) -> MethodRouter<AppState> {
    match endpoint {
        Endpoint::Healthz => get(healthz),
        Endpoint::Readyz => get(readyz),
        Endpoint::Version => get(version),
        Endpoint::Metrics => get(crate::metrics::metrics),
        Endpoint::OpenApi => get(openapi),
        Endpoint::Counts => get(counts),
        Endpoint::Status => get(status),
        Endpoint::Agents => get(agents),
        Endpoint::Agent => get(agent),
        Endpoint::Claim => post(claim),
        Endpoint::Replenish => post(replenish),
        Endpoint::Reconcile => post(reconcile),
        Endpoint::Drain => post(drain),
        Endpoint::Redeploy => post(redeploy),
        Endpoint::Rollout => post(crate::rollout_routes::rollout),
        Endpoint::RolloutCancel => post(crate::rollout_routes::cancel),
        Endpoint::GetSettings => get(crate::settings_routes::get_settings),
        Endpoint::PutSettings => put(crate::settings_routes::put_settings),
        Endpoint::Resume => post(crate::settings_routes::resume),
        Endpoint::RailwayWebhook => post(crate::webhooks::railway),
        Endpoint::Kill => delete(kill),
        Endpoint::Dismiss => delete(dismiss),
        Endpoint::Proxy(endpoint) => crate::proxy::handler(endpoint),
        Endpoint::AgentCall(endpoint) => crate::agent_calls::handler(endpoint),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"ok": true}))
}

/// Ready or not, in words that tell an unauthenticated caller nothing of the database (no
/// error text, no versions); the details go to the log.
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.provisioner.store();
    let problem = match store.migration_state().await {
        Ok(MigrationState::Current) => None,
        Ok(MigrationState::Pending(versions)) => {
            tracing::warn!(?versions, "not ready: migrations pending");
            Some("not ready: the database schema is behind")
        }
        Ok(MigrationState::TooNew { database, binary }) => {
            tracing::warn!(
                database,
                binary,
                "not ready: the database schema is newer than this binary"
            );
            Some("not ready: the database schema is newer than this binary")
        }
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database cannot be read");
            Some("not ready: the database is unavailable")
        }
    };
    match problem {
        None => Json(json!({"ok": true})).into_response(),
        Some(p) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, p).into_response(),
    }
}

async fn version(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "version": state.info.version,
        "environment": state.provisioner.config().environment_name,
        "image": state.provisioner.config().default_shape().image.to_string(),
    }))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn counts(State(state): State<AppState>) -> Result<Json<CountsReply>, ApiError> {
    let store = state.provisioner.store();
    let by_runtime = crate::stock::counts_by_runtime(store, &crate::stock::configured(&state)).await?;
    let mut total = StatusCounts::default();
    let mut runtimes = std::collections::BTreeMap::new();
    for (name, c) in by_runtime {
        total.add_all(&c);
        runtimes.insert(name, Counts::from(&c));
    }
    Ok(Json(CountsReply {
        counts: Counts::from(&total),
        runtimes,
    }))
}

async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.provisioner.store();
    let since = chrono::Utc::now() - chrono::Duration::minutes(10);
    let stock = Stock::read(&state, since).await?;
    let sample = store.latest_sample(since).await?;
    let reconciler = state.control.reconciler();
    let reply = StatusReply {
        counts: Counts::from(&stock.total),
        target: sample.as_ref().map(|(_, s)| s.target),
        target_reason: sample.map(|(_, s)| s.reason),
        waiting: store.waiting_claims().await?,
        brake: store.brake().await?,
        rollout: state.provisioner.latest_rollout().await?,
        default_runtime: state.provisioner.config().default_shape().name.clone(),
        runtimes: stock.runtimes,
        tiers: stock.tiers,
        monthly_cost: stock.monthly_cost,
        cost_assumptions: CostAssumptions::of(&pool_sizing::AgentSize::ASSUMED),
        prober: reconciler.prober,
        replicas: crate::replicas::read(store, reconciler.replica.as_deref()).await?,
        replica: reconciler.replica,
    };
    // Every live agent last, streamed a page at a time.
    crate::status_body::respond(&reply, store.clone())
}

async fn agents(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.provisioner.store();
    let claimed = store.agents_with_status(AgentStatus::Claimed).await?;
    let crashed = store.agents_with_status(AgentStatus::Crashed).await?;
    let view = |agents: &[pool_store::Agent]| agents.iter().map(AgentView::from).collect::<Vec<_>>();
    Ok(Json(
        json!({"claimed": view(&claimed), "crashed": view(&crashed)}),
    ))
}

async fn agent(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<AgentReply>, ApiError> {
    let id = agent_id(&id)?;
    let store = state.provisioner.store();
    let agent = store
        .agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no agent {id}")))?;
    let events = store.events(&id).await?;
    Ok(Json(AgentReply {
        agent: AgentView::from(&agent),
        events: events.iter().map(EventView::from).collect(),
    }))
}

async fn claim(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::Caller>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ClaimBody>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key: must be visible ASCII"))?
                .to_string(),
        ),
    };
    let wait = prefer_wait(&headers)?;
    if let crate::Caller::ClaimKey(name) = &caller {
        // Claim keys are limited, on every replica together: a key's holder cannot make the
        // pool create (or queue) at will.
        let limit = state.security.claim_key_rate_per_minute;
        let decision = state
            .provisioner
            .store()
            .hit_rate_limit(
                &format!("claim:{name}"),
                std::time::Duration::from_secs(60),
                limit,
            )
            .await?;
        if let pool_store::RateDecision::Limited { retry_after } = decision {
            tracing::warn!(key = %name, "a claim key reached its rate limit");
            return Err(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!("this key may claim at most {limit} times a minute"),
                retry_after: Some(retry_after.as_secs().max(1)),
            });
        }
    }
    let input = ClaimInput {
        agent_name: body.agent_name.unwrap_or_default(),
        instructions: body.instructions.unwrap_or_default(),
        join_url: body.join_url,
        source: body.source,
        profile_image: body.profile_image,
        metadata: body.metadata,
        runtime: body.runtime,
    };
    let result = state
        .provisioner
        .claim_as(caller.name(), &input, key.as_deref(), wait.unwrap_or_default())
        .await;
    // Claimed or not, demand moved: the leader sizes the pool (no whole tick; the claim is
    // counted in the database).
    state.control.size_soon();
    let response = result?;
    let mut answer = Json(response).into_response();
    answer.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Some(wait) = wait
        && let Ok(applied) = header::HeaderValue::from_str(&format!("wait={}", wait.as_secs()))
    {
        answer.headers_mut().insert("preference-applied", applied);
    }
    Ok(answer)
}

/// `Prefer: wait=N` (RFC 7240 §4.3): how long the claim may wait for an agent. Other
/// preferences are ignored; a `wait` that is not a whole number of seconds from 0 to 120 is a
/// 400 naming the header.
pub fn prefer_wait(headers: &HeaderMap) -> Result<Option<std::time::Duration>, ApiError> {
    let mut wait = None;
    for value in headers.get_all("prefer") {
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Prefer: must be visible ASCII"))?;
        for preference in text.split(',') {
            let Some((name, value)) = preference.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("wait") {
                continue;
            }
            let value = value.trim().trim_matches('"');
            let max = pool_provisioner::MAX_CLAIM_WAIT.as_secs();
            let secs: u64 = value.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "Prefer: wait must be a whole number of seconds from 0 to {max}, got {:?}",
                    value.chars().take(20).collect::<String>()
                ))
            })?;
            if secs > max {
                return Err(ApiError::bad_request(format!(
                    "Prefer: wait must be at most {max} seconds, got {secs}"
                )));
            }
            wait = Some(std::time::Duration::from_secs(secs));
        }
    }
    Ok(wait)
}

fn batch(count: Option<u32>, default: Option<u32>) -> Result<Option<u32>, ApiError> {
    match count.or(default) {
        Some(n) if !(1..=MAX_BATCH).contains(&n) => {
            Err(ApiError::bad_request(format!("count: must be 1 to {MAX_BATCH}")))
        }
        other => Ok(other),
    }
}

async fn replenish(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CountBody>,
) -> Result<Response, ApiError> {
    let Some(count) = batch(body.count, None)? else {
        state.control.tick_soon();
        return Ok(
            Json(json!({"triggered": true, "leader": state.control.reconciler().is_leader})).into_response(),
        );
    };
    let started = state
        .provisioner
        .start_creations(CreationDemand::Exactly(count as usize))
        .await?;
    let creating: Vec<String> = started.ids.iter().map(ToString::to_string).collect();
    Ok(Json(json!({"creating": creating})).into_response())
}

async fn reconcile(State(state): State<AppState>) -> Response {
    state.control.tick_soon();
    (
        StatusCode::ACCEPTED,
        Json(json!({"triggered": true, "leader": state.control.reconciler().is_leader})),
    )
        .into_response()
}

async fn drain(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CountBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let count = batch(body.count, Some(1))?.unwrap_or(1);
    let drained = state.provisioner.drain(count as usize).await?;
    Ok(Json(json!({"drained": drained})))
}

async fn redeploy(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RedeployBody>,
) -> Result<Response, ApiError> {
    let ids: Option<Vec<AgentId>> = match body.instance_ids {
        None => None,
        Some(ids) => Some(ids.iter().map(|id| agent_id(id)).collect::<Result<_, _>>()?),
    };
    if let Some(ids) = &ids
        && (ids.is_empty() || ids.len() > 1000)
    {
        return Err(ApiError::bad_request(
            "instanceIds: give 1 to 1000 ids, or leave it out for all idle agents",
        ));
    }
    let progress = state.provisioner.request_redeploy(ids.as_deref()).await?;
    Ok(Json(progress).into_response())
}

/// `?confirm=protected`: the operator's explicit kill of a protected agent.
#[derive(Debug, Default, serde::Deserialize)]
struct KillQuery {
    #[serde(default)]
    confirm: Option<String>,
}

async fn kill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<KillQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = agent_id(&id)?;
    let confirmed = query.confirm.as_deref() == Some("protected");
    if confirmed {
        state
            .provisioner
            .kill_protected(&id, "killed by operator (protected, confirmed)")
            .await?;
    } else {
        state.provisioner.kill(&id, "killed by operator").await?;
    }
    state.control.tick_soon();
    Ok(Json(json!({"ok": true, "id": id})))
}

async fn dismiss(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = agent_id(&id)?;
    state.provisioner.dismiss_crashed(&id).await?;
    Ok(Json(json!({"ok": true, "id": id})))
}
