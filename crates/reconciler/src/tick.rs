//! One reconcile tick: load, observe, decide, apply, replenish, sweep.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pool_provisioner::Health;
use pool_store::{Agent, AgentId, AgentStatus, LeaderLock};
use railway_api::DeploymentStatus;
use serde::Serialize;

use crate::Reconciler;
use crate::decide::{AgentFacts, Decision, Observation, decide};
use crate::observe::{check_health, read_status};
use crate::sweep::sweep_orphans;

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
    /// Railway requests sent by the tick's own reads.
    pub railway_requests: u64,
    /// Health checks sent.
    pub health_checks: usize,
    /// The status read failed (statuses kept).
    pub read_failed: bool,
    /// Status changes applied.
    pub transitions: usize,
    /// Teardowns started.
    pub teardowns: usize,
    /// Creations started.
    pub creations: usize,
    /// Creations recovered after a crash.
    pub recoveries: usize,
    /// Orphans deleted (projects, keys, inboxes).
    pub orphans: usize,
    /// The tick stopped early: leadership was lost.
    pub lost_leadership: bool,
    /// Problems met.
    pub errors: Vec<String>,
}

fn lease_expired(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_none_or(|t| t < now)
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
            report.errors.push(e);
        }
        report.railway_requests = self.provisioner.railway().budget().sent_total - sent_before;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    async fn tick_inner(&self, lock: Option<&LeaderLock>, report: &mut TickReport) -> Result<(), String> {
        let store = self.provisioner.store();
        let config = &self.config;
        let agents = store.live_agents().await.map_err(|e| e.to_string())?;
        let now = store.now().await.map_err(|e| e.to_string())?;
        report.agents = agents.len();
        let full_sweep = self.full_sweep_due();
        report.full_sweep = full_sweep;

        // Idle agents are health-checked every tick: free, and the fastest way to notice one
        // that died.
        let idle: Vec<&Agent> = agents
            .iter()
            .filter(|a| a.status == AgentStatus::Idle && !a.legacy)
            .collect();
        let mut health = check_health(&self.provisioner, &idle, config.health_concurrency).await;
        report.health_checks = idle.len();

        // Railway is read for agents in motion, idle agents that failed their check, and on a
        // full sweep every steady agent.
        let read_targets: Vec<&Agent> = agents
            .iter()
            .filter(|a| match a.status {
                AgentStatus::Starting => true,
                AgentStatus::Idle => full_sweep || health.get(&a.id).is_none_or(|h| !h.is_ready()),
                AgentStatus::Claimed | AgentStatus::Crashed => full_sweep,
                _ => false,
            })
            .collect();
        report.read = read_targets.len();
        let status = read_status(&self.provisioner, &read_targets).await;
        report.read_failed = status.failed.is_some();
        if let Some(e) = &status.failed {
            report.errors.push(format!("status read: {e}"));
        }

        // Starting agents whose deployment succeeded get their first health checks.
        let ready_to_check: Vec<&Agent> = agents
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
        health.extend(check_health(&self.provisioner, &ready_to_check, config.health_concurrency).await);
        report.health_checks += ready_to_check.len();

        if !self.still_leader(lock).await {
            report.lost_leadership = true;
            return Ok(());
        }

        let mut decisions: Vec<(&Agent, Decision, Observation)> = Vec::with_capacity(agents.len());
        for agent in &agents {
            let observation = match status.by_agent.get(&agent.id).cloned() {
                Some(Observation::Deployment { status, .. }) => Observation::Deployment {
                    health: health.get(&agent.id).cloned(),
                    status,
                },
                Some(other) => other,
                // Not read this tick: an idle agent's health check is news enough.
                None => match health.get(&agent.id) {
                    Some(h) => Observation::Deployment {
                        status: DeploymentStatus::Success,
                        health: Some(h.clone()),
                    },
                    None => Observation::Unread,
                },
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
            let decision = decide(&facts, &observation, config.stuck_timeout);
            decisions.push((agent, decision, observation));
        }
        self.apply(decisions, report).await;

        if !self.still_leader(lock).await {
            report.lost_leadership = true;
            return Ok(());
        }
        self.spawn_teardown_retries();
        // Creating while Railway is failing only spends money on compensations.
        // Nor while Railway paused us after a 429, or every token rests after a
        // projectCreate throttle.
        let railway = self.provisioner.railway();
        let railway_paused =
            railway.budget().paused_for.is_some() || railway.project_create_available_in().is_some();
        if status.failed.is_none() && !railway_paused {
            report.creations = self.replenish().await?;
        }
        if let Err(e) = self.provisioner.redeploy_step().await {
            report.errors.push(format!("redeploy: {e}"));
        }
        if self.orphan_sweep_due() {
            let sweep = sweep_orphans(&self.provisioner, config.orphan_grace).await;
            report.orphans = sweep.projects + sweep.keys + sweep.inboxes;
            report.errors.extend(sweep.errors);
        }
        Ok(())
    }

    async fn apply(&self, decisions: Vec<(&Agent, Decision, Observation)>, report: &mut TickReport) {
        let store = self.provisioner.store();
        let mut recover = false;
        for (agent, decision, observation) in decisions {
            let result = match decision {
                Decision::Keep => Ok(()),
                Decision::Become(to, reason) => store.transition(&agent.id, agent.status, to, reason).await.map(|t| {
                    if t.applied() {
                        report.transitions += 1;
                        tracing::info!(agent = %agent.id, from = %agent.status, %to, reason, "status changed");
                    }
                }),
                Decision::Teardown(reason) | Decision::AbandonCreation(reason) => {
                    store.begin_teardown(&agent.id, agent.status, reason, false).await.map(|t| {
                        if t.applied() {
                            report.teardowns += 1;
                            tracing::info!(agent = %agent.id, reason, "tearing down");
                            self.spawn_teardown(agent.id.clone());
                        }
                    })
                }
                Decision::QuarantineAndTeardown(reason) => store.abandon_claim(&agent.id, reason, None).await.map(|t| {
                    if t.applied() {
                        report.teardowns += 1;
                        tracing::warn!(agent = %agent.id, reason, "quarantined");
                        self.spawn_teardown(agent.id.clone());
                    }
                }),
                Decision::RecoverCreation => {
                    recover = true;
                    Ok(())
                }
            };
            if let Err(e) = result {
                report.errors.push(format!("agent {}: {e}", agent.id));
            }
            // Remember what was seen, only when it changed (the console shows it).
            if let Observation::Deployment { status, health } = &observation {
                let text = status.as_str().to_string();
                let health_ok = health.as_ref().map(Health::is_ready);
                let changed = agent.deployment_status.as_deref() != Some(text.as_str())
                    || (health_ok.is_some() && agent.last_health_ok != health_ok);
                if changed {
                    let health = health_ok.map(|ok| (ok, Utc::now()));
                    if let Err(e) = store.record_observation(&agent.id, Some(&text), health).await {
                        report.errors.push(e.to_string());
                    }
                }
            }
        }
        if recover {
            report.recoveries += self.spawn_recovery();
        }
    }

    /// Brings `idle + starting + creating` up to the minimum, within the total cap and the
    /// creation concurrency. Rows are written here (so the next tick counts them); the sagas
    /// run in the background.
    async fn replenish(&self) -> Result<usize, String> {
        let counts = self
            .provisioner
            .store()
            .counts()
            .await
            .map_err(|e| e.to_string())?;
        let in_flight = self.creations_in_flight.load(Ordering::SeqCst);
        let n = replenish_count(
            counts.warm(),
            counts.total(),
            self.config.min_idle,
            self.config.max_total,
            self.provisioner.config().create_concurrency,
            in_flight,
        );
        for _ in 0..n {
            let id = self
                .provisioner
                .begin_creation()
                .await
                .map_err(|e| e.to_string())?;
            self.spawn_creation(id);
        }
        Ok(n)
    }

    fn spawn_creation(&self, id: AgentId) {
        let provisioner = self.provisioner.clone();
        let counter = self.creations_in_flight.clone();
        counter.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Err(e) = provisioner.continue_creation(&id).await {
                tracing::warn!(agent = %id, error = %e, "creation failed");
            }
            counter.fetch_sub(1, Ordering::SeqCst);
        });
    }

    fn spawn_teardown(&self, id: AgentId) {
        let provisioner = self.provisioner.clone();
        let permits = self.teardown_permits.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            if let Err(e) = provisioner.kill(&id, "teardown").await {
                tracing::warn!(agent = %id, error = %e, "teardown will be retried");
            }
        });
    }

    fn spawn_teardown_retries(&self) {
        let Ok(guard) = self.retrying_teardowns.clone().try_lock_owned() else {
            return;
        };
        let provisioner = self.provisioner.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = provisioner.retry_due_teardowns().await {
                tracing::warn!(error = %e, "teardown retries failed");
            }
        });
    }

    fn spawn_recovery(&self) -> usize {
        let Ok(guard) = self.recovering.clone().try_lock_owned() else {
            return 0;
        };
        let provisioner = self.provisioner.clone();
        tokio::spawn(async move {
            let _guard = guard;
            match provisioner.recover_abandoned_creations().await {
                Ok(r) => tracing::info!(
                    resumed = r.resumed.len(),
                    compensated = r.compensated.len(),
                    "recovered creations"
                ),
                Err(e) => tracing::warn!(error = %e, "recovering creations failed"),
            }
        });
        1
    }
}

/// How many creations to start: the deficit of warm agents, within the total cap and the free
/// creation slots. Creations already in flight count as warm (their rows exist).
pub fn replenish_count(
    warm: i64,
    total: i64,
    min_idle: usize,
    max_total: Option<usize>,
    concurrency: usize,
    in_flight: usize,
) -> usize {
    let deficit = (min_idle as i64 - warm).max(0) as usize;
    let room = max_total.map_or(usize::MAX, |max| (max as i64 - total).max(0) as usize);
    let slots = concurrency.saturating_sub(in_flight);
    deficit.min(room).min(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replenishment_fills_the_deficit_within_the_caps() {
        assert_eq!(replenish_count(0, 0, 5, None, 8, 0), 5);
        assert_eq!(replenish_count(3, 10, 5, None, 8, 0), 2);
        assert_eq!(replenish_count(5, 10, 5, None, 8, 0), 0);
        assert_eq!(replenish_count(7, 10, 5, None, 8, 0), 0);
        assert_eq!(
            replenish_count(0, 9, 5, Some(10), 8, 0),
            1,
            "never past the total cap"
        );
        assert_eq!(replenish_count(0, 12, 5, Some(10), 8, 0), 0);
        assert_eq!(
            replenish_count(0, 0, 20, None, 8, 6),
            2,
            "only free creation slots"
        );
    }
}
