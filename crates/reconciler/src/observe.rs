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
use pool_store::{Agent, AgentId};
use railway_api::{EnvironmentId, ProjectId, ProjectStatus, RailwayError, ServiceId};
use secrecy::ExposeSecret;

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

fn observe(agent: &Agent, project: &ProjectStatus) -> Observation {
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
pub(crate) async fn read_status(
    provisioner: &Provisioner,
    agents: &[&Agent],
    max_confirmations: usize,
) -> StatusObservations {
    let railway = provisioner.railway();
    let mut out = StatusObservations::default();
    let (legacy, own): (Vec<&Agent>, Vec<&Agent>) = agents.iter().copied().partition(|a| a.legacy);

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
                        let confirmed = confirm(provisioner, agent, p).await;
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

    let shared: BTreeMap<String, Vec<&Agent>> = legacy.iter().fold(BTreeMap::new(), |mut m, a| {
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
async fn confirm(provisioner: &Provisioner, agent: &Agent, project: &ProjectId) -> Observation {
    let railway = provisioner.railway();
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

/// Health-checks agents (those with a domain and a token), `concurrency` at a time.
pub(crate) async fn check_health(
    provisioner: &Provisioner,
    agents: &[&Agent],
    concurrency: usize,
) -> HashMap<AgentId, Health> {
    // Owned values only inside the stream, so the future stays `Send` for any caller.
    let checks: Vec<(AgentId, String, String)> = agents
        .iter()
        .filter_map(|a| {
            let url = provisioner.agent_url(a)?;
            let token = a.secrets.as_ref()?.agent_api_token.expose_secret().to_string();
            Some((a.id.clone(), url, token))
        })
        .collect();
    let client = provisioner.agents().clone();
    let reports: Vec<(AgentId, Health, Option<pool_provisioner::RuntimeIdentity>)> =
        futures_util::stream::iter(checks)
            .map(move |(id, url, token)| {
                let client = client.clone();
                async move {
                    let (health, identity) = client.health_report(&url, &token).await;
                    (id, health, identity)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    // Record what each agent said it runs, when that changed (API, console, metrics).
    for (id, _, identity) in &reports {
        let Some(identity) = identity else { continue };
        let Some(agent) = agents.iter().find(|a| a.id == *id) else {
            continue;
        };
        let changed = (identity.version.is_some() && identity.version != agent.runtime_version)
            || (identity.runtime.is_some() && identity.runtime != agent.runtime_name);
        if changed
            && let Err(e) = provisioner
                .store()
                .record_runtime(id, identity.version.as_deref(), identity.runtime.as_deref())
                .await
        {
            tracing::warn!(agent = %id, error = %e, "could not record the agent's runtime version");
        }
    }
    reports.into_iter().map(|(id, health, _)| (id, health)).collect()
}
