//! The tick's moves between the tiers (issue 21), as [`pool_sizing::plan_tiers`] asks for them
//! for one shape: wake parked agents for a warm shortfall before anything is created, park idle
//! agents above the warm target (those idle for `parkAfterMs`, or idle for the first time: a
//! new agent that booted once, so it is known to work), and delete parked agents only above the
//! parked target or past their age. Drains (the parked tier full) and creations stay with the
//! sizing pass (`sizing.rs`), under the creation brake, `paused` and `maxTotal` as before.
//!
//! Each move's first step is taken in the tick (`idle → parking`, `parked → waking`, `parked →
//! deleting`), so the next pass counts it; the Railway calls run in the provisioner's tasks,
//! through the one request budget. Parks and deletions are a few a tick ([`MOVES_PER_TICK`]);
//! wakes are as many as the plan asks, since they serve claims.

use std::sync::Arc;

use pool_sizing::TierPlan;
use pool_store::{AgentStatus, PoolSettings};

use crate::Reconciler;
use crate::error::ReconcileError;
use crate::tick::TickReport;

/// Parks, and deletions of parked agents, started in one tick per shape: neither serves a
/// claim, so they go at a pace that leaves Railway's budget to the rest.
pub(crate) const MOVES_PER_TICK: usize = 10;

/// What [`Reconciler::move_tiers`] did, and what is left for creation.
#[derive(Debug, Default)]
pub(crate) struct TierMoves {
    /// Parked agents woken.
    pub wakes: usize,
    /// Idle agents parked.
    pub parks: usize,
    /// Parked agents deleted.
    pub parked_deleted: usize,
    /// Agents to create: the plan's, plus recycled agents' replacements that no wake covers.
    pub create: usize,
}

impl Reconciler {
    /// Applies one shape's tier plan (see the module). `recycled`: idle agents past the maximum
    /// idle age about to be recycled, whose replacements are woken first, then created.
    pub(crate) async fn move_tiers(
        &self,
        shape: &str,
        plan: &TierPlan,
        recycled: u32,
        settings: &PoolSettings,
        railway_ok: bool,
        report: &mut TickReport,
    ) -> TierMoves {
        let mut moves = TierMoves::default();
        let provisioner = &self.provisioner;
        let store = provisioner.store();
        let mut create = plan.create as usize;
        // Wakes first: a warm shortfall is served without a create token.
        let wanted = plan.wake as usize + recycled as usize;
        if wanted > 0 && railway_ok {
            match provisioner
                .wake_parked(shape, wanted, "woken: the warm tier is short")
                .await
            {
                Ok(woken) => moves.wakes = woken,
                Err(e) => report.error(ReconcileError::Replenish(Arc::new(e))),
            }
        }
        // What the wakes could not cover is created (a recycled agent's replacement included),
        // except while a burst the stock covers is served by waking.
        if !plan.served_by_waking {
            create += (plan.wake as usize).saturating_sub(moves.wakes);
        }
        create += (recycled as usize).saturating_sub(moves.wakes.saturating_sub(plan.wake as usize));
        moves.create = create;

        if plan.park > 0 && railway_ok {
            let now = match store.now().await {
                Ok(now) => now,
                Err(e) => {
                    report.error(ReconcileError::load(e));
                    return moves;
                }
            };
            let since =
                now - chrono::Duration::from_std(settings.park_after).unwrap_or(chrono::Duration::MAX);
            let protected = &provisioner.config().protected_instances;
            let count = (plan.park as usize).min(MOVES_PER_TICK);
            match store.parkable_idle(shape, since, protected, count).await {
                Ok((_, ids)) => {
                    for id in ids {
                        match provisioner.start_park(&id).await {
                            Ok(true) => {
                                moves.parks += 1;
                                tracing::info!(agent = %id, shape, "parking an idle agent above the warm target");
                            }
                            Ok(false) => {}
                            Err(e) => report.error(ReconcileError::Replenish(Arc::new(e))),
                        }
                    }
                }
                Err(e) => report.error(ReconcileError::load(e)),
            }
        }

        if plan.delete_parked > 0 {
            let count = (plan.delete_parked as usize).min(MOVES_PER_TICK);
            // Parked longest first: those past their age come first.
            match store.parked_oldest(shape, None, count).await {
                Ok((_, ids)) => {
                    for id in ids {
                        let reason = "parked above the parked target or past its age: deleted";
                        match store
                            .begin_teardown(&id, AgentStatus::Parked, reason, false)
                            .await
                        {
                            Ok(t) if t.applied() => {
                                moves.parked_deleted += 1;
                                tracing::info!(agent = %id, shape, reason, "deleting a parked agent");
                                provisioner.start_teardown(id);
                            }
                            Ok(_) => {}
                            Err(e) => report.error(ReconcileError::apply(&id, e)),
                        }
                    }
                }
                Err(e) => report.error(ReconcileError::load(e)),
            }
        }
        moves
    }
}
