//! Long because its tests of the invite link sit beside it; the code alone is under 600 lines.
//!
//! The console's pages and the live-update data, built from the store and the reconciler.

use std::collections::HashMap;

use askama::Template;
use chrono::{DateTime, Utc};
use pool_provisioner::ClaimResponse;
use pool_store::{Agent, AgentId, AgentStatus, BrakeState, StoredSettings};
use serde::Serialize;

use crate::AppState;

use super::chart::{self, HourOfClaims};
use super::status_filter;
use super::when::When;

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
            // Only a Convos invite is rendered as a link (the invite comes from an agent).
            invite_url: a.invite_url.as_deref().and_then(invite_link).unwrap_or_default(),
        }
    }
}

/// An agent's invite URL, if it is one to link to: `https://` on `convos.org` or one of its
/// subdomains (`popup.convos.org`, `dev.convos.org`: the invites the runtime makes, Node's
/// `pool/src/index.ts:971-974`), at most 2 KiB, no whitespace, quotes or angle brackets. The
/// agent supplies it; anything else is shown as text, never as a link or a QR code.
pub(crate) fn invite_link(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let host = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let host_ok = host == "convos.org"
        || host.strip_suffix(".convos.org").is_some_and(|sub| {
            !sub.is_empty()
                && sub
                    .split('.')
                    .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
    let chars_ok = url.len() <= 2048
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`'));
    (host_ok && chars_ok).then(|| url.to_string())
}

/// The figures above the table.
struct Facts {
    counts: Vec<(String, i64)>,
    budget: String,
    tick: String,
    tick_exact: String,
    target: String,
    leader: String,
    redeploy: String,
    rollout: (String, Option<String>),
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
    let now = Utc::now();
    let sample = store
        .latest_sample(now - chrono::Duration::minutes(10))
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
                t.started_at.map(|s| When::at(s, now).ago).unwrap_or_default(),
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
        tick_exact: status
            .last_tick
            .as_ref()
            .and_then(|t| t.started_at)
            .map(|s| When::at(s, now).exact)
            .unwrap_or_default(),
        target: match sample {
            Some((_, s)) if !s.reason.is_empty() => s.reason,
            Some((_, s)) => format!("target {}", s.target),
            None => "not sized yet (the leader sizes the pool every tick)".into(),
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
        rollout: super::rollout::line(
            state
                .provisioner
                .latest_rollout()
                .await
                .map_err(|e| e.to_string())?,
        ),
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
    tick_exact: String,
    target: String,
    leader: String,
    redeploy: String,
    rollout: String,
    rollout_failure: Option<String>,
    filter: String,
    agents: Vec<AgentRow>,
    brake: Option<BrakeBanner>,
    paused: Option<PausedBanner>,
    chart_svg: String,
    legend: [(&'static str, &'static str); 5],
    claims_summary: String,
    settings: SettingsForm,
}

/// The banner shown while the creation brake is engaged.
pub struct BrakeBanner {
    /// Failed creations in a row.
    pub failures: u32,
    /// The last failure, in words.
    pub last_failure: String,
    /// When the brake engaged.
    pub since: When,
    /// When the last probe creation started, if one has.
    pub last_probe: Option<When>,
}

impl BrakeBanner {
    fn from_state(brake: &BrakeState, now: DateTime<Utc>) -> Option<Self> {
        let engaged_at = brake.engaged_at?;
        Some(Self {
            failures: brake.consecutive_failures,
            last_failure: brake
                .last_failure
                .clone()
                .unwrap_or_else(|| "(not recorded)".into())
                .chars()
                .take(500)
                .collect(),
            since: When::at(engaged_at, now),
            last_probe: brake.last_probe_at.map(|at| When::at(at, now)),
        })
    }
}

/// The banner shown while an operator has paused creation.
pub struct PausedBanner {
    /// Who paused it.
    pub by: String,
    /// When the settings last changed.
    pub since: When,
}

/// The settings form, filled with the stored values.
pub struct SettingsForm {
    /// `minIdle`.
    pub min_idle: u32,
    /// `maxTotal`, empty for none.
    pub max_total: String,
    /// `paused`.
    pub paused: bool,
    /// `idleSchedule`, empty for none.
    pub idle_schedule: String,
    /// `maxIdleAgeMs` in minutes, empty for never.
    pub max_idle_age_minutes: String,
    /// `createFailureLimit`.
    pub create_failure_limit: u32,
    /// `parkedMin`.
    pub parked_min: u32,
    /// `parkedMax`.
    pub parked_max: u32,
    /// `parkAfterMs` in minutes.
    pub park_after_minutes: u64,
    /// Who changed them last.
    pub updated_by: String,
    /// When.
    pub updated: When,
}

impl SettingsForm {
    fn from_stored(stored: &StoredSettings, now: DateTime<Utc>) -> Self {
        let s = &stored.settings;
        Self {
            min_idle: s.min_idle,
            max_total: s.max_total.map(|m| m.to_string()).unwrap_or_default(),
            paused: s.paused,
            idle_schedule: s.idle_schedule.clone().unwrap_or_default(),
            max_idle_age_minutes: s
                .max_idle_age
                .map(|a| (a.as_secs() / 60).to_string())
                .unwrap_or_default(),
            create_failure_limit: s.create_failure_limit,
            parked_min: s.parked_min,
            parked_max: s.parked_max,
            park_after_minutes: s.park_after.as_secs() / 60,
            updated_by: stored.updated_by.clone(),
            updated: When::at(stored.updated_at, now),
        }
    }
}

impl FleetPage {
    /// The fleet page: counts, budget, tick and the agents matching the query's filter.
    pub async fn load(state: &AppState, csrf: &str, query: &HashMap<String, String>) -> Result<Self, String> {
        let f = facts(state, query).await?;
        let store = state.provisioner.store();
        let now = Utc::now();
        let since = now - chrono::Duration::hours(chart::SPAN_HOURS);
        let samples = store.samples_since(since).await.map_err(|e| e.to_string())?;
        let hours: Vec<HourOfClaims> = store
            .claims_per_hour(since)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(hour, served, refused)| HourOfClaims {
                hour,
                served,
                refused,
            })
            .collect();
        let (served, refused) = hours
            .iter()
            .fold((0, 0), |(s, r), h| (s + h.served, r + h.refused));
        let stored = state.provisioner.settings().await.map_err(|e| e.to_string())?;
        let brake = store.brake().await.map_err(|e| e.to_string())?;
        Ok(Self {
            signed_in: true,
            csrf: csrf.to_string(),
            // Only a notice the console itself wrote (signed) is shown.
            notice: query
                .get("notice")
                .filter(|n| {
                    query
                        .get("sig")
                        .is_some_and(|sig| super::signin::notice_is_signed(state, n, sig))
                })
                .cloned()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
            counts: f.counts,
            image: state.provisioner.config().image.to_string(),
            budget: f.budget,
            tick: f.tick,
            tick_exact: f.tick_exact,
            target: f.target,
            leader: f.leader,
            redeploy: f.redeploy,
            rollout: f.rollout.0,
            rollout_failure: f.rollout.1,
            filter: status_filter(query).map(|s| s.to_string()).unwrap_or_default(),
            agents: f.rows,
            brake: BrakeBanner::from_state(&brake, now),
            paused: stored.settings.paused.then(|| PausedBanner {
                by: stored.updated_by.clone(),
                since: When::at(stored.updated_at, now),
            }),
            chart_svg: chart::render(&samples, &hours, now),
            legend: chart::LEGEND,
            claims_summary: format!("last 24 h: {served} claims served, {refused} refused"),
            settings: SettingsForm::from_stored(&stored, now),
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
        "tick_exact": f.tick_exact,
        "target": f.target,
        "leader": f.leader,
        "redeploy": f.redeploy,
        "rollout": f.rollout.0,
        "agents": f.rows,
    }))
}

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

/// The answer to a launch.
#[derive(Template)]
#[template(path = "launched.html")]
pub struct LaunchedPage {
    signed_in: bool,
    csrf: String,
    notice: String,
    instance_id: String,
    invite_url: String,
    /// The invite as a link (empty when it is not one to link to).
    invite_link: String,
    conversation_id: String,
    joined: bool,
    qr_svg: String,
}

impl LaunchedPage {
    /// The page shown after a launch, with the invite as a QR code.
    pub fn new(csrf: &str, claimed: &ClaimResponse) -> Self {
        // The QR code is drawn here, as SVG: no external service sees the invite. Only an
        // invite that is a Convos link gets one.
        let invite_link = invite_link(&claimed.invite_url).unwrap_or_default();
        let qr_svg = if invite_link.is_empty() {
            String::new()
        } else {
            qrcode::QrCode::new(invite_link.as_bytes())
                .map(|code| {
                    code.render::<qrcode::render::svg::Color<'_>>()
                        .min_dimensions(200, 200)
                        .quiet_zone(true)
                        .build()
                })
                .unwrap_or_default()
        };
        Self {
            signed_in: true,
            csrf: csrf.to_string(),
            notice: String::new(),
            instance_id: claimed.instance_id.clone(),
            invite_url: claimed.invite_url.clone(),
            invite_link,
            conversation_id: claimed
                .conversation_id
                .clone()
                .unwrap_or_else(|| "none yet: the join waits for acceptance".into()),
            joined: claimed.joined,
            qr_svg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_convos_invites_are_links() {
        for good in [
            "https://popup.convos.org/v2?i=abc",
            "https://dev.convos.org/v2?i=1",
            "https://convos.org/x",
        ] {
            assert_eq!(invite_link(good).as_deref(), Some(good));
        }
        for bad in [
            "http://popup.convos.org/v2",
            "https://evil.example/popup.convos.org",
            "https://popup.convos.org.evil.example/",
            "https://evilconvos.org/",
            "javascript:alert(1)",
            "https://popup.convos.org/\"><script>",
            "https://popup.convos.org/a b",
            "",
        ] {
            assert_eq!(invite_link(bad), None, "{bad}");
        }
    }
}
