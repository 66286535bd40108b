//! One reconcile tick: walk the live agents page by page (narrow rows, no secrets), observe,
//! decide and apply per page; then replenish and sweep.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pool_provisioner::Health;
use pool_store::{AgentId, AgentStatus, LeaderLock, SeenAgent, TickRow, TickScope};
use railway_api::DeploymentStatus;
use serde::Serialize;

use crate::Reconciler;
use crate::decide::{AgentFacts, Decision, Observation, decide};
use crate::error::ReconcileError;
use crate::observe::{Checked, check_health, read_status};
use crate::suspicion::{BreakerState, Frame, Mode, ReadAnyway, Suspects};
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
    /// Whether every steady agent was read too (a rolling sweep of one slice).
    pub full_sweep: bool,
    /// The rolling sweep's slices: this tick read the steady agents of one of them.
    pub sweep_slices: u64,
    /// Steady agents whose check failed and that were due for suspicion (re-probed, then
    /// read if they failed again), and how many of them were new failures (the breaker's
    /// count).
    pub suspects: usize,
    /// See `suspects`.
    pub new_failures: usize,
    /// Re-probes sent (fresh connections).
    pub reprobes: usize,
    /// The breaker, when this tick found it open.
    pub breaker: Option<BreakerState>,
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
    pub(crate) fn error(&mut self, e: ReconcileError) {
        self.errors.push(Arc::new(e));
    }
}

fn lease_expired(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_none_or(|t| t < now)
}

/// Agents whose health is checked every tick: every non-legacy agent with a deployment that
/// is meant to be up. Legacy agents answer only to the old admin key.
pub(crate) fn checked_every_tick(agent: &TickRow) -> bool {
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
        let frame = Frame {
            read_anyway: &ReadAnyway::All,
            held: &held,
            now,
        };
        self.observe_decide_apply(&agents, &frame, lock, report, &mut Mode::Look)
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
        // The rolling sweep reads one slice of the steady agents; those Railway's events
        // asked about since the last look are read with the agents in motion.
        let (slot, slices) = self.next_sweep_slice();
        report.full_sweep = slices == 1;
        report.sweep_slices = slices;
        let read_anyway = ReadAnyway::Slice {
            slot,
            slices,
            looks: self.take_looks(),
        };
        let held = self.held_by_rollouts().await?;
        // The fleet, page by page: only one page of narrow rows is held at a time.
        let mut railway_read_ok = true;
        let mut after: Option<AgentId> = None;
        let mut mode = Mode::Walk(Suspects::default());
        loop {
            let page = store
                .tick_page(TickScope::Live, after.as_ref(), PAGE)
                .await
                .map_err(ReconcileError::load)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            report.agents += page.len();
            let Some(read_ok) = self
                .observe_decide_apply(
                    &page,
                    &Frame {
                        read_anyway: &read_anyway,
                        held: &held,
                        now,
                    },
                    lock,
                    report,
                    &mut mode,
                )
                .await?
            else {
                return Ok(());
            };
            railway_read_ok &= read_ok;
            if page.len() < PAGE {
                break;
            }
        }
        let Mode::Walk(suspects) = mode else {
            unreachable!("the walk's mode stays a walk")
        };
        let Some(read_ok) = self
            .suspicion_pass(suspects, &read_anyway, &held, now, lock, report)
            .await?
        else {
            return Ok(());
        };
        railway_read_ok &= read_ok;

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
    pub(crate) async fn observe_decide_apply(
        &self,
        agents: &[TickRow],
        frame: &Frame<'_>,
        lock: Option<&LeaderLock>,
        report: &mut TickReport,
        mode: &mut Mode,
    ) -> Result<Option<bool>, ReconcileError> {
        let config = &self.config;
        let Frame {
            read_anyway,
            held,
            now,
        } = *frame;
        // Every agent that should be up is health-checked every tick: free, and the fastest
        // way to notice one that died — claimed ones included. Suspects bring their re-probes.
        let steady: Vec<&TickRow> = agents.iter().filter(|a| checked_every_tick(a)).collect();
        let mut health = match mode {
            Mode::Suspects(reprobed) => std::mem::take(reprobed),
            _ => {
                let checked = check_health(
                    &self.provisioner,
                    self.provisioner.agents(),
                    &steady,
                    config.health_concurrency,
                )
                .await;
                report.health_checks += checked.len();
                checked
            }
        };

        // A failed check in the walk is not acted on yet: the agent is a suspect, re-probed
        // after the walk and read only if it fails again — unless it is backing off after
        // Railway confirmed it down (then nothing, until its next step or a webhook look).
        let mut quiet: BTreeSet<AgentId> = BTreeSet::new();
        if let Mode::Walk(suspects) = mode {
            let clock = Instant::now();
            let mut suspicion = self.suspicion();
            for agent in &steady {
                if health.get(&agent.id).is_some_and(|(h, _)| h.is_ready()) {
                    suspicion.recovered(&agent.id);
                    continue;
                }
                quiet.insert(agent.id.clone());
                suspects.failing.insert(agent.id.clone());
                if suspicion.backing_off(&agent.id, clock) && !read_anyway.named(&agent.id) {
                    continue;
                }
                if agent.status != AgentStatus::Crashed && !suspicion.known_down(&agent.id) {
                    suspects.new_failures += 1;
                }
                suspects.first_at.get_or_insert(clock);
                suspects.ids.push(agent.id.clone());
            }
        }

        // Railway is read for agents in motion, suspects that failed again, and those asked
        // for (this tick's slice of the rolling sweep; those Railway's events named).
        let read_targets: Vec<&TickRow> = agents
            .iter()
            .filter(|a| match a.status {
                AgentStatus::Starting => true,
                AgentStatus::Idle | AgentStatus::Claimed | AgentStatus::Crashed => {
                    !quiet.contains(&a.id)
                        && (read_anyway.contains(&a.id)
                            || a.legacy
                            || health.get(&a.id).is_none_or(|h| !h.0.is_ready()))
                }
                _ => false,
            })
            .collect();
        report.read += read_targets.len();
        let status = read_status(&self.provisioner, &read_targets, MAX_CONFIRMATIONS_PER_TICK).await;
        report.read_failed |= status.failed.is_some();
        report.omitted += status.omitted;
        report.confirmed += status.confirmed;
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
        let first_checks = check_health(
            &self.provisioner,
            self.provisioner.agents(),
            &ready_to_check,
            config.health_concurrency,
        )
        .await;
        report.health_checks += first_checks.len();
        health.extend(first_checks);

        if !self.still_leader(lock).await {
            report.lost_leadership = true;
            return Ok(None);
        }

        let mut decisions: Vec<(&TickRow, Decision, Observation)> = Vec::with_capacity(agents.len());
        for agent in agents {
            let checked: Option<Health> = health.get(&agent.id).map(|(h, _)| h.clone());
            let observation = if quiet.contains(&agent.id) {
                // Its failed check waits for the re-probe: no news yet.
                Observation::Unread
            } else {
                match (status.by_agent.get(&agent.id).cloned(), checked) {
                    (Some(Observation::Deployment { status, .. }), health) => {
                        Observation::Deployment { status, health }
                    }
                    (Some(Observation::Unread) | None, Some(h)) => Observation::HealthOnly(h),
                    (Some(other), _) => other,
                    (None, None) => Observation::Unread,
                }
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
        if let Mode::Suspects(_) = mode {
            // Suspects still failing back off; those that answered are no longer down.
            let clock = Instant::now();
            let mut suspicion = self.suspicion();
            for agent in &steady {
                if health.get(&agent.id).is_some_and(|(h, _)| h.is_ready()) {
                    suspicion.recovered(&agent.id);
                } else if status
                    .by_agent
                    .get(&agent.id)
                    .is_some_and(|o| *o != Observation::Unread)
                {
                    suspicion.still_down(&agent.id, clock, config.down_backoff, config.down_backoff_max);
                }
            }
        }
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
}
