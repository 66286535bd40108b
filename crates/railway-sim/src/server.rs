//! The simulator's HTTP surface: Railway's GraphQL endpoint, fake agents, fake OpenRouter and
//! AgentMail, and the inspection/control API under `/_sim`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::{AgentBehaviour, Faults, OperationFaults};
use crate::graphql::{RailwaySchema, RequestToken, SharedWorld};
use crate::limits::{Limited, RateLimiter};
use crate::quirks::Quirks;
use crate::world::{Fate, Inbox, Key, PROBLEM_PROCESSING, Status, World};

/// Shared server state.
#[derive(Clone)]
pub(crate) struct Sim {
    pub world: SharedWorld,
    pub schema: RailwaySchema,
    pub limiter: Arc<Mutex<RateLimiter>>,
    pub control: Arc<Mutex<Control>>,
    pub webhooks: crate::webhooks::SharedWebhooks,
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
        .route("/graphql/v2", post(graphql))
        .route("/agents/{domain}/pool/health", get(agent_health))
        .route("/agents/{domain}/pool/provision", post(agent_provision))
        .route("/openrouter/api/v1/keys", post(create_key).get(list_keys))
        .route("/openrouter/api/v1/keys/{hash}", delete(delete_key))
        .route("/agentmail/v0/inboxes", post(create_inbox).get(list_inboxes))
        .route("/agentmail/v0/inboxes/{id}", delete(delete_inbox))
        .route("/_sim/state", get(state))
        .route("/_sim/faults", put(set_faults))
        .route("/_sim/agents", put(set_agents))
        .route("/_sim/outage", put(set_outage))
        .route("/_sim/services/{id}/crash", post(crash_service))
        .route("/_sim/quirks", put(set_quirks))
        .route("/_sim/webhook", put(set_webhook))
        .route("/_sim/images", post(push_image))
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

fn graphql_error(status: StatusCode, message: &str, code: &str) -> Response {
    (
        status,
        Json(json!({"data": null, "errors": [{"message": message, "extensions": {"code": code}}]})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct GraphQlBody {
    query: String,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
}

/// The root fields of the operation: what the request is about (`projectCreate`, …).
fn root_fields(query: &str) -> Result<Vec<String>, String> {
    use async_graphql::parser::types::{DocumentOperations, Selection};
    let doc = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
    let operations: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(map) => map.values().collect(),
    };
    Ok(operations
        .iter()
        .flat_map(|op| op.node.selection_set.node.items.iter())
        .filter_map(|s| match &s.node {
            Selection::Field(f) => Some(f.node.name.node.to_string()),
            _ => None,
        })
        .collect())
}

fn draw(faults: &OperationFaults) -> Option<&'static str> {
    let x: f64 = rand::rng().random();
    let mut edge = 0.0;
    for (p, kind) in [
        (faults.server_error, "server_error"),
        (faults.graphql_error, "graphql_error"),
        (faults.timeout_after_apply, "timeout_after_apply"),
        (faults.refused, "refused"),
    ] {
        edge += p;
        if x < edge {
            return Some(kind);
        }
    }
    None
}

async fn graphql(State(sim): State<Sim>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let token = bearer(&headers).unwrap_or("").to_string();
    let has_query = uri.query().is_some_and(|q| !q.is_empty());
    let (limits, latency, faults) = {
        let mut w = sim.world();
        w.counters.requests_total += 1;
        if !has_query {
            w.counters.without_query_string += 1;
        }
        (w.config.limits.clone(), w.config.latency, w.config.faults.clone())
    };

    // Limits first: Railway's edge and rate limiter answer before anything is parsed.
    let storm = {
        let c = sim.control();
        c.storm_until
            .filter(|until| *until > now)
            .map(|_| (c.storm_html, c.storm_retry_after))
    };
    let admitted = match storm {
        Some((true, retry_after)) => Err(Limited::Edge { retry_after }),
        Some((false, retry_after)) => Err(Limited::Token {
            retry_after,
            limit: limits.requests_per_second,
        }),
        None => {
            let mut limiter = sim.limiter.lock().unwrap_or_else(|p| p.into_inner());
            let result = limiter.admit(&limits, &token, has_query, now);
            sim.world().counters.max_requests_in_one_second = limiter.max_in_one_second;
            result
        }
    };
    let rate_headers = match admitted {
        Ok(h) => h,
        Err(limited) => {
            sim.world().counters.rate_limited += 1;
            return match limited {
                Limited::Edge { retry_after } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::CONTENT_TYPE, "text/html".to_string()), (header::RETRY_AFTER, retry_after.to_string())],
                    "<!DOCTYPE html><html><head><title>Access denied | backboard.railway.com used Cloudflare to restrict access</title></head><body><h1>Error 1015</h1><p>You are being rate limited</p></body></html>",
                )
                    .into_response(),
                Limited::Token { retry_after, limit } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        ("retry-after", retry_after.to_string()),
                        ("x-ratelimit-limit", limit.to_string()),
                        ("x-ratelimit-remaining", "0".to_string()),
                        ("x-ratelimit-reset", retry_after.to_string()),
                    ],
                    Json(json!({"errors": [{"message": "Rate limit exceeded"}]})),
                )
                    .into_response(),
            };
        }
    };

    let Ok(request) = serde_json::from_slice::<GraphQlBody>(&body) else {
        return (StatusCode::BAD_REQUEST, "Problem processing request").into_response();
    };
    let fields = match root_fields(&request.query) {
        Ok(fields) => fields,
        Err(e) => return graphql_error(StatusCode::BAD_REQUEST, &e, "GRAPHQL_PARSE_FAILED"),
    };
    let operation = fields.join(",");
    {
        let mut w = sim.world();
        for f in &fields {
            *w.counters.requests.entry(f.clone()).or_default() += 1;
        }
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if sim.control().outage {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response();
    }
    let fault = fields
        .iter()
        .filter_map(|f| draw(faults.operations.get(f).unwrap_or(&faults.all)))
        .next();
    if let Some(kind) = fault {
        *sim.world()
            .counters
            .faults
            .entry(format!("{operation}:{kind}"))
            .or_default() += 1;
        match kind {
            "server_error" => {
                return (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response();
            }
            "graphql_error" => {
                return graphql_error(StatusCode::OK, "Internal server error", "INTERNAL_SERVER_ERROR");
            }
            "refused" => {
                return graphql_error(
                    StatusCode::OK,
                    "Invalid request (injected refusal)",
                    "INTERNAL_SERVER_ERROR",
                );
            }
            _ => {}
        }
    }

    let mut gql = async_graphql::Request::new(request.query).data(RequestToken(token));
    if let Some(variables) = request.variables {
        gql = gql.variables(async_graphql::Variables::from_json(variables));
    }
    if let Some(name) = request.operation_name {
        gql = gql.operation_name(name);
    }
    let response = sim.schema.execute(gql).await;
    if fault == Some("timeout_after_apply") {
        // Applied; the answer never comes (the client times out and must look it up).
        tokio::time::sleep(Duration::from_secs(300)).await;
    }
    // Validation failures (no path: nothing was executed) are HTTP 400, as on Railway.
    let status = if response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|e| e.path.is_empty() && e.extensions.is_none())
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let quirks = sim.world().config.quirks.clone();
    let body = railway_error_shapes(serde_json::to_value(&response).unwrap_or(Value::Null), &quirks);
    let mut out = (status, Json(body)).into_response();
    let h = out.headers_mut();
    h.insert("x-ratelimit-limit", rate_headers.limit.into());
    h.insert("x-ratelimit-remaining", rate_headers.remaining.into());
    h.insert("x-ratelimit-reset", 3600.into());
    out
}

/// Railway's error shapes: business errors all carry `INTERNAL_SERVER_ERROR` (distilled
/// `errors.ts`: "Railway often reuses INTERNAL_SERVER_ERROR"), and "Problem processing request"
/// goes out with no path, no extensions and a top-level `traceId` (distilled's live probe,
/// `60-request-processing.json`).
fn railway_error_shapes(mut body: Value, quirks: &Quirks) -> Value {
    let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) else {
        return body;
    };
    for error in errors {
        let Some(error) = error.as_object_mut() else {
            continue;
        };
        let code = error
            .get("extensions")
            .and_then(|x| x.get("code"))
            .and_then(Value::as_str)
            .map(str::to_string);
        match code.as_deref() {
            Some(PROBLEM_PROCESSING) => {
                error.remove("extensions");
                error.remove("path");
                error.remove("locations");
                let trace: u64 = rand::rng().random();
                error.insert("traceId".into(), Value::String(trace.to_string()));
            }
            Some("GRAPHQL_VALIDATION_FAILED" | "GRAPHQL_PARSE_FAILED") | None => {}
            Some(_) if quirks.internal_server_error_codes => {
                error.insert("extensions".into(), json!({"code": "INTERNAL_SERVER_ERROR"}));
            }
            Some(_) => {}
        }
    }
    body
}

// ---------------------------------------------------------------------------------------------
// Fake agents

/// The agent behind a domain, as its pool server sees itself.
struct AgentAt {
    deployment_id: String,
    status: Status,
    ready: bool,
    /// Its pool server runs: the deployment's start command is the pool server's.
    serving: bool,
}

/// Looks up the agent behind a domain: its deployment, status and readiness.
fn agent_at(w: &World, domain: &str, now: Instant) -> Option<AgentAt> {
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

// ---------------------------------------------------------------------------------------------
// Fake OpenRouter and AgentMail

/// An injected failure of a resource API call (`openrouter.createKey`, …), if one is drawn.
fn resource_fault(w: &mut World, operation: &str) -> Option<Response> {
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

fn check_bearer(headers: &HeaderMap, expected: &str) -> Result<(), Box<Response>> {
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

async fn create_key(State(sim): State<Sim>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut w = sim.world();
    if let Err(r) = check_bearer(&headers, &w.config.openrouter_management_key) {
        return *r;
    }
    if let Some(fault) = resource_fault(&mut w, "openrouter.createKey") {
        return fault;
    }
    let Some(name) = body.get("name").and_then(Value::as_str).map(str::to_string) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "name is required"}})),
        )
            .into_response();
    };
    let hash = w.id("keyhash");
    let secret: u128 = rand::rng().random();
    let key = format!("sk-or-v1-{secret:032x}");
    w.keys.insert(
        hash.clone(),
        Key {
            hash: hash.clone(),
            name: name.clone(),
            deleted: false,
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({"key": key, "data": {"hash": hash, "name": name, "limit": body.get("limit"), "disabled": false}})),
    )
        .into_response()
}

async fn list_keys(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let w = sim.world();
    if let Err(r) = check_bearer(&headers, &w.config.openrouter_management_key) {
        return *r;
    }
    let data: Vec<Value> = w
        .keys
        .values()
        .filter(|k| !k.deleted)
        .map(|k| json!({"hash": k.hash, "name": k.name}))
        .collect();
    Json(json!({"data": data})).into_response()
}

async fn delete_key(State(sim): State<Sim>, Path(hash): Path<String>, headers: HeaderMap) -> Response {
    let mut w = sim.world();
    if let Err(r) = check_bearer(&headers, &w.config.openrouter_management_key) {
        return *r;
    }
    if let Some(fault) = resource_fault(&mut w, "openrouter.deleteKey") {
        return fault;
    }
    match w.keys.get_mut(&hash).filter(|k| !k.deleted) {
        Some(k) => {
            k.deleted = true;
            Json(json!({"data": {"success": true}})).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": "Key not found"}})),
        )
            .into_response(),
    }
}

async fn create_inbox(State(sim): State<Sim>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut w = sim.world();
    if let Err(r) = check_bearer(&headers, &w.config.agentmail_api_key) {
        return *r;
    }
    if let Some(fault) = resource_fault(&mut w, "agentmail.createInbox") {
        return fault;
    }
    let username = body
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or("agent")
        .to_string();
    let domain = body
        .get("domain")
        .and_then(Value::as_str)
        .unwrap_or("agentmail.to")
        .to_string();
    let client_id = body.get("client_id").and_then(Value::as_str).map(str::to_string);
    // `client_id` makes creation idempotent, as on AgentMail.
    if let Some(existing) = w
        .inboxes
        .values()
        .find(|i| !i.deleted && client_id.is_some() && i.client_id == client_id)
    {
        return Json(json!({"inbox_id": existing.inbox_id, "client_id": existing.client_id})).into_response();
    }
    let inbox_id = format!("{username}@{domain}");
    if w.inboxes.get(&inbox_id).is_some_and(|i| !i.deleted) {
        return (
            StatusCode::CONFLICT,
            Json(json!({"name": "AlreadyExistsError", "message": "Inbox already exists"})),
        )
            .into_response();
    }
    w.inboxes.insert(
        inbox_id.clone(),
        Inbox {
            inbox_id: inbox_id.clone(),
            username,
            client_id: client_id.clone(),
            deleted: false,
        },
    );
    Json(json!({"inbox_id": inbox_id, "client_id": client_id})).into_response()
}

async fn list_inboxes(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let w = sim.world();
    if let Err(r) = check_bearer(&headers, &w.config.agentmail_api_key) {
        return *r;
    }
    let inboxes: Vec<Value> = w
        .inboxes
        .values()
        .filter(|i| !i.deleted)
        .map(|i| json!({"inbox_id": i.inbox_id, "client_id": i.client_id}))
        .collect();
    Json(json!({"count": inboxes.len(), "inboxes": inboxes})).into_response()
}

async fn delete_inbox(State(sim): State<Sim>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut w = sim.world();
    if let Err(r) = check_bearer(&headers, &w.config.agentmail_api_key) {
        return *r;
    }
    if let Some(fault) = resource_fault(&mut w, "agentmail.deleteInbox") {
        return fault;
    }
    match w.inboxes.get_mut(&id).filter(|i| !i.deleted) {
        Some(i) => {
            i.deleted = true;
            StatusCode::NO_CONTENT.into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"name": "NotFoundError", "message": "Inbox not found"})),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Inspection and control

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
}

async fn push_image(State(sim): State<Sim>, Json(push): Json<PushImage>) -> Response {
    let digest = sim.world().push_image(&push.reference);
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

/// Live resources by kind, for leak checks.
pub(crate) fn live_counts(w: &World) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("projects", w.live_projects().count()),
        ("keys", w.keys.values().filter(|k| !k.deleted).count()),
        ("inboxes", w.inboxes.values().filter(|i| !i.deleted).count()),
    ])
}
