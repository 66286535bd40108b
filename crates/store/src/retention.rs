//! Retention: what the pool remembers, and for how long. The leader prunes in batches (a pass
//! deletes at most [`Retention::batch`] rows of each kind, so a tick is never held long; a
//! backlog goes over several passes).
//!
//! - agent and pool events older than [`Retention::events`] (the audit logs stay append-only:
//!   the database refuses any edit, any `TRUNCATE`, and any delete but that of the function
//!   `prune_audit_logs`, which runs as the role `pool_pruner`, of rows older than a day);
//! - archived (`deleted`) agents older than [`Retention::archived_agents`], with their saga
//!   journal — their events go by the events' own period;
//! - refused claims and pool samples older than the events (the demand forecast needs a week of
//!   claims, so events are kept at least [`MIN_EVENT_RETENTION`]);
//! - console sessions past their expiry, idempotency keys past theirs, and rate-limit and
//!   sign-in records a day old.

use std::time::Duration;

use crate::{Result, Store};

/// Events (and the claim history) are kept at least this long: the forecast blends in the same
/// hour one week earlier.
pub const MIN_EVENT_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);
/// Archived agents are kept at least this long (the database refuses to delete younger events,
/// and an operator looks an archived agent up for a while).
pub const MIN_ARCHIVE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How long the pool keeps what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Agent and pool events, refused claims and pool samples (`POOL_EVENT_RETENTION_MS`).
    pub events: Duration,
    /// Archived agents' rows (`POOL_ARCHIVE_RETENTION_MS`).
    pub archived_agents: Duration,
    /// Rows of each kind deleted at most per pass.
    pub batch: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events: Duration::from_secs(90 * 24 * 3600),
            archived_agents: Duration::from_secs(30 * 24 * 3600),
            batch: 1_000,
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Agent events.
    pub agent_events: u64,
    /// Pool events (settings changes, the brake).
    pub pool_events: u64,
    /// Refused claims and pool samples.
    pub demand: u64,
    /// Archived agents.
    pub archived_agents: u64,
    /// Console sessions.
    pub sessions: u64,
    /// Idempotency keys.
    pub idempotency_keys: u64,
    /// Rate-limit windows, sign-in failures and lockouts that no longer count.
    pub limits: u64,
}

impl Pruned {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.agent_events
            + self.pool_events
            + self.demand
            + self.archived_agents
            + self.sessions
            + self.idempotency_keys
            + self.limits
    }
}

/// `DELETE` of at most `limit` (a parameter, e.g. `$2`) rows of `table` matching `condition`.
fn batch_delete(table: &str, condition: &str, limit: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT {limit}))"
    )
}

impl Store {
    /// One retention pass (the leader runs it now and then).
    pub async fn prune(&self, retention: &Retention) -> Result<Pruned> {
        let events = retention.events.max(MIN_EVENT_RETENTION).as_secs_f64();
        let archived = retention.archived_agents.max(MIN_ARCHIVE_RETENTION).as_secs_f64();
        let batch = retention.batch.max(1);
        let mut pruned = Pruned::default();
        let client = self.client().await?;

        // The audit logs, through the one function that may delete from them (it runs as the
        // role `pool_pruner`, which their triggers let through for rows older than a day).
        let cutoff = "at < now() - make_interval(secs => $1)";
        let row = client
            .query_one(
                "SELECT agent_events_deleted, pool_events_deleted
                   FROM prune_audit_logs(make_interval(secs => $1), $2::integer)",
                &[&events, &(batch.min(i64::from(i32::MAX)) as i32)],
            )
            .await?;
        pruned.agent_events = row.get::<_, i64>(0).max(0) as u64;
        pruned.pool_events = row.get::<_, i64>(1).max(0) as u64;

        pruned.demand = client
            .execute(&batch_delete("claim_refusals", cutoff, "$2"), &[&events, &batch])
            .await?
            + client
                .execute(&batch_delete("pool_samples", cutoff, "$2"), &[&events, &batch])
                .await?;

        // Archived agents: their journal, then the row, in one statement.
        pruned.archived_agents = client
            .query_one(
                "WITH old AS (
                    SELECT id FROM agent_metadata
                     WHERE status = 'deleted' AND status_changed_at < now() - make_interval(secs => $1)
                     ORDER BY status_changed_at LIMIT $2),
                 steps AS (DELETE FROM agent_saga_steps WHERE agent_id IN (SELECT id FROM old)),
                 gone AS (DELETE FROM agent_metadata WHERE id IN (SELECT id FROM old) AND status = 'deleted' RETURNING id)
                 SELECT count(*) FROM gone",
                &[&archived, &batch],
            )
            .await?
            .get::<_, i64>(0)
            .max(0) as u64;

        pruned.sessions = client
            .execute(
                &batch_delete("console_sessions", "expires_at < now()", "$1"),
                &[&batch],
            )
            .await?;
        pruned.idempotency_keys = client
            .execute(
                &batch_delete("claim_idempotency_keys", "expires_at <= now()", "$1"),
                &[&batch],
            )
            .await?;
        // Limits look back a minute to an hour: a day later nothing of them counts.
        for (table, condition) in [
            ("rate_limit_windows", "window_start < now() - interval '1 day'"),
            ("sign_in_failures", "at < now() - interval '1 day'"),
            ("sign_in_lockouts", "last_strike_at < now() - interval '1 day'"),
        ] {
            pruned.limits += client
                .execute(&batch_delete(table, condition, "$1"), &[&batch])
                .await?;
        }
        Ok(pruned)
    }
}
