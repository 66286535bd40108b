//! The orphan sweep: remote resources this pool made that no live agent owns.
//!
//! - Railway projects carrying this pool's marker (its database's random pool id) and an agent
//!   name *of an agent this database knows*, owned by no live row and older than a grace period
//!   (a creation may be between `projectCreate` and its journal); at most `max_deletes` a pass.
//!   Projects without the marker are never touched — the guard refuses them, and re-reads each
//!   one just before deleting it. A project named after an agent this database has no row for
//!   is left alone even with the marker: the row is always written before `projectCreate`, so
//!   such a project is not this database's (a restored or emptied database, a copy).
//! - OpenRouter keys and AgentMail inboxes named after one of *this database's* agents whose
//!   row is archived or records another key/inbox. Keys and inboxes of agents this database
//!   does not know are left alone: they may belong to another pool sharing the account.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pool_provisioner::Provisioner;
use pool_store::{Agent, AgentId, AgentStatus};
use railway_api::ProjectId;

use crate::error::ReconcileError;

/// What one sweep deleted.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Railway projects deleted.
    pub projects: usize,
    /// Orphan projects left for the next pass (beyond `max_deletes`).
    pub deferred: usize,
    /// Marked projects named after agents this database does not know (never deleted).
    pub unknown: usize,
    /// OpenRouter keys deleted.
    pub keys: usize,
    /// AgentMail inboxes deleted.
    pub inboxes: usize,
    /// Problems met (the sweep goes on).
    pub errors: Vec<Arc<ReconcileError>>,
}

/// Runs one sweep, deleting at most `max_deletes` projects.
pub async fn sweep_orphans(provisioner: &Provisioner, grace: Duration, max_deletes: usize) -> SweepReport {
    let mut report = SweepReport::default();
    let store = provisioner.store();
    let naming = provisioner.naming();
    let live = match store.live_agents().await {
        Ok(live) => live,
        Err(e) => {
            report
                .errors
                .push(Arc::new(ReconcileError::sweep("loading agents", e)));
            return report;
        }
    };
    let owned: BTreeSet<ProjectId> = live
        .iter()
        .filter_map(|a| a.project_id.as_deref().map(ProjectId::new))
        .collect();
    let creating: BTreeSet<&AgentId> = live
        .iter()
        .filter(|a| a.status == AgentStatus::Creating)
        .map(|a| &a.id)
        .collect();

    let railway = provisioner.railway().with_priority(railway_api::Priority::Status);
    match railway
        .workspace_projects(&provisioner.config().workspace_id)
        .await
    {
        Ok(projects) => {
            let grace = chrono::Duration::from_std(grace).unwrap_or_default();
            let mut candidates = Vec::new();
            for project in projects {
                let Ok(cleared) = provisioner.guard().marked_project(&project) else {
                    continue;
                };
                let Some(agent) = naming.agent_id(&project.name) else {
                    continue;
                };
                if owned.contains(&project.id)
                    || creating.contains(&agent)
                    || Utc::now() - project.created_at < grace
                {
                    continue;
                }
                candidates.push((agent, project, cleared));
            }
            let ids: Vec<AgentId> = candidates.iter().map(|(a, _, _)| a.clone()).collect();
            let known: BTreeSet<AgentId> = match store.agents_by_ids(&ids).await {
                Ok(rows) => rows.into_iter().map(|a| a.id).collect(),
                Err(e) => {
                    report
                        .errors
                        .push(Arc::new(ReconcileError::sweep("loading agents", e)));
                    return report;
                }
            };
            for (agent, project, cleared) in candidates {
                if !known.contains(&agent) {
                    tracing::warn!(project = %project.id, name = %project.name, "a project with this pool's marker names an agent this database does not know; left alone");
                    report.unknown += 1;
                    continue;
                }
                if report.projects >= max_deletes {
                    report.deferred += 1;
                    continue;
                }
                tracing::warn!(project = %project.id, name = %project.name, "deleting an orphan project");
                match provisioner.guard().delete(cleared).await {
                    Ok(()) => report.projects += 1,
                    Err(e) => report.errors.push(Arc::new(ReconcileError::sweep(
                        format!("project {}", project.id),
                        e,
                    ))),
                }
            }
        }
        Err(e) => report
            .errors
            .push(Arc::new(ReconcileError::sweep("listing the workspace", e))),
    }

    // Keys and inboxes: only those named after agents this database knows.
    let mut named: BTreeMap<AgentId, Vec<(&'static str, String)>> = BTreeMap::new();
    if let Some(openrouter) = provisioner.openrouter() {
        match openrouter.list_keys().await {
            Ok(keys) => {
                for (hash, name) in keys {
                    if let Some(id) = naming.agent_id(&name) {
                        named.entry(id).or_default().push(("key", hash));
                    }
                }
            }
            Err(e) => report
                .errors
                .push(Arc::new(ReconcileError::sweep("listing keys", e))),
        }
    }
    if let Some(agentmail) = provisioner.agentmail() {
        match agentmail.list_inboxes().await {
            Ok(inboxes) => {
                for (inbox, client_id) in inboxes {
                    if let Some(id) = client_id
                        .as_deref()
                        .and_then(|c| AgentId::parse(c).ok())
                        .filter(AgentId::is_generated)
                    {
                        named.entry(id).or_default().push(("inbox", inbox));
                    }
                }
            }
            Err(e) => report
                .errors
                .push(Arc::new(ReconcileError::sweep("listing inboxes", e))),
        }
    }
    if named.is_empty() {
        return report;
    }
    // Inboxes the service proxy gave agents are recorded apart from the row.
    let recorded: BTreeSet<(AgentId, String)> = match store.recorded_inboxes().await {
        Ok(inboxes) => inboxes.into_iter().collect(),
        Err(e) => {
            report
                .errors
                .push(Arc::new(ReconcileError::sweep("loading inboxes", e)));
            return report;
        }
    };
    let provisioning: BTreeSet<AgentId> = match store.inboxes_in_provisioning().await {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => {
            report
                .errors
                .push(Arc::new(ReconcileError::sweep("loading inboxes", e)));
            return report;
        }
    };
    let ids: Vec<AgentId> = named.keys().cloned().collect();
    let rows: BTreeMap<AgentId, Agent> = match store.agents_by_ids(&ids).await {
        Ok(rows) => rows.into_iter().map(|a| (a.id.clone(), a)).collect(),
        Err(e) => {
            report
                .errors
                .push(Arc::new(ReconcileError::sweep("loading agents", e)));
            return report;
        }
    };
    for (id, resources) in named {
        let Some(agent) = rows.get(&id) else { continue };
        if agent.status == AgentStatus::Creating || provisioning.contains(&id) {
            continue;
        }
        for (kind, remote) in resources {
            let orphan = agent.status == AgentStatus::Deleted
                || match kind {
                    "key" => agent.openrouter_key_hash.as_deref() != Some(remote.as_str()),
                    _ => {
                        agent.agentmail_inbox_id.as_deref() != Some(remote.as_str())
                            && !recorded.contains(&(id.clone(), remote.clone()))
                    }
                };
            if !orphan {
                continue;
            }
            let result = match (kind, provisioner.openrouter(), provisioner.agentmail()) {
                ("key", Some(openrouter), _) => {
                    openrouter.delete_key(&remote).await.map(|()| report.keys += 1)
                }
                ("inbox", _, Some(agentmail)) => agentmail
                    .delete_inbox(&remote)
                    .await
                    .map(|()| report.inboxes += 1),
                _ => Ok(()),
            };
            if let Err(e) = result {
                report
                    .errors
                    .push(Arc::new(ReconcileError::sweep(format!("{kind} {remote}"), e)));
            }
        }
    }
    report
}
