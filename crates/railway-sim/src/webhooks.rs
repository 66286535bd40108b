//! Railway's deploy events, as the simulator sends them to a webhook URL.
//!
//! Railway posts an event when a deployment's status changes, in the format its docs show
//! (docs.railway.com/observability/webhooks): `{"type": "Deployment.crashed", "details": {"id",
//! "status"}, "resource": {"workspace", "project", "environment", "service", "deployment"},
//! "severity", "timestamp"}`. The event names are those the Node pool subscribes to against the
//! live API (xmtplabs/convos-managed-agent-runtime `pool/src/webhook.ts`): `Deployment.deployed`,
//! `.crashed`, `.failed`, `.oom_killed`, `.slept`, `.resumed`.
//!
//! As on Railway: events exist only for changes after the webhook is set up; each is posted on
//! its own (so they may arrive out of order); a non-2xx answer or no answer is retried up to
//! three times with growing waits (third-party summaries of Railway's delivery rules; not in
//! the docs we could read, so treated as a model, not a fact); nothing is signed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::world::{Status, World};

/// How often deployments are looked at for changes.
const SCAN_EVERY: Duration = Duration::from_millis(50);
/// Retries after the first delivery attempt.
const RETRIES: u32 = 3;

/// The sender's state: where to post, and what each deployment was at the last scan.
#[derive(Debug, Default)]
pub(crate) struct Webhooks {
    url: Option<String>,
    last: HashMap<String, Status>,
    /// Events posted and answered 2xx.
    pub delivered: u64,
    /// Events given up on after every retry.
    pub dropped: u64,
}

pub(crate) type SharedWebhooks = Arc<Mutex<Webhooks>>;

impl Webhooks {
    /// Sets (or clears) the URL. The deployments as they are now are the baseline: only
    /// later changes make events.
    pub(crate) fn set_url(&mut self, url: Option<String>, world: &World, now: Instant) {
        self.url = url;
        self.last = world
            .deployments
            .values()
            .map(|d| (d.id.clone(), world.status(d, now)))
            .collect();
    }
}

/// The event type for a change of status (`None`: not one Railway reports).
fn event_type(before: Option<Status>, after: Status) -> Option<&'static str> {
    Some(match (before, after) {
        (Some(Status::Sleeping), Status::Success) => "Deployment.resumed",
        (_, Status::Success) => "Deployment.deployed",
        (_, Status::Failed) => "Deployment.failed",
        (_, Status::Crashed) => "Deployment.crashed",
        (_, Status::Sleeping) => "Deployment.slept",
        _ => return None,
    })
}

/// The events of the changes since the last scan, with their URL.
fn scan(webhooks: &mut Webhooks, world: &World, now: Instant) -> Vec<(String, Value)> {
    let Some(url) = webhooks.url.clone() else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for d in world.deployments.values() {
        let status = world.status(d, now);
        // A deployment made since the webhook was set starts from "queued".
        let before = webhooks
            .last
            .insert(d.id.clone(), status)
            .or(Some(Status::Queued));
        if before == Some(status) {
            continue;
        }
        let Some(kind) = event_type(before, status) else {
            continue;
        };
        let project = world.projects.get(&d.project_id);
        let workspace = project
            .and_then(|p| p.workspace_id.as_deref())
            .unwrap_or_default();
        let service = world.services.get(&d.service_id);
        let environment = project
            .and_then(|p| p.environments.iter().find(|(id, _)| *id == d.environment_id))
            .map(|(_, name)| name.as_str());
        events.push((
            url.clone(),
            json!({
                "type": kind,
                "details": {"id": d.id, "status": status, "source": "Docker Image"},
                "resource": {
                    "workspace": {"id": workspace, "name": world.config.workspaces.get(workspace)},
                    "project": {"id": d.project_id, "name": project.map(|p| p.name.as_str())},
                    "environment": {"id": d.environment_id, "name": environment, "isEphemeral": false},
                    "service": {"id": d.service_id, "name": service.map(|s| s.name.as_str())},
                    "deployment": {"id": d.id},
                },
                "severity": if status == Status::Success { "INFO" } else { "WARNING" },
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
        ));
    }
    webhooks.last.retain(|id, _| world.deployments.contains_key(id));
    events
}

/// Scans for changes and posts their events, until the simulator is dropped.
pub(crate) fn start(world: Arc<Mutex<World>>, webhooks: SharedWebhooks) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let world = Arc::downgrade(&world);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SCAN_EVERY);
        loop {
            every.tick().await;
            let Some(world) = world.upgrade() else { return };
            let events = {
                let w = world.lock().unwrap_or_else(|p| p.into_inner());
                let mut hooks = webhooks.lock().unwrap_or_else(|p| p.into_inner());
                scan(&mut hooks, &w, Instant::now())
            };
            drop(world);
            for (url, event) in events {
                tokio::spawn(deliver(client.clone(), webhooks.clone(), url, event));
            }
        }
    });
}

async fn deliver(
    client: Client<HttpConnector, Full<Bytes>>,
    webhooks: SharedWebhooks,
    url: String,
    event: Value,
) {
    let body = Bytes::from(event.to_string());
    let mut wait = Duration::from_millis(500);
    for attempt in 0..=RETRIES {
        let request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .header("user-agent", "railway-sim-webhooks")
            .body(Full::new(body.clone()));
        let Ok(request) = request else { break };
        let answered = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await;
        if let Ok(Ok(response)) = answered
            && (response.status().is_success() || response.status().is_redirection())
        {
            webhooks.lock().unwrap_or_else(|p| p.into_inner()).delivered += 1;
            return;
        }
        if attempt < RETRIES {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    webhooks.lock().unwrap_or_else(|p| p.into_inner()).dropped += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_map_to_the_event_names_railway_uses() {
        assert_eq!(
            event_type(Some(Status::Deploying), Status::Success),
            Some("Deployment.deployed")
        );
        assert_eq!(
            event_type(Some(Status::Sleeping), Status::Success),
            Some("Deployment.resumed")
        );
        assert_eq!(
            event_type(Some(Status::Success), Status::Crashed),
            Some("Deployment.crashed")
        );
        assert_eq!(
            event_type(Some(Status::Building), Status::Failed),
            Some("Deployment.failed")
        );
        assert_eq!(
            event_type(Some(Status::Success), Status::Sleeping),
            Some("Deployment.slept")
        );
        assert_eq!(event_type(Some(Status::Queued), Status::Building), None);
        assert_eq!(event_type(Some(Status::Success), Status::Removed), None);
    }
}
