//! The pool manager's HTTP API.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use pool_http::console::ConsoleConfig;
//! use pool_http::{AppState, DetachedControl, ServiceInfo, router};
//! use pool_provisioner::Provisioner;
//! use secrecy::SecretString;
//!
//! # async fn example(provisioner: Provisioner) -> std::io::Result<()> {
//! let state = AppState {
//!     provisioner,
//!     // The binary hands in its reconciler; an embedder that runs none elsewhere uses this.
//!     control: Arc::new(DetachedControl::default()),
//!     admin_key: SecretString::from("the admin key".to_string()),
//!     info: ServiceInfo { version: "1.0.0".into() },
//!     console: ConsoleConfig::default(),
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router(state)).await
//! # }
//! ```
//!
//! `pool-http` owns the axum router, bearer auth, the wire types, error mapping, the OpenAPI
//! document and the metrics endpoint. It keeps the original API's paths and payloads.
//!
//! Architecture invariant: thin — every handler maps HTTP onto a provisioner or store call, or
//! onto the [`PoolControl`] the binary hands in; no pool logic lives here, and nothing of the
//! reconciler's internals is known here.

mod auth;
mod body;
pub mod console;
mod control;
pub mod dto;
mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
mod settings_routes;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use pool_provisioner::Provisioner;
use secrecy::SecretString;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::is_admin_key;
pub use body::{JsonBody, MAX_BODY};
pub use control::{DetachedControl, PoolControl, ReconcilerView, TickView};
pub use error::ApiError;

/// What the service says about itself.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Version of this build.
    pub version: String,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The provisioner (and through it the store and Railway client).
    pub provisioner: Provisioner,
    /// The reconciler, as far as the API may touch it.
    pub control: Arc<dyn PoolControl>,
    /// `POOL_API_KEY`.
    pub admin_key: SecretString,
    /// About this build.
    pub info: ServiceInfo,
    /// The operator console.
    pub console: console::ConsoleConfig,
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// The API router with its layers: auth per route, JSON errors for unknown routes and
/// methods, body limit, timeouts (longer for claims, which wait for the agent), request ids,
/// tracing that never records the `Authorization` header, and panic catching.
pub fn router(state: AppState) -> Router {
    let claim_timeout = state.provisioner.config().provision_timeout + Duration::from_secs(30);
    let mut router = Router::new();
    let mut by_path: Vec<(&'static str, axum::routing::MethodRouter<AppState>)> = Vec::new();
    for (route, handler) in routes::routes() {
        let handler = if route.auth {
            handler.route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::require_admin,
            ))
        } else {
            handler
        };
        let timeout = if route.path == "/api/pool/claim" {
            claim_timeout
        } else {
            Duration::from_secs(60)
        };
        let handler = handler.layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
        match by_path.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((route.path, handler)),
        }
    }
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    router
        .merge(console::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http().on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN)).make_span_with(|request: &axum::http::Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
}
