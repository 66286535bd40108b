//! The console's pages and the live-update data, built from the store and the reconciler.

use std::collections::HashMap;

use askama::Template;
use chrono::Utc;
use pool_provisioner::ClaimResponse;
use pool_store::{Agent, AgentStatus};
use serde::Serialize;

use crate::AppState;

use super::chart::{self, HourOfClaims};
use super::runtimes::{self, RuntimeRow};
use super::settings_form::SettingsView;
use super::status_filter;
use super::when::When;
use crate::stock::Stock;

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
    replicas: Vec<String>,
    redeploy: String,
    rollout: (String, Option<String>),
    rows: Vec<AgentRow>,
    /// Set when the rows are not every agent matching the filter.
    rows_note: Option<String>,
    runtimes: Vec<RuntimeRow>,
    runtime_names: Vec<String>,
}

/// The most agents the fleet view lists.
const ROWS_SHOWN: usize = 1_000;

async fn facts(state: &AppState, query: &HashMap<String, String>) -> Result<Facts, String> {
    let store = state.provisioner.store();
    let now = Utc::now();
    let stock = Stock::read(state, now - chrono::Duration::minutes(10))
        .await
        .map_err(|e| e.to_string())?;
    let c = &stock.total;
    // The oldest agents only, and how many there are: the view (polled for its live update)
    // never loads a fleet of 100,000 whole.
    let filter = status_filter(query);
    let agents = match filter {
        Some(status) => store.first_agents_with_status(status, ROWS_SHOWN).await,
        None => store.first_live_agents(ROWS_SHOWN).await,
    }
    .map_err(|e| e.to_string())?;
    let matching = match filter {
        Some(status) => c.of(status),
        None => c.total(),
    };
    let rows_note = (matching > agents.len() as i64).then(|| {
        format!(
            "The oldest {} of {matching} agents{}; filter by status to see others.",
            agents.len(),
            filter.map(|s| format!(" {s}")).unwrap_or_default()
        )
    });
    let budget = state.provisioner.railway().budget();
    let status = state.control.reconciler();
    let progress = state
        .provisioner
        .redeploy_progress()
        .await
        .map_err(|e| e.to_string())?;
    let sample = store
        .latest_sample(now - chrono::Duration::minutes(10))
        .await
        .map_err(|e| e.to_string())?;
    let sample_target = sample.as_ref().map(|(_, s)| s.target);
    let mut replicas: Vec<String> = crate::replicas::read(store, status.replica.as_deref())
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(crate::replicas::console_line)
        .collect();
    if replicas.is_empty() {
        replicas.push("none has joined: no replica takes shards yet".into());
    }
    Ok(Facts {
        counts: [
            (AgentStatus::Idle, c.idle),
            (AgentStatus::Starting, c.starting),
            (AgentStatus::Creating, c.creating),
            (AgentStatus::Claiming, c.claiming),
            (AgentStatus::Claimed, c.claimed),
            (AgentStatus::Crashed, c.crashed),
            (AgentStatus::Parked, c.parked),
            (AgentStatus::Parking, c.parking),
            (AgentStatus::Waking, c.waking),
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
        replicas,
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
        rows_note,
        runtimes: runtimes::rows(
            &stock,
            &state.provisioner.config().default_shape().name,
            sample_target,
        ),
        runtime_names: stock.order.clone(),
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
    replicas: Vec<String>,
    redeploy: String,
    rollout: String,
    rollout_failure: Option<String>,
    filter: String,
    agents: Vec<AgentRow>,
    rows_note: Option<String>,
    runtimes: Vec<RuntimeRow>,
    cost_note: String,
    chart_runtime: String,
    chart_choices: Vec<String>,
    chart_svg: String,
    legend: [(&'static str, &'static str); 5],
    claims_summary: String,
    settings: SettingsView,
}

impl FleetPage {
    /// The fleet page: counts, budget, tick and the agents matching the query's filter.
    pub async fn load(state: &AppState, csrf: &str, query: &HashMap<String, String>) -> Result<Self, String> {
        let f = facts(state, query).await?;
        let store = state.provisioner.store();
        let now = Utc::now();
        let since = now - chrono::Duration::hours(chart::SPAN_HOURS);
        // The chart shows one runtime's samples and claims when the query names one.
        let chart_runtime = runtimes::chart_runtime(query, &f.runtime_names);
        let samples = store
            .shape_samples_since(&chart_runtime, since)
            .await
            .map_err(|e| e.to_string())?;
        let hours: Vec<HourOfClaims> = store
            .shape_claims_per_hour(Some(chart_runtime.as_str()).filter(|r| !r.is_empty()), since)
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
        let settings = SettingsView::load(state, query, now).await?;
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
            image: state.provisioner.config().default_shape().image.to_string(),
            budget: f.budget,
            tick: f.tick,
            tick_exact: f.tick_exact,
            target: f.target,
            leader: f.leader,
            replicas: f.replicas,
            redeploy: f.redeploy,
            rollout: f.rollout.0,
            rollout_failure: f.rollout.1,
            filter: status_filter(query).map(|s| s.to_string()).unwrap_or_default(),
            agents: f.rows,
            rows_note: f.rows_note,
            runtimes: f.runtimes,
            cost_note: runtimes::cost_note(),
            chart_runtime,
            chart_choices: f.runtime_names,
            chart_svg: chart::render(&samples, &hours, now),
            legend: chart::LEGEND,
            claims_summary: format!("last 24 h: {served} claims served, {refused} refused"),
            settings,
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
        "replicas": f.replicas,
        "redeploy": f.redeploy,
        "rollout": f.rollout.0,
        "agents": f.rows,
        "runtimes": f.runtimes,
    }))
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
