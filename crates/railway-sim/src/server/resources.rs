//! Fake OpenRouter (per-agent keys) and AgentMail (inboxes): the resources each agent gets.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use rand::Rng;
use serde_json::{Value, json};

use crate::world::{Inbox, Key, World};

use super::{Sim, bearer, draw};

/// Their routes.
pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/openrouter/api/v1/keys", post(create_key).get(list_keys))
        .route("/openrouter/api/v1/keys/{hash}", delete(delete_key))
        .route("/agentmail/v0/inboxes", post(create_inbox).get(list_inboxes))
        .route("/agentmail/v0/inboxes/{id}", delete(delete_inbox))
}

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
