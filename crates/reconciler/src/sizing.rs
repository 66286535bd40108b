//! How many agents to keep warm this tick: the inputs of the sizing policy gathered from the
//! database and Railway's pace, and the policy ([`pool_sizing::size_pool`]) applied to them.
//!
//! Claims that wait count on top of the policy's target (each needs an agent now), and idle
//! agents due for recycling (older than the maximum idle age) count once more, so their
//! replacements are created before they go.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pool_provisioner::Provisioner;
use pool_sizing::{ClaimHistory, IdleSchedule, RECENT_MINUTES, SizingInputs, SizingTarget, size_pool};
use pool_store::{StatusCounts, StoredSettings};

use crate::ReconcilerConfig;
use crate::error::ReconcileError;

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
