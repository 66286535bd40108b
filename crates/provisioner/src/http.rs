//! A small JSON-over-HTTP client for the agents, OpenRouter and AgentMail (hyper + rustls/ring).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest answer read from an agent or a resource API.
const MAX_BODY: usize = 1024 * 1024;

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Bytes,
}

/// Why no answer came.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpFailure {
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
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    /// A client with the ring crypto provider and webpki roots.
    pub fn new() -> Result<Self, HttpFailure> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Small JSON requests: send them at once rather than waiting on Nagle's algorithm.
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| HttpFailure::Invalid(format!("TLS setup: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self { client })
    }

    /// Sends one request with an optional bearer and JSON body.
    pub async fn send(
        &self,
        method: hyper::Method,
        url: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<HttpAnswer, HttpFailure> {
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
    ) -> Result<HttpAnswer, HttpFailure> {
        let mut request = hyper::Request::builder().method(method).uri(url);
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let payload = match body {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(json).map_err(|e| HttpFailure::Invalid(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| HttpFailure::Invalid(format!("{url}: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    HttpFailure::NotSent(e.to_string())
                } else {
                    HttpFailure::Transport(e.to_string())
                }
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| HttpFailure::Transport(e.to_string()))?
                .to_bytes();
            Ok(HttpAnswer { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpFailure::Timeout(timeout))?
    }
}

/// The first 200 characters of a body, on one line (for error messages).
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}
