//! Observation: batched Railway status reads and health checks.
//!
//! Railway is asked in batches (`projectsByIds`, 50 projects a request), never once per
//! agent; legacy agents in the shared project are read with one listing of that project.
//! An agent a successful batch left out is not judged on that: a read of its own project
//! confirms whether it is gone (a bounded number per tick; the rest stay unread until the
//! next). Health checks go to the agents themselves, cost nothing against Railway's budget,
//! and run with bounded concurrency.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::StreamExt;
use pool_provisioner::{Health, Provisioner};
use pool_store::{AgentId, TickRow};
use railway_api::{EnvironmentId, ProjectId, ProjectStatus, RailwayClient, RailwayError, ServiceId};

use crate::decide::Observation;

/// What a status read produced.
#[derive(Debug, Default)]
pub(crate) struct StatusObservations {
    pub by_agent: HashMap<AgentId, Observation>,
    pub failed: Option<RailwayError>,
    /// Agents a successful batch left out.
    pub omitted: usize,
    /// Of those, how many were confirmed by a read of their own project.
    pub confirmed: usize,
}

fn observe(agent: &TickRow, project: &ProjectStatus) -> Observation {
    let service_id = agent.service_id.as_deref().map(ServiceId::new);
    let environment_id = agent.environment_id.as_deref().map(EnvironmentId::new);
    let service = project.services.iter().find(|s| {
        Some(&s.service_id) == service_id.as_ref()
            && environment_id.as_ref().is_none_or(|env| *env == s.environment_id)
    });
    match service.and_then(|s| s.latest_deployment.as_ref()) {
        Some(d) => Observation::Deployment {
            status: d.status.clone(),
            health: None,
        },
        None => Observation::Missing,
    }
}

/// Reads the latest deployment of each agent. At most `max_confirmations` agents left out of
/// a batch get a read of their own this time.
/// Requests go through `railway` (at its priority: suspicion reads draw on their own bucket).
pub(crate) async fn read_status(
    provisioner: &Provisioner,
    railway: &RailwayClient,
    agents: &[&TickRow],
    max_confirmations: usize,
) -> StatusObservations {
    let mut out = StatusObservations::default();
    let (legacy, own): (Vec<&TickRow>, Vec<&TickRow>) = agents.iter().copied().partition(|a| a.legacy);

    let ids: Vec<ProjectId> = own
        .iter()
        .filter_map(|a| a.project_id.as_deref().map(ProjectId::new))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !ids.is_empty() {
        let read = railway.projects_status(&ids).await;
        let failed: BTreeSet<&ProjectId> = read.failed.iter().collect();
        let omitted: BTreeSet<&ProjectId> = read.omitted.iter().collect();
        out.omitted = omitted.len();
        let mut confirmations: BTreeMap<ProjectId, Observation> = BTreeMap::new();
        for agent in &own {
            let project = agent.project_id.as_deref().map(ProjectId::new);
            let observation = match &project {
                None => Observation::Missing,
                Some(p) if failed.contains(p) => Observation::Unread,
                Some(p) if omitted.contains(p) => {
                    if let Some(known) = confirmations.get(p) {
                        known.clone()
                    } else if confirmations.len() < max_confirmations {
                        let confirmed = confirm(provisioner, railway, agent, p).await;
                        confirmations.insert(p.clone(), confirmed.clone());
                        confirmed
                    } else {
                        Observation::Unread
                    }
                }
                Some(p) => match read.projects.get(p) {
                    Some(project) => observe(agent, project),
                    None => Observation::Unread,
                },
            };
            out.by_agent.insert(agent.id.clone(), observation);
        }
        out.confirmed = confirmations.len();
        out.failed = read.last_error;
    }

    let shared: BTreeMap<String, Vec<&TickRow>> = legacy.iter().fold(BTreeMap::new(), |mut m, a| {
        if let Some(p) = &a.project_id {
            m.entry(p.clone()).or_insert_with(Vec::new).push(*a);
        }
        m
    });
    for (project_id, agents) in shared {
        match railway.project_status(&ProjectId::new(project_id)).await {
            Ok(project) => {
                for agent in agents {
                    out.by_agent.insert(agent.id.clone(), observe(agent, &project));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the shared project failed; legacy agents keep their status");
                for agent in agents {
                    out.by_agent.insert(agent.id.clone(), Observation::Unread);
                }
                out.failed = Some(e);
            }
        }
    }
    out
}

/// An agent a batch left out: is its project gone (a read of the project itself says), or
/// there after all (then one read of it gives its status)?
async fn confirm(
    provisioner: &Provisioner,
    railway: &RailwayClient,
    agent: &TickRow,
    project: &ProjectId,
) -> Observation {
    match provisioner.guard().is_gone(railway, project).await {
        Ok(true) => {
            tracing::info!(agent = %agent.id, %project, "a status batch left the agent out; its project is gone");
            Observation::Gone
        }
        Ok(false) => match railway.project_status(project).await {
            Ok(status) => observe(agent, &status),
            Err(_) => Observation::Unread,
        },
        Err(e) => {
            tracing::debug!(agent = %agent.id, error = %e, "could not confirm a project left out of a batch");
            Observation::Unread
        }
    }
}

/// What one health check found: the verdict, and what the agent said it runs.
pub(crate) type Checked = (Health, Option<pool_provisioner::RuntimeIdentity>);

/// The runtime an agent says it runs (`runtime` of its `/pool/health`,
/// pool-server/index.ts:359, which is its `RUNTIME_TYPE`, 59): what this check found, else
/// what it said last time it answered; `None` when it never said.
pub(crate) fn reported_runtime<'a>(agent: &'a TickRow, checked: Option<&'a Checked>) -> Option<&'a str> {
    checked
        .and_then(|(_, identity)| identity.as_ref()?.runtime.as_deref())
        .or(agent.runtime_name.as_deref())
}

/// Health-checks agents (those with a domain), `concurrency` at a time. No token is sent:
/// the runtime answers `/pool/health` without auth (pool-server/index.ts:342-361).
pub(crate) async fn check_health(
    provisioner: &Provisioner,
    client: &pool_provisioner::AgentClient,
    agents: &[&TickRow],
    concurrency: usize,
) -> HashMap<AgentId, Checked> {
    // Owned values only inside the stream, so the future stays `Send` for any caller.
    let checks: Vec<(AgentId, String)> = agents
        .iter()
        .filter_map(|a| {
            Some((
                a.id.clone(),
                provisioner.agent_url_at(&a.id, a.domain.as_deref())?,
            ))
        })
        .collect();
    let client = client.clone();
    futures_util::stream::iter(checks)
        .map(move |(id, url)| {
            let client = client.clone();
            async move { (id, client.health_report(&url, None).await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}
