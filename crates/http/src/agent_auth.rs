//! The agents' calls to the pool, authenticated with the agent's own id and gateway token
//! ([`pool_provisioner::Provisioner::authenticate_agent`]), in the two forms the runtime uses:
//!
//! - `Authorization: Bearer <instanceId>:<gatewayToken>` on the service proxy — the Node pool's
//!   `requireInstanceAuth` (`pool/src/middleware/instanceAuth.ts:30-45`): the scheme matched
//!   case-insensitively, split at the first `:` (the token may hold more), both parts
//!   non-empty; anything else is 401 `Missing instance credentials`. The extractor
//!   [`AgentCaller`] reads only the headers, so a route that takes it checks the credentials
//!   before it reads a byte of the body.
//! - `{"instanceId", "gatewayToken"}` in a JSON body (`/api/pool/credits-*` in Node,
//!   `pool/src/index.ts:426-528`): [`AgentCredentials`] and [`AgentCredentials::authenticate`].
//!
//! A wrong pair, an unknown id and a malformed id are all 403 `Invalid instance ID or token`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use pool_store::Agent;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;

/// The answer to a request without usable agent credentials.
pub const MISSING_CREDENTIALS: &str = "Missing instance credentials";

/// `Bearer <instanceId>:<gatewayToken>` split into its two parts, if the header has that
/// shape.
pub fn instance_credentials(authorization: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = authorization.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (id, token) = rest.trim().split_once(':')?;
    (!id.is_empty() && !token.is_empty()).then_some((id, token))
}

/// An agent that proved who it is with `Authorization: Bearer <instanceId>:<gatewayToken>`.
/// Rejections: 401 when the header is missing or malformed, 403 for a wrong pair.
#[derive(Debug, Clone)]
pub struct AgentCaller(
    /// The agent's row, as read when it was authenticated.
    pub Agent,
);

impl FromRequestParts<AppState> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (id, token) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(instance_credentials)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, MISSING_CREDENTIALS))?;
        let agent = state.provisioner.authenticate_agent(id, token).await?;
        Ok(Self(agent))
    }
}

/// The agent's credentials in a JSON body: `{"instanceId": …, "gatewayToken": …}` (other
/// fields of the body are the route's own; flatten this struct into the route's body type).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCredentials {
    /// The agent's id (`INSTANCE_ID`).
    #[serde(default)]
    pub instance_id: String,
    /// Its gateway token (`GATEWAY_TOKEN`).
    #[serde(default)]
    pub gateway_token: String,
}

impl std::fmt::Display for AgentCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        write!(
            f,
            "agent {:?}",
            self.instance_id.chars().take(64).collect::<String>()
        )
    }
}

impl AgentCredentials {
    /// The agent these credentials belong to: 400 naming the field when one is missing, 403
    /// for a wrong pair.
    pub async fn authenticate(&self, state: &AppState) -> Result<Agent, ApiError> {
        if self.instance_id.is_empty() {
            return Err(ApiError::bad_request("instanceId: required"));
        }
        if self.gateway_token.is_empty() {
            return Err(ApiError::bad_request("gatewayToken: required"));
        }
        Ok(state
            .provisioner
            .authenticate_agent(&self.instance_id, &self.gateway_token)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_instance_credentials_parse_as_node_parses_them() {
        assert_eq!(instance_credentials("Bearer abc:tok"), Some(("abc", "tok")));
        assert_eq!(
            instance_credentials("bearer  abc:tok:with:colons"),
            Some(("abc", "tok:with:colons"))
        );
        assert_eq!(instance_credentials("BEARER\tabc:t"), Some(("abc", "t")));
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer abc",
            "Bearer :tok",
            "Bearer abc:",
            "Basic abc:tok",
            "Bearerabc:tok",
        ] {
            assert_eq!(instance_credentials(bad), None, "{bad:?}");
        }
    }
}
