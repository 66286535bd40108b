//! The queue of claims that wait for an agent (`Prefer: wait=N`), shared by every replica.
//!
//! A waiting claim takes a ticket; tickets are served first in, first out: while any ticket
//! is live, only the head of the queue may take an idle agent (the claim statement checks it),
//! and a claim that does not wait takes none. A ticket expires when its wait runs out, so a
//! replica that died mid-wait blocks nobody for long.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Result, Store};

/// A place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTicket {
    /// Its position (smaller is earlier).
    pub id: i64,
    /// When the wait runs out.
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Joins the queue for at most `wait` (expired tickets of others are pruned on the way).
    pub async fn enqueue_claim(&self, wait: Duration) -> Result<QueueTicket> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM claim_queue WHERE expires_at <= now()", &[])
            .await?;
        let row = client
            .query_one(
                "INSERT INTO claim_queue (expires_at) VALUES (now() + make_interval(secs => $1)) RETURNING id, expires_at",
                &[&wait.as_secs_f64()],
            )
            .await?;
        Ok(QueueTicket {
            id: row.get(0),
            expires_at: row.get(1),
        })
    }

    /// Leaves the queue (the wait ran out, or the claim was given up).
    pub async fn leave_queue(&self, ticket: &QueueTicket) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM claim_queue WHERE id = $1", &[&ticket.id])
            .await?;
        Ok(())
    }

    /// Claims waiting now.
    pub async fn waiting_claims(&self) -> Result<i64> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT count(*) FROM claim_queue WHERE expires_at > now()", &[])
            .await?
            .get(0))
    }
}
