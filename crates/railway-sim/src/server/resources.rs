//! Fake OpenRouter: the key API the creation saga uses for a key per agent (the Node pool's
//! `pool/src/services/providers/openrouter.ts:4-27`). AgentMail is [`super::mail`], Telnyx
//! [`super::sms`].

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use rand::Rng;
use serde_json::{Value, json};

use crate::world::Key;

use super::{Sim, check_bearer, resource_fault};

/// Their routes.
pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/openrouter/api/v1/keys", post(create_key).get(list_keys))
        .route("/openrouter/api/v1/keys/{hash}", delete(delete_key))
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
