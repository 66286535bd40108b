//! Shards: how several replicas share the fleet's health checks and status reads.
//!
//! - Agents are split into shards by a stable hash of their id ([`shard_of`]).
//! - A replica owns a shard while it holds that shard's advisory lock on its lock connection
//!   (a dedicated connection, [`ReplicaShards`]). Postgres gives a lock to one session at a
//!   time, so no shard is ever owned by two replicas; a replica whose connection is cut or
//!   dies loses its shards with it, at once.
//! - Replicas know each other through `pool_replicas`: each renews its row's lease on the
//!   same lock connection ([`ReplicaShards::keep`]), so a replica that lost its connection
//!   stops being live within one lease.
//! - Each keeps about its fair share (shards / live replicas: a lease that runs and a lock
//!   connection that Postgres still sees), with some slack
//!   ([`hysteresis`]) so ownership does not flap: it takes free shards while it holds fewer
//!   than its share, and gives shards back (down to its share) only when it holds more than
//!   its share plus the slack. Shares are rounded up, so together they cover every shard.
//!   A dead replica's shards are free at once, and it stops counting as live, so the others
//!   take them at their next renewal (a third of a lease); one whose connection lingers
//!   stops counting when its lease runs out.
//! - Replicas started with different shard counts would split the fleet differently: the
//!   count of the longest-lived replica is the fleet's, and a replica with another one takes
//!   no shards ([`StoreError::ShardCountMismatch`], naming both counts).
//! - Railway's hourly budget is leased in slices from the same table
//!   ([`Store::lease_railway_slice`]), so that together the replicas never exceed it.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::leader::LockConnection;
use crate::{AgentId, Result, Store, StoreConfig, StoreError};

/// Shards when `POOL_SHARDS` is not set.
pub const DEFAULT_SHARDS: u32 = 256;
/// The most shards a fleet may have: each is an advisory lock in Postgres' shared lock table
/// (sized by `max_locks_per_transaction` × connections; 64 × 100 by default).
pub const MAX_SHARDS: u32 = 1024;

/// The first key of every shard's advisory lock ("shrd"); the second is the shard's number.
/// Two-key locks live apart from the single-key leader lock.
pub const SHARD_LOCK_CLASS: i32 = 0x7368_7264;

/// The shard an agent belongs to, among `shards`: its [`shard_key`] modulo `shards`. Stable
/// across processes and versions: every replica must agree.
pub fn shard_of(id: &AgentId, shards: u32) -> u32 {
    shard_key(id) % shards.max(1)
}

/// An agent's shard key: FNV-1a of its id, mixed (splitmix64's finaliser), the high 32 bits.
/// Every row stores it (`agent_metadata.shard_key`, set by Postgres' `pool_shard_key`, the
/// same function), so that a walk asks for its shards' rows only ([`ShardFilter`]).
pub fn shard_key(id: &AgentId) -> u32 {
    (mixed_hash(id.as_str()) >> 32) as u32
}

/// The shards a walk keeps: those in `owned`, among `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFilter {
    /// The fleet's shard count.
    pub count: u32,
    /// The shards kept (empty: none).
    pub owned: Vec<u32>,
}

fn mixed_hash(text: &str) -> u64 {
    let mut z = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How long a replica that left the fleet (shutting down) keeps its work leases: the binary
/// gives its creations and teardowns in flight 20 s to finish after the reconciler stops; this
/// is a work lease's own length.
pub const LEAVING_WORK_GRACE: Duration = Duration::from_secs(60);

/// A new replica's id: random, one per process (one per opened [`Store`]).
pub fn new_replica_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A replica's fair share of `shards` among `replicas` live ones (rounded up, so the shares
/// cover every shard).
pub fn fair_share(shards: u32, replicas: usize) -> u32 {
    let replicas = u32::try_from(replicas.max(1)).unwrap_or(u32::MAX);
    shards.div_ceil(replicas)
}

/// The slack above the fair share within which a replica keeps the shards it holds (beyond
/// it, it gives back down to its share): 1/32 of the shards, at least one.
pub fn hysteresis(shards: u32) -> u32 {
    (shards / 32).max(1)
}

/// What one renewal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renewal {
    /// Live replicas with this replica's shard count (itself included).
    pub replicas: usize,
    /// This replica's fair share.
    pub fair_share: u32,
    /// Shards taken by this renewal.
    pub taken: Vec<u32>,
    /// Shards given back by this renewal.
    pub released: Vec<u32>,
}

/// One replica in `pool_replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// Its id.
    pub replica: String,
    /// Its shard count.
    pub shard_count: u32,
    /// The shards it held at its last renewal.
    pub shards: Vec<u32>,
    /// Its lease has not run out.
    pub live: bool,
    /// Its slice of Railway's hourly budget.
    pub railway_hourly_slice: u32,
    /// Its lock connection is there (it has not died, nor lost it).
    pub connected: bool,
    /// It holds the leader lock (on a connection named for it: see
    /// [`crate::LeaderLock::try_acquire_for`]).
    pub leader: bool,
    /// Time since it last renewed its lease.
    pub renewed_ago: Duration,
    /// Time until its lease runs out (zero once it has).
    pub lease_left: Duration,
}

/// A replica's shards: its lock connection, the shard locks held on it, and its row in
/// `pool_replicas`. Dropping it closes the connection, which frees its shards.
pub struct ReplicaShards {
    lock: LockConnection,
    replica: String,
    shards: u32,
    lease: Duration,
    held: Mutex<BTreeSet<u32>>,
}

impl std::fmt::Debug for ReplicaShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaShards")
            .field("replica", &self.replica)
            .field("shards", &self.shards)
            .field("held", &self.held().len())
            .finish_non_exhaustive()
    }
}

impl ReplicaShards {
    /// Opens replica `replica`'s lock connection, for a fleet of `shards` shards, renewed
    /// every third of `lease`. It holds nothing until [`Self::keep`].
    pub async fn join(config: &StoreConfig, replica: &str, shards: u32, lease: Duration) -> Result<Self> {
        let lock = LockConnection::open(config).await?;
        // Its name in `pg_stat_activity`, so an operator (or the bench) sees whose locks these are.
        lock.client
            .execute(
                "SELECT set_config('application_name', $1, false)",
                &[&format!("pool-shards {replica}")],
            )
            .await?;
        Ok(Self {
            lock,
            replica: replica.to_string(),
            shards: shards.max(1),
            lease,
            held: Mutex::default(),
        })
    }

    fn held(&self) -> MutexGuard<'_, BTreeSet<u32>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The fleet's shard count as this replica was started with it.
    pub fn shard_count(&self) -> u32 {
        self.shards
    }

    /// The shards held now; none once the lock connection is gone.
    pub fn owned(&self) -> BTreeSet<u32> {
        if self.lock.is_gone() {
            return BTreeSet::new();
        }
        self.held().clone()
    }

    /// True when the lock connection is alive and answers within `timeout`. False: its shards
    /// are lost (Postgres freed, or will free, the locks), and nothing may be done for them.
    pub async fn still_held(&self, timeout: Duration) -> bool {
        self.lock.answers(timeout).await
    }

    /// Renews this replica's lease and moves towards its fair share: gives back what is above
    /// share + slack (down to the share), takes free shards while under the share. An error
    /// means the lock connection failed, or a check ([`Self::still_held`]) found it gone or too
    /// slow (the shards are lost: drop this, and join again) — or, [`StoreError::ShardCountMismatch`], that
    /// the fleet's replicas have another shard count: then every shard is given back and none
    /// is taken.
    pub async fn keep(&self) -> Result<Renewal> {
        if self.lock.is_gone() {
            // A check found the connection gone, or too slow to answer: the shards were taken
            // as lost, and no walk acts for them any more. Keeping the locks on a connection
            // that still works would keep them from every other replica too, for as long as
            // this one lives: the caller drops this connection (which frees them) and joins
            // again on a new one.
            return Err(StoreError::Unreachable {
                target: format!("the shard lock connection of replica {}", self.replica),
                reason: "it was found gone or too slow to answer: its shards are given up".into(),
            });
        }
        self.renew().await?;
        // Rows whose lease ended over an hour ago: nothing they sent is in Railway's window.
        self.lock
            .client
            .execute(
                "DELETE FROM pool_replicas WHERE lease_until < now() - interval '1 hour'",
                &[],
            )
            .await?;
        let live = self
            .lock
            .client
            .query(
                // Live: its lease runs, and its lock connection is there (a killed replica's
                // goes at once, with its locks; its lease may run for a while yet).
                "SELECT shard_count FROM pool_replicas r WHERE lease_until > now() \
                 AND EXISTS (SELECT 1 FROM pg_stat_activity a \
                   WHERE a.application_name = 'pool-shards ' || r.replica AND a.datname = current_database()) \
                 ORDER BY joined_at, replica",
                &[],
            )
            .await?;
        let counts: Vec<u32> = live
            .iter()
            .map(|r| u32::try_from(r.get::<_, i32>(0)).unwrap_or(0))
            .collect();
        let fleet = counts.first().copied().unwrap_or(self.shards);
        if fleet != self.shards {
            let all: Vec<u32> = self.held().iter().copied().collect();
            self.release(&all).await?;
            self.renew().await?;
            return Err(StoreError::ShardCountMismatch {
                ours: self.shards,
                theirs: fleet,
            });
        }
        let replicas = counts.iter().filter(|c| **c == self.shards).count().max(1);
        let share = fair_share(self.shards, replicas);
        let ceiling = share + hysteresis(self.shards);
        let mut renewal = Renewal {
            replicas,
            fair_share: share,
            ..Renewal::default()
        };
        let held = self.held().len() as u32;
        if held > ceiling {
            // Give back what is above the share: the shards furthest along this replica's own
            // order, so what it keeps stays stable.
            let order = self.preference();
            let mine = self.held().clone();
            let give: Vec<u32> = order
                .iter()
                .rev()
                .filter(|s| mine.contains(s))
                .take((held - share) as usize)
                .copied()
                .collect();
            self.release(&give).await?;
            renewal.released = give;
        } else if held < share {
            renewal.taken = self.take_free(share - held).await?;
        }
        if !renewal.taken.is_empty() || !renewal.released.is_empty() {
            self.renew().await?;
        }
        Ok(renewal)
    }

    /// Writes this replica's row: its lease from now, its count and what it holds.
    async fn renew(&self) -> Result<()> {
        let held: Vec<i32> = self.held().iter().map(|s| *s as i32).collect();
        let lease_ms = self.lease.as_millis().min(i64::MAX as u128) as i64;
        self.lock
            .client
            .execute(
                "INSERT INTO pool_replicas (replica, shard_count, lease_until, shards) \
                 VALUES ($1, $2, now() + make_interval(secs => $3::bigint / 1000.0), $4) \
                 ON CONFLICT (replica) DO UPDATE SET shard_count = EXCLUDED.shard_count, \
                   lease_until = EXCLUDED.lease_until, shards = EXCLUDED.shards, renewed_at = now()",
                &[&self.replica, &(self.shards as i32), &lease_ms, &held],
            )
            .await?;
        Ok(())
    }

    /// This replica's order of preference over the shards: from a start of its own (a hash of
    /// its id), so that replicas taking free shards at once reach for different ones.
    fn preference(&self) -> Vec<u32> {
        let start = ((mixed_hash(&self.replica) >> 32) % u64::from(self.shards)) as u32;
        (0..self.shards).map(|i| (start + i) % self.shards).collect()
    }

    /// Takes up to `want` shards no session holds; returns those taken.
    async fn take_free(&self, want: u32) -> Result<Vec<u32>> {
        let locked: BTreeSet<u32> = self
            .lock
            .client
            .query(
                "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objsubid = 2 AND classid::bigint = $1 \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[&i64::from(SHARD_LOCK_CLASS)],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, i64>(0) as u32)
            .collect();
        let mut taken = Vec::new();
        for shard in self.preference() {
            if taken.len() as u32 >= want {
                break;
            }
            if locked.contains(&shard) || self.held().contains(&shard) {
                continue;
            }
            let got: bool = self
                .lock
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&SHARD_LOCK_CLASS, &(shard as i32)],
                )
                .await?
                .get(0);
            if got {
                self.held().insert(shard);
                taken.push(shard);
            }
        }
        Ok(taken)
    }

    async fn release(&self, shards: &[u32]) -> Result<()> {
        for shard in shards {
            self.lock
                .client
                .execute(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&SHARD_LOCK_CLASS, &(*shard as i32)],
                )
                .await?;
            self.held().remove(shard);
        }
        Ok(())
    }

    /// Leaves the fleet now: its shards are free at once (its lock connection closes, so it
    /// no longer counts as live), and its row stays an hour for the budget's sake. Its lease
    /// is left to run for at least [`LEAVING_WORK_GRACE`]: the creations and teardowns its
    /// process still finishes while it shuts down stay its own
    /// ([`Store::free_leases_of_gone_replicas`] frees only the work of replicas whose lease ran
    /// out).
    pub async fn leave(self) {
        let _ = self
            .lock
            .client
            .execute(
                "UPDATE pool_replicas SET shards = '{}', \
                 lease_until = greatest(lease_until, now() + make_interval(secs => $2)) WHERE replica = $1",
                &[&self.replica, &LEAVING_WORK_GRACE.as_secs_f64()],
            )
            .await;
        let _ = self
            .lock
            .client
            .execute("SELECT pg_advisory_unlock_all()", &[])
            .await;
        self.lock.close();
    }

    /// The backend process id of the lock connection (tests cut it with
    /// `pg_terminate_backend`).
    pub async fn backend_pid(&self) -> Result<i32> {
        self.lock.backend_pid().await
    }
}

impl Store {
    /// Leases `replica` its slice of Railway's hourly budget of `hourly` requests, having
    /// sent `used_last_hour` in the last hour: its fair share (`hourly` over the live
    /// replicas), but never more than what the others leave. Each other live replica counts
    /// as the larger of its slice and what it reported sending in the last hour; a dead one
    /// (lease run out, or lock connection gone) as what it last reported sending, until an
    /// hour after its lease ended (it is still in Railway's window) — so a restarted replica
    /// is not starved by its dead self's slice. What a dead replica sent after its last
    /// report (a renewal's worth at most) is not counted. Granted one at a time (a
    /// transaction-level advisory lock), so the slices together never exceed `hourly`.
    pub async fn lease_railway_slice(&self, replica: &str, used_last_hour: u32, hourly: u32) -> Result<u32> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1, -1)", &[&SHARD_LOCK_CLASS])
            .await?;
        let row = tx
            .query_one(
                "SELECT count(*) FILTER (WHERE live), \
                   coalesce(sum(CASE WHEN live THEN greatest(railway_hourly_slice, railway_used_last_hour) \
                     ELSE railway_used_last_hour END) FILTER (WHERE replica <> $1), 0)::bigint \
                 FROM (SELECT replica, railway_hourly_slice, railway_used_last_hour, \
                   lease_until > now() AND EXISTS (SELECT 1 FROM pg_stat_activity a \
                     WHERE a.application_name = 'pool-shards ' || r.replica \
                     AND a.datname = current_database()) AS live \
                   FROM pool_replicas r) replicas",
                &[&replica],
            )
            .await?;
        let live: i64 = row.get(0);
        let others: i64 = row.get(1);
        let fair = i64::from(hourly) / live.max(1);
        let slice = fair.min(i64::from(hourly) - others).max(0);
        let updated = tx
            .execute(
                "UPDATE pool_replicas SET railway_hourly_slice = $2, railway_used_last_hour = $3 \
                 WHERE replica = $1",
                &[
                    &replica,
                    &(slice as i32),
                    &(used_last_hour.min(i32::MAX as u32) as i32),
                ],
            )
            .await?;
        tx.commit().await?;
        // A replica without a row yet (it has not renewed its lease) is granted nothing.
        Ok(if updated == 1 { slice as u32 } else { 0 })
    }

    /// Every replica in `pool_replicas` (live or not), oldest first, with whether its lock
    /// connection is there and whether it leads.
    pub async fn replicas(&self) -> Result<Vec<ReplicaRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT replica, shard_count, shards, lease_until > now(), railway_hourly_slice, \
                   EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = 'pool-shards ' || r.replica \
                     AND a.datname = current_database()), \
                   EXISTS (SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
                     WHERE a.application_name = 'pool-leader ' || r.replica AND a.datname = current_database() \
                     AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1), \
                   greatest(extract(epoch FROM now() - renewed_at), 0)::float8, \
                   greatest(extract(epoch FROM lease_until - now()), 0)::float8 \
                 FROM pool_replicas r ORDER BY joined_at, replica",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ReplicaRow {
                replica: r.get(0),
                shard_count: r.get::<_, i32>(1) as u32,
                shards: r.get::<_, Vec<i32>>(2).into_iter().map(|s| s as u32).collect(),
                live: r.get(3),
                railway_hourly_slice: r.get::<_, i32>(4) as u32,
                connected: r.get(5),
                leader: r.get(6),
                renewed_ago: Duration::from_secs_f64(r.get(7)),
                lease_left: Duration::from_secs_f64(r.get(8)),
            })
            .collect())
    }
}
