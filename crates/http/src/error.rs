//! Errors as the API answers them: `{"error": "<what is wrong>"}` with the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pool_provisioner::ProvisionError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// Status.
    pub status: StatusCode,
    /// Message (never a secret).
    pub message: String,
    /// `Retry-After` seconds, for 503s.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(serde_json::json!({"error": self.message})),
        )
            .into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<ProvisionError> for ApiError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::InvalidRequest { .. } => Self::bad_request(e.to_string()),
            ProvisionError::PoolEmpty => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: e.to_string(),
                retry_after: Some(30),
            },
            ProvisionError::NotFound(_) => Self::not_found(e.to_string()),
            ProvisionError::AgentCredentials => Self::new(StatusCode::FORBIDDEN, e.to_string()),
            ProvisionError::ServiceNotProvisioned(_) | ProvisionError::NotTheAgents(_) => {
                Self::not_found(e.to_string())
            }
            ProvisionError::ServiceNotConfigured(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            ProvisionError::ServiceBusy(_) => Self {
                status: StatusCode::CONFLICT,
                message: e.to_string(),
                retry_after: Some(1),
            },
            ProvisionError::UpstreamRefused { status, .. } => Self::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                e.to_string(),
            ),
            ProvisionError::UpstreamFailed { .. } => Self::new(StatusCode::BAD_GATEWAY, e.to_string()),
            ProvisionError::RateLimited { retry_after, .. } => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: e.to_string(),
                retry_after: Some(retry_after.as_secs().max(1)),
            },
            ProvisionError::TooManyWaiting { .. } => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: e.to_string(),
                retry_after: Some(5),
            },
            ProvisionError::IdempotencyMismatch => Self::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            ProvisionError::Conflict { .. }
            | ProvisionError::CreationStopped { .. }
            | ProvisionError::ClaimInProgress
            | ProvisionError::Capacity(_)
            | ProvisionError::RolloutRunning(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            ProvisionError::ProvisionFailed { .. } | ProvisionError::RepeatedFailure(_) => {
                Self::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
            ProvisionError::Store(ref s) if s.is_unreachable() => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the database is unreachable; try again shortly".into(),
                retry_after: Some(5),
            },
            ProvisionError::Railway(_) | ProvisionError::Resource(_) | ProvisionError::Step { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<pool_store::StoreError> for ApiError {
    fn from(e: pool_store::StoreError) -> Self {
        ProvisionError::Store(e).into()
    }
}
