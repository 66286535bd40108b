//! Serving the router to clients that may be slow or hostile: hyper's HTTP/1 server with a
//! header-read timeout and graceful shutdown, and the middleware that bounds every request —
//! load shedding beyond a number of requests in flight, a timeout on every route, HSTS.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::AppState;
use crate::error::ApiError;

/// Margin a claim's route timeout leaves beyond the claim's own waits.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

/// Serves `state`'s [`crate::router`] on `listener` until `shutdown` completes, then stops
/// accepting, lets the requests in flight finish (claims included) and returns.
///
/// Each connection is HTTP/1.1 with keep-alive. A client must send a request's headers within
/// [`crate::SecurityConfig::header_read_timeout`] of starting it (or of the previous
/// answer, on a kept-alive connection), however it trickles them; otherwise the connection is
/// closed. The handlers see the peer's address as
/// [`ConnectInfo<SocketAddr>`].
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let header_read_timeout = state.security.header_read_timeout;
    let app = crate::router(state);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // go on after a moment rather than spin or stop serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small JSON answers: send them at once rather than waiting on Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            tower::Service::call(&mut app.clone(), request.map(axum::body::Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The time a request on `path` has to be answered: the API's claim may wait
/// ([`pool_provisioner::MAX_CLAIM_WAIT`]) and then provision, the console's launch provisions
/// (it never waits); every other route has [`crate::SecurityConfig::request_timeout`].
pub fn route_timeout(state: &AppState, path: &str) -> Duration {
    let provision = state.provisioner.config().provision_timeout;
    match path {
        crate::route_table::CLAIM_PATH => pool_provisioner::MAX_CLAIM_WAIT + provision + CLAIM_MARGIN,
        "/console/launch" => provision + CLAIM_MARGIN,
        _ => state.security.request_timeout,
    }
}

/// Middleware: answers 503 when the route's time ([`route_timeout`]) is up.
pub(crate) async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = route_timeout(&state, request.uri().path());
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_s = limit.as_secs(), "request timed out");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the request took longer than {} s", limit.as_secs()),
            )
            .into_response()
        }
    }
}

/// Which in-flight budget a request counts against, by its path alone (decided before any
/// work): the service proxy's callers (agents), the API's (bearer keys: the claims), the
/// signed-in console's, and everyone's (sign-in, webhooks, probes, the console's assets).
/// `None`: never shed (`/healthz`, which does no work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    Public,
    Console,
    Api,
    Agents,
}

impl Budget {
    pub(crate) fn of(path: &str) -> Option<Self> {
        if path == "/healthz" {
            return None;
        }
        Some(if path.starts_with("/api/proxy/") {
            Self::Agents
        } else if path.starts_with("/api/") {
            Self::Api
        } else if matches!(
            path,
            "/readyz"
                | "/version"
                | "/metrics"
                | "/openapi.json"
                | "/login"
                | "/console/app.js"
                | "/console/app.css"
        ) || path.starts_with("/webhooks/")
        {
            Self::Public
        } else {
            Self::Console
        })
    }
}

/// The four budgets of requests in flight.
pub(crate) struct Budgets {
    public: Arc<Semaphore>,
    console: Arc<Semaphore>,
    api: Arc<Semaphore>,
    agents: Arc<Semaphore>,
}

impl Budgets {
    pub(crate) fn new(security: &crate::SecurityConfig) -> Self {
        let budget = |n: usize| Arc::new(Semaphore::new(n.max(1)));
        Self {
            public: budget(security.max_in_flight_public),
            console: budget(security.max_in_flight_console),
            api: budget(security.max_in_flight),
            agents: budget(security.max_in_flight_agents),
        }
    }

    fn permits(&self, budget: Budget) -> &Arc<Semaphore> {
        match budget {
            Budget::Public => &self.public,
            Budget::Console => &self.console,
            Budget::Api => &self.api,
            Budget::Agents => &self.agents,
        }
    }
}

/// Middleware: at most as many requests in flight per budget ([`Budget`]) as it holds; one
/// more is refused at once with 503 and `Retry-After: 1`, before any work (no body read, no key
/// check, no query). Slow clients on one budget never take another's slots: a flood of slow
/// sign-ins or uploads leaves the claims their own.
pub(crate) async fn shed(State(budgets): State<Arc<Budgets>>, request: Request, next: Next) -> Response {
    let Some(budget) = Budget::of(request.uri().path()) else {
        return next.run(request).await;
    };
    match budgets.permits(budget).clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => {
            tracing::warn!(budget = ?budget, "load shed: too many requests in flight");
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the server is at its limit of requests in flight; try again shortly".into(),
                retry_after: Some(1),
            }
            .into_response()
        }
    }
}

/// Middleware: `Strict-Transport-Security` on every answer when the service is reached over
/// HTTPS (that is, unless `POOL_CONSOLE_INSECURE_COOKIES` says it runs on plain HTTP locally).
pub(crate) async fn transport_security(State(hsts): State<bool>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if hsts {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}
