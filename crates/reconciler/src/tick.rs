//! One reconcile tick: walk the live agents page by page (narrow rows, no secrets), observing,
//! deciding and applying per page ([`crate::walk`]); read from Railway, in full batches, the
//! agents the walk put off ([`crate::reads`]); then the suspects ([`crate::suspicion`]); then
//! replenish. The orphan sweep is not the tick's: the leader runs it in a task of its own
//! ([`crate::sweep`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use pool_store::{AgentId, AgentStatus, LeaderLock, TickRow, TickScope};

use crate::Reconciler;
use crate::error::ReconcileError;
use crate::phases::{add, timed};
use crate::reads::PutOff;
pub use crate::report::TickReport;
use crate::suspicion::{Frame, Mode, ReadAnyway, Suspects};

/// Projects left out of a status batch that get a read of their own in one tick.
pub(crate) const MAX_CONFIRMATIONS_PER_TICK: usize = 20;

/// Agents the tick holds at once: one page of narrow rows, observed, decided and written
/// back before the next is read.
pub(crate) const PAGE: usize = 500;

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
    pub(crate) async fn still_leader(&self, lock: Option<&LeaderLock>) -> bool {
        match lock {
            Some(lock) => lock.still_held(Duration::from_secs(2)).await,
            None => true,
        }
    }

    /// Runs one tick. `lock`: the leader lock, checked before anything is changed (`None` in
    /// tests that drive ticks by hand).
    pub async fn tick(&self, lock: Option<&LeaderLock>) -> TickReport {
        self.tick_as(lock, true).await
    }

    pub(crate) async fn tick_as(&self, lock: Option<&LeaderLock>, leading: bool) -> TickReport {
        let started = Instant::now();
        let mut report = TickReport {
            started_at: Some(Utc::now()),
            ..TickReport::default()
        };
        let sent_before = self.provisioner.railway().budget().sent_total;
        if let Err(e) = self.tick_inner(lock, leading, &mut report).await {
            report.error(e);
        }
        report.railway_requests = self.provisioner.railway().budget().sent_total - sent_before;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report.phases.log(report.duration_ms);
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
        leading: bool,
        report: &mut TickReport,
    ) -> Result<(), ReconcileError> {
        let store = self.provisioner.store();
        let config = &self.config;
        let loading = Instant::now();
        let now = store.now().await.map_err(ReconcileError::load)?;
        if self.fleet.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            // The first tick has not walked the fleet yet: its size from the database's counts
            // (this replica's shards' share of it), so that the tick reads one slice of the
            // rolling sweep sized to the fleet, not a twentieth of 100,000 agents at once.
            let live = timed(&mut report.phases.load_ms, store.counts())
                .await
                .map_err(ReconcileError::load)?
                .total()
                .max(0) as usize;
            let share = match self.ownership.walk_filter() {
                Some(f) => live * f.owned.len() / (f.count.max(1) as usize),
                None => live,
            };
            self.fleet.store(share, std::sync::atomic::Ordering::SeqCst);
        }
        // The rolling sweep reads one slice of the steady agents; those Railway's events
        // asked about since the last look are read with the agents in motion.
        let (slot, slices) = self.next_sweep_slice();
        report.full_sweep = slices == 1 && slot.is_some();
        report.sweep_slices = slices;
        let read_anyway = ReadAnyway::Slice {
            slot,
            slices,
            looks: self.take_looks(),
        };
        let held = self.held_by_rollouts().await?;
        add(&mut report.phases.load_ms, loading);
        // The fleet, page by page: only one page of narrow rows is held at a time.
        let mut railway_read_ok = true;
        let mut after: Option<AgentId> = None;
        let walk = self.prober.is_running().then(|| self.prober.begin_walk());
        let mut mode = Mode::Walk(
            Suspects {
                walk,
                ..Suspects::default()
            },
            PutOff::default(),
        );
        loop {
            // This replica's shards only.
            let shards = self.ownership.walk_filter();
            let loading = store.tick_page(TickScope::Live, shards.as_ref(), after.as_ref(), PAGE);
            let page = timed(&mut report.phases.load_ms, loading)
                .await
                .map_err(ReconcileError::load)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let whole_page = page.len() == PAGE;
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
            if !whole_page {
                break;
            }
        }
        self.fleet
            .store(report.agents, std::sync::atomic::Ordering::SeqCst);
        let Mode::Walk(suspects, put_off) = mode else {
            unreachable!("the walk's mode stays a walk")
        };
        if let Some(walk) = walk {
            // The walk met every live agent: those it did not leave the prober's roster.
            self.prober.walked(walk);
        }
        let frame = Frame {
            read_anyway: &read_anyway,
            held: &held,
            now,
        };
        let Some(read_ok) = self.read_put_off(put_off, &frame, lock, report).await? else {
            return Ok(());
        };
        railway_read_ok &= read_ok;
        let Some(read_ok) = self
            .suspicion_pass(suspects, &read_anyway, &held, now, lock, report)
            .await?
        else {
            return Ok(());
        };
        railway_read_ok &= read_ok;
        if !leading {
            return Ok(());
        }

        if !timed(&mut report.phases.leader_ms, self.still_leader(lock)).await {
            report.lost_leadership = true;
            return Ok(());
        }
        let upkeep = Instant::now();
        self.provisioner.start_teardown_retries();
        match self.provisioner.tear_down_overdue_pending_acceptances().await {
            Ok(n) => report.teardowns += n,
            Err(e) => report.error(ReconcileError::Replenish(Arc::new(e))),
        }
        // Creating while Railway is failing or has paused us after a 429 only spends money on
        // compensations.
        let railway_ok = railway_read_ok && self.provisioner.railway().budget().paused_for.is_none();
        add(&mut report.phases.upkeep_ms, upkeep);
        let sizing = Instant::now();
        self.size_and_replenish(railway_ok, now, report).await;
        add(&mut report.phases.sizing_ms, sizing);
        let upkeep = Instant::now();
        if let Err(e) = self.provisioner.redeploy_step().await {
            report.error(ReconcileError::Redeploy(Arc::new(e)));
        }
        if let Err(e) = self.provisioner.rollout_step().await {
            report.error(ReconcileError::Rollout(Arc::new(e)));
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
        add(&mut report.phases.upkeep_ms, upkeep);
        Ok(())
    }
}
