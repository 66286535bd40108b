//! The client's core: one generic `execute` over [`Operation`], through the budget, the retry
//! policy and the error table. The typed calls live in `projects.rs`, `services.rs` and
//! `status.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::budget::{Budget, BudgetSnapshot, Priority};
use crate::classify::{Delivery, ErrorKind, classify};
use crate::config::ClientConfig;
use crate::error::{GraphQlErrorInfo, RailwayError};
use crate::operations::{Kind, Operation};
use crate::pacing::ProjectCreatePacer;
use crate::tokens::{TokenIndex, TokenPool};
use crate::transport::Transport;

pub(crate) type Result<T, E = RailwayError> = std::result::Result<T, E>;

/// Requests by operation and outcome, since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// `(operation, outcome) → count`; outcome is `ok`, `rate_limited`, `throttled`,
    /// `transient`, `not_found`, `already_exists`, `unauthorized`, `invalid`, `unknown_error`,
    /// `http_error`, `timeout`, `transport_error`, `not_sent` or `decode_error`.
    pub by_operation: BTreeMap<(String, String), u64>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    transport: Transport,
    pub(crate) tokens: TokenPool,
    budget: Arc<Budget>,
    stats: Mutex<RequestStats>,
    pub(crate) pacer: ProjectCreatePacer,
}

/// A Railway client. Cheap to clone; clones share one budget, token pool and connection pool.
#[derive(Clone)]
pub struct RailwayClient {
    pub(crate) inner: Arc<Inner>,
    priority: Option<Priority>,
}

impl std::fmt::Debug for RailwayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct WireResponse<T> {
    data: Option<T>,
    errors: Option<Vec<WireError>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireError {
    message: String,
    #[serde(default)]
    path: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    extensions: Option<WireExtensions>,
    /// "Problem processing request" carries its trace id at the top level.
    #[serde(default)]
    trace_id: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireExtensions {
    code: Option<String>,
    error_code: Option<String>,
    trace_id: Option<serde_json::Value>,
}

fn text(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl RailwayClient {
    /// A client with its own budget. Fails only on configuration (no token, a malformed
    /// endpoint); nothing is sent until the first call.
    pub fn new(config: ClientConfig) -> Result<Self> {
        if config.tokens.is_empty() {
            return Err(RailwayError::Config {
                reason: "no Railway API token configured".into(),
            });
        }
        let transport = Transport::new(&config.endpoint_with_query(), &config.user_agent)?;
        Ok(Self {
            inner: Arc::new(Inner {
                tokens: TokenPool::new(config.tokens.clone()),
                budget: Budget::new(config.budget.clone()),
                transport,
                stats: Mutex::new(RequestStats::default()),
                pacer: ProjectCreatePacer::default(),
                config,
            }),
            priority: None,
        })
    }

    /// The same client, sending every call at `priority` (e.g. `Critical` on the claim path).
    pub fn with_priority(&self, priority: Priority) -> Self {
        Self {
            inner: self.inner.clone(),
            priority: Some(priority),
        }
    }

    /// Requests of this priority that may still be sent this hour without waiting for the
    /// hourly windows ([`Budget::available`]): a caller that must not wait (the tick) chooses
    /// whom to read with it.
    pub fn budget_available(&self, priority: Priority) -> usize {
        self.inner.budget.available(priority)
    }

    /// The budget's current numbers.
    pub fn budget(&self) -> BudgetSnapshot {
        self.inner.budget.snapshot()
    }

    /// Limits this client (and its clones) to `requests` an hour: its slice of a budget that
    /// several processes share (`None`: the whole configured budget).
    pub fn lease_hourly_budget(&self, requests: Option<usize>) {
        self.inner.budget.lease_hourly(requests);
    }

    /// The hourly budget as configured, before any lease.
    pub fn configured_hourly_budget(&self) -> usize {
        self.inner.budget.configured_per_hour()
    }

    /// Requests by operation and outcome.
    pub fn stats(&self) -> RequestStats {
        self.inner.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    fn record(&self, operation: &str, outcome: &str) {
        let mut stats = self.inner.stats.lock().unwrap_or_else(|p| p.into_inner());
        *stats
            .by_operation
            .entry((operation.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        let c = &self.inner.config;
        ExponentialBuilder::default()
            .with_min_delay(c.retry_min_delay)
            .with_max_delay(c.retry_max_delay)
            .with_max_times(c.max_attempts.saturating_sub(1))
            .with_jitter()
    }

    pub(crate) fn encode<O: Operation>(variables: O::Variables) -> Result<Bytes> {
        serde_json::to_vec(&O::build(variables))
            .map(Bytes::from)
            .map_err(|e| RailwayError::Config {
                reason: format!("could not encode {}: {e}", O::NAME),
            })
    }

    /// Runs an operation with the retry policy: a query on any passing failure, a mutation
    /// only when Railway provably did not apply it.
    pub(crate) async fn execute<O: Operation>(&self, variables: O::Variables) -> Result<O> {
        let body = Self::encode::<O>(variables)?;
        let priority = self.priority.unwrap_or(O::PRIORITY);
        let attempt = || async {
            self.attempt::<O>(O::NAME, priority, body.clone(), self.inner.tokens.any())
                .await
        };
        attempt
            .retry(self.backoff())
            .when(|e: &RailwayError| match O::KIND {
                Kind::Query => e.retryable_query(),
                Kind::Mutation => e.retryable_mutation(),
            })
            .notify(
                |e, delay| tracing::debug!(operation = O::NAME, error = %e, ?delay, "retrying Railway call"),
            )
            .await
    }

    /// One request: budget, send, classify, count.
    pub(crate) async fn attempt<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        priority: Priority,
        body: Bytes,
        token: TokenIndex,
    ) -> Result<T> {
        let result = self.send(operation, priority, body, token).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(RailwayError::RateLimited { .. }) => "rate_limited",
            Err(RailwayError::Api { kind, .. }) => match kind {
                ErrorKind::Throttled { .. } => "throttled",
                ErrorKind::Transient => "transient",
                ErrorKind::NotFound => "not_found",
                ErrorKind::AlreadyExists => "already_exists",
                ErrorKind::Unauthorized => "unauthorized",
                ErrorKind::Invalid => "invalid",
                _ => "unknown_error",
            },
            Err(RailwayError::Http { .. }) => "http_error",
            Err(RailwayError::Timeout(_)) => "timeout",
            Err(RailwayError::Transport { .. }) => "transport_error",
            Err(RailwayError::NotSent { .. } | RailwayError::Config { .. }) => "not_sent",
            Err(_) => "decode_error",
        };
        self.record(operation, outcome);
        result
    }

    async fn send<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        priority: Priority,
        body: Bytes,
        token: TokenIndex,
    ) -> Result<T> {
        let inner = &self.inner;
        let permit = inner.budget.acquire(priority).await;
        let response = inner
            .transport
            .post(inner.tokens.token(token), body, inner.config.request_timeout)
            .await;
        drop(permit);
        let response = response?;
        if let Some(remaining) = header_u64(&response.headers, "x-ratelimit-remaining") {
            let reset = header_u64(&response.headers, "x-ratelimit-reset").map(reset_delay);
            inner.budget.observe_remaining(remaining, reset);
        }
        match response.status {
            200 => {}
            429 => {
                let retry_after = header_u64(&response.headers, "retry-after")
                    .map(Duration::from_secs)
                    .unwrap_or(Duration::from_secs(5));
                let edge = !response.headers.contains_key("x-ratelimit-limit");
                inner.budget.pause(retry_after);
                return Err(RailwayError::RateLimited { retry_after, edge });
            }
            status => {
                // A GraphQL error inside a 400 (validation) is still worth reading.
                if let Ok(decoded) = serde_json::from_slice::<WireResponse<serde_json::Value>>(&response.body)
                    && let Some(errors) = decoded.errors.filter(|e| !e.is_empty())
                    && status == 400
                {
                    return Err(classify_errors(operation, errors));
                }
                return Err(RailwayError::Http {
                    status,
                    body_excerpt: excerpt(&response.body),
                });
            }
        }
        let decoded: WireResponse<T> = serde_json::from_slice(&response.body)
            .map_err(|e| RailwayError::Decode(format!("{e}; body starts {:?}", excerpt(&response.body))))?;
        if let Some(errors) = decoded.errors.filter(|e| !e.is_empty()) {
            return Err(classify_errors(operation, errors));
        }
        decoded
            .data
            .ok_or_else(|| RailwayError::Decode("answer has neither data nor errors".into()))
    }
}

/// GraphQL errors, through the message table. An unknown message is logged with Railway's
/// trace id: it is treated as "may have applied", and support needs the id to say more.
fn classify_errors(operation: &'static str, errors: Vec<WireError>) -> RailwayError {
    let errors: Vec<GraphQlErrorInfo> = errors
        .into_iter()
        .map(|e| {
            let (code, extension_trace) = match e.extensions {
                Some(x) => (x.code.or(x.error_code), text(x.trace_id)),
                None => (None, None),
            };
            GraphQlErrorInfo {
                message: e.message,
                path: e
                    .path
                    .unwrap_or_default()
                    .iter()
                    .map(|p| match p {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
                code,
                trace_id: text(e.trace_id).or(extension_trace),
            }
        })
        .collect();
    // The first error decides, as Railway puts the operation's own error first.
    let (kind, delivery) = errors
        .first()
        .map(|e| classify(operation, &e.message, e.code.as_deref()))
        .unwrap_or((ErrorKind::Unknown, Delivery::MayHaveApplied));
    if kind == ErrorKind::Unknown {
        let first = errors.first();
        tracing::warn!(
            operation,
            message = first.map(|e| e.message.as_str()).unwrap_or(""),
            code = first.and_then(|e| e.code.as_deref()).unwrap_or(""),
            trace_id = first.and_then(|e| e.trace_id.as_deref()).unwrap_or(""),
            "Railway answered with a message this client does not know; treating it as \"may have applied\""
        );
    }
    RailwayError::Api {
        operation,
        kind,
        delivery,
        errors,
    }
}

fn header_u64(headers: &hyper::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .map(|v| v.max(0.0).ceil() as u64)
}

/// `X-RateLimit-Reset` as a delay: Railway may send epoch seconds or seconds from now.
fn reset_delay(value: u64) -> Duration {
    const EPOCH_2001: u64 = 1_000_000_000;
    if value > EPOCH_2001 {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        Duration::from_secs(value.saturating_sub(now))
    } else {
        Duration::from_secs(value)
    }
}

/// The first 300 characters of a body, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(300).collect();
    if one_line.chars().count() > 300 {
        out.push('…');
    }
    out
}
