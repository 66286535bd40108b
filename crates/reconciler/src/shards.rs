//! This replica's share of the fleet: which agents it checks, reads and decides about.
//!
//! Every replica walks the agents of the shards it owns (`pool_store::ReplicaShards`: an
//! advisory lock per shard on its lock connection) — the prober's checks, the Railway reads
//! on suspicion, the decisions and the looks Railway's webhook asks for. Sizing, creation,
//! sweeps and retention stay with the leader. The keeper renews the replica's lease every
//! third of it and moves towards its fair share; a replica that lost its lock connection
//! stops acting for its shards before its next step, and joins again on a new connection.
//!
//! Ticks driven by hand (tests, without [`crate::Reconciler::run`]) walk every agent.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pool_store::{AgentId, ReplicaShards, ShardFilter, StoreError, shard_of};
use serde::Serialize;

use crate::Reconciler;

/// Where this replica stands among the fleet's replicas, for the status and the benches.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ShardsStatus {
    /// This replica's id in `pool_replicas`.
    pub replica: String,
    /// Shards it owns now.
    pub owned: usize,
    /// The fleet's shard count as this replica was started with it (`POOL_SHARDS`).
    pub shard_count: u32,
    /// Live replicas with the same count, itself included (at the last renewal).
    pub replicas: usize,
    /// Why it takes no shards (another shard count than the fleet's), when it does not.
    pub refused: Option<String>,
}

/// The shards this replica owns, shared by its tick, its looks and its keeper.
#[derive(Debug)]
pub(crate) struct Ownership {
    shard_count: u32,
    lease: Duration,
    replica: String,
    /// The keeper runs: only the owned shards' agents are this replica's.
    sharded: AtomicBool,
    locks: Mutex<Option<Arc<ReplicaShards>>>,
    status: Mutex<ShardsStatus>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one renewal changed.
enum Renewed {
    /// Shards were taken: walk them now.
    Took,
    /// Shards were lost or given back.
    Lost,
    Same,
}

impl Ownership {
    /// `replica`: this process's id (its store's), the holder named on its work leases.
    pub(crate) fn new(shard_count: u32, lease: Duration, replica: String) -> Self {
        Self {
            shard_count: shard_count.max(1),
            lease,
            status: Mutex::new(ShardsStatus {
                replica: replica.clone(),
                shard_count: shard_count.max(1),
                ..ShardsStatus::default()
            }),
            replica,
            sharded: AtomicBool::new(false),
            locks: Mutex::default(),
        }
    }

    fn locks(&self) -> Option<Arc<ReplicaShards>> {
        lock(&self.locks).clone()
    }

    /// The shards owned now (empty before the keeper's first renewal, or after a lost
    /// connection).
    pub(crate) fn owned(&self) -> BTreeSet<u32> {
        self.locks().map(|l| l.owned()).unwrap_or_default()
    }

    /// True when this agent is this replica's to check, read and decide about.
    pub(crate) fn owns(&self, id: &AgentId) -> bool {
        if !self.sharded.load(Ordering::SeqCst) {
            return true;
        }
        self.locks()
            .is_some_and(|l| l.owned().contains(&shard_of(id, self.shard_count)))
    }

    /// What a walk asks Postgres for: this replica's shards' agents (`None`: every agent,
    /// when ticks are driven by hand).
    pub(crate) fn walk_filter(&self) -> Option<ShardFilter> {
        self.sharded.load(Ordering::SeqCst).then(|| ShardFilter {
            count: self.shard_count,
            owned: self.owned().into_iter().collect(),
        })
    }

    /// True while this replica may act for its shards: its lock connection answers (always
    /// when ticks are driven by hand).
    pub(crate) async fn still_held(&self) -> bool {
        if !self.sharded.load(Ordering::SeqCst) {
            return true;
        }
        match self.locks() {
            Some(locks) => locks.still_held(Duration::from_secs(2)).await,
            None => false,
        }
    }

    pub(crate) fn status(&self) -> ShardsStatus {
        let mut status = lock(&self.status).clone();
        status.owned = self.owned().len();
        status
    }

    /// The time between renewals: a third of the lease.
    fn renew_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(50))
    }

    /// Joins when not joined, then renews the lease and moves towards the fair share.
    async fn renew(&self, store: &pool_store::StoreConfig) -> Renewed {
        self.sharded.store(true, Ordering::SeqCst);
        let locks = match self.locks() {
            Some(locks) => locks,
            None => match ReplicaShards::join(store, &self.replica, self.shard_count, self.lease).await {
                Ok(joined) => {
                    let joined = Arc::new(joined);
                    *lock(&self.locks) = Some(joined.clone());
                    joined
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not open the shard lock connection");
                    return Renewed::Same;
                }
            },
        };
        match locks.keep().await {
            Ok(renewal) => {
                {
                    let mut status = lock(&self.status);
                    status.replicas = renewal.replicas;
                    if status.refused.take().is_some() {
                        tracing::info!("the replicas' shard counts agree again: taking shards");
                    }
                }
                if !renewal.taken.is_empty() || !renewal.released.is_empty() {
                    tracing::info!(
                        taken = renewal.taken.len(),
                        released = renewal.released.len(),
                        owned = locks.owned().len(),
                        fair_share = renewal.fair_share,
                        replicas = renewal.replicas,
                        "shards moved"
                    );
                }
                if !renewal.released.is_empty() {
                    Renewed::Lost
                } else if !renewal.taken.is_empty() {
                    Renewed::Took
                } else {
                    Renewed::Same
                }
            }
            Err(e @ StoreError::ShardCountMismatch { .. }) => {
                let message = format!("POOL_SHARDS: {e}");
                let mut status = lock(&self.status);
                if status.refused.as_deref() != Some(message.as_str()) {
                    tracing::error!("{message}");
                    status.refused = Some(message);
                }
                Renewed::Lost
            }
            Err(e) => {
                // The lock connection failed: its shards are gone with it. Join again on a
                // new connection at the next renewal.
                tracing::warn!(error = %e, "lost the shard lock connection: this replica owns no shards until it joins again");
                *lock(&self.locks) = None;
                Renewed::Lost
            }
        }
    }

    /// Leaves the fleet (shutdown): the shards are free at once for the others.
    async fn leave(&self) {
        let locks = lock(&self.locks).take();
        if let Some(locks) = locks.and_then(Arc::into_inner) {
            locks.leave().await;
        }
    }
}

impl Reconciler {
    /// Renews this replica's shards once: true when it took new ones (they want a walk);
    /// the prober forgets the agents of shards it no longer owns.
    pub(crate) async fn renew_shards(&self) -> bool {
        let store = self.provisioner.store().config().clone();
        let renewed = self.ownership.renew(&store).await;
        match renewed {
            Renewed::Took => {}
            Renewed::Lost => {
                let owned = self.ownership.owned();
                let count = self.ownership.shard_count;
                self.prober.keep_only(|id| owned.contains(&shard_of(id, count)));
            }
            Renewed::Same => {}
        }
        self.status.lock().unwrap_or_else(|p| p.into_inner()).shards = Some(self.ownership.status());
        self.lease_railway().await;
        let freed = self.free_work_of_gone_replicas().await;
        matches!(renewed, Renewed::Took) || freed
    }

    /// Frees the work leases of replicas that are gone (see
    /// `pool_store::Store::free_leases_of_gone_replicas`): their creations, teardowns, parks
    /// and wakes are resumed at the next walk instead of a work lease later. True when some
    /// were freed (they want a walk).
    async fn free_work_of_gone_replicas(&self) -> bool {
        match self.provisioner.store().free_leases_of_gone_replicas().await {
            Ok(0) => false,
            Ok(freed) => {
                tracing::info!(
                    freed,
                    "freed the work leases of a replica that is gone; its work is resumed"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not free the work leases of gone replicas");
                false
            }
        }
    }

    /// Leases this replica's slice of Railway's hourly budget (see
    /// `pool_store::Store::lease_railway_slice`); on failure the last slice stays.
    async fn lease_railway(&self) {
        let railway = self.provisioner.railway();
        let hourly = railway.configured_hourly_budget();
        let used = railway.budget().used_last_hour;
        let leased = self
            .provisioner
            .store()
            .lease_railway_slice(
                &self.ownership.replica,
                u32::try_from(used).unwrap_or(u32::MAX),
                u32::try_from(hourly).unwrap_or(u32::MAX),
            )
            .await;
        match leased {
            Ok(slice) => railway.lease_hourly_budget(Some(slice as usize)),
            Err(e) => {
                tracing::warn!(error = %e, "could not lease a slice of Railway's hourly budget; keeping the last one")
            }
        }
    }

    /// Renews this replica's shards every third of the lease, forever (abort to stop); the
    /// shards it takes are walked at once.
    pub(crate) async fn keep_shards(self) {
        loop {
            tokio::time::sleep(self.ownership.renew_every()).await;
            if self.renew_shards().await {
                self.trigger();
            }
        }
    }

    /// Walks this replica's shards only — health from the prober, Railway reads on suspicion,
    /// decisions — without sizing, creating, sweeping or pruning: a replica without the
    /// leader lock's tick.
    pub async fn shard_tick(&self) -> crate::TickReport {
        self.tick_as(None, false).await
    }

    /// Gives this replica's shards back (shutdown).
    pub(crate) async fn leave_shards(&self) {
        self.ownership.leave().await;
    }

    /// This replica's id in `pool_replicas` (its lock connection is `pool-shards <id>`).
    pub fn replica_id(&self) -> &str {
        &self.ownership.replica
    }

    /// The shards this replica owns now.
    pub fn owned_shards(&self) -> BTreeSet<u32> {
        self.ownership.owned()
    }
}
