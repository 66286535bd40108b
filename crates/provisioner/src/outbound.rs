//! The pool's outbound JSON client for the agents, OpenRouter and AgentMail, on the workspace's
//! one HTTPS client builder ([`railway_api::https`]: hyper + rustls with ring).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use railway_api::https::{ClientOptions, ExtraRoots, HttpsClient};

/// Largest answer read from an agent or a resource API.
const MAX_BODY: usize = 1024 * 1024;

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct OutboundAnswer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Why no answer came.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundFailure {
    /// Could not connect: nothing was sent.
    #[error("could not connect: {0}")]
    NotSent(String),
    /// No answer in time: the request may have been handled.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke mid-request.
    #[error("connection failed: {0}")]
    Transport(String),
    /// The URL or request was malformed.
    #[error("bad request: {0}")]
    Invalid(String),
    /// The answer's body was longer than the client reads (its limit, in bytes).
    #[error("an answer larger than {0} bytes")]
    TooLarge(usize),
}

/// TLS sessions the agents' client remembers. rustls keeps up to 8 tickets per host, so this
/// covers 2,048 hosts; past that the least recently used go, and those handshakes are full ones
/// (`cargo xtask bench tick`: every handshake resumed at 1,000 agents, none at 5,000). A cache
/// for 10,000 hosts would cost about 10 KiB per host.
pub const AGENT_TLS_SESSIONS: usize = 16_384;

/// The client. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct OutboundClient {
    client: HttpsClient,
    /// Largest body read; a longer answer is [`OutboundFailure::TooLarge`].
    max_body: usize,
    /// Every request asks for its connection to be closed after the answer.
    close: bool,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundClient")
    }
}

impl OutboundClient {
    /// A client trusting the webpki roots, keeping connections for 90 s.
    pub fn new() -> Result<Self, OutboundFailure> {
        Self::for_agents(&ExtraRoots::default(), Duration::from_secs(90))
    }

    /// A client for a fleet of agents, each at a host of its own: at most one idle
    /// connection to each, kept for `keep_alive` (zero: none), and TLS sessions remembered
    /// for resumption ([`AGENT_TLS_SESSIONS`]). Trusts `extra_roots` besides the webpki
    /// roots (a private CA, or the bench's self-signed agents).
    pub fn for_agents(extra_roots: &ExtraRoots, keep_alive: Duration) -> Result<Self, OutboundFailure> {
        let options = ClientOptions {
            idle_timeout: keep_alive,
            max_idle_per_host: 1,
            tls_sessions: AGENT_TLS_SESSIONS,
            per_host_sessions: None,
            extra_roots: extra_roots.clone(),
        };
        let client =
            railway_api::https::client(&options).map_err(|e| OutboundFailure::Invalid(e.to_string()))?;
        Ok(Self {
            client,
            max_body: MAX_BODY,
            close: false,
        })
    }

    /// A client for health checks of a fleet: answers read up to `max_body` bytes (a longer
    /// one is a failure, not memory), TLS sessions in `sessions` (one ticket per agent, sized
    /// to the fleet), and connections kept for `keep_alive` — zero: none kept, and every
    /// request says `Connection: close`, so neither side holds a connection between checks.
    pub fn for_probes(
        extra_roots: &ExtraRoots,
        keep_alive: Duration,
        sessions: std::sync::Arc<railway_api::sessions::PerHostSessions>,
        max_body: usize,
    ) -> Result<Self, OutboundFailure> {
        let options = ClientOptions {
            idle_timeout: keep_alive,
            max_idle_per_host: 1,
            tls_sessions: sessions.capacity(),
            per_host_sessions: Some(sessions),
            extra_roots: extra_roots.clone(),
        };
        let client =
            railway_api::https::client(&options).map_err(|e| OutboundFailure::Invalid(e.to_string()))?;
        Ok(Self {
            client,
            max_body,
            close: keep_alive.is_zero(),
        })
    }

    /// Sends one request with an optional bearer and JSON body.
    pub async fn send(
        &self,
        method: hyper::Method,
        url: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<OutboundAnswer, OutboundFailure> {
        self.send_with_headers(method, url, bearer, &[], body, timeout)
            .await
    }

    /// [`Self::send`] with extra headers.
    pub async fn send_with_headers(
        &self,
        method: hyper::Method,
        url: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<OutboundAnswer, OutboundFailure> {
        let mut request = hyper::Request::builder().method(method).uri(url);
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if self.close {
            request = request.header(hyper::header::CONNECTION, "close");
        }
        let payload = match body {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(json).map_err(|e| OutboundFailure::Invalid(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| OutboundFailure::Invalid(format!("{url}: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    OutboundFailure::NotSent(e.to_string())
                } else {
                    OutboundFailure::Transport(e.to_string())
                }
            })?;
            let status = response.status().as_u16();
            let (parts, body) = response.into_parts();
            let headers = parts.headers;
            let max_body = self.max_body;
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                        OutboundFailure::TooLarge(max_body)
                    } else {
                        OutboundFailure::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(OutboundAnswer {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| OutboundFailure::Timeout(timeout))?
    }
}

/// The first 200 characters of a body, on one line (for error messages).
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}
