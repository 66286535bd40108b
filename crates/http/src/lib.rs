//! The pool manager's HTTP API.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use pool_http::console::ConsoleConfig;
//! use pool_http::{AppState, DetachedControl, SecurityConfig, ServiceInfo, serve};
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
//!     webhook_secret: None,
//!     security: SecurityConfig::default(),
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Header-read timeout, load shedding, route timeouts; graceful shutdown on the signal.
//! serve(listener, state, std::future::pending()).await
//! # }
//! ```
//!
//! `pool-http` owns the axum router, bearer auth, the wire types, error mapping, the OpenAPI
//! document and the metrics endpoint. It keeps the original API's paths and payloads.
//!
//! Architecture invariant: thin — every handler maps HTTP onto a provisioner or store call, or
//! onto the [`PoolControl`] the binary hands in; no pool logic lives here, and nothing of the
//! reconciler's internals is known here. Every API route, with who may call it, is a row of
//! the route table (`route_table/`), which depends on nothing else in the crate; the router,
//! the key checks and the OpenAPI document read it (`cargo xtask tidy`: `route-table`).

mod agent_auth;
mod agent_calls;
mod auth;
mod body;
pub mod console;
mod control;
pub mod dto;
mod error;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod replicas;
mod rollout_routes;
pub mod route_table;
pub mod routes;
mod security;
mod server;
mod settings_routes;
mod status_body;
pub mod stock;
pub mod webhooks;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use pool_provisioner::Provisioner;
use secrecy::SecretString;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub use agent_auth::{AgentCaller, AgentCredentials, MISSING_CREDENTIALS, instance_credentials};
pub use auth::{Caller, ClaimKey, MIN_CLAIM_KEY_LEN, caller_of, is_admin_key, parse_claim_keys};
pub use body::{BodyDeadline, JsonBody, MAX_BODY};
pub use control::{DetachedControl, PoolControl, ProberView, ReconcilerView, TickView};
pub use error::ApiError;
pub use security::SecurityConfig;
pub use server::{route_timeout, serve};

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
    /// `RAILWAY_WEBHOOK_SECRET`: the path secret of Railway's deploy events (`None`: the
    /// webhook route answers 404).
    pub webhook_secret: Option<SecretString>,
    /// The claim and metrics keys, and the server's limits.
    pub security: SecurityConfig,
}

/// What the handlers of one router share at run time (a request extension): the counts
/// `/metrics` serves.
pub(crate) struct Shared {
    pub(crate) metrics: metrics::MetricsCache,
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// The API router with its layers: keys per route (the admin key everywhere, claim keys on
/// the claim only), JSON errors for unknown routes and methods, body limit, a timeout on every
/// route ([`route_timeout`]: longer for claims, which wait for the agent), load shedding beyond
/// [`SecurityConfig::max_in_flight`], HSTS, request ids, tracing that never records the
/// `Authorization` header or cookies, and panic catching. [`serve`] adds the connection's
/// limits.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    let mut by_path: Vec<(&'static str, axum::routing::MethodRouter<AppState>)> = Vec::new();
    for (route, handler) in routes::routes() {
        let handler = match route.access {
            route_table::Access::Open | route_table::Access::Agent | route_table::Access::AgentBody => {
                handler
            }
            access => {
                let state = state.clone();
                handler.route_layer(axum::middleware::from_fn(move |request: Request, next: Next| {
                    auth::require(state.clone(), access, request, next)
                }))
            }
        };
        match by_path.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((route.path, handler)),
        }
    }
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    let shared = Arc::new(Shared {
        metrics: metrics::MetricsCache::new(state.security.metrics_refresh),
    });
    let budgets = Arc::new(server::Budgets::new(&state.security));
    let hsts = state.console.secure_cookies;
    router
        .merge(console::routes(&state))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.security.body_read_timeout,
            body::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            server::timeout,
        ))
        .layer(axum::Extension(shared))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(budgets, server::shed))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            hsts,
            server::transport_security,
        ))
        .layer(
            TraceLayer::new_for_http()
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN))
                .make_span_with(|request: &axum::http::Request<_>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string();
                    // The webhook's path carries its secret: never logged.
                    let path = request.uri().path();
                    let path = if path.starts_with("/webhooks/railway/") {
                        webhooks::REDACTED_PATH
                    } else {
                        path
                    };
                    tracing::info_span!("request", method = %request.method(), path = %path, request_id = %id)
                }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}
