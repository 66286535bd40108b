//! How many agents of each shape (runtime) to keep warm this tick: the inputs of the sizing
//! policy gathered per shape from the database and Railway's pace, the policy ([`pool_sizing::size_pool`]) applied to them, and
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
use pool_sizing::{
    ClaimHistory, IdleSchedule, RECENT_MINUTES, SizingInputs, SizingTarget, SlotDemand, TierCounts,
    TierInputs, TierPlan, next_creation_slot, plan_tiers, size_pool,
};
use pool_store::{AgentStatus, StatusCounts, StoredSettings, TickRow};

use crate::error::ReconcileError;
use crate::tick::TickReport;
use crate::{Reconciler, ReconcilerConfig};

/// Time to ready assumed before any agent has become ready (a fresh pool).
const DEFAULT_TIME_TO_READY: Duration = Duration::from_secs(150);

/// Agents whose time to ready the p90 is taken over.
const READY_SAMPLE: i64 = 50;

/// Wake time assumed before any wake has finished: the top of the deploy phase Railway
/// documents (30 s to 2 min), the simulator's default p95.
const DEFAULT_WAKE_TIME: Duration = Duration::from_secs(120);

/// This tick's target and what it is made of.
#[derive(Debug, Clone)]
pub(crate) struct Sizing {
    /// The policy's answer, with its reason.
    pub target: SizingTarget,
    /// Claims waiting for an agent now.
    pub waiting: u32,
    /// Warm agents to have: the target, plus one for each waiting claim.
    pub desired_warm: u32,
    /// What the tiers ask for, when the parked tier is on (`parkedMax` above 0).
    pub tiers: Option<TierPlan>,
}

impl Sizing {
    /// The explanation shown to operators.
    pub fn reason(&self) -> String {
        if let Some(plan) = &self.tiers {
            return plan.to_string();
        }
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

/// Gathers one shape's inputs and sizes it: its settings, its claims (served and refused),
/// its waiting claims and its live agents. The time to ready and Railway's pace are the
/// pool's.
pub(crate) async fn size(
    provisioner: &Provisioner,
    config: &ReconcilerConfig,
    settings: &StoredSettings,
    counts: &StatusCounts,
    now: DateTime<Utc>,
) -> Result<Sizing, ReconcileError> {
    let store = provisioner.store();
    let shape = settings.shape.as_str();
    let schedule = match settings.settings.idle_schedule.as_deref() {
        Some(text) => match IdleSchedule::parse(text) {
            Ok(schedule) => Some(schedule),
            // Settings are checked when they change; an unreadable one is reported, not fatal.
            Err(e) => return Err(ReconcileError::Settings(e.to_string())),
        },
        None => None,
    };
    let claims = store
        .claim_counts(Some(shape), RECENT_MINUTES as u32)
        .await
        .map_err(ReconcileError::load)?;
    let claims_last_minute = claims.per_minute.last().copied().unwrap_or(0);
    let history = ClaimHistory {
        recent: claims.per_minute,
        last_week_same_hour: claims.last_week_same_hour,
    };
    let p90 = store
        .time_to_ready_p90(READY_SAMPLE)
        .await
        .map_err(ReconcileError::load)?
        .unwrap_or(DEFAULT_TIME_TO_READY);
    let waiting = store
        .waiting_claims_of(shape)
        .await
        .map_err(ReconcileError::load)?
        .max(0) as u32;
    let interval = provisioner
        .railway()
        .project_create_interval(&provisioner.config().workspace_id);
    let live_non_warm = (counts.claiming + counts.claimed + counts.crashed + counts.deleting).max(0) as u32;
    let inputs = SizingInputs {
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
    };
    if settings.settings.parked_max == 0 {
        // No parked tier: the warm policy alone, exactly as before the tiers.
        let target = size_pool(&inputs);
        let desired_warm = target.idle.saturating_add(waiting);
        return Ok(Sizing {
            target,
            waiting,
            desired_warm,
            tiers: None,
        });
    }
    let parked = &settings.settings;
    let since = now - chrono::Duration::from_std(parked.park_after).unwrap_or(chrono::Duration::MAX);
    let protected = &provisioner.config().protected_instances;
    let (idle_parkable, _) = store
        .parkable_idle(shape, since, protected, 0)
        .await
        .map_err(ReconcileError::load)?;
    let over_age_since = parked
        .max_idle_age
        .map(|age| now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX));
    let (parked_over_age, _) = store
        .parked_oldest(shape, over_age_since, 0)
        .await
        .map_err(ReconcileError::load)?;
    let p90_wake = store
        .wake_time_p90(READY_SAMPLE)
        .await
        .map_err(ReconcileError::load)?
        .unwrap_or(DEFAULT_WAKE_TIME);
    let count = |n: i64| n.max(0) as u32;
    let plan = plan_tiers(&TierInputs {
        sizing: inputs,
        p90_wake,
        claims_last_minute,
        parked_min: parked.parked_min,
        parked_max: parked.parked_max,
        counts: TierCounts {
            idle: count(counts.idle),
            idle_parkable,
            in_flight: count(counts.creating + counts.starting),
            waking: count(counts.waking),
            parking: count(counts.parking),
            parked: count(counts.parked),
            parked_over_age,
            waiting,
        },
    });
    Ok(Sizing {
        target: plan.warm.clone(),
        waiting,
        desired_warm: plan.desired_warm,
        tiers: Some(plan),
    })
}

/// What one shape's pass did, for the tick's report and the whole pool's sample.
#[derive(Debug, Default)]
struct ShapePass {
    target: u32,
    reason: String,
    /// Creations the shape asks for: started after every shape is sized, sharing the
    /// creation slots fairly ([`pool_sizing::next_creation_slot`]).
    create: usize,
    retired: usize,
    wakes: usize,
    parks: usize,
    sample: Option<pool_store::PoolSample>,
}

impl Reconciler {
    /// Sizes every shape and moves each towards its own target, in one tick: creations up to
    /// the target (at Railway's pace — the provisioner's capacity check caps them, and the
    /// shape's own brake and `maxTotal` share), then retirement of the shape's idle agents
    /// past the maximum idle age (their replacements first) or above the target. One shape's
    /// failure is reported and the next shape is sized all the same.
    pub(crate) async fn size_and_replenish(
        &self,
        railway_ok: bool,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) {
        let store = self.provisioner.store();
        let counts = match store.counts_by_shape().await {
            Ok(counts) => counts,
            Err(e) => return report.error(ReconcileError::load(e)),
        };
        let shapes: Vec<String> = self
            .provisioner
            .config()
            .shapes
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let several = shapes.len() > 1;
        let mut total = pool_store::PoolSample {
            idle: 0,
            claimed: 0,
            warm: 0,
            target: 0,
            reason: String::new(),
        };
        let mut reasons = Vec::new();
        let mut target = 0u32;
        let mut sampled = false;
        let mut demands = Vec::with_capacity(shapes.len());
        for shape in &shapes {
            let shape_counts = counts.get(shape).cloned().unwrap_or_default();
            let pass = self
                .size_shape(shape, &shape_counts, railway_ok, now, report)
                .await;
            demands.push(SlotDemand {
                wanted: if railway_ok { pass.create as u32 } else { 0 },
                in_flight: shape_counts.creating.max(0) as u32,
            });
            target = target.saturating_add(pass.target);
            report.retired += pass.retired;
            report.wakes += pass.wakes;
            report.parks += pass.parks;
            reasons.push(if several {
                format!("{shape}: {}", pass.reason)
            } else {
                pass.reason
            });
            if let Some(sample) = pass.sample {
                sampled = true;
                total.idle += sample.idle;
                total.claimed += sample.claimed;
                total.warm += sample.warm;
                total.target += sample.target;
            }
        }
        report.creations += self.start_fair_creations(&shapes, demands, report).await;
        report.target = Some(target);
        report.target_reason = reasons.join("; ");
        if sampled {
            total.reason = report.target_reason.clone();
            if let Err(e) = store.record_sample(&total).await {
                report.error(ReconcileError::load(e));
            }
        }
    }

    /// Starts the shapes' creations one slot at a time, each slot to the shape with the fewest
    /// creations among those still short ([`next_creation_slot`]): one shape's big shortfall
    /// cannot take every free slot (and every Railway create turn, which go first come, first
    /// served) from another. A shape that starts none for a slot (its brake, `paused`, its
    /// `maxTotal` share, or every slot taken) gets no more this tick. How many started.
    async fn start_fair_creations(
        &self,
        shapes: &[String],
        mut demands: Vec<SlotDemand>,
        report: &mut TickReport,
    ) -> usize {
        let mut started = 0;
        if next_creation_slot(&demands).is_none() {
            return started;
        }
        // Read once for every slot of the tick, and kept up to date as creations start.
        let mut figures = match self.provisioner.creation_figures().await {
            Ok(figures) => figures,
            Err(e) => {
                report.error(ReconcileError::Replenish(Arc::new(e)));
                return started;
            }
        };
        while let Some(i) = next_creation_slot(&demands) {
            match self
                .provisioner
                .start_creations_with(&shapes[i], CreationDemand::UpTo(1), &mut figures)
                .await
            {
                Ok(one) if !one.ids.is_empty() => {
                    started += one.ids.len();
                    demands[i].wanted -= 1;
                    demands[i].in_flight += 1;
                }
                Ok(_) => demands[i].wanted = 0,
                Err(e) => {
                    demands[i].wanted = 0;
                    report.error(ReconcileError::Replenish(Arc::new(e)));
                }
            }
        }
        started
    }

    /// One shape's sizing pass (creations are asked for, and started after every shape is
    /// sized); see [`Self::size_and_replenish`].
    async fn size_shape(
        &self,
        shape: &str,
        counts: &StatusCounts,
        railway_ok: bool,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> ShapePass {
        let mut pass = ShapePass::default();
        let store = self.provisioner.store();
        let settings = match store.shape_settings(shape).await {
            Ok(settings) => settings,
            Err(e) => {
                report.error(ReconcileError::load(e));
                return pass;
            }
        };
        let sizing = match size(&self.provisioner, &self.config, &settings, counts, now).await {
            Ok(sizing) => sizing,
            Err(e) => {
                report.error(e);
                return pass;
            }
        };
        pass.target = sizing.desired_warm;
        pass.reason = sizing.reason();
        // Idle agents past the maximum idle age go, oldest first — but only once their
        // replacements are warm, so idle never drops below the target because of a recycle.
        let protected = &self.provisioner.config().protected_instances;
        let over_age = match settings.settings.max_idle_age {
            Some(max_age) => {
                let since = now - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
                store
                    .oldest_idle(shape, Some(since), protected, self.config.retire_per_tick)
                    .await
            }
            None => Ok((0, Vec::new())),
        };
        let (over_age_count, over_age) = match over_age {
            Ok(found) => found,
            Err(e) => {
                report.error(ReconcileError::load(e));
                return pass;
            }
        };
        let creations = match &sizing.tiers {
            Some(plan) => {
                // The tiers: wakes before creations (recycled agents' replacements too).
                let over_age = (over_age_count.max(0) as usize).min(self.config.retire_per_tick) as u32;
                let moved = self
                    .move_tiers(shape, plan, over_age, &settings.settings, railway_ok, report)
                    .await;
                pass.wakes = moved.wakes;
                pass.parks = moved.parks;
                pass.retired += moved.parked_deleted;
                moved.create
            }
            None => {
                let desired = sizing.desired_warm as i64 + over_age_count;
                (desired - counts.warm()).max(0) as usize
            }
        };
        pass.create = creations;
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
        // one a tick, and not while creations are under way or creation is paused. With the
        // parked tier on, only those the plan drains (the parked tier is full): the others park.
        let drain_wanted = match &sizing.tiers {
            Some(plan) => plan.drain > 0,
            None => idle_left > target_idle,
        };
        if retire.is_empty() && counts.creating == 0 && !settings.settings.paused && drain_wanted {
            match store.oldest_idle(shape, None, protected, 1).await {
                Ok((_, oldest)) => retire.extend(
                    oldest
                        .into_iter()
                        .map(|a| (a, "above the sizing policy's target: drained")),
                ),
                Err(e) => {
                    report.error(ReconcileError::load(e));
                    return pass;
                }
            }
        }
        for (agent, reason) in retire {
            match store
                .begin_teardown(&agent.id, AgentStatus::Idle, reason, false)
                .await
            {
                Ok(t) if t.applied() => {
                    pass.retired += 1;
                    tracing::info!(agent = %agent.id, shape, reason, "retiring an idle agent");
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
            reason: pass.reason.clone(),
        };
        if let Err(e) = store.record_shape_sample(shape, &sample).await {
            report.error(ReconcileError::load(e));
        }
        pass.sample = Some(sample);
        pass
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
