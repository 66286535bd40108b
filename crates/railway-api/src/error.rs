//! The client's one error type.

use std::time::Duration;

pub use crate::classify::{Delivery, ErrorKind, ThrottleScope};

/// One GraphQL error as Railway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphQlErrorInfo {
    /// The message (e.g. "Not Authorized").
    pub message: String,
    /// The response path the error belongs to.
    pub path: Vec<String>,
    /// `extensions.code` when the server sends one (`BAD_USER_INPUT`, `INTERNAL_SERVER_ERROR`).
    pub code: Option<String>,
    /// Railway's `traceId` (top level or in `extensions`), for Railway support.
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
        if let Some(trace) = &self.trace_id {
            write!(f, " [traceId {trace}]")?;
        }
        Ok(())
    }
}

/// What went wrong with a Railway request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RailwayError {
    /// The client is configured wrongly (no token, an endpoint that is not a URL): nothing was
    /// sent, and nothing will be until the configuration changes.
    #[error("Railway client configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
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
    /// An HTTP status other than 200 and 429, with the start of the body (401/403 included).
    #[error("Railway answered HTTP {status}: {body_excerpt}")]
    Http {
        /// The status code.
        status: u16,
        /// The first few hundred characters of the body.
        body_excerpt: String,
    },
    /// Railway answered with GraphQL errors; `kind` is what the message table made of them.
    #[error("Railway refused {operation} ({kind:?}): {}", join(.errors))]
    Api {
        /// The operation (its root field, e.g. `projectCreate`).
        operation: &'static str,
        /// What the errors mean.
        kind: ErrorKind,
        /// Whether it may have applied (decided by the message, not by the code).
        delivery: Delivery,
        /// The errors as sent.
        errors: Vec<GraphQlErrorInfo>,
    },
    /// `projectCreate` was not sent: the workspace's throttle (or the queue of creations
    /// before this one) does not open within the wait allowed.
    #[error("projectCreate in this workspace is paced by Railway's throttle; next turn in {retry_after:?}")]
    Paced {
        /// How long until the workspace's turn.
        retry_after: Duration,
    },
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
            Self::Config { .. } | Self::NotSent { .. } | Self::Paced { .. } => Delivery::NotSent,
            Self::RateLimited { .. } => Delivery::Refused,
            Self::Http { status, .. } if *status < 500 => Delivery::Refused,
            Self::Api { delivery, .. } => *delivery,
            Self::Timeout(_) | Self::Transport { .. } | Self::Http { .. } | Self::Decode(_) => {
                Delivery::MayHaveApplied
            }
        }
    }

    /// What the error means. Failures of the transport are [`ErrorKind::Transient`] (5xx,
    /// timeouts, broken connections) or [`ErrorKind::Throttled`] (429); a 401/403 is
    /// [`ErrorKind::Unauthorized`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { kind, .. } => *kind,
            Self::Paced { retry_after } => ErrorKind::Throttled {
                scope: ThrottleScope::Workspace,
                retry_after: *retry_after,
            },
            Self::RateLimited { retry_after, .. } => ErrorKind::Throttled {
                scope: ThrottleScope::User,
                retry_after: *retry_after,
            },
            Self::Http {
                status: 401 | 403, ..
            } => ErrorKind::Unauthorized,
            Self::Http { status, .. } if *status < 500 => ErrorKind::Invalid,
            Self::Config { .. } => ErrorKind::Invalid,
            Self::NotSent { .. } | Self::Timeout(_) | Self::Transport { .. } | Self::Http { .. } => {
                ErrorKind::Transient
            }
            Self::Decode(_) => ErrorKind::Unknown,
        }
    }

    /// True when the error says the thing asked for does not exist (deleted already, or never
    /// there).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// True when the same request is worth repeating after a moment: a throttle or a passing
    /// failure. Whether repeating a *mutation* is safe is [`Self::delivery`]'s question.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::Throttled { .. } | ErrorKind::Transient)
    }

    /// How long a throttle asks us to wait, if this is one.
    pub fn throttled_for(&self) -> Option<Duration> {
        match self.kind() {
            ErrorKind::Throttled { retry_after, .. } => Some(retry_after),
            _ => None,
        }
    }

    /// Railway's `traceId`, when it sent one.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            Self::Api { errors, .. } => errors.iter().find_map(|e| e.trace_id.as_deref()),
            _ => None,
        }
    }

    /// True when a query (which changes nothing) is worth repeating at once, with backoff.
    pub(crate) fn retryable_query(&self) -> bool {
        match self {
            Self::Config { .. } | Self::Decode(_) | Self::Paced { .. } => false,
            Self::Api { kind, .. } => matches!(kind, ErrorKind::Transient | ErrorKind::Unknown),
            _ => self.kind() == ErrorKind::Transient || matches!(self, Self::RateLimited { .. }),
        }
    }

    /// True when a mutation may be repeated at once: it provably did not apply, and the refusal
    /// is of the kind that passes within a backoff (not a 30 s throttle: the caller decides).
    pub(crate) fn retryable_mutation(&self) -> bool {
        matches!(
            self,
            Self::NotSent { .. }
                | Self::RateLimited { .. }
                | Self::Api {
                    kind: ErrorKind::Transient,
                    delivery: Delivery::Refused,
                    ..
                }
        )
    }
}
