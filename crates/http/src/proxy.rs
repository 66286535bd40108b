//! The service proxy's routes, `/api/proxy/*`, with the Node pool's paths and payloads at the
//! runtime's pinned commit (`pool/src/routes/serviceProxy.ts`, mounted at the app's root,
//! `pool/src/index.ts:422`). Thin: each maps onto a [`pool_provisioner::Provisioner`] call.
//!
//! - Agents authenticate with `Authorization: Bearer <instanceId>:<gatewayToken>`
//!   ([`AgentCaller`], checked before a byte of the body is read); the four (un)provision
//!   routes also take the admin key with `{"instanceId"}` in the body
//!   (`serviceProxy.ts:51-70`), and `services/status` takes only the admin key (`:205`).
//! - Bodies up to [`crate::SecurityConfig::proxy_max_body`] (Node: 10 MB for base64
//!   attachments, `pool/src/index.ts:40-41`); more is 413 before anything reaches a provider.

use axum::Json;
use axum::extract::{FromRequest, Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, patch, post};
use pool_provisioner::{EmailCall, Passthrough, SmsCall};
use pool_store::{Agent, AgentStatus, ServiceKind};
use serde_json::{Value, json};

use crate::AppState;
use crate::agent_auth::{AgentCaller, MISSING_CREDENTIALS, instance_credentials};
use crate::error::ApiError;
use crate::routes::Route;

const AGENT_AUTH: (u16, &str, Option<&str>) = (
    401,
    "no Authorization: Bearer <instanceId>:<gatewayToken>",
    Some("Error"),
);
const WRONG_AGENT: (u16, &str, Option<&str>) = (403, "Invalid instance ID or token", Some("Error"));
const PASSED: (u16, &str, Option<&str>) = (200, "the provider's answer, as it came", None);
const UPSTREAM: (u16, &str, Option<&str>) = (
    502,
    "the provider failed (its body is never passed on)",
    Some("Error"),
);
const LIMITED: (u16, &str, Option<&str>) = (429, "this agent's rate limit (Retry-After)", Some("Error"));
const NOT_PROVISIONED: (u16, &str, Option<&str>) = (404, "no inbox or number provisioned", Some("Error"));
const TOO_LARGE: (u16, &str, Option<&str>) = (413, "request body too large", Some("Error"));

fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    responses: &'static [(u16, &'static str, Option<&'static str>)],
) -> Route {
    Route {
        method,
        path,
        summary,
        auth: false,
        request: None,
        responses,
    }
}

/// The proxy's routes, for the route table.
pub fn routes() -> Vec<(Route, MethodRouter<AppState>)> {
    const PROVISION: &[(u16, &str, Option<&str>)] = &[
        (
            200,
            "the agent's inbox or number, and whether it was made now",
            None,
        ),
        (400, "the admin key without instanceId", Some("Error")),
        AGENT_AUTH,
        WRONG_AGENT,
        (404, "no such agent (admin key)", Some("Error")),
        (
            409,
            "the agent is being torn down, or another provisioning runs",
            Some("Error"),
        ),
        LIMITED,
        UPSTREAM,
        (503, "the service is not configured on this pool", Some("Error")),
    ];
    const DATA: &[(u16, &str, Option<&str>)] = &[
        PASSED,
        (400, "a malformed body, id or query", Some("Error")),
        AGENT_AUTH,
        WRONG_AGENT,
        NOT_PROVISIONED,
        TOO_LARGE,
        LIMITED,
        UPSTREAM,
    ];
    vec![
        (
            route(
                "POST",
                "/api/proxy/email/provision",
                "An inbox for the agent on first use (agent credentials, or the admin key with {instanceId})",
                PROVISION,
            ),
            post(email_provision),
        ),
        (
            route(
                "POST",
                "/api/proxy/sms/provision",
                "A phone number for the agent on first use (agent credentials, or the admin key with {instanceId})",
                PROVISION,
            ),
            post(sms_provision),
        ),
        (
            route(
                "POST",
                "/api/proxy/email/unprovision",
                "Delete the agent's inbox",
                PROVISION,
            ),
            post(email_unprovision),
        ),
        (
            route(
                "POST",
                "/api/proxy/sms/unprovision",
                "Release the agent's number (back to the pool's stock)",
                PROVISION,
            ),
            post(sms_unprovision),
        ),
        (
            route(
                "GET",
                "/api/proxy/services/status",
                "An agent's inbox and number (admin key; ?instanceId=)",
                &[
                    (200, "inbox and number", None),
                    (400, "no instanceId", Some("Error")),
                    (401, "not the admin key", Some("Error")),
                    (404, "no such agent", Some("Error")),
                ],
            ),
            get(services_status),
        ),
        (
            route(
                "GET",
                "/api/proxy/info",
                "The calling agent's id, inbox and number",
                &[(200, "its services", None), AGENT_AUTH, WRONG_AGENT, LIMITED],
            ),
            get(info),
        ),
        (
            route(
                "POST",
                "/api/proxy/email/send",
                "Send an email from the agent's inbox",
                DATA,
            ),
            post(email_send),
        ),
        (
            route(
                "GET",
                "/api/proxy/email/messages",
                "The agent's messages (query forwarded as it came)",
                DATA,
            ),
            get(email_messages),
        ),
        (
            route(
                "GET",
                "/api/proxy/email/messages/{id}",
                "One message of the agent's inbox, with attachment links",
                DATA,
            ),
            get(email_message),
        ),
        (
            route(
                "PATCH",
                "/api/proxy/email/messages/{id}",
                "Change a message's labels",
                DATA,
            ),
            patch(email_update),
        ),
        (
            route(
                "GET",
                "/api/proxy/email/threads",
                "The agent's threads (query forwarded as it came)",
                DATA,
            ),
            get(email_threads),
        ),
        (
            route(
                "POST",
                "/api/proxy/sms/send",
                "Send a text from the agent's number",
                DATA,
            ),
            post(sms_send),
        ),
        (
            route(
                "GET",
                "/api/proxy/sms/records",
                "Inbound records of the agent's number since it got it",
                DATA,
            ),
            get(sms_records),
        ),
        (
            route(
                "GET",
                "/api/proxy/sms/messages/{id}",
                "One message of the agent's number",
                DATA,
            ),
            get(sms_message),
        ),
    ]
}

/// A JSON object body of an agent's call, read after its credentials were checked: 413 beyond
/// the proxy's cap, 400 when it is not a JSON object.
struct ProxyBody(Value);

impl FromRequest<AppState> for ProxyBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let max = state.security.proxy_max_body;
        let bytes = crate::body::read_body(req, state, max).await?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        Ok(Self(value))
    }
}

/// The provider's answer as it came.
fn passthrough(answer: Passthrough) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The agent a provision call is for: the admin key with `{"instanceId"}` in the body (read
/// only once the key is known to be the admin's), or the agent's own credentials.
async fn agent_or_admin(state: &AppState, request: Request) -> Result<Agent, ApiError> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let admin = crate::auth::bearer_of(&authorization).is_some_and(|key| crate::is_admin_key(state, key));
    if !admin {
        let (id, token) = instance_credentials(&authorization)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, MISSING_CREDENTIALS))?;
        return Ok(state.provisioner.authenticate_agent(id, token).await?);
    }
    let bytes = crate::body::read_body(request, state, crate::MAX_BODY).await?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let Some(id) = body.get("instanceId").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(
            "instanceId required in body when using admin auth",
        ));
    };
    let id = crate::routes::agent_id(id)?;
    match state.provisioner.store().agent(&id).await? {
        Some(agent) if agent.status != AgentStatus::Deleted => Ok(agent),
        _ => Err(ApiError::not_found(format!("no agent {id}"))),
    }
}

fn field(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Email => "email",
        ServiceKind::Sms => "phone",
    }
}

async fn provision(state: AppState, request: Request, kind: ServiceKind) -> Result<Json<Value>, ApiError> {
    let agent = agent_or_admin(&state, request).await?;
    let done = state.provisioner.provision_service(&agent, kind).await?;
    Ok(Json(
        json!({field(kind): done.resource, "provisioned": done.provisioned}),
    ))
}

async fn unprovision(state: AppState, request: Request, kind: ServiceKind) -> Result<Json<Value>, ApiError> {
    let agent = agent_or_admin(&state, request).await?;
    Ok(Json(
        match state.provisioner.unprovision_service(&agent, kind).await? {
            Some(resource) => json!({field(kind): resource, "unprovisioned": true}),
            None => json!({field(kind): null, "unprovisioned": false, "reason": "not_provisioned"}),
        },
    ))
}

async fn email_provision(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    provision(state, request, ServiceKind::Email).await
}

async fn sms_provision(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    provision(state, request, ServiceKind::Sms).await
}

async fn email_unprovision(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    unprovision(state, request, ServiceKind::Email).await
}

async fn sms_unprovision(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    unprovision(state, request, ServiceKind::Sms).await
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusQuery {
    instance_id: Option<String>,
}

async fn services_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let admin = crate::auth::bearer(&headers).is_some_and(|key| crate::is_admin_key(&state, key));
    if !admin {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing API key",
        ));
    }
    let Some(id) = query.instance_id else {
        return Err(ApiError::bad_request("instanceId query param required"));
    };
    let id = crate::routes::agent_id(&id)?;
    if state.provisioner.store().agent(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no agent {id}")));
    }
    let info = state.provisioner.agent_service_info(&id).await?;
    Ok(Json(
        json!({"instanceId": id, "email": info.email, "phone": info.phone}),
    ))
}

async fn info(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
) -> Result<Json<Value>, ApiError> {
    let info = state.provisioner.proxy_info(&agent).await?;
    Ok(Json(
        json!({"instanceId": agent.id, "email": info.email, "phone": info.phone}),
    ))
}

async fn email(state: &AppState, agent: &Agent, call: EmailCall) -> Result<Response, ApiError> {
    Ok(passthrough(state.provisioner.proxy_email(agent, call).await?))
}

async fn sms(state: &AppState, agent: &Agent, call: SmsCall) -> Result<Response, ApiError> {
    Ok(passthrough(state.provisioner.proxy_sms(agent, call).await?))
}

async fn email_send(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
    ProxyBody(body): ProxyBody,
) -> Result<Response, ApiError> {
    email(&state, &agent, EmailCall::Send(body)).await
}

async fn email_messages(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    email(&state, &agent, EmailCall::ListMessages { query }).await
}

async fn email_threads(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    email(&state, &agent, EmailCall::ListThreads { query }).await
}

async fn email_message(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    email(&state, &agent, EmailCall::GetMessage { id }).await
}

async fn email_update(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
    Path(id): Path<String>,
    ProxyBody(body): ProxyBody,
) -> Result<Response, ApiError> {
    email(&state, &agent, EmailCall::UpdateMessage { id, body }).await
}

async fn sms_send(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
    ProxyBody(body): ProxyBody,
) -> Result<Response, ApiError> {
    sms(&state, &agent, SmsCall::Send(body)).await
}

async fn sms_records(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    sms(&state, &agent, SmsCall::Records { query }).await
}

async fn sms_message(
    State(state): State<AppState>,
    AgentCaller(agent): AgentCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    sms(&state, &agent, SmsCall::Message { id }).await
}
