//! The fleet's replicas as the status, the metrics and the console show them: each replica in
//! `pool_replicas` (issue 23's shards) with the shards it holds, how old its lease is, and
//! whether it leads. Read from the database, so every replica shows the same.

use std::fmt::Write;

use pool_store::{ReplicaRow, Store, StoreError};
use serde::{Deserialize, Serialize};

/// One replica that shares the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaView {
    /// Its id (its lock connection is `pool-shards <id>`, its leader connection
    /// `pool-leader <id>`).
    pub replica: String,
    /// It is the replica that answered.
    pub this: bool,
    /// It holds the leader lock: it sizes, creates, sweeps and prunes.
    pub leader: bool,
    /// Its lease runs and its lock connection is there.
    pub live: bool,
    /// Shards it held at its last renewal (none once it is no longer live).
    pub shards: usize,
    /// The fleet's shard count as it was started with it (`POOL_SHARDS`).
    pub shard_count: u32,
    /// Milliseconds since it last renewed its lease.
    pub lease_age_ms: u64,
    /// Milliseconds until its lease runs out (0 once it has).
    pub lease_left_ms: u64,
    /// Its slice of Railway's hourly budget.
    pub railway_hourly_slice: u32,
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ReplicaView {
    /// `row` as shown by replica `this` (`None`: a replica that is not sharded).
    pub fn of(row: &ReplicaRow, this: Option<&str>) -> Self {
        let live = row.live && row.connected;
        Self {
            replica: row.replica.clone(),
            this: this == Some(row.replica.as_str()),
            leader: row.leader,
            live,
            shards: if live { row.shards.len() } else { 0 },
            shard_count: row.shard_count,
            lease_age_ms: millis(row.renewed_ago),
            lease_left_ms: millis(row.lease_left),
            railway_hourly_slice: row.railway_hourly_slice,
        }
    }
}

/// Every replica in `pool_replicas` (a dead one stays an hour: what it sent to Railway is
/// still in the budget's window), oldest first.
pub async fn read(store: &Store, this: Option<&str>) -> Result<Vec<ReplicaView>, StoreError> {
    Ok(store
        .replicas()
        .await?
        .iter()
        .map(|r| ReplicaView::of(r, this))
        .collect())
}

/// The replicas' gauges for `/metrics`: live ones, and per replica its shards, its lease's
/// age and whether it leads (the labels are the replicas' random ids: nothing secret).
pub(crate) fn write_metrics(out: &mut String, replicas: &[ReplicaView]) {
    let mut gauge = |name: &str, help: &str, values: &mut dyn Iterator<Item = (String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in values {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let live: Vec<&ReplicaView> = replicas.iter().filter(|r| r.live).collect();
    gauge(
        "pool_replicas_live",
        "Replicas sharing the fleet whose lease runs and whose lock connection is there.",
        &mut std::iter::once((String::new(), live.len().to_string())),
    );
    let label = |r: &ReplicaView| format!("{{replica=\"{}\"}}", r.replica);
    gauge(
        "pool_replica_shards",
        "Shards each live replica holds.",
        &mut live.iter().map(|r| (label(r), r.shards.to_string())),
    );
    gauge(
        "pool_replica_lease_age_seconds",
        "Time since each live replica renewed its lease.",
        &mut live
            .iter()
            .map(|r| (label(r), format!("{:.3}", r.lease_age_ms as f64 / 1000.0))),
    );
    gauge(
        "pool_replica_leader",
        "1 for the replica that holds the leader lock.",
        &mut live.iter().map(|r| (label(r), u8::from(r.leader).to_string())),
    );
}

/// One line per replica for the console, e.g. `3f2a… · 64 shards · lease renewed 1.2 s ago ·
/// leader · this replica`.
pub(crate) fn console_line(r: &ReplicaView) -> String {
    let mut line = format!(
        "{} · {} of {} shards · lease renewed {:.1} s ago",
        r.replica,
        r.shards,
        r.shard_count,
        r.lease_age_ms as f64 / 1000.0
    );
    if !r.live {
        line.push_str(" · gone (lease ran out or connection lost)");
    }
    if r.leader {
        line.push_str(" · leader");
    }
    if r.this {
        line.push_str(" · this replica");
    }
    line
}
