//! What the router tests share: a router over a test pool with the admin key, and one call.
#![allow(clippy::unwrap_used, dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use pool_http::{AppState, ServiceInfo};
use pool_provisioner::testing::TestPool;
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

/// The admin key the router is given.
pub const KEY: &str = "test-admin-key-0123456789";

/// The router over `pool`'s provisioner, with the admin key [`KEY`] and no webhook secret.
pub fn app(pool: &TestPool) -> Router {
    pool_http::router(AppState {
        provisioner: pool.provisioner.clone(),
        control: std::sync::Arc::new(pool_http::DetachedControl::default()),
        admin_key: SecretString::from(KEY),
        info: ServiceInfo {
            version: "test".into(),
        },
        console: pool_http::console::ConsoleConfig::default(),
        webhook_secret: None,
        security: pool_http::SecurityConfig::default(),
    })
}

/// One call with the admin key and a JSON body: the status and the answer as JSON (`null`
/// when it is not JSON).
pub async fn call(app: &Router, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
