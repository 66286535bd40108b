//! The service proxy's routes, `/api/proxy/*`, with the Node pool's paths and payloads at the
//! runtime's pinned commit (`pool/src/routes/serviceProxy.ts`, mounted at the app's root,
//! `pool/src/index.ts:422`); the route table lists them ([`crate::route_table::proxy_table`],
//! [`crate::route_table::Access::Agent`]). Thin: each maps onto a
//! [`pool_provisioner::Provisioner`] call.
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
use crate::route_table::ProxyEndpoint;

/// The handler of one of the proxy's routes ([`crate::route_table::proxy_table`]).
pub(crate) fn handler(endpoint: ProxyEndpoint) -> MethodRouter<AppState> {
    match endpoint {
        ProxyEndpoint::EmailProvision => post(email_provision),
        ProxyEndpoint::SmsProvision => post(sms_provision),
        ProxyEndpoint::EmailUnprovision => post(email_unprovision),
        ProxyEndpoint::SmsUnprovision => post(sms_unprovision),
        ProxyEndpoint::ServicesStatus => get(services_status),
        ProxyEndpoint::Info => get(info),
        ProxyEndpoint::EmailSend => post(email_send),
        ProxyEndpoint::EmailMessages => get(email_messages),
        ProxyEndpoint::EmailMessage => get(email_message),
        ProxyEndpoint::EmailUpdate => patch(email_update),
        ProxyEndpoint::EmailThreads => get(email_threads),
        ProxyEndpoint::SmsSend => post(sms_send),
        ProxyEndpoint::SmsRecords => get(sms_records),
        ProxyEndpoint::SmsMessage => get(sms_message),
    }
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
