//! One reconcile tick: walk the live agents page by page (narrow rows, no secrets), observe,
//! decide and apply per page; then replenish and sweep.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pool_provisioner::{CreationDemand, Health};
use pool_store::{AgentId, AgentStatus, LeaderLock, SeenAgent, TickRow, TickScope};
use railway_api::DeploymentStatus;
use serde::Serialize;

use crate::Reconciler;
use crate::decide::{AgentFacts, Decision, Observation, decide};
use crate::error::ReconcileError;
use crate::observe::{Checked, check_health, read_status};
use crate::sizing::size;
use crate::sweep::sweep_orphans;

/// Projects left out of a status batch that get a read of their own in one tick.
const MAX_CONFIRMATIONS_PER_TICK: usize = 20;

/// Agents the tick holds at once: one page of narrow rows, observed, decided and written
/// back before the next is read.
pub(crate) const PAGE: usize = 500;

/// What one tick saw and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickReport {
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// How long it took.
    pub duration_ms: u64,
    /// Live agents.
    pub agents: usize,
    /// Agents whose Railway status was read.
    pub read: usize,
    /// Whether every steady agent was read too (the slow full sweep).
    pub full_sweep: bool,
    /// Railway requests sent during the tick.
    pub railway_requests: u64,
    /// Health checks sent.
    pub health_checks: usize,
    /// Agents a successful status batch left out, and how many of them were confirmed by a
    /// read of their own.
    pub omitted: usize,
    /// See `omitted`.
    pub confirmed: usize,
    /// The status read failed for some agents (their statuses were kept).
    pub read_failed: bool,
    /// Status changes applied.
    pub transitions: usize,
    /// Teardowns started.
    pub teardowns: usize,
    /// Creations started.
    pub creations: usize,
    /// The sizing policy's target of warm agents (with waiting claims), and why.
    pub target: Option<u32>,
    /// See `target`.
    pub target_reason: String,
    /// Idle agents recycled (past the maximum idle age) or drained (above the target).
    pub retired: usize,
    /// Creations recovered after a crash.
    pub recoveries: usize,
    /// Orphans deleted (projects, keys, inboxes).
    pub orphans: usize,
    /// Rows the retention pass deleted (old events, archived agents, expired sessions and keys).
    pub pruned: u64,
    /// The tick stopped early: leadership was lost.
    pub lost_leadership: bool,
    /// Problems met.
    #[serde(serialize_with = "as_messages")]
    pub errors: Vec<Arc<ReconcileError>>,
}

fn as_messages<S: serde::Serializer>(errors: &[Arc<ReconcileError>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(errors.iter().map(|e| e.to_string()))
}

impl TickReport {
    fn error(&mut self, e: ReconcileError) {
        self.errors.push(Arc::new(e));
    }
}

/// Steady agents read from Railway whatever their health.
pub(crate) enum ReadAnyway {
    /// All of them (a full sweep, a look).
    All,
    /// These (Railway's events named them).
    These(BTreeSet<AgentId>),
}

impl ReadAnyway {
    fn contains(&self, id: &AgentId) -> bool {
        match self {
            Self::All => true,
            Self::These(ids) => ids.contains(id),
        }
    }
}

fn lease_expired(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_none_or(|t| t < now)
}

/// Agents whose health is checked every tick: every non-legacy agent with a deployment that
/// is meant to be up. Legacy agents answer only to the old admin key.
fn checked_every_tick(agent: &TickRow) -> bool {
    !agent.legacy
        && matches!(
            agent.status,
            AgentStatus::Idle | AgentStatus::Claimed | AgentStatus::Crashed
        )
}

impl Reconciler {
    async fn still_leader(&self, lock: Option<&LeaderLock>) -> bool {
        match lock {
            Some(lock) => lock.still_held(Duration::from_secs(2)).await,
            None => true,
        }
    }

    /// Runs one tick. `lock`: the leader lock, checked before anything is changed (`None` in
    /// tests that drive ticks by hand).
    pub async fn tick(&self, lock: Option<&LeaderLock>) -> TickReport {
        let started = Instant::now();
        let mut report = TickReport {
            started_at: Some(Utc::now()),
            ..TickReport::default()
        };
        let sent_before = self.provisioner.railway().budget().sent_total;
        if let Err(e) = self.tick_inner(lock, &mut report).await {
            report.error(e);
        }
        report.railway_requests = self.provisioner.railway().budget().sent_total - sent_before;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// Sizes the pool and creates (or retires) towards the target, nothing else: what claims
    /// ask for. `lock` as for [`Self::tick`].
    pub async fn size_only(&self, lock: Option<&LeaderLock>) -> TickReport {
        let started = Instant::now();
        let mut report = TickReport {
            started_at: Some(Utc::now()),
            ..TickReport::default()
        };
        let sent_before = self.provisioner.railway().budget().sent_total;
        if !self.still_leader(lock).await {
            report.lost_leadership = true;
        } else {
            match self.provisioner.store().now().await {
                Ok(now) => {
                    let railway_ok = self.provisioner.railway().budget().paused_for.is_none();
                    self.size_and_replenish(railway_ok, now, &mut report).await;
                }
                Err(e) => report.error(ReconcileError::load(e)),
            }
        }
        report.railway_requests = self.provisioner.railway().budget().sent_total - sent_before;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// Looks at these agents now: reads their deployments from Railway and checks their
    /// health, then decides and applies as a tick does — nothing else (no replenish, no
    /// sweeps). What Railway's events ask for; the tick stays the source of truth.
    pub async fn look(&self, agents: BTreeSet<AgentId>, lock: Option<&LeaderLock>) -> TickReport {
        let started = Instant::now();
        let mut report = TickReport {
            started_at: Some(Utc::now()),
            ..TickReport::default()
        };
        let sent_before = self.provisioner.railway().budget().sent_total;
        if let Err(e) = self.look_inner(&agents, lock, &mut report).await {
            report.error(e);
        }
        report.railway_requests = self.provisioner.railway().budget().sent_total - sent_before;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    async fn look_inner(
        &self,
        ids: &BTreeSet<AgentId>,
        lock: Option<&LeaderLock>,
        report: &mut TickReport,
    ) -> Result<(), ReconcileError> {
        let store = self.provisioner.store();
        let ids: Vec<AgentId> = ids.iter().cloned().collect();
        let agents: Vec<TickRow> = store
            .tick_rows(&ids)
            .await
            .map_err(ReconcileError::load)?
            .into_iter()
            .filter(|a| {
                matches!(
                    a.status,
                    AgentStatus::Starting | AgentStatus::Idle | AgentStatus::Claimed | AgentStatus::Crashed
                )
            })
            .collect();
        if agents.is_empty() {
            return Ok(());
        }
        let now = store.now().await.map_err(ReconcileError::load)?;
        report.agents = agents.len();
        let held = self.held_by_rollouts().await?;
        self.observe_decide_apply(&agents, &ReadAnyway::All, &held, now, lock, report)
            .await
            .map(|_| ())
    }

    /// Agents a rollout holds (deployed, behind its health gate, or rolling back) are the
    /// rollout's: it returns them to the pool, or rolls them back; the tick decides nothing.
    async fn held_by_rollouts(&self) -> Result<BTreeSet<AgentId>, ReconcileError> {
        match self.provisioner.store().agents_held_by_rollouts().await {
            Ok(held) => Ok(held.into_iter().collect()),
            Err(e) => Err(ReconcileError::load(e)),
        }
    }

    async fn tick_inner(
        &self,
        lock: Option<&LeaderLock>,
        report: &mut TickReport,
    ) -> Result<(), ReconcileError> {
        let store = self.provisioner.store();
        let config = &self.config;
        let now = store.now().await.map_err(ReconcileError::load)?;
        let full_sweep = self.full_sweep_due();
        report.full_sweep = full_sweep;
        // On a full sweep every steady agent is read; otherwise those Railway's events asked
        // about since the last look are read with the agents in motion.
        let read_anyway = if full_sweep {
            ReadAnyway::All
        } else {
            ReadAnyway::These(self.take_looks())
        };
        let held = self.held_by_rollouts().await?;
        // The fleet, page by page: only one page of narrow rows is held at a time.
        let mut railway_read_ok = true;
        let mut after: Option<AgentId> = None;
        loop {
            let page = store
                .tick_page(TickScope::Live, after.as_ref(), PAGE)
                .await
                .map_err(ReconcileError::load)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            report.agents += page.len();
            let Some(read_ok) = self
                .observe_decide_apply(&page, &read_anyway, &held, now, lock, report)
                .await?
            else {
                return Ok(());
            };
            railway_read_ok &= read_ok;
            if page.len() < PAGE {
                break;
            }
        }

        if !self.still_leader(lock).await {
            report.lost_leadership = true;
            return Ok(());
        }
        self.provisioner.start_teardown_retries();
        match self.provisioner.tear_down_overdue_pending_acceptances().await {
            Ok(n) => report.teardowns += n,
            Err(e) => report.error(ReconcileError::Replenish(Arc::new(e))),
        }
        // Creating while Railway is failing or has paused us after a 429 only spends money on
        // compensations.
        let railway_ok = railway_read_ok && self.provisioner.railway().budget().paused_for.is_none();
        self.size_and_replenish(railway_ok, now, report).await;
        if let Err(e) = self.provisioner.redeploy_step().await {
            report.error(ReconcileError::Redeploy(Arc::new(e)));
        }
        if let Err(e) = self.provisioner.rollout_step().await {
            report.error(ReconcileError::Rollout(Arc::new(e)));
        }
        if self.orphan_sweep_due() {
            let sweep = sweep_orphans(
                &self.provisioner,
                config.orphan_grace,
                config.orphan_sweep_max_deletes,
            )
            .await;
            report.orphans = sweep.projects + sweep.keys + sweep.inboxes;
            report.errors.extend(sweep.errors);
        }
        if self.retention_due() {
            match store.prune(&config.retention).await {
                Ok(pruned) => {
                    report.pruned = pruned.total();
                    if pruned.total() > 0 {
                        tracing::info!(?pruned, "retention pass");
                    }
                }
                Err(e) => report.error(ReconcileError::Retention(Arc::new(e))),
            }
        }
        Ok(())
    }

    /// Observes `agents` (health checks, Railway reads), decides each one's status and applies
    /// the decisions. Agents in `read_anyway` are read from Railway whatever their health.
    /// `Some(true)` when Railway's read went through, `None` when leadership was lost.
    async fn observe_decide_apply(
        &self,
        agents: &[TickRow],
        read_anyway: &ReadAnyway,
        held: &BTreeSet<AgentId>,
        now: DateTime<Utc>,
        lock: Option<&LeaderLock>,
        report: &mut TickReport,
    ) -> Result<Option<bool>, ReconcileError> {
        let config = &self.config;
        // Every agent that should be up is health-checked every tick: free, and the fastest
        // way to notice one that died — claimed ones included.
        let steady: Vec<&TickRow> = agents.iter().filter(|a| checked_every_tick(a)).collect();
        let mut health = check_health(&self.provisioner, &steady, config.health_concurrency).await;
        report.health_checks = health.len();

        // Railway is read for agents in motion, agents whose health check just failed (at
        // once, so a crashed claimed agent shows as crashed this tick), and those asked for
        // (every steady agent on a full sweep; those Railway's events named).
        let read_targets: Vec<&TickRow> = agents
            .iter()
            .filter(|a| match a.status {
                AgentStatus::Starting => true,
                AgentStatus::Idle | AgentStatus::Claimed | AgentStatus::Crashed => {
                    read_anyway.contains(&a.id)
                        || a.legacy
                        || health.get(&a.id).is_none_or(|h| !h.0.is_ready())
                }
                _ => false,
            })
            .collect();
        report.read = read_targets.len();
        let status = read_status(&self.provisioner, &read_targets, MAX_CONFIRMATIONS_PER_TICK).await;
        report.read_failed = status.failed.is_some();
        report.omitted = status.omitted;
        report.confirmed = status.confirmed;
        if let Some(e) = &status.failed {
            report.error(ReconcileError::StatusRead(e.clone()));
        }

        // Starting agents whose deployment succeeded get their first health checks.
        let ready_to_check: Vec<&TickRow> = agents
            .iter()
            .filter(|a| a.status == AgentStatus::Starting && !a.legacy)
            .filter(|a| {
                matches!(
                    status.by_agent.get(&a.id),
                    Some(Observation::Deployment {
                        status: DeploymentStatus::Success,
                        ..
                    })
                )
            })
            .collect();
        let first_checks = check_health(&self.provisioner, &ready_to_check, config.health_concurrency).await;
        report.health_checks += first_checks.len();
        health.extend(first_checks);

        if !self.still_leader(lock).await {
            report.lost_leadership = true;
            return Ok(None);
        }

        let mut decisions: Vec<(&TickRow, Decision, Observation)> = Vec::with_capacity(agents.len());
        for agent in agents {
            let checked: Option<Health> = health.get(&agent.id).map(|(h, _)| h.clone());
            let observation = match (status.by_agent.get(&agent.id).cloned(), checked) {
                (Some(Observation::Deployment { status, .. }), health) => {
                    Observation::Deployment { status, health }
                }
                (Some(Observation::Unread) | None, Some(h)) => Observation::HealthOnly(h),
                (Some(other), _) => other,
                (None, None) => Observation::Unread,
            };
            let facts = AgentFacts {
                status: agent.status,
                in_status_for: (now - agent.status_changed_at).to_std().unwrap_or_default(),
                claim_lease_expired: agent.status == AgentStatus::Claiming
                    && lease_expired(agent.claim_expires_at, now),
                worker_lease_expired: agent.status == AgentStatus::Creating
                    && lease_expired(agent.worker_lease_until, now),
                redeploy_hold: agent.redeploy_requested_at.is_some(),
                legacy: agent.legacy,
            };
            let decision = if held.contains(&agent.id) {
                Decision::Keep
            } else {
                decide(&facts, &observation, config.stuck_timeout)
            };
            decisions.push((agent, decision, observation));
        }
        self.apply(decisions, &health, report).await;
        Ok(Some(status.failed.is_none()))
    }

    async fn apply(
        &self,
        decisions: Vec<(&TickRow, Decision, Observation)>,
        health: &HashMap<AgentId, Checked>,
        report: &mut TickReport,
    ) {
        let store = self.provisioner.store();
        let mut seen: Vec<SeenAgent> = Vec::new();
        let mut recover = false;
        let mut became_idle = false;
        for (agent, decision, observation) in decisions {
            // A protected agent (PROTECTED_INSTANCES) is never torn down by the pool.
            let decision = match decision {
                Decision::Teardown(reason) | Decision::AbandonCreation(reason)
                    if self.provisioner.is_protected(&agent.id) =>
                {
                    tracing::warn!(agent = %agent.id, %reason, "protected agent kept");
                    Decision::Keep
                }
                other => other,
            };
            let result = match decision {
                Decision::Keep => Ok(()),
                Decision::Become(to, reason) => store
                    .transition(&agent.id, agent.status, to, reason.as_str())
                    .await
                    .map(|t| {
                        if t.applied() {
                            report.transitions += 1;
                            became_idle |= to == AgentStatus::Idle;
                            tracing::info!(agent = %agent.id, from = %agent.status, %to, %reason, "status changed");
                        }
                    }),
                Decision::Teardown(reason) | Decision::AbandonCreation(reason) => store
                    .begin_teardown(&agent.id, agent.status, reason.as_str(), false)
                    .await
                    .map(|t| {
                        if t.applied() {
                            report.teardowns += 1;
                            tracing::info!(agent = %agent.id, %reason, "tearing down");
                            self.provisioner.start_teardown(agent.id.clone());
                        }
                    }),
                Decision::QuarantineAndTeardown(reason) => store
                    .abandon_claim(&agent.id, reason.as_str(), None)
                    .await
                    .map(|t| {
                        if t.applied() {
                            report.teardowns += 1;
                            tracing::warn!(agent = %agent.id, %reason, "quarantined");
                            self.provisioner.start_teardown(agent.id.clone());
                        }
                    }),
                Decision::RecoverCreation => {
                    recover = true;
                    Ok(())
                }
            };
            if let Err(e) = result {
                report.error(ReconcileError::apply(&agent.id, e));
            }
            // Remember what was seen, only when it changed (the console shows it), in one
            // write for the page.
            let (deployment, health_ok) = match &observation {
                Observation::Deployment { status, health } => (
                    Some(status.as_str().to_string()),
                    health.as_ref().map(Health::is_ready),
                ),
                Observation::HealthOnly(h) => (None, Some(h.is_ready())),
                _ => (None, None),
            };
            let deployment = deployment.filter(|d| agent.deployment_status.as_deref() != Some(d.as_str()));
            let health_ok = health_ok.filter(|ok| agent.last_health_ok != Some(*ok));
            let runtime = health
                .get(&agent.id)
                .and_then(|(_, identity)| identity.as_ref())
                .filter(|i| {
                    (i.version.is_some() && i.version != agent.runtime_version)
                        || (i.runtime.is_some() && i.runtime != agent.runtime_name)
                })
                .map(|i| (i.version.clone(), i.runtime.clone()));
            if deployment.is_some() || health_ok.is_some() || runtime.is_some() {
                seen.push(SeenAgent {
                    id: agent.id.clone(),
                    deployment_status: deployment,
                    health: health_ok.map(|ok| (ok, Utc::now())),
                    runtime,
                });
            }
        }
        if let Err(e) = store.record_seen(&seen).await {
            report.error(ReconcileError::load(e));
        }
        if recover && self.provisioner.start_recovery() {
            report.recoveries += 1;
        }
        // Claims that wait, on every replica, look again.
        if became_idle && let Err(e) = store.notify(pool_store::PoolSignal::AgentIdle).await {
            report.error(ReconcileError::load(e));
        }
    }

    /// Sizes the pool and moves it towards the target: creations up to the target (at
    /// Railway's pace — the provisioner's capacity check caps them), then retirement of idle
    /// agents past the maximum idle age (their replacements first) or above the target.
    async fn size_and_replenish(&self, railway_ok: bool, now: DateTime<Utc>, report: &mut TickReport) {
        let store = self.provisioner.store();
        let loaded =
            async { Ok::<_, pool_store::StoreError>((store.settings().await?, store.counts().await?)) };
        let (settings, counts) = match loaded.await {
            Ok(loaded) => loaded,
            Err(e) => return report.error(ReconcileError::load(e)),
        };
        let sizing = match size(&self.provisioner, &self.config, &settings, &counts, now).await {
            Ok(sizing) => sizing,
            Err(e) => return report.error(e),
        };
        report.target = Some(sizing.desired_warm);
        report.target_reason = sizing.reason();
        // Idle agents past the maximum idle age go, oldest first — but only once their
        // replacements are warm, so idle never drops below the target because of a recycle.
        let protected = &self.provisioner.config().protected_instances;
        let over_age = match settings.settings.max_idle_age {
            Some(max_age) => {
                let since = now - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
                store
                    .oldest_idle(Some(since), protected, self.config.retire_per_tick)
                    .await
            }
            None => Ok((0, Vec::new())),
        };
        let (over_age_count, over_age) = match over_age {
            Ok(found) => found,
            Err(e) => return report.error(ReconcileError::load(e)),
        };
        let desired = sizing.desired_warm as i64 + over_age_count;
        let deficit = (desired - counts.warm()).max(0) as usize;
        if deficit > 0 && railway_ok {
            match self
                .provisioner
                .start_creations(CreationDemand::UpTo(deficit))
                .await
            {
                Ok(started) => report.creations = started.ids.len(),
                Err(e) => report.error(ReconcileError::Replenish(Arc::new(e))),
            }
        }
        let target_idle = sizing.desired_warm as i64;
        let mut idle_left = counts.idle;
        let mut retire: Vec<(TickRow, &'static str)> = Vec::new();
        for agent in over_age {
            if idle_left - 1 < target_idle || retire.len() >= self.config.retire_per_tick {
                break;
            }
            retire.push((agent, "idle longer than the maximum idle age: recycled"));
            idle_left -= 1;
        }
        // Idle agents above the target (a schedule's floor went down) go gently, oldest first,
        // one a tick, and not while creations are under way or creation is paused.
        if retire.is_empty() && counts.creating == 0 && !settings.settings.paused && idle_left > target_idle {
            match store.oldest_idle(None, protected, 1).await {
                Ok((_, oldest)) => retire.extend(
                    oldest
                        .into_iter()
                        .map(|a| (a, "above the sizing policy's target: drained")),
                ),
                Err(e) => return report.error(ReconcileError::load(e)),
            }
        }
        for (agent, reason) in retire {
            match store
                .begin_teardown(&agent.id, AgentStatus::Idle, reason, false)
                .await
            {
                Ok(t) if t.applied() => {
                    report.retired += 1;
                    tracing::info!(agent = %agent.id, reason, "retiring an idle agent");
                    self.provisioner.start_teardown(agent.id.clone());
                }
                Ok(_) => {}
                Err(e) => report.error(ReconcileError::apply(&agent.id, e)),
            }
        }
        let sample = pool_store::PoolSample {
            idle: counts.idle as i32,
            claimed: (counts.claimed + counts.claiming + counts.crashed) as i32,
            warm: counts.warm() as i32,
            target: sizing.desired_warm as i32,
            reason: report.target_reason.clone(),
        };
        if let Err(e) = store.record_sample(&sample).await {
            report.error(ReconcileError::load(e));
        }
    }
}
