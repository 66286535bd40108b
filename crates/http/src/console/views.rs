//! The console's pages and the live-update data, built from the store and the reconciler.

use std::collections::HashMap;

use askama::Template;
use chrono::Utc;
use pool_provisioner::ClaimResponse;
use pool_store::{Agent, AgentId, AgentStatus};
use serde::Serialize;

use crate::AppState;

use super::status_filter;

/// `/login`.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    signed_in: bool,
    csrf: String,
    notice: String,
}

impl LoginPage {
    /// The sign-in form, with `notice` shown above it (empty for none).
    pub fn new(notice: String) -> Self {
        Self {
            signed_in: false,
            csrf: String::new(),
            notice,
        }
    }
}

/// One row of the agents table.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    /// The agent's id.
    pub id: String,
    /// Its stored status.
    pub status: String,
    /// Time since its creation, short (`90s`, `5m`, …).
    pub age: String,
    /// Its latest deployment's status on Railway, `—` when unknown.
    pub deployment: String,
    /// The last health check: `ready`, `not ready` or `—`.
    pub health: String,
    /// The image's tag.
    pub image: String,
    /// The name a claim gave it (empty when unclaimed).
    pub agent_name: String,
    /// Its invite link; empty unless it is an https link.
    pub invite_url: String,
}

fn age(agent: &Agent) -> String {
    let secs = (Utc::now() - agent.created_at).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

impl From<&Agent> for AgentRow {
    fn from(a: &Agent) -> Self {
        Self {
            id: a.id.to_string(),
            status: a.status.to_string(),
            age: age(a),
            deployment: a.deployment_status.clone().unwrap_or_else(|| "—".into()),
            health: match a.last_health_ok {
                Some(true) => "ready".into(),
                Some(false) => "not ready".into(),
                None => "—".into(),
            },
            image: a
                .image
                .as_deref()
                .and_then(|i| i.rsplit(':').next())
                .unwrap_or("—")
                .to_string(),
            agent_name: a.agent_name.clone().unwrap_or_default(),
            // Only https links are rendered as links (the invite comes from an agent).
            invite_url: a
                .invite_url
                .clone()
                .filter(|u| u.starts_with("https://"))
                .unwrap_or_default(),
        }
    }
}

/// The figures above the table.
struct Facts {
    counts: Vec<(String, i64)>,
    budget: String,
    tick: String,
    leader: String,
    redeploy: String,
    rows: Vec<AgentRow>,
}

async fn facts(state: &AppState, query: &HashMap<String, String>) -> Result<Facts, String> {
    let store = state.provisioner.store();
    let c = store.counts().await.map_err(|e| e.to_string())?;
    let agents = match status_filter(query) {
        Some(status) => store.agents_with_status(status).await,
        None => store.live_agents().await,
    }
    .map_err(|e| e.to_string())?;
    let budget = state.provisioner.railway().budget();
    let status = state.control.reconciler();
    let progress = state
        .provisioner
        .redeploy_progress()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Facts {
        counts: [
            (AgentStatus::Idle, c.idle),
            (AgentStatus::Starting, c.starting),
            (AgentStatus::Creating, c.creating),
            (AgentStatus::Claiming, c.claiming),
            (AgentStatus::Claimed, c.claimed),
            (AgentStatus::Crashed, c.crashed),
            (AgentStatus::Deleting, c.deleting),
        ]
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect(),
        budget: format!(
            "{} of {} requests in the last hour · {} rate-limited{}",
            budget.used_last_hour,
            budget.requests_per_hour,
            budget.rate_limited_total,
            budget
                .paused_for
                .map(|p| format!(" · paused {:.0}s", p.as_secs_f64()))
                .unwrap_or_default()
        ),
        tick: match &status.last_tick {
            Some(t) => format!(
                "{} · {} ms · {} Railway requests{}",
                t.started_at
                    .map(|s| s.format("%H:%M:%S UTC").to_string())
                    .unwrap_or_default(),
                t.duration_ms,
                t.railway_requests,
                if t.problems.is_empty() {
                    String::new()
                } else {
                    format!(" · {} problem(s)", t.problems.len())
                }
            ),
            None => "no tick on this replica (another replica leads)".into(),
        },
        leader: if status.is_leader {
            "leader (runs the reconciler)".into()
        } else {
            "follower (serves the API)".into()
        },
        redeploy: if progress.waiting + progress.in_progress == 0 {
            "none".into()
        } else {
            format!(
                "{} in progress, {} waiting → {}",
                progress.in_progress, progress.waiting, progress.image
            )
        },
        rows: agents.iter().map(AgentRow::from).collect(),
    })
}

/// `/`.
#[derive(Template)]
#[template(path = "fleet.html")]
pub struct FleetPage {
    signed_in: bool,
    csrf: String,
    notice: String,
    counts: Vec<(String, i64)>,
    image: String,
    budget: String,
    tick: String,
    leader: String,
    redeploy: String,
    filter: String,
    agents: Vec<AgentRow>,
}

impl FleetPage {
    /// The fleet page: counts, budget, tick and the agents matching the query's filter.
    pub async fn load(state: &AppState, csrf: &str, query: &HashMap<String, String>) -> Result<Self, String> {
        let f = facts(state, query).await?;
        Ok(Self {
            signed_in: true,
            csrf: csrf.to_string(),
            notice: query
                .get("notice")
                .cloned()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
            counts: f.counts,
            image: state.provisioner.config().image.to_string(),
            budget: f.budget,
            tick: f.tick,
            leader: f.leader,
            redeploy: f.redeploy,
            filter: status_filter(query).map(|s| s.to_string()).unwrap_or_default(),
            agents: f.rows,
        })
    }
}

/// The live-update data of the fleet view.
pub async fn fleet_json(
    state: &AppState,
    query: &HashMap<String, String>,
) -> Result<serde_json::Value, String> {
    let f = facts(state, query).await?;
    let counts: serde_json::Map<String, serde_json::Value> =
        f.counts.into_iter().map(|(k, v)| (k, v.into())).collect();
    Ok(serde_json::json!({
        "counts": counts,
        "budget": f.budget,
        "tick": f.tick,
        "leader": f.leader,
        "redeploy": f.redeploy,
        "agents": f.rows,
    }))
}

/// An event line.
pub struct EventLine {
    /// When, in UTC.
    pub at: String,
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
    fields: Vec<(&'static str, String)>,
    events: Vec<EventLine>,
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
        let time = |t: Option<chrono::DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "—".into());
        // Everything the database knows except secrets (tokens, passwords, keys).
        let fields = vec![
            ("status", a.status.to_string()),
            ("created", a.created_at.to_rfc3339()),
            ("status since", a.status_changed_at.to_rfc3339()),
            ("legacy", a.legacy.to_string()),
            ("quarantined", a.quarantined.to_string()),
            ("image", opt(&a.image)),
            ("Railway project", opt(&a.project_id)),
            ("environment", opt(&a.environment_id)),
            ("service", opt(&a.service_id)),
            ("volume", opt(&a.volume_id)),
            ("domain", opt(&a.domain)),
            ("deployment", opt(&a.deployment_id)),
            ("deployment status", opt(&a.deployment_status)),
            ("last health check", time(a.last_health_at)),
            (
                "healthy",
                a.last_health_ok
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "—".into()),
            ),
            ("OpenRouter key (hash)", opt(&a.openrouter_key_hash)),
            ("AgentMail inbox", opt(&a.agentmail_inbox_id)),
            ("agent name", opt(&a.agent_name)),
            ("instructions", opt(&a.instructions)),
            ("join URL", opt(&a.join_url)),
            ("conversation", opt(&a.conversation_id)),
            ("invite URL", opt(&a.invite_url)),
            ("claimed", time(a.claimed_at)),
            ("claim lease until", time(a.claim_expires_at)),
            (
                "creation steps done",
                a.completed_steps
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("teardown attempts", a.teardown_attempts.to_string()),
            ("next teardown attempt", time(a.next_attempt_at)),
            ("redeploy requested", time(a.redeploy_requested_at)),
            ("last error", opt(&a.last_error)),
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
                    at: e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
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

/// The answer to a launch.
#[derive(Template)]
#[template(path = "launched.html")]
pub struct LaunchedPage {
    signed_in: bool,
    csrf: String,
    notice: String,
    instance_id: String,
    invite_url: String,
    conversation_id: String,
    joined: bool,
    qr_svg: String,
}

impl LaunchedPage {
    /// The page shown after a launch, with the invite as a QR code.
    pub fn new(csrf: &str, claimed: &ClaimResponse) -> Self {
        // The QR code is drawn here, as SVG: no external service sees the invite.
        let qr_svg = qrcode::QrCode::new(claimed.invite_url.as_bytes())
            .map(|code| {
                code.render::<qrcode::render::svg::Color<'_>>()
                    .min_dimensions(200, 200)
                    .quiet_zone(true)
                    .build()
            })
            .unwrap_or_default();
        Self {
            signed_in: true,
            csrf: csrf.to_string(),
            notice: String::new(),
            instance_id: claimed.instance_id.clone(),
            invite_url: claimed.invite_url.clone(),
            conversation_id: claimed.conversation_id.clone(),
            joined: claimed.joined,
            qr_svg,
        }
    }
}
