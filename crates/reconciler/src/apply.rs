//! Applying a page's decisions: transitions, teardowns, and what was seen, written back in
//! one batch.

use std::collections::HashMap;

use chrono::Utc;
use pool_provisioner::Health;
use pool_store::{AgentId, AgentStatus, EventKind, SeenAgent, TickRow};

use crate::Reconciler;
use crate::decide::{Decision, Observation};
use crate::error::ReconcileError;
use crate::observe::Checked;
use crate::tick::TickReport;

impl Reconciler {
    pub(crate) async fn apply(
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
            if let Some(reported) = health
                .get(&agent.id)
                .and_then(|(_, identity)| identity.as_ref()?.runtime.as_deref())
                .filter(|r| *r != agent.shape && agent.runtime_name.as_deref() != Some(*r))
            {
                // Once per change of what it reports, before what is done about it.
                let why = format!(
                    "runtime mismatch: its /pool/health reports the runtime {reported:?}, its shape is {:?}",
                    agent.shape
                );
                tracing::warn!(agent = %agent.id, reported, shape = %agent.shape, status = %agent.status, "runtime mismatch");
                if let Err(e) = store
                    .append_event(&agent.id, EventKind::RuntimeMismatch, &why)
                    .await
                {
                    report.error(ReconcileError::apply(&agent.id, e));
                }
            }
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
                Decision::RecoverTierMotion => {
                    report.recoveries += 1;
                    self.provisioner.start_tier_recovery(agent.id.clone());
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
