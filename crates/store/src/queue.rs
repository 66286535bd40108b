//! The queue of claims that wait for an agent (`Prefer: wait=N`), shared by every replica.
//!
//! A waiting claim takes a ticket; tickets are served first in, first out within their shape
//! (runtime): while any ticket of a shape is live, only the head of that shape's queue may take
//! an idle agent of it (the claim statement checks it), and a claim of that shape that does not
//! wait takes none. Claims of other shapes are not held up.
//!
//! A ticket is *live* while its wait has not run out and its claim keeps it alive: the claim
//! beats its heartbeat every [`TICKET_HEARTBEAT`]; a ticket not beaten for [`TICKET_STALE`]
//! (its process died, or its task is stuck) is skipped as if it were gone, so a dead head
//! blocks the queue for seconds, not for its whole wait. Only live tickets count as waiting
//! claims and as demand. Each ticket has an owner (the caller's key name), and an owner may
//! hold at most a given number of live tickets.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Result, Store};

/// How often a waiting claim beats its ticket's heartbeat.
pub const TICKET_HEARTBEAT: Duration = Duration::from_secs(2);

/// A ticket whose heartbeat is older than this is not live.
pub const TICKET_STALE: Duration = Duration::from_secs(10);

/// The SQL condition of a live ticket, over the alias `q`.
pub(crate) const LIVE_TICKET: &str =
    "q.expires_at > now() AND q.heartbeat_at > now() - interval '10 seconds'";

/// A place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTicket {
    /// Its position (smaller is earlier).
    pub id: i64,
    /// Whose it is (the caller's key name).
    pub owner: String,
    /// When the wait runs out.
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Joins the queue of `shape` for at most `wait` on behalf of `owner`, unless `owner` holds
    /// `max_per_owner` live tickets already, of any shape (`None` then: nothing was written).
    /// Tickets that are no longer live are pruned on the way.
    pub async fn enqueue_claim(
        &self,
        owner: &str,
        wait: Duration,
        max_per_owner: u32,
        shape: &str,
    ) -> Result<Option<QueueTicket>> {
        let mut client = self.client().await?;
        client
            .execute(
                &format!("DELETE FROM claim_queue q WHERE NOT ({LIVE_TICKET})"),
                &[],
            )
            .await?;
        let tx = client.transaction().await?;
        // One owner's tickets are counted and added one request at a time, on every replica.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('claim_queue'), hashtext($1))",
            &[&owner],
        )
        .await?;
        let row = tx
            .query_opt(
                &format!(
                    "INSERT INTO claim_queue (owner, expires_at, shape)
                     SELECT $1, now() + make_interval(secs => $2), $4
                      WHERE (SELECT count(*) FROM claim_queue q WHERE q.owner = $1 AND {LIVE_TICKET}) < $3
                     RETURNING id, expires_at"
                ),
                &[&owner, &wait.as_secs_f64(), &i64::from(max_per_owner), &shape],
            )
            .await?;
        tx.commit().await?;
        Ok(row.map(|row| QueueTicket {
            id: row.get(0),
            owner: owner.to_string(),
            expires_at: row.get(1),
        }))
    }

    /// Beats the ticket's heartbeat; `false` when the ticket is gone.
    pub async fn keep_ticket_alive(&self, ticket: &QueueTicket) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE claim_queue SET heartbeat_at = now() WHERE id = $1",
                &[&ticket.id],
            )
            .await?
            > 0)
    }

    /// Leaves the queue (served, given up, failed, or the client went away). Leaving twice
    /// is harmless.
    pub async fn leave_queue(&self, ticket: &QueueTicket) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM claim_queue WHERE id = $1", &[&ticket.id])
            .await?;
        Ok(())
    }

    /// Claims waiting now, of every shape: live tickets only.
    pub async fn waiting_claims(&self) -> Result<i64> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                &format!("SELECT count(*) FROM claim_queue q WHERE {LIVE_TICKET}"),
                &[],
            )
            .await?
            .get(0))
    }

    /// Claims waiting now for an agent of `shape`: live tickets only.
    pub async fn waiting_claims_of(&self, shape: &str) -> Result<i64> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                &format!("SELECT count(*) FROM claim_queue q WHERE q.shape = $1 AND {LIVE_TICKET}"),
                &[&shape],
            )
            .await?
            .get(0))
    }

    /// Every ticket in the table, live or not (tests and diagnostics).
    pub async fn queue_tickets(&self) -> Result<i64> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT count(*) FROM claim_queue", &[])
            .await?
            .get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_staleness_matches_the_constant() {
        assert!(LIVE_TICKET.contains(&format!("'{} seconds'", TICKET_STALE.as_secs())));
        assert!(TICKET_HEARTBEAT * 3 < TICKET_STALE, "a beat or two may be late");
    }
}
