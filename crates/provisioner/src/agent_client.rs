//! Talking to an agent: `/pool/health` and `/pool/provision`, with the agent's own token.
//!
//! Agents are remote and may answer anything; the parsing is pure and total (never panics),
//! so malformed answers become values a caller can act on.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::outbound::{OutboundClient, OutboundFailure, excerpt};

/// What `/pool/health` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `{"ready": true}`.
    Ready,
    /// Up, not ready yet (`{"ready": false}` or 503).
    NotReady,
    /// No answer, or the platform answered for it (502, 404): the agent is not serving.
    Unreachable(String),
    /// The agent refused our token.
    Unauthorized,
    /// An answer we do not understand.
    Unexpected(String),
}

impl Health {
    /// True only for a ready agent.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }
}

/// What a claim asks the agent to do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionRequest {
    /// Display name.
    pub agent_name: String,
    /// Instructions.
    pub instructions: String,
    /// Conversation to join.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
    /// Avatar (an https URL), passed to the runtime's `/convos/{join,conversation}`
    /// (pool-server/index.ts:296, 314).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_image: Option<String>,
    /// A flat string map, passed on the same way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// What the agent says became of the claim (`status` of its 200,
/// `runtime/convos-platform/pool-server/index.ts:446`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionStatus {
    /// It created a conversation.
    Created,
    /// It joined the conversation of the join URL.
    Joined,
    /// The join waits for the conversation's approval: no conversation yet (304-306).
    PendingAcceptance,
}

impl ProvisionStatus {
    /// The word on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Joined => "joined",
            Self::PendingAcceptance => "pending_acceptance",
        }
    }
}

/// A successful provision: `{ok, inviteUrl|null, conversationId|null, joined, status}`
/// (pool-server/index.ts:441-447).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provisioned {
    /// The invite URL for the user (a join answers its join URL; `None` when it said null).
    pub invite_url: Option<String>,
    /// The conversation (`None` only while a join is pending).
    pub conversation_id: Option<String>,
    /// Whether it joined an existing conversation.
    pub joined: bool,
    /// Created, joined or pending.
    pub status: ProvisionStatus,
}

/// Why a provision did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionFailure {
    /// Nothing was sent (connection refused).
    #[error("agent unreachable: {0}")]
    NotSent(String),
    /// The agent did not answer in time; it may have provisioned.
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The agent answered with an error status.
    #[error("agent answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// A 200 we could not understand.
    #[error("agent answered something unexpected: {0}")]
    Unexpected(String),
    /// The connection broke.
    #[error("connection to agent failed: {0}")]
    Transport(String),
}

/// Reads a `/pool/health` answer.
pub fn parse_health(status: u16, body: &[u8]) -> Health {
    match status {
        200 => match serde_json::from_slice::<Value>(body) {
            Ok(v) => match v.get("ready").and_then(Value::as_bool) {
                Some(true) => Health::Ready,
                Some(false) => Health::NotReady,
                None => Health::Unexpected(format!("200 without a boolean \"ready\": {}", excerpt(body))),
            },
            Err(_) => Health::Unexpected(format!("200 with a body that is not JSON: {}", excerpt(body))),
        },
        503 => Health::NotReady,
        401 | 403 => Health::Unauthorized,
        502 | 404 => Health::Unreachable(format!("{status}: {}", excerpt(body))),
        other => Health::Unexpected(format!("{other}: {}", excerpt(body))),
    }
}

/// What an agent runs, as its `/pool/health` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeIdentity {
    /// `version` (from the image's `runtime-version.json`, or "unknown").
    pub version: Option<String>,
    /// `runtime`: `openclaw` or `hermes`.
    pub runtime: Option<String>,
}

/// Reads `version` and `runtime` from a `/pool/health` body (short printable strings only).
pub fn parse_runtime_identity(body: &[u8]) -> Option<RuntimeIdentity> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 100 && !s.chars().any(char::is_control))
            .map(str::to_string)
    };
    let identity = RuntimeIdentity {
        version: field("version"),
        runtime: field("runtime"),
    };
    (identity.version.is_some() || identity.runtime.is_some()).then_some(identity)
}

/// Reads a `/pool/provision` answer.
pub fn parse_provision(status: u16, body: &[u8]) -> Result<Provisioned, ProvisionFailure> {
    if status != 200 {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| excerpt(body));
        return Err(ProvisionFailure::Refused { status, message });
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ProvisionFailure::Unexpected(format!("not JSON: {}", excerpt(body))))?;
    if value.get("ok").and_then(Value::as_bool) == Some(false) {
        return Err(ProvisionFailure::Refused {
            status,
            message: format!("ok: false: {}", excerpt(body)),
        });
    }
    let text = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let joined = value.get("joined").and_then(Value::as_bool).unwrap_or(false);
    // Agents of images before `status` existed said only `joined`.
    let status = match value.get("status").and_then(Value::as_str) {
        Some("pending_acceptance") => ProvisionStatus::PendingAcceptance,
        Some("joined") => ProvisionStatus::Joined,
        Some("created") => ProvisionStatus::Created,
        None if joined => ProvisionStatus::Joined,
        None => ProvisionStatus::Created,
        Some(other) => {
            return Err(ProvisionFailure::Unexpected(format!(
                "unknown status {:?}: {}",
                other.chars().take(40).collect::<String>(),
                excerpt(body)
            )));
        }
    };
    let conversation_id = text("conversationId");
    if conversation_id.is_none() && status != ProvisionStatus::PendingAcceptance {
        // The Node pool: "Provision succeeded without a conversationId" (pool/src/provision.ts:141).
        return Err(ProvisionFailure::Unexpected(format!(
            "missing conversationId: {}",
            excerpt(body)
        )));
    }
    Ok(Provisioned {
        invite_url: text("inviteUrl"),
        conversation_id,
        joined,
        status,
    })
}

/// What the runtime's `GET /convos/status` says (`runtime/openclaw/src/convos/index.ts:89-105`,
/// read as the Node pool reads it, `pool/src/runtimeStatus.ts:13-19`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeStatus {
    /// The conversation it is bound to, if any.
    pub conversation_id: Option<String>,
    /// A join waits for acceptance.
    pub pending: bool,
    /// No identity, conversation or instructions left: it can serve another claim. `None`
    /// when the runtime did not say.
    pub clean: Option<bool>,
}

impl RuntimeStatus {
    /// True when the runtime holds no conversation and no pending join (it may still hold an
    /// identity a failed attempt left, which `/convos/reset` clears).
    pub fn holds_no_conversation(&self) -> bool {
        self.conversation_id.is_none() && !self.pending
    }
}

/// Reads a `/convos/status` answer.
pub fn parse_runtime_status(status: u16, body: &[u8]) -> Result<RuntimeStatus, String> {
    if status != 200 {
        return Err(format!("/convos/status answered {status}: {}", excerpt(body)));
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "/convos/status answered something that is not JSON: {}",
            excerpt(body)
        )
    })?;
    if !value.is_object() {
        return Err(format!("/convos/status answered {}", excerpt(body)));
    }
    Ok(RuntimeStatus {
        conversation_id: value
            .get("conversationId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        pending: value.get("pending").and_then(Value::as_bool) == Some(true),
        clean: value.get("clean").and_then(Value::as_bool),
    })
}

/// Calls agents.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: OutboundClient,
    /// Time allowed for a health check.
    pub health_timeout: Duration,
    /// Time allowed for a provision (longer than the agent's own ~5 minute retry window).
    pub provision_timeout: Duration,
}

impl AgentClient {
    /// A client with these timeouts.
    pub fn new(http: OutboundClient, health_timeout: Duration, provision_timeout: Duration) -> Self {
        Self {
            http,
            health_timeout,
            provision_timeout,
        }
    }

    /// `GET {base}/pool/health`. The agent answers it without auth; the token is sent anyway
    /// for agents of older images, which checked it.
    pub async fn health(&self, base_url: &str, token: &str) -> Health {
        self.health_report(base_url, Some(token)).await.0
    }

    /// [`Self::health`], with what the agent said it runs: `{ready, version, runtime}`
    /// (`runtime/convos-platform/pool-server/index.ts:359`; a 503 before the gateway is up
    /// says neither, 344-347). `bearer`: a token for agents of older images; the tick sends
    /// none (the runtime answers `/pool/health` without auth, 342-361).
    pub async fn health_report(
        &self,
        base_url: &str,
        bearer: Option<&str>,
    ) -> (Health, Option<RuntimeIdentity>) {
        let url = format!("{}/pool/health", base_url.trim_end_matches('/'));
        match self
            .http
            .send(hyper::Method::GET, &url, bearer, None, self.health_timeout)
            .await
        {
            Ok(answer) => (
                parse_health(answer.status, &answer.body),
                parse_runtime_identity(&answer.body),
            ),
            // An agent answering more than the client reads is not healthy, whatever it says.
            Err(e @ OutboundFailure::TooLarge(_)) => (Health::Unexpected(e.to_string()), None),
            Err(e) => (Health::Unreachable(e.to_string()), None),
        }
    }

    /// `POST {base}/convos/update-metadata` with the agent's gateway token: tells the agent its
    /// email address or phone number (the Node pool's `updateRuntimeMetadata`,
    /// `pool/src/routes/serviceProxy.ts:27-41`; 10 s). The runtime's handlers:
    /// `runtime/openclaw/src/convos/index.ts:619`, `runtime/hermes/src/server/server.py:1075-1081`.
    pub async fn update_metadata(
        &self,
        base_url: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<(), String> {
        let url = format!("{}/convos/update-metadata", base_url.trim_end_matches('/'));
        let answer = self
            .http
            .send(
                hyper::Method::POST,
                &url,
                Some(token),
                Some(body),
                std::time::Duration::from_secs(10),
            )
            .await
            .map_err(|e| e.to_string())?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!("the agent answered {}", answer.status))
        }
    }

    /// `GET {base}/convos/status` with the agent's gateway token (5 s, as the Node pool's
    /// `resetAndVerifyRuntime`, `pool/src/provision.ts:33-40`).
    pub async fn runtime_status(&self, base_url: &str, token: &str) -> Result<RuntimeStatus, String> {
        let url = format!("{}/convos/status", base_url.trim_end_matches('/'));
        let answer = self
            .http
            .send(
                hyper::Method::GET,
                &url,
                Some(token),
                None,
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| e.to_string())?;
        parse_runtime_status(answer.status, &answer.body)
    }

    /// `POST {base}/convos/reset` `{}` with the agent's gateway token (15 s,
    /// `pool/src/provision.ts:23-32`): the runtime's factory reset
    /// (`runtime/openclaw/src/convos/index.ts:110-155`, route at 738-757).
    pub async fn reset_runtime(&self, base_url: &str, token: &str) -> Result<(), String> {
        let url = format!("{}/convos/reset", base_url.trim_end_matches('/'));
        let answer = self
            .http
            .send(
                hyper::Method::POST,
                &url,
                Some(token),
                Some(&serde_json::json!({})),
                Duration::from_secs(15),
            )
            .await
            .map_err(|e| e.to_string())?;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "/convos/reset answered {}: {}",
                answer.status,
                excerpt(&answer.body)
            ))
        }
    }

    /// `POST {base}/pool/provision` with `Authorization: Bearer <token>`. Today's agent
    /// runtime checks its `GATEWAY_TOKEN` (xmtplabs/convos-managed-agent-runtime
    /// `runtime/convos-platform/pool-server/index.ts`, `checkAuth`); agents of older images
    /// checked `POOL_API_KEY` (the Node pool's `authFetch.ts`: "Old instances check
    /// POOL_API_KEY instead of GATEWAY_TOKEN"). A 401 to the first token changed nothing, so
    /// the fallback token is tried once.
    pub async fn provision(
        &self,
        base_url: &str,
        tokens: ProvisionTokens<'_>,
        request: &ProvisionRequest,
    ) -> Result<Provisioned, ProvisionFailure> {
        match self.provision_with(base_url, tokens.gateway, request).await {
            Err(ProvisionFailure::Refused { status: 401, .. }) if tokens.legacy.is_some() => {
                let legacy = tokens.legacy.unwrap_or_default();
                self.provision_with(base_url, legacy, request).await
            }
            other => other,
        }
    }

    async fn provision_with(
        &self,
        base_url: &str,
        token: &str,
        request: &ProvisionRequest,
    ) -> Result<Provisioned, ProvisionFailure> {
        let url = format!("{}/pool/provision", base_url.trim_end_matches('/'));
        let body = serde_json::to_value(request).map_err(|e| ProvisionFailure::Unexpected(e.to_string()))?;
        match self
            .http
            .send(
                hyper::Method::POST,
                &url,
                Some(token),
                Some(&body),
                self.provision_timeout,
            )
            .await
        {
            Ok(answer) => parse_provision(answer.status, &answer.body),
            Err(OutboundFailure::NotSent(e)) | Err(OutboundFailure::Invalid(e)) => {
                Err(ProvisionFailure::NotSent(e))
            }
            Err(OutboundFailure::Timeout(t)) => Err(ProvisionFailure::Timeout(t)),
            Err(OutboundFailure::Transport(e)) => Err(ProvisionFailure::Transport(e)),
            Err(e @ OutboundFailure::TooLarge(_)) => Err(ProvisionFailure::Unexpected(e.to_string())),
        }
    }
}

/// The bearer tokens a provision may use: the agent's gateway token, and for agents of older
/// images, its own pool token.
#[derive(Debug, Clone, Copy)]
pub struct ProvisionTokens<'a> {
    /// `GATEWAY_TOKEN` (also `OPENCLAW_GATEWAY_TOKEN`).
    pub gateway: &'a str,
    /// `POOL_API_KEY` of the agent, tried when the gateway token is refused with 401.
    pub legacy: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_answers_are_read_without_surprises() {
        assert_eq!(parse_health(200, br#"{"ready":true}"#), Health::Ready);
        assert_eq!(parse_health(200, br#"{"ready":false}"#), Health::NotReady);
        assert_eq!(parse_health(503, b"starting"), Health::NotReady);
        assert_eq!(parse_health(401, b""), Health::Unauthorized);
        assert!(matches!(
            parse_health(502, b"Application failed to respond"),
            Health::Unreachable(_)
        ));
        assert!(matches!(
            parse_health(200, br#"{"ready":"yes"}"#),
            Health::Unexpected(_)
        ));
        assert!(matches!(parse_health(200, b"<html>"), Health::Unexpected(_)));
        assert!(matches!(parse_health(418, b""), Health::Unexpected(_)));
    }

    #[test]
    fn provision_answers_are_read_without_surprises() {
        let ok = parse_provision(
            200,
            br#"{"ok":true,"inviteUrl":"https://i","conversationId":"c","joined":true}"#,
        );
        assert_eq!(
            ok,
            Ok(Provisioned {
                invite_url: Some("https://i".into()),
                conversation_id: Some("c".into()),
                joined: true,
                status: ProvisionStatus::Joined,
            })
        );
        assert!(matches!(
            parse_provision(200, br#"{"ok":true}"#),
            Err(ProvisionFailure::Unexpected(_))
        ));
        // pool-server/index.ts:441-447 after a pending join (304-306).
        let pending = parse_provision(
            200,
            br#"{"ok":true,"inviteUrl":"https://j","conversationId":null,"joined":false,"status":"pending_acceptance"}"#,
        );
        assert_eq!(
            pending.map(|p| (p.status, p.conversation_id)),
            Ok((ProvisionStatus::PendingAcceptance, None))
        );
        assert!(matches!(
            parse_provision(200, br#"{"ok":true,"conversationId":"c","status":"odd"}"#),
            Err(ProvisionFailure::Unexpected(_))
        ));
        assert!(matches!(
            parse_provision(200, br#"{"ok":false}"#),
            Err(ProvisionFailure::Refused { .. })
        ));
        assert!(matches!(
            parse_provision(200, b"\xff\xfe"),
            Err(ProvisionFailure::Unexpected(_))
        ));
        assert_eq!(
            parse_provision(409, br#"{"error":"already provisioned"}"#),
            Err(ProvisionFailure::Refused {
                status: 409,
                message: "already provisioned".into()
            })
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_health_answer_is_read_without_panicking(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..300)) {
            let health = parse_health(status, &body);
            if status != 200 && status != 503 {
                prop_assert!(!health.is_ready());
            }
        }

        #[test]
        fn any_provision_answer_is_read_without_panicking(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..300)) {
            let result = parse_provision(status, &body);
            if status != 200 {
                let refused = matches!(result, Err(ProvisionFailure::Refused { .. }));
                prop_assert!(refused);
            }
        }

        #[test]
        fn a_provision_answer_without_a_conversation_is_success_only_when_pending(
            invite in prop::option::of("\\PC{0,20}"),
            conversation in prop::option::of("\\PC{0,20}"),
            joined in prop::option::of(any::<bool>()),
            pending in any::<bool>(),
        ) {
            let mut v = serde_json::json!({"ok": true});
            if pending { v["status"] = serde_json::json!("pending_acceptance"); }
            if let Some(i) = &invite { v["inviteUrl"] = serde_json::json!(i); }
            if let Some(c) = &conversation { v["conversationId"] = serde_json::json!(c); }
            if let Some(j) = joined { v["joined"] = serde_json::json!(j); }
            let result = parse_provision(200, v.to_string().as_bytes());
            let complete = conversation.as_ref().is_some_and(|s| !s.is_empty());
            prop_assert_eq!(result.is_ok(), complete || pending);
        }
    }
}
