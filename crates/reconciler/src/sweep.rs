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
//!
//! The leader runs it in a task of its own ([`Reconciler::start_orphan_sweep`]), never inside
//! a tick: its workspace listing is one request per 100 projects (about 100 pages, 6.5 s, at
//! 10,000 agents), and a tick that waited for it held up the next lock check long enough to
//! lose leadership. The task lives only while the replica holds the leader lock: it is aborted
//! when the lock is lost or given up, and checks leadership before every delete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pool_provisioner::Provisioner;
use pool_store::{AgentId, AgentStatus, ResourceOwner};
use serde::Serialize;

use crate::Reconciler;
use crate::error::ReconcileError;

/// Projects (and agents) the sweep compares with the database at a time.
const SWEEP_PAGE: usize = 500;

/// What one sweep deleted.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Projects the workspace's listing held (this pool's and any other's).
    pub listed: usize,
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

/// What the last orphan sweep of this replica did (its status).
#[derive(Debug, Clone, Serialize)]
pub struct OrphanSweepSummary {
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: u64,
    /// Projects the workspace's listing held: the next sweep's cost, which spaces sweeps out
    /// ([`orphan_sweep_interval`]).
    pub listed: usize,
    /// Railway projects deleted.
    pub projects: usize,
    /// Orphan projects left for the next pass (beyond the maximum deletes).
    pub deferred: usize,
    /// Marked projects named after agents this database does not know (never deleted).
    pub unknown: usize,
    /// OpenRouter keys deleted.
    pub keys: usize,
    /// AgentMail inboxes deleted.
    pub inboxes: usize,
    /// Problems met.
    pub errors: Vec<String>,
}

/// The orphan sweep's task, while one runs; aborted when this is dropped (the leader's loop
/// ended) or stopped (the leader lock was lost).
#[derive(Debug, Default)]
pub(crate) struct SweepTask(Option<tokio::task::JoinHandle<()>>);

impl SweepTask {
    fn running(&self) -> bool {
        self.0.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Aborts the sweep, if one runs.
    pub(crate) fn stop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Drop for SweepTask {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Reconciler {
    /// Starts the orphan sweep in a task of its own when it is due and none runs: the leader
    /// calls this after each of its ticks, which never wait for it.
    pub(crate) fn start_orphan_sweep(&self, task: &mut SweepTask) {
        if task.running() || !self.orphan_sweep_due() {
            return;
        }
        let reconciler = self.clone();
        task.0 = Some(tokio::spawn(async move { reconciler.orphan_sweep().await }));
    }

    async fn orphan_sweep(&self) {
        let started = std::time::Instant::now();
        let sweep = sweep_orphans_while(
            &self.provisioner,
            self.config.orphan_grace,
            self.config.orphan_sweep_max_deletes,
            || self.is_leader(),
        )
        .await;
        if !sweep.errors.is_empty() {
            tracing::warn!(errors = ?sweep.errors, "the orphan sweep finished with errors");
        }
        let summary = OrphanSweepSummary {
            finished_at: Utc::now(),
            duration_ms: started.elapsed().as_millis() as u64,
            listed: sweep.listed,
            projects: sweep.projects,
            deferred: sweep.deferred,
            unknown: sweep.unknown,
            keys: sweep.keys,
            inboxes: sweep.inboxes,
            errors: sweep.errors.iter().map(|e| e.to_string()).collect(),
        };
        self.workspace_projects.store(sweep.listed, Ordering::SeqCst);
        tracing::info!(?summary, "orphan sweep");
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.orphan_sweeps += 1;
        status.last_orphan_sweep = Some(summary);
    }
}

/// The most of the hourly Railway budget the orphan sweep's workspace listing may take: past
/// the fleet size where the sweep interval would cost more, sweeps come further apart (see
/// [`orphan_sweep_interval`]). Orphans are rare (a crash between a project's creation and its
/// row's write, a teardown given up), so a late sweep costs little; a listing of 1,000 pages
/// every 30 min at 100,000 agents took 20 % of the budget (`cargo xtask bench shards`).
pub const ORPHAN_SWEEP_BUDGET_SHARE: f64 = 0.02;

/// Time between two orphan sweeps: `configured` (`POOL_ORPHAN_SWEEP_INTERVAL_MS`), or longer
/// when listing a workspace of `projects` projects (the last listing's, or the fleet's size
/// before the first) that often would take more than
/// [`ORPHAN_SWEEP_BUDGET_SHARE`] of `requests_per_hour`. At 10,000 requests an hour: 30 min up
/// to 9,999 projects, 1 h at 20,000, 5 h at 100,000.
pub fn orphan_sweep_interval(configured: Duration, projects: usize, requests_per_hour: usize) -> Duration {
    let pages = projects / railway_api::WORKSPACE_PAGE + 1;
    let per_hour = (requests_per_hour.max(1) as f64 * ORPHAN_SWEEP_BUDGET_SHARE).max(f64::MIN_POSITIVE);
    let by_budget = Duration::from_secs_f64((pages as f64 / per_hour * 3600.0).min(1e9));
    configured.max(by_budget)
}

/// Runs one sweep, deleting at most `max_deletes` projects.
pub async fn sweep_orphans(provisioner: &Provisioner, grace: Duration, max_deletes: usize) -> SweepReport {
    sweep_orphans_while(provisioner, grace, max_deletes, || true).await
}

/// [`sweep_orphans`], deleting nothing more once `leading` says this replica no longer leads
/// (asked before every delete).
pub async fn sweep_orphans_while(
    provisioner: &Provisioner,
    grace: Duration,
    max_deletes: usize,
    leading: impl Fn() -> bool,
) -> SweepReport {
    let mut report = SweepReport::default();
    let store = provisioner.store();
    let naming = provisioner.naming();
    let railway = provisioner.railway().with_priority(railway_api::Priority::Status);
    // A set difference, page by page of the listing as it comes: of each page's marked
    // projects, those no live row owns. Neither the listing (100,000 projects at 100,000
    // agents, tens of MiB) nor the fleet is ever held whole; only the orphans found are kept.
    let workspace = &provisioner.config().workspace_id;
    let grace = chrono::Duration::from_std(grace).unwrap_or_default();
    let mut candidates = Vec::new();
    let mut after = None;
    loop {
        let page = match railway.workspace_projects_page(workspace, after.take()).await {
            Ok(page) => page,
            Err(e) => {
                report
                    .errors
                    .push(Arc::new(ReconcileError::sweep("listing the workspace", e)));
                // Nothing is deleted on a partial listing's word.
                candidates.clear();
                break;
            }
        };
        report.listed += page.projects.len();
        let marked: Vec<_> = page
            .projects
            .iter()
            .filter_map(|project| {
                let cleared = provisioner.guard().marked_project(project).ok()?;
                let agent = naming.agent_id(&project.name)?;
                (Utc::now() - project.created_at >= grace).then_some((agent, project, cleared))
            })
            .collect();
        let ids: Vec<&str> = marked.iter().map(|(_, p, _)| p.id.as_str()).collect();
        let owned = match store.owned_projects(&ids).await {
            Ok(owned) => owned,
            Err(e) => {
                report
                    .errors
                    .push(Arc::new(ReconcileError::sweep("loading agents", e)));
                return report;
            }
        };
        let unowned: Vec<_> = marked
            .into_iter()
            .filter(|(_, p, _)| !owned.contains(p.id.as_str()))
            .collect();
        let ids: Vec<AgentId> = unowned.iter().map(|(a, _, _)| a.clone()).collect();
        let statuses: BTreeMap<AgentId, AgentStatus> = match store.statuses(&ids).await {
            Ok(rows) => rows.into_iter().collect(),
            Err(e) => {
                report
                    .errors
                    .push(Arc::new(ReconcileError::sweep("loading agents", e)));
                return report;
            }
        };
        for (agent, project, cleared) in unowned {
            match statuses.get(&agent) {
                // A creation may be between `projectCreate` and its journal.
                Some(AgentStatus::Creating) => {}
                Some(_) => candidates.push((project.clone(), cleared, true)),
                None => candidates.push((project.clone(), cleared, false)),
            }
        }
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    for (project, cleared, known) in candidates {
        if !known {
            tracing::warn!(project = %project.id, name = %project.name, "a project with this pool's marker names an agent this database does not know; left alone");
            report.unknown += 1;
            continue;
        }
        if report.projects >= max_deletes {
            report.deferred += 1;
            continue;
        }
        if !leading() {
            tracing::info!("the orphan sweep stops: this replica no longer leads");
            return report;
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
    let mut rows: BTreeMap<AgentId, ResourceOwner> = BTreeMap::new();
    for chunk in ids.chunks(SWEEP_PAGE) {
        match store.resource_owners(chunk).await {
            Ok(owners) => rows.extend(owners.into_iter().map(|o| (o.id.clone(), o))),
            Err(e) => {
                report
                    .errors
                    .push(Arc::new(ReconcileError::sweep("loading agents", e)));
                return report;
            }
        }
    }
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
            if !leading() {
                tracing::info!("the orphan sweep stops: this replica no longer leads");
                return report;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> u64 {
        d.as_secs_f64().round() as u64
    }

    #[test]
    fn sweeps_space_out_to_stay_within_their_share_of_the_budget() {
        let half_hour = Duration::from_secs(1800);
        let hour = 10_000;
        // 200 pages an hour at most (2 % of 10,000): up to 9,999 projects, 100 pages every 30 min.
        assert_eq!(orphan_sweep_interval(half_hour, 0, hour), half_hour);
        assert_eq!(orphan_sweep_interval(half_hour, 9_999, hour), half_hour);
        // 201 pages at 20,000: 1.005 h; 1,001 pages at 100,000 agents: 5.005 h.
        assert_eq!(secs(orphan_sweep_interval(half_hour, 20_000, hour)), 3_618);
        assert_eq!(secs(orphan_sweep_interval(half_hour, 100_000, hour)), 18_018);
        // A longer interval configured stays; a budget of zero never sweeps in a hurry.
        let day = Duration::from_secs(86_400);
        assert_eq!(orphan_sweep_interval(day, 20_000, hour), day);
        assert!(orphan_sweep_interval(half_hour, 0, 0) >= half_hour);
    }
}
