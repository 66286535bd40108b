//! `POST /webhooks/railway/{secret}`: Railway's deployment events, as a fast path.
//!
//! Railway signs nothing; the secret in the path (`RAILWAY_WEBHOOK_SECRET`, compared in
//! constant time, never logged) is the only proof an event is Railway's. The same scheme as
//! the Node pool's `POST /webhooks/railway/:secret` (xmtplabs/convos-managed-agent-runtime
//! `pool/src/webhookRoute.ts`, which compares `POOL_API_KEY` with `!==`).
//!
//! Payloads, as Railway documents them (docs.railway.com/observability/webhooks and
//! /guides/alerts-crashes-failed-deploys):
//! ```json
//! {"type": "Deployment.failed", "details": {"id": "…", "status": "…"},
//!  "resource": {"workspace": {"id": "…"}, "project": {"id": "…"}, "environment": {"id": "…"},
//!               "service": {"id": "…"}, "deployment": {"id": "…"}},
//!  "severity": "WARNING", "timestamp": "2025-11-21T23:48:42.311Z"}
//! ```
//! Railway publishes no list of event types; the ones the Node pool subscribes to against the
//! live API (`notificationRuleCreate`, `pool/src/webhook.ts`) are `Deployment.deployed`,
//! `.crashed`, `.failed`, `.oom_killed`, `.slept` and `.resumed`. The older format
//! (`{"type": "DEPLOY", "status": "SUCCESS", "project": {"id"}, "service": {"id"}, …}`, the
//! earlier docs' `guides/webhooks.md`) is read too.
//!
//! An event is a hint, never the truth: it asks the leader to look at the agent now (read its
//! deployment, check its health). What the look finds decides, so duplicate, late,
//! out-of-order or forged events change nothing on their own. Events for projects this pool
//! does not know, and event types it does not act on, are acknowledged with 200 and ignored,
//! so Railway neither retries them nor pauses the webhook.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

/// The path ([`crate::route_table::WEBHOOK_PATH`]) with its secret replaced, for logs.
pub const REDACTED_PATH: &str = "/webhooks/railway/<secret>";

/// What an event says happened to a deployment, as far as the pool acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployEvent {
    /// It is up (deployed, resumed, redeployed): check its health now.
    Up,
    /// It went down (crashed, failed, killed for memory, slept): read its status now.
    Down,
}

impl DeployEvent {
    /// Reads an event type (`Deployment.crashed`, case-insensitively), or the older format's
    /// `DEPLOY` with its status. `None`: not one the pool acts on.
    pub fn from_payload(payload: &Value) -> Result<Option<Self>, String> {
        let kind = payload
            .get("type")
            .and_then(Value::as_str)
            .ok_or("the event has no \"type\"")?;
        let kind = kind.to_ascii_lowercase();
        if kind == "deploy" {
            let status = payload.get("status").and_then(Value::as_str).unwrap_or("");
            return Ok(match status.to_ascii_uppercase().as_str() {
                "SUCCESS" => Some(Self::Up),
                "CRASHED" | "FAILED" | "REMOVED" | "SLEEPING" => Some(Self::Down),
                _ => None,
            });
        }
        Ok(match kind.strip_prefix("deployment.") {
            Some("deployed" | "resumed" | "redeployed") => Some(Self::Up),
            Some("crashed" | "failed" | "oom_killed" | "slept" | "removed") => Some(Self::Down),
            _ => None,
        })
    }
}

/// The project and service an event is about: `resource.*` in the current format, top-level
/// in the older one.
fn resource_id<'a>(payload: &'a Value, what: &str) -> Option<&'a str> {
    payload
        .pointer(&format!("/resource/{what}/id"))
        .or_else(|| payload.pointer(&format!("/{what}/id")))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= 128)
}

fn secret_matches(state: &AppState, presented: &str) -> bool {
    state
        .webhook_secret
        .as_ref()
        .is_some_and(|secret| crate::auth::key_matches(secret, presented))
}

fn ignored(why: &str) -> Json<Value> {
    Json(json!({"ok": true, "ignored": why}))
}

/// The handler. 404 when no secret is configured (the route is off), 401 for a wrong one.
/// The secret is checked before a byte of the body is read.
pub(crate) async fn railway(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    request: axum::extract::Request,
) -> Result<Json<Value>, ApiError> {
    if state.webhook_secret.is_none() {
        return Err(ApiError::not_found("no such route"));
    }
    if !secret_matches(&state, &secret) {
        tracing::warn!("a Railway webhook with a wrong secret was refused");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong webhook secret"));
    }
    let body = crate::body::read_body(request, &state, crate::MAX_BODY).await?;
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the event is not JSON: {e}")))?;
    if !payload.is_object() {
        return Err(ApiError::bad_request("the event must be a JSON object"));
    }
    let event = DeployEvent::from_payload(&payload).map_err(ApiError::bad_request)?;
    let kind = payload.get("type").and_then(Value::as_str).unwrap_or("");
    let Some(event) = event else {
        return Ok(ignored("not a deployment event the pool acts on"));
    };
    let Some(project) = resource_id(&payload, "project") else {
        return Ok(ignored("the event names no project"));
    };
    let service = resource_id(&payload, "service");
    let Some(agent) = state
        .provisioner
        .store()
        .live_agent_on_railway(project, service)
        .await?
    else {
        return Ok(ignored("not a project of this pool"));
    };
    tracing::info!(agent = %agent.id, event = kind, "Railway deploy event: looking at the agent now");
    state.control.look_soon(&agent.id);
    Ok(Json(json!({
        "ok": true,
        "agent": agent.id.as_str(),
        "look": match event {
            DeployEvent::Up => "health check",
            DeployEvent::Down => "status read",
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_of_both_formats_are_read() {
        let cases = [
            (json!({"type": "Deployment.deployed"}), Some(DeployEvent::Up)),
            (json!({"type": "Deployment.resumed"}), Some(DeployEvent::Up)),
            (json!({"type": "deployment.OOM_KILLED"}), Some(DeployEvent::Down)),
            (json!({"type": "Deployment.crashed"}), Some(DeployEvent::Down)),
            (json!({"type": "Deployment.failed"}), Some(DeployEvent::Down)),
            (json!({"type": "Deployment.slept"}), Some(DeployEvent::Down)),
            (json!({"type": "Deployment.building"}), None),
            (json!({"type": "VolumeAlert.triggered"}), None),
            (
                json!({"type": "DEPLOY", "status": "SUCCESS"}),
                Some(DeployEvent::Up),
            ),
            (
                json!({"type": "DEPLOY", "status": "CRASHED"}),
                Some(DeployEvent::Down),
            ),
            (json!({"type": "DEPLOY", "status": "BUILDING"}), None),
            (json!({"type": "DEPLOY"}), None),
        ];
        for (payload, expected) in cases {
            assert_eq!(
                DeployEvent::from_payload(&payload).unwrap(),
                expected,
                "{payload}"
            );
        }
        assert!(DeployEvent::from_payload(&json!({"status": "SUCCESS"})).is_err());
        assert!(DeployEvent::from_payload(&json!({"type": 7})).is_err());
    }

    #[test]
    fn the_project_is_read_from_either_format() {
        let current = json!({"resource": {"project": {"id": "prj-1"}, "service": {"id": "svc-1"}}});
        assert_eq!(resource_id(&current, "project"), Some("prj-1"));
        assert_eq!(resource_id(&current, "service"), Some("svc-1"));
        let older = json!({"project": {"id": "prj-2"}});
        assert_eq!(resource_id(&older, "project"), Some("prj-2"));
        assert_eq!(resource_id(&older, "service"), None);
        assert_eq!(resource_id(&json!({"project": {"id": ""}}), "project"), None);
        assert_eq!(resource_id(&json!({"project": {"id": 5}}), "project"), None);
    }
}
