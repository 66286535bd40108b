//! Who holds which shard, sampled by the shards bench: the advisory locks in `pg_locks` (the
//! truth) and the live replicas' own rows in `pool_replicas`.

use std::collections::{BTreeMap, BTreeSet};

/// Who holds which shard: from `pg_locks` (the truth) and from the live replicas' rows.
pub(super) struct Ownership {
    /// Shard → the lock connections' names holding it.
    pub locked: BTreeMap<u32, BTreeSet<String>>,
    /// Shards listed by more than one live replica.
    pub listed_twice: usize,
    /// Live replicas.
    pub live: usize,
}

pub(super) async fn ownership(db: &tokio_postgres::Client) -> Result<Ownership, String> {
    let rows = db
        .query(
            "SELECT l.objid::bigint, coalesce(a.application_name, '') FROM pg_locks l \
             LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid::bigint = $1 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&i64::from(pool_store::SHARD_LOCK_CLASS)],
        )
        .await
        .map_err(|e| format!("reading pg_locks: {e}"))?;
    let mut locked: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for row in rows {
        locked
            .entry(row.get::<_, i64>(0) as u32)
            .or_default()
            .insert(row.get(1));
    }
    let listed = db
        // Live as the replicas count each other: a lease that runs and a lock connection
        // that is there (a killed replica's row lists its shards until its lease runs out).
        .query(
            "SELECT shards FROM pool_replicas r WHERE lease_until > now() \
             AND EXISTS (SELECT 1 FROM pg_stat_activity a \
               WHERE a.application_name = 'pool-shards ' || r.replica AND a.datname = current_database())",
            &[],
        )
        .await
        .map_err(|e| format!("reading pool_replicas: {e}"))?;
    let mut seen = BTreeSet::new();
    let mut listed_twice = 0;
    for row in &listed {
        for shard in row.get::<_, Vec<i32>>(0) {
            if !seen.insert(shard) {
                listed_twice += 1;
            }
        }
    }
    Ok(Ownership {
        locked,
        listed_twice,
        live: listed.len(),
    })
}

/// What one sample found wrong.
pub(super) fn doubly_owned(o: &Ownership) -> usize {
    o.locked.values().filter(|holders| holders.len() > 1).count() + o.listed_twice
}
