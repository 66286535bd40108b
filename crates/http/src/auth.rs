//! Bearer authentication with the pool's admin key, compared in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// True when `presented` is the admin key.
pub fn is_admin_key(state: &AppState, presented: &str) -> bool {
    let expected = state.admin_key.expose_secret().as_bytes();
    // `ct_eq` on slices of different lengths is false without comparing contents.
    bool::from(expected.ct_eq(presented.as_bytes())) && !expected.is_empty()
}

/// Middleware: lets a request through with `Authorization: Bearer <POOL_API_KEY>`, else 401.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match bearer {
        Some(key) if is_admin_key(&state, key) => Ok(next.run(request).await),
        _ => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "Invalid or missing API key",
        )),
    }
}
