//! The client's one error type.

use std::time::Duration;

/// Whether a failed request may have changed anything on Railway. This decides what a caller
/// may retry: a mutation is only repeated when Railway provably did not apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The request never reached Railway (connection refused, DNS failure, budget closed).
    NotSent,
    /// Railway answered and refused: nothing was applied.
    Refused,
    /// Railway may have applied it (timeout, broken connection, 5xx, undecodable answer):
    /// look the resource up before creating it again.
    MayHaveApplied,
}

/// One GraphQL error as Railway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphQlErrorInfo {
    /// The message (e.g. "Not Authorized").
    pub message: String,
    /// The response path the error belongs to.
    pub path: Vec<String>,
    /// `extensions.code` when the server sends one (`BAD_USER_INPUT`, `INTERNAL_SERVER_ERROR`).
    pub code: Option<String>,
    /// `extensions.traceId`, for Railway support.
    pub trace_id: Option<String>,
}

impl std::fmt::Display for GraphQlErrorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if !self.path.is_empty() {
            write!(f, " at {}", self.path.join("."))?;
        }
        Ok(())
    }
}

/// What went wrong with a Railway request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RailwayError {
    /// The request could not be sent (connection refused, DNS, TLS handshake).
    #[error("could not reach Railway: {reason}")]
    NotSent {
        /// The cause, in one line.
        reason: String,
    },
    /// No answer within the request timeout; the request may have been applied.
    #[error("Railway did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke after the request was sent; it may have been applied.
    #[error("connection to Railway failed mid-request: {reason}")]
    Transport {
        /// The cause, in one line.
        reason: String,
    },
    /// Railway (or its edge) answered 429. Nothing was applied.
    #[error("rate limited by Railway; retry after {retry_after:?}")]
    RateLimited {
        /// How long Railway asked us to wait.
        retry_after: Duration,
        /// True for the edge's HTML page (no rate-limit headers).
        edge: bool,
    },
    /// The token was refused ("Not Authorized", "Project Token not found", 401/403).
    #[error("Railway refused the token: {message}")]
    Unauthorized {
        /// Railway's message.
        message: String,
    },
    /// A per-token throttle ("Only one project can be created per user", "You are creating
    /// volumes too quickly"). Nothing was applied; another token may succeed.
    #[error("Railway throttled {operation}: {message}")]
    Throttled {
        /// The operation that was throttled.
        operation: &'static str,
        /// Railway's message.
        message: String,
        /// When this token may try again.
        retry_after: Duration,
    },
    /// An HTTP status other than 200 (and 429), with the start of the body.
    #[error("Railway answered HTTP {status}: {body_excerpt}")]
    Http {
        /// The status code.
        status: u16,
        /// The first few hundred characters of the body.
        body_excerpt: String,
    },
    /// GraphQL errors inside an HTTP 200 answer.
    #[error("Railway GraphQL error: {}", join(.0))]
    GraphQl(Vec<GraphQlErrorInfo>),
    /// The answer could not be decoded.
    #[error("could not decode Railway's answer: {0}")]
    Decode(String),
}

fn join(errors: &[GraphQlErrorInfo]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl RailwayError {
    /// Whether Railway may have applied the request.
    pub fn delivery(&self) -> Delivery {
        match self {
            Self::NotSent { .. } => Delivery::NotSent,
            Self::RateLimited { .. } | Self::Unauthorized { .. } | Self::Throttled { .. } => {
                Delivery::Refused
            }
            Self::Http { status, .. } if *status < 500 => Delivery::Refused,
            Self::GraphQl(errors) if !errors.iter().any(is_internal) => Delivery::Refused,
            Self::Timeout(_)
            | Self::Transport { .. }
            | Self::Http { .. }
            | Self::GraphQl(_)
            | Self::Decode(_) => Delivery::MayHaveApplied,
        }
    }

    /// True when the error says the thing asked for does not exist (deleted already, or never
    /// visible to this token). Teardown treats it as done.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::GraphQl(errors) => errors.iter().any(|e| {
                let m = e.message.to_ascii_lowercase();
                m.contains("not found") || m.contains("does not exist")
            }),
            _ => false,
        }
    }

    /// True when a query (which changes nothing) is worth repeating.
    pub(crate) fn retryable_query(&self) -> bool {
        match self {
            Self::NotSent { .. } | Self::Timeout(_) | Self::Transport { .. } | Self::RateLimited { .. } => {
                true
            }
            Self::Http { status, .. } => *status >= 500,
            Self::GraphQl(errors) => errors.iter().any(is_internal),
            Self::Unauthorized { .. } | Self::Throttled { .. } | Self::Decode(_) => false,
        }
    }

    /// True when a mutation may be repeated: only when it provably did not apply.
    pub(crate) fn retryable_mutation(&self) -> bool {
        matches!(self, Self::NotSent { .. } | Self::RateLimited { .. })
    }
}

fn is_internal(e: &GraphQlErrorInfo) -> bool {
    e.code.as_deref() == Some("INTERNAL_SERVER_ERROR")
}
