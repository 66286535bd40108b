//! The claim: the oldest idle agent under a lease, exactly once, with idempotency keys.

use crate::agent::{Agent, AgentId, AgentStatus, ClaimRequest};
use crate::events::{EventKind, insert_event};
use crate::rows::{agent_columns, agent_from_row, current_status, stored_id};
use crate::transitions::Transition;
use crate::{Result, Store, StoreError};

/// A claim's first answer, kept under its idempotency key.
#[derive(Debug, Clone)]
pub struct IdempotentClaim {
    /// The agent the first request took.
    pub agent_id: AgentId,
    /// The stored response, once the first request finished (`None` while it still runs).
    pub response: Option<serde_json::Value>,
}

/// What a claim got from the database.
#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    /// An idle agent, now `claiming` under a lease.
    Claimed(Box<Agent>),
    /// No idle agent right now.
    PoolEmpty,
    /// The idempotency key was used before: the first request's agent and answer.
    Repeated(IdempotentClaim),
}

/// The claim statement: takes the oldest idle agent under a lease and logs the event, in one
/// statement. `FOR UPDATE SKIP LOCKED` makes concurrent claims pass over each other's rows.
/// Claims that wait ([`crate::QueueTicket`]) are served first in, first out: while any waits,
/// only the head of the queue may take an agent, and a claim that does not wait takes none.
static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH taken AS (
            UPDATE agent_metadata SET status = 'claiming', status_changed_at = now(),
                   claim_expires_at = now() + make_interval(secs => $1),
                   agent_name = $2, instructions = $3, join_url = $4
             WHERE id = (SELECT id FROM agent_metadata
                          WHERE status = 'idle' AND NOT quarantined
                            AND CASE WHEN $5::bigint IS NULL
                                     THEN NOT EXISTS (SELECT 1 FROM claim_queue q WHERE q.expires_at > now())
                                     ELSE $5 = (SELECT min(q.id) FROM claim_queue q WHERE q.expires_at > now())
                                END
                          ORDER BY created_at, id
                          FOR UPDATE SKIP LOCKED LIMIT 1)
            RETURNING *),
         dequeued AS (
            DELETE FROM claim_queue WHERE id = $5 AND EXISTS (SELECT 1 FROM taken)),
         logged AS (
            INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason)
            SELECT id, 'status_changed', 'idle', 'claiming', 'claimed' FROM taken)
         SELECT {} FROM taken a",
        agent_columns()
    )
});

impl Store {
    /// taken and the first request's agent is returned instead.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome> {
        let mut client = self.client().await?;
        let lease = request.lease.as_secs_f64();
        let ticket = request.ticket.as_ref().map(|t| t.id);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &lease,
            &request.agent_name,
            &request.instructions,
            &request.join_url,
            &ticket,
        ];
        let Some(key) = &request.idempotency_key else {
            // The hot path: one statement, one round trip, atomic on its own.
            let statement = client.prepare_cached(&CLAIM_SQL).await?;
            return match client.query_opt(&statement, &params).await? {
                Some(row) => Ok(ClaimOutcome::Claimed(Box::new(agent_from_row(&row)?))),
                None => Ok(ClaimOutcome::PoolEmpty),
            };
        };
        if let Some(previous) = idempotent_claim(&client, key).await? {
            return Ok(ClaimOutcome::Repeated(previous));
        }
        let tx = client.transaction().await?;
        // Taking the key first makes a concurrent request with the same key wait here until
        // this one commits (then it finds the key) or rolls back (then it goes on).
        let inserted = tx
            .execute(
                "INSERT INTO claim_idempotency_keys (key) VALUES ($1) ON CONFLICT (key) DO NOTHING",
                &[key],
            )
            .await?;
        if inserted == 0 {
            tx.rollback().await?;
            return match idempotent_claim(&client, key).await? {
                Some(previous) => Ok(ClaimOutcome::Repeated(previous)),
                None => Err(StoreError::Corrupt(format!("idempotency key {key:?} vanished"))),
            };
        }
        let statement = tx.prepare_cached(&CLAIM_SQL).await?;
        let Some(row) = tx.query_opt(&statement, &params).await? else {
            // Rolling back also frees the idempotency key: a retry may find an agent later.
            tx.rollback().await?;
            return Ok(ClaimOutcome::PoolEmpty);
        };
        let agent = agent_from_row(&row)?;
        tx.execute(
            "UPDATE claim_idempotency_keys SET agent_id = $2 WHERE key = $1",
            &[key, &agent.id.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(ClaimOutcome::Claimed(Box::new(agent)))
    }

    /// Finishes a claim that provisioned: `claiming → claimed` with what the agent answered.
    pub async fn complete_claim(
        &self,
        id: &AgentId,
        invite_url: &str,
        conversation_id: &str,
        joined: bool,
        idempotency: Option<(&str, &serde_json::Value)>,
    ) -> Result<Transition> {
        let client = self.client().await?;
        // One statement: the status change, the stored answer and the event commit together.
        let statement = client
            .prepare_cached(
                "WITH done AS (
                    UPDATE agent_metadata SET status = 'claimed', status_changed_at = now(), claimed_at = now(),
                           claim_expires_at = NULL, invite_url = $2, conversation_id = $3, joined = $4
                     WHERE id = $1 AND status = 'claiming' RETURNING id),
                 answer AS (
                    UPDATE claim_idempotency_keys SET response = $6
                     WHERE key = $5 AND EXISTS (SELECT 1 FROM done)),
                 logged AS (
                    INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason)
                    SELECT id, 'status_changed', 'claiming', 'claimed', 'provisioned' FROM done)
                 SELECT count(*) FROM done",
            )
            .await?;
        let (key, response) = match idempotency {
            Some((k, r)) => (Some(k), Some(r)),
            None => (None, None),
        };
        let done: i64 = client
            .query_one(
                &statement,
                &[
                    &id.as_str(),
                    &invite_url,
                    &conversation_id,
                    &joined,
                    &key,
                    &response,
                ],
            )
            .await?
            .get(0);
        if done == 0 {
            let actual = current_status(&client, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        Ok(Transition::Applied)
    }

    /// failed, or `claiming` with an expired lease for the tick.
    pub async fn abandon_claim(
        &self,
        id: &AgentId,
        reason: &str,
        idempotency: Option<(&str, &serde_json::Value)>,
    ) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                "UPDATE agent_metadata SET status = 'deleting', status_changed_at = now(), quarantined = true, \
                 claim_expires_at = NULL, last_error = $2 WHERE id = $1 AND status = 'claiming'",
                &[&id.as_str(), &reason],
            )
            .await?;
        if updated == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        if let Some((key, response)) = idempotency {
            tx.execute(
                "UPDATE claim_idempotency_keys SET response = $2 WHERE key = $1",
                &[&key, response],
            )
            .await?;
        }
        insert_event(
            &tx,
            id,
            EventKind::Quarantined,
            Some(AgentStatus::Claiming),
            Some(AgentStatus::Deleting),
            reason,
        )
        .await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// Agents whose claim lease ran out (their claimer died mid-provision).
    pub async fn expired_claim_leases(&self) -> Result<Vec<AgentId>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT id FROM agent_metadata WHERE status = 'claiming' AND claim_expires_at < now() ORDER BY id", &[])
            .await?;
        rows.iter().map(|r| stored_id(r.get(0))).collect()
    }

    /// The first answer stored under an idempotency key, if the key was used.
    pub async fn idempotent_claim(&self, key: &str) -> Result<Option<IdempotentClaim>> {
        let client = self.client().await?;
        idempotent_claim(&client, key).await
    }
}

async fn idempotent_claim(
    client: &impl deadpool_postgres::GenericClient,
    key: &str,
) -> Result<Option<IdempotentClaim>> {
    let row = client
        .query_opt(
            "SELECT agent_id, response FROM claim_idempotency_keys WHERE key = $1",
            &[&key],
        )
        .await?;
    row.map(|r| {
        Ok(IdempotentClaim {
            agent_id: stored_id(r.get(0))?,
            response: r.get(1),
        })
    })
    .transpose()
}
