//! One page of the walk (or a look, or the suspects, or the status reads the walk put off):
//! observe (the prober's results or checks of its own, Railway's status), decide each agent's
//! status, and apply the decisions.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use pool_provisioner::{AgentClient, Health};
use pool_store::{AgentId, AgentStatus, LeaderLock, TickRow};
use railway_api::DeploymentStatus;

use crate::Reconciler;
use crate::decide::{AgentFacts, Decision, Observation, decide, lease_expired, worker_gone};
use crate::error::ReconcileError;
use crate::observe::{Checked, check_health, read_status, reported_runtime};
use crate::phases::{add, timed};
use crate::report::TickReport;
use crate::suspicion::{Frame, Mode};
use crate::tick::{MAX_CONFIRMATIONS_PER_TICK, checked_every_tick};

impl Reconciler {
    /// Health checks the tick sends and waits for itself (through `client`): timed in its
    /// report's checks phase and counted in the report's field `count` picks (`health_checks`,
    /// or `reprobes` for re-probes).
    pub(crate) async fn checks_of_its_own(
        &self,
        client: &AgentClient,
        agents: &[&TickRow],
        report: &mut TickReport,
        count: fn(&mut TickReport) -> &mut usize,
    ) -> HashMap<AgentId, Checked> {
        let checking = check_health(&self.provisioner, client, agents, self.config.health_concurrency);
        let checked = timed(&mut report.phases.checks_ms, checking).await;
        *count(report) += checked.len();
        checked
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
        let walk = match mode {
            Mode::Walk(suspects, _) => suspects.walk,
            _ => None,
        };
        // While the prober runs, the walk decides on its latest results and sends no check:
        // it never waits for a sweep of checks. Agents it has not checked yet are no news.
        let mut probed_at: HashMap<AgentId, Instant> = HashMap::new();
        let mut unprobed: BTreeSet<AgentId> = BTreeSet::new();
        // Failed checks whose re-probe (the prober's) is still to come: no suspects yet.
        let mut pending: BTreeSet<AgentId> = BTreeSet::new();
        let mut health = match (&mut *mode, walk) {
            (Mode::Suspects { health, .. } | Mode::Reads { health, .. }, _) => std::mem::take(health),
            (Mode::Walk(..), Some(walk)) => {
                let roster: Vec<(AgentId, String)> = steady
                    .iter()
                    .filter_map(|a| {
                        Some((
                            a.id.clone(),
                            self.provisioner.agent_url_at(&a.id, a.domain.as_deref())?,
                        ))
                    })
                    .collect();
                self.prober.enlist(walk, &roster);
                // A result older than a few intervals is a prober that fell behind: no news.
                let fresh = self.prober.interval().saturating_mul(3);
                let mut health = HashMap::with_capacity(steady.len());
                for (id, probe) in self.prober.results(&steady) {
                    if probe.at.elapsed() <= fresh {
                        probed_at.insert(id.clone(), probe.at);
                        if !probe.checked.0.is_ready() && !probe.confirmed {
                            pending.insert(id.clone());
                        }
                        health.insert(id, probe.checked);
                    }
                }
                for agent in &steady {
                    if !health.contains_key(&agent.id) {
                        unprobed.insert(agent.id.clone());
                    }
                }
                report.probed += health.len();
                report.unprobed += unprobed.len();
                health
            }
            _ => {
                self.checks_of_its_own(self.provisioner.agents(), &steady, report, |r| {
                    &mut r.health_checks
                })
                .await
            }
        };

        // A failed check in the walk is not acted on yet. While the prober runs, it re-probes
        // the agent on a fresh connection a few seconds later, and only a failure that re-probe
        // confirmed makes a suspect; in a tick driven without it, the agent is a suspect
        // re-probed by the tick after the walk. A suspect is read only if it fails again —
        // unless it is backing off after Railway confirmed it down (then nothing, until its
        // next step or a webhook look).
        let mut quiet: BTreeSet<AgentId> = BTreeSet::new();
        if let Mode::Walk(suspects, _) = mode {
            let clock = Instant::now();
            let mut suspicion = self.suspicion();
            for agent in &steady {
                if unprobed.contains(&agent.id) {
                    continue;
                }
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
                if pending.contains(&agent.id) {
                    continue;
                }
                // The tick's own re-probe waits `reprobe_delay` from the first failed check.
                let failed_at = probed_at.get(&agent.id).copied().unwrap_or(clock);
                let first = suspects.first_at.get_or_insert(failed_at);
                *first = (*first).min(failed_at);
                suspects
                    .ids
                    .push((agent.status != AgentStatus::Claimed, agent.id.clone()));
            }
        }

        // Railway is read for agents in motion, suspects that failed again, and those asked
        // for (this tick's slice of the rolling sweep; those Railway's events named). The
        // walk puts them off and reads them after its last page, every page's together in
        // full batches; the put-off reads are all read.
        let read_all = matches!(mode, Mode::Reads { .. });
        let mut read_targets: Vec<&TickRow> = agents
            .iter()
            .filter(|a| match a.status {
                _ if read_all => true,
                AgentStatus::Starting => true,
                AgentStatus::Idle | AgentStatus::Claimed | AgentStatus::Crashed => {
                    !quiet.contains(&a.id)
                        && (read_anyway.contains(&a.id)
                            || a.legacy
                            || (!unprobed.contains(&a.id)
                                && health.get(&a.id).is_none_or(|h| !h.0.is_ready())))
                }
                _ => false,
            })
            .collect();
        let mut put_off: BTreeSet<AgentId> = BTreeSet::new();
        if let Mode::Walk(_, later) = mode {
            later.add(&read_targets, &health);
            put_off = read_targets.drain(..).map(|a| a.id.clone()).collect();
        }
        report.read += read_targets.len();
        // Suspects' reads draw on their own bucket of the budget, and confirm only what it
        // has left.
        let (railway, confirmations) = match mode {
            Mode::Suspects { confirmations, .. } => (
                self.provisioner
                    .railway()
                    .with_priority(railway_api::Priority::Suspicion),
                *confirmations,
            ),
            Mode::Reads { confirmations, .. } => (self.provisioner.railway().clone(), *confirmations),
            _ => (self.provisioner.railway().clone(), MAX_CONFIRMATIONS_PER_TICK),
        };
        let reading = read_status(&self.provisioner, &railway, &read_targets, confirmations);
        let status = timed(&mut report.phases.railway_ms, reading).await;
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
        let first_checks = self
            .checks_of_its_own(self.provisioner.agents(), &ready_to_check, report, |r| {
                &mut r.health_checks
            })
            .await;
        health.extend(first_checks);

        if !timed(&mut report.phases.leader_ms, self.still_leader(lock)).await {
            report.lost_leadership = true;
            return Ok(None);
        }
        if !self.ownership.still_held().await {
            report.lost_shards = true;
            return Ok(None);
        }

        let mut decisions: Vec<(&TickRow, Decision, Observation)> = Vec::with_capacity(agents.len());
        for agent in agents.iter().filter(|a| !put_off.contains(&a.id)) {
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
                worker_lease_expired: worker_gone(agent.status, agent.worker_lease_until, now),
                redeploy_hold: agent.redeploy_requested_at.is_some(),
                legacy: agent.legacy,
                runtime_mismatch: reported_runtime(agent, health.get(&agent.id))
                    .is_some_and(|runtime| runtime != agent.shape),
            };
            let decision = if held.contains(&agent.id) {
                Decision::Keep
            } else {
                decide(&facts, &observation, config.stuck_timeout)
            };
            decisions.push((agent, decision, observation));
        }
        let applying = Instant::now();
        self.apply(decisions, &health, report).await;
        add(&mut report.phases.apply_ms, applying);
        if let Mode::Suspects { .. } = mode {
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
                    // A row already `crashed` was confirmed down before: its backoff goes on
                    // from how long it has been down.
                    let down_for = (agent.status == AgentStatus::Crashed)
                        .then(|| (now - agent.status_changed_at).to_std().unwrap_or_default());
                    suspicion.still_down(
                        &agent.id,
                        clock,
                        down_for,
                        config.down_backoff,
                        config.down_backoff_max,
                    );
                }
            }
        }
        Ok(Some(status.failed.is_none()))
    }
}
