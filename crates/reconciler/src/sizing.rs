//! How many agents to keep warm this tick: the inputs of the sizing policy gathered from the
//! database and Railway's pace, the policy ([`pool_sizing::size_pool`]) applied to them, and
//! the tick's move towards it (creations, then retirement of idle agents, read by count and
//! the oldest few, never the whole idle set).
//!
//! Claims that wait count on top of the policy's target (each needs an agent now), and idle
//! agents due for recycling (older than the maximum idle age) count once more, so their
//! replacements are created before they go.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pool_provisioner::{CreationDemand, Provisioner};
use pool_sizing::{ClaimHistory, IdleSchedule, RECENT_MINUTES, SizingInputs, SizingTarget, size_pool};
use pool_store::{AgentStatus, StatusCounts, StoredSettings, TickRow};

use crate::error::ReconcileError;
use crate::tick::TickReport;
use crate::{Reconciler, ReconcilerConfig};

/// Time to ready assumed before any agent has become ready (a fresh pool).
const DEFAULT_TIME_TO_READY: Duration = Duration::from_secs(150);

/// Agents whose time to ready the p90 is taken over.
const READY_SAMPLE: i64 = 50;

/// This tick's target and what it is made of.
#[derive(Debug, Clone)]
pub(crate) struct Sizing {
    /// The policy's answer, with its reason.
    pub target: SizingTarget,
    /// Claims waiting for an agent now.
    pub waiting: u32,
    /// Warm agents to have: the target, plus one for each waiting claim.
    pub desired_warm: u32,
}

impl Sizing {
    /// The explanation shown to operators.
    pub fn reason(&self) -> String {
        if self.waiting == 0 {
            self.target.to_string()
        } else {
            format!("{} + {} claim(s) waiting", self.target, self.waiting)
        }
    }
}

/// Claims per minute Railway lets one workspace create projects at, from the interval its
/// throttle message named (2 per minute when none was seen yet: Railway's documented 30 s).
fn create_rate_per_min(interval: Option<Duration>) -> f64 {
    match interval {
        Some(i) if !i.is_zero() => 60.0 / i.as_secs_f64(),
        _ => pool_sizing::DEFAULT_CREATE_RATE_PER_MIN,
    }
}

/// Gathers the inputs and sizes the pool.
pub(crate) async fn size(
    provisioner: &Provisioner,
    config: &ReconcilerConfig,
    settings: &StoredSettings,
    counts: &StatusCounts,
    now: DateTime<Utc>,
) -> Result<Sizing, ReconcileError> {
    let store = provisioner.store();
    let schedule = match settings.settings.idle_schedule.as_deref() {
        Some(text) => match IdleSchedule::parse(text) {
            Ok(schedule) => Some(schedule),
            // Settings are checked when they change; an unreadable one is reported, not fatal.
            Err(e) => return Err(ReconcileError::Settings(e.to_string())),
        },
        None => None,
    };
    let claims = store
        .claim_counts(RECENT_MINUTES as u32)
        .await
        .map_err(ReconcileError::load)?;
    let history = ClaimHistory {
        recent: claims.per_minute,
        last_week_same_hour: claims.last_week_same_hour,
    };
    let p90 = store
        .time_to_ready_p90(READY_SAMPLE)
        .await
        .map_err(ReconcileError::load)?
        .unwrap_or(DEFAULT_TIME_TO_READY);
    let waiting = store.waiting_claims().await.map_err(ReconcileError::load)?.max(0) as u32;
    let interval = provisioner
        .railway()
        .project_create_interval(&provisioner.config().workspace_id);
    let live_non_warm = (counts.claiming + counts.claimed + counts.crashed + counts.deleting).max(0) as u32;
    let target = size_pool(&SizingInputs {
        now,
        min_idle: settings.settings.min_idle,
        schedule: schedule.as_ref(),
        max_total: settings.settings.max_total,
        live_non_warm,
        claims_per_min: history.forecast().claims_per_min,
        p90_time_to_ready: p90,
        creation_queue: counts.creating.max(0) as u32,
        create_rate_per_min: create_rate_per_min(interval),
        headroom: config.headroom,
    });
    let desired_warm = target.idle.saturating_add(waiting);
    Ok(Sizing {
        target,
        waiting,
        desired_warm,
    })
}

impl Reconciler {
    /// Sizes the pool and moves it towards the target: creations up to the target (at
    /// Railway's pace — the provisioner's capacity check caps them), then retirement of idle
    /// agents past the maximum idle age (their replacements first) or above the target.
    pub(crate) async fn size_and_replenish(
        &self,
        railway_ok: bool,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn railways_pace_comes_from_the_throttle_it_named() {
        assert_eq!(create_rate_per_min(None), 2.0);
        assert_eq!(create_rate_per_min(Some(Duration::from_secs(30))), 2.0);
        assert_eq!(create_rate_per_min(Some(Duration::from_secs(5))), 12.0);
    }
}
