//! `/agents/{id}`: one agent's page, every stored fact but its secrets, and its events.

use askama::Template;
use chrono::{DateTime, Utc};
use pool_store::AgentId;

use crate::AppState;

use super::views::AgentRow;
use super::when::When;

/// An event line.
pub struct EventLine {
    /// When.
    pub at: When,
    /// The event's kind.
    pub kind: String,
    /// `from → to` for a status change, else empty.
    pub change: String,
    /// Why it happened.
    pub reason: String,
}

/// `/agents/{id}`.
#[derive(Template)]
#[template(path = "agent.html")]
pub struct AgentPage {
    signed_in: bool,
    csrf: String,
    notice: String,
    agent: AgentRow,
    fields: Vec<Field>,
    events: Vec<EventLine>,
}

/// One stored fact of an agent: its name, its value, and for times the exact time to show on
/// hover (empty otherwise).
pub struct Field {
    /// What it is.
    pub name: &'static str,
    /// Its value, a time as "3 min ago".
    pub value: String,
    /// The exact time, for a time.
    pub exact: String,
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "—".into())
}

impl AgentPage {
    /// One agent's page: every stored fact except secrets, and its events. `None` when there
    /// is no such agent.
    pub async fn load(state: &AppState, csrf: &str, id: &AgentId) -> Result<Option<Self>, String> {
        let store = state.provisioner.store();
        let Some(a) = store.agent(id).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let events = store.events(id).await.map_err(|e| e.to_string())?;
        let now = Utc::now();
        let text = |name: &'static str, value: String| Field {
            name,
            value,
            exact: String::new(),
        };
        let time = |name: &'static str, at: Option<DateTime<Utc>>| match at {
            Some(at) => {
                let when = When::at(at, now);
                Field {
                    name,
                    value: when.ago,
                    exact: when.exact,
                }
            }
            None => text(name, "—".into()),
        };
        // Everything the database knows except secrets (tokens, passwords, keys).
        let fields = vec![
            text("status", a.status.to_string()),
            time("created", Some(a.created_at)),
            time("status since", Some(a.status_changed_at)),
            text("legacy", a.legacy.to_string()),
            text("quarantined", a.quarantined.to_string()),
            text("image", opt(&a.image)),
            text("Railway project", opt(&a.project_id)),
            text("environment", opt(&a.environment_id)),
            text("service", opt(&a.service_id)),
            text("volume", opt(&a.volume_id)),
            text("domain", opt(&a.domain)),
            text("deployment", opt(&a.deployment_id)),
            text("deployment status", opt(&a.deployment_status)),
            time("last health check", a.last_health_at),
            text(
                "healthy",
                a.last_health_ok
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "—".into()),
            ),
            text("OpenRouter key (hash)", opt(&a.openrouter_key_hash)),
            text("AgentMail inbox", opt(&a.agentmail_inbox_id)),
            text("runtime", opt(&a.runtime_name)),
            text("runtime version", opt(&a.runtime_version)),
            text("claim source", opt(&a.claim_source)),
            text("provision status", opt(&a.provision_status)),
            time("pending acceptance since", a.pending_acceptance_at),
            text("agent name", opt(&a.agent_name)),
            text("instructions", opt(&a.instructions)),
            text("join URL", opt(&a.join_url)),
            text("conversation", opt(&a.conversation_id)),
            text("invite URL", opt(&a.invite_url)),
            time("claimed", a.claimed_at),
            time("claim lease until", a.claim_expires_at),
            text(
                "creation steps done",
                a.completed_steps
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            text("teardown attempts", a.teardown_attempts.to_string()),
            time("next teardown attempt", a.next_attempt_at),
            time("redeploy requested", a.redeploy_requested_at),
            text("last error", opt(&a.last_error)),
        ];
        Ok(Some(Self {
            signed_in: true,
            csrf: csrf.to_string(),
            notice: String::new(),
            agent: AgentRow::from(&a),
            fields,
            events: events
                .iter()
                .map(|e| EventLine {
                    at: When::at(e.at, now),
                    kind: e.kind.clone(),
                    change: match (&e.from_status, &e.to_status) {
                        (Some(f), Some(t)) => format!("{f} → {t}"),
                        _ => String::new(),
                    },
                    reason: e.reason.clone(),
                })
                .collect(),
        }))
    }
}
