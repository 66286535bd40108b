//! Typed queries on `agent_metadata`, the saga journal and claim idempotency.
//!
//! Every status change names the status it expects to replace, in the `WHERE` clause, so two
//! writers (two replicas, or a claim racing the tick) can never both win; the loser is told.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::Row;

use crate::agent::{
    Agent, AgentId, AgentSecrets, AgentStatus, ClaimRequest, CreationStep, NewAgent, StatusCounts,
};
use crate::events::{EventKind, insert_event};
use crate::{Result, Store, StoreError};

/// The outcome of a status change with an expected old status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The row had the expected status and now has the new one.
    Applied,
    /// Someone else changed the row first; nothing was written.
    LostRace {
        /// The status the row has now (`None`: no such agent).
        actual: Option<AgentStatus>,
    },
}

impl Transition {
    /// True when the change was written.
    pub fn applied(&self) -> bool {
        matches!(self, Self::Applied)
    }
}

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
static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH taken AS (
            UPDATE agent_metadata SET status = 'claiming', status_changed_at = now(),
                   claim_expires_at = now() + make_interval(secs => $1),
                   agent_name = $2, instructions = $3, join_url = $4
             WHERE id = (SELECT id FROM agent_metadata
                          WHERE status = 'idle' AND NOT quarantined
                          ORDER BY created_at, id
                          FOR UPDATE SKIP LOCKED LIMIT 1)
            RETURNING *),
         logged AS (
            INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason)
            SELECT id, 'status_changed', 'idle', 'claiming', 'claimed' FROM taken)
         SELECT {AGENT_COLUMNS} FROM taken a"
    )
});

pub(crate) const AGENT_COLUMNS: &str = "a.id, a.status, a.status_changed_at, a.created_at, a.legacy, a.quarantined, \
    a.railway_project_id, a.railway_environment_id, a.railway_service_id, a.railway_volume_id, \
    a.railway_domain, a.railway_deployment_id, a.image, a.openrouter_key_hash, a.openrouter_api_key, \
    a.agentmail_inbox_id, a.gateway_token, a.setup_password, a.wallet_private_key, a.agent_api_token, \
    a.agent_name, a.instructions, a.join_url, a.conversation_id, a.invite_url, a.joined, a.claimed_at, \
    a.claim_expires_at, a.deployment_status, a.last_health_at, a.last_health_ok, a.teardown_attempts, \
    a.next_attempt_at, a.last_error, a.worker_lease_until, a.redeploy_requested_at, \
    ARRAY(SELECT s.step FROM agent_saga_steps s WHERE s.agent_id = a.id ORDER BY s.completed_at, s.step) AS steps";

pub(crate) fn agent_from_row(row: &Row) -> Result<Agent> {
    let secret = |col: &str| -> Result<Option<SecretString>> {
        Ok(row.try_get::<_, Option<String>>(col)?.map(SecretString::from))
    };
    let secrets = match (
        secret("gateway_token")?,
        secret("setup_password")?,
        secret("wallet_private_key")?,
        secret("agent_api_token")?,
    ) {
        (Some(gateway_token), Some(setup_password), Some(wallet_private_key), Some(agent_api_token)) => {
            Some(AgentSecrets {
                gateway_token,
                setup_password,
                wallet_private_key,
                agent_api_token,
            })
        }
        _ => None,
    };
    let project: String = row.try_get("railway_project_id")?;
    let steps: Vec<String> = row.try_get("steps")?;
    Ok(Agent {
        id: AgentId(row.try_get("id")?),
        status: AgentStatus::parse(row.try_get("status")?)?,
        status_changed_at: row.try_get("status_changed_at")?,
        created_at: row.try_get("created_at")?,
        legacy: row.try_get("legacy")?,
        quarantined: row.try_get("quarantined")?,
        project_id: (!project.is_empty()).then_some(project),
        environment_id: row.try_get("railway_environment_id")?,
        service_id: row.try_get("railway_service_id")?,
        volume_id: row.try_get("railway_volume_id")?,
        domain: row.try_get("railway_domain")?,
        deployment_id: row.try_get("railway_deployment_id")?,
        image: row.try_get("image")?,
        openrouter_key_hash: row.try_get("openrouter_key_hash")?,
        openrouter_api_key: secret("openrouter_api_key")?,
        agentmail_inbox_id: row.try_get("agentmail_inbox_id")?,
        secrets,
        agent_name: row.try_get("agent_name")?,
        instructions: row.try_get("instructions")?,
        join_url: row.try_get("join_url")?,
        conversation_id: row.try_get("conversation_id")?,
        invite_url: row.try_get("invite_url")?,
        joined: row.try_get("joined")?,
        claimed_at: row.try_get("claimed_at")?,
        claim_expires_at: row.try_get("claim_expires_at")?,
        deployment_status: row.try_get("deployment_status")?,
        last_health_at: row.try_get("last_health_at")?,
        last_health_ok: row.try_get("last_health_ok")?,
        teardown_attempts: row.try_get("teardown_attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        worker_lease_until: row.try_get("worker_lease_until")?,
        redeploy_requested_at: row.try_get("redeploy_requested_at")?,
        completed_steps: steps.iter().filter_map(|s| CreationStep::parse(s)).collect(),
    })
}

impl Store {
    /// Writes a new agent in `creating`, before any remote call is made for it, with the
    /// creator's work lease already held (so crash recovery elsewhere leaves it alone).
    pub async fn insert_creating(&self, agent: &NewAgent, lease: std::time::Duration) -> Result<Agent> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let s = &agent.secrets;
        tx.execute(
            "INSERT INTO agent_metadata (id, railway_project_id, status, image, gateway_token, \
             setup_password, wallet_private_key, agent_api_token, worker_lease_until) \
             VALUES ($1, '', 'creating', $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
            &[
                &agent.id.as_str(),
                &agent.image,
                &s.gateway_token.expose_secret(),
                &s.setup_password.expose_secret(),
                &s.wallet_private_key.expose_secret(),
                &s.agent_api_token.expose_secret(),
                &lease.as_secs_f64(),
            ],
        )
        .await?;
        insert_event(
            &tx,
            &agent.id,
            EventKind::Created,
            None,
            Some(AgentStatus::Creating),
            &agent.image,
        )
        .await?;
        tx.commit().await?;
        drop(client);
        self.agent(&agent.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("agent {} vanished after insert", agent.id)))
    }

    /// Journals a completed saga step and saves the remote id it produced, in one transaction.
    pub async fn record_step(&self, id: &AgentId, step: CreationStep, remote_id: Option<&str>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let (Some(column), Some(remote_id)) = (step.id_column(), remote_id) {
            // `column` comes from a fixed list in `CreationStep::id_column`, never from input.
            let sql = format!("UPDATE agent_metadata SET {column} = $2 WHERE id = $1");
            tx.execute(sql.as_str(), &[&id.as_str(), &remote_id]).await?;
        }
        tx.execute(
            "INSERT INTO agent_saga_steps (agent_id, step, remote_id) VALUES ($1, $2, $3) \
             ON CONFLICT (agent_id, step) DO UPDATE SET remote_id = EXCLUDED.remote_id",
            &[&id.as_str(), &step.as_str(), &remote_id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves a per-agent OpenRouter key (hash for deletion, key for the agent's variables).
    pub async fn record_openrouter_key(&self, id: &AgentId, hash: &str, key: &SecretString) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE agent_metadata SET openrouter_api_key = $2 WHERE id = $1",
                &[&id.as_str(), &key.expose_secret()],
            )
            .await?;
        drop(client);
        self.record_step(id, CreationStep::OpenRouterKey, Some(hash))
            .await
    }

    /// Clears a remote id once the resource is confirmed gone (teardown progress).
    pub async fn forget_remote_id(&self, id: &AgentId, step: CreationStep) -> Result<()> {
        let Some(column) = step.id_column() else {
            return Ok(());
        };
        let client = self.client().await?;
        let value = if step == CreationStep::Project {
            Some("")
        } else {
            None
        };
        let sql = format!("UPDATE agent_metadata SET {column} = $2 WHERE id = $1");
        client.execute(sql.as_str(), &[&id.as_str(), &value]).await?;
        Ok(())
    }

    /// One agent, deleted ones included.
    pub async fn agent(&self, id: &AgentId) -> Result<Option<Agent>> {
        let client = self.client().await?;
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agent_metadata a WHERE a.id = $1");
        client
            .query_opt(sql.as_str(), &[&id.as_str()])
            .await?
            .as_ref()
            .map(agent_from_row)
            .transpose()
    }

    /// The agents with these ids, deleted ones included.
    pub async fn agents_by_ids(&self, ids: &[AgentId]) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        let ids: Vec<&str> = ids.iter().map(AgentId::as_str).collect();
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agent_metadata a WHERE a.id = ANY($1)");
        client
            .query(sql.as_str(), &[&ids])
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }

    /// Every agent that is not deleted: what the tick reconciles.
    pub async fn live_agents(&self) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agent_metadata a WHERE a.status <> 'deleted' ORDER BY a.created_at, a.id"
        );
        client
            .query(sql.as_str(), &[])
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }

    /// Agents in one status, oldest first.
    pub async fn agents_with_status(&self, status: AgentStatus) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agent_metadata a WHERE a.status = $1 ORDER BY a.created_at, a.id"
        );
        client
            .query(sql.as_str(), &[&status.as_str()])
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }

    /// Moves an agent from `expected` to `to` and records why. Writes nothing and reports the
    /// actual status when the agent was not in `expected`.
    pub async fn transition(
        &self,
        id: &AgentId,
        expected: AgentStatus,
        to: AgentStatus,
        reason: &str,
    ) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                "UPDATE agent_metadata SET status = $3, status_changed_at = now(), \
                 deleted_at = CASE WHEN $3 = 'deleted' THEN now() ELSE deleted_at END \
                 WHERE id = $1 AND status = $2",
                &[&id.as_str(), &expected.as_str(), &to.as_str()],
            )
            .await?;
        if updated == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        insert_event(
            &tx,
            id,
            EventKind::StatusChanged,
            Some(expected),
            Some(to),
            reason,
        )
        .await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// Takes the oldest idle agent for a claim: `claiming` under a lease, with the claim's
    /// details. Concurrent claims skip rows another claim holds (`FOR UPDATE SKIP LOCKED`), so
    /// no agent is ever taken twice. With an idempotency key that was used before, nothing is
    /// taken and the first request's agent is returned instead.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome> {
        let mut client = self.client().await?;
        let lease = request.lease.as_secs_f64();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
            &lease,
            &request.agent_name,
            &request.instructions,
            &request.join_url,
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

    /// Gives up on a claim: the agent is quarantined and goes to `deleting`, never back to the
    /// pool (the user's data may already be on it). `expected` is `claiming` for a claim that
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
        Ok(rows.iter().map(|r| AgentId(r.get(0))).collect())
    }

    /// Saves what the tick observed about an agent.
    pub async fn record_observation(
        &self,
        id: &AgentId,
        deployment_status: Option<&str>,
        health: Option<(bool, DateTime<Utc>)>,
    ) -> Result<()> {
        let client = self.client().await?;
        let (ok, at) = match health {
            Some((ok, at)) => (Some(ok), Some(at)),
            None => (None, None),
        };
        client
            .execute(
                "UPDATE agent_metadata SET deployment_status = COALESCE($2, deployment_status), \
                 last_health_ok = COALESCE($3, last_health_ok), last_health_at = COALESCE($4, last_health_at) \
                 WHERE id = $1",
                &[&id.as_str(), &deployment_status, &ok, &at],
            )
            .await?;
        Ok(())
    }

    /// Records a failed teardown attempt and when to try again.
    pub async fn record_teardown_failure(
        &self,
        id: &AgentId,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE agent_metadata SET teardown_attempts = teardown_attempts + 1, next_attempt_at = $3, last_error = $2 WHERE id = $1",
            &[&id.as_str(), &error, &retry_at],
        )
        .await?;
        insert_event(&tx, id, EventKind::TeardownFailed, None, None, error).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the last error of an agent (a failed creation step, a failed redeploy).
    pub async fn record_error(&self, id: &AgentId, error: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE agent_metadata SET last_error = $2 WHERE id = $1",
                &[&id.as_str(), &error],
            )
            .await?;
        Ok(())
    }

    /// Live agents by status.
    pub async fn counts(&self) -> Result<StatusCounts> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT status, count(*) FROM agent_metadata WHERE status <> 'deleted' GROUP BY status",
                &[],
            )
            .await?;
        let mut counts = StatusCounts::default();
        for row in rows {
            counts.add(AgentStatus::parse(row.get(0))?, row.get(1));
        }
        Ok(counts)
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
    Ok(row.map(|r| IdempotentClaim {
        agent_id: AgentId(r.get(0)),
        response: r.get(1),
    }))
}

pub(crate) async fn current_status(
    client: &impl deadpool_postgres::GenericClient,
    id: &AgentId,
) -> Result<Option<AgentStatus>> {
    client
        .query_opt("SELECT status FROM agent_metadata WHERE id = $1", &[&id.as_str()])
        .await?
        .map(|r| AgentStatus::parse(r.get(0)))
        .transpose()
}
