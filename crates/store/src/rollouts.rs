//! Rollouts: an image moved to every agent of a runtime, a canary first and then batches, as
//! rows (`pool_rollouts`, `pool_rollout_agents`, V14) so that one survives a restart of the pool
//! and resumes where it was. Each agent's row says where that agent is (`pending`,
//! `upgrading`, `done`, `rolling_back`, `rolled_back`, `skipped`), and moves only forward, so
//! no agent is upgraded twice. At most one rollout per runtime runs (a unique index).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use crate::agent::AgentId;
use crate::{Result, Store};

/// A rollout to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRollout {
    /// The runtime (shape) it moves.
    pub runtime: String,
    /// What was asked for (`repository:tag` or `repository@digest`).
    pub image: String,
    /// The digest-pinned reference it resolved to (`repository@sha256:…`).
    pub target: String,
    /// Whether idle agents are moved.
    pub include_idle: bool,
    /// Whether claimed agents are moved (in place).
    pub include_claimed: bool,
    /// Agents down at once after the canary.
    pub batch: i32,
    /// How long an agent must stay healthy before it counts as upgraded.
    pub pause_ms: i64,
    /// Who asked.
    pub actor: Option<String>,
}

/// An agent a rollout moves: what it ran before (the rollback target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutMember {
    /// The agent.
    pub agent: AgentId,
    /// Its image reference before.
    pub previous_image: Option<String>,
    /// Its deployment before.
    pub previous_deployment_id: Option<String>,
}

/// A rollout, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Id.
    pub id: i64,
    /// The runtime it moves.
    pub runtime: String,
    /// What was asked for.
    pub image: String,
    /// The digest every agent gets.
    pub target: String,
    /// Idle agents included.
    pub include_idle: bool,
    /// Claimed agents included.
    pub include_claimed: bool,
    /// Agents down at once after the canary.
    pub batch: i32,
    /// The health gate's pause.
    pub pause_ms: i64,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// Why it failed.
    pub failure: Option<String>,
    /// Who asked.
    pub actor: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One agent of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAgent {
    /// The rollout.
    pub rollout_id: i64,
    /// The agent.
    pub agent_id: AgentId,
    /// 0 is the canary.
    pub position: i32,
    /// Its image before.
    pub previous_image: Option<String>,
    /// Its deployment before.
    pub previous_deployment_id: Option<String>,
    /// Where it is.
    pub state: String,
    /// The deployment of the new image (or of the rollback).
    pub deployment_id: Option<String>,
    /// When that deployment was asked for.
    pub deployed_at: Option<DateTime<Utc>>,
    /// Healthy without a break since.
    pub healthy_since: Option<DateTime<Utc>>,
    /// The last problem.
    pub error: Option<String>,
}

/// How a rollout's agents stand, for the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCounts {
    /// Not yet started.
    pub pending: i64,
    /// Deployed, behind the health gate.
    pub upgrading: i64,
    /// Upgraded and through the gate.
    pub done: i64,
    /// Being rolled back.
    pub rolling_back: i64,
    /// Rolled back.
    pub rolled_back: i64,
    /// Left out (gone, or no longer of the kind included).
    pub skipped: i64,
}

const ROLLOUT_COLUMNS: &str = "id, runtime, image, target, include_idle, include_claimed, batch, pause_ms, \
     state, failure, actor, started_at, finished_at";
const AGENT_COLUMNS: &str = "rollout_id, agent_id, position, previous_image, previous_deployment_id, state, \
     deployment_id, deployed_at, healthy_since, error";

fn rollout(row: &Row) -> Rollout {
    Rollout {
        id: row.get(0),
        runtime: row.get(1),
        image: row.get(2),
        target: row.get(3),
        include_idle: row.get(4),
        include_claimed: row.get(5),
        batch: row.get(6),
        pause_ms: row.get(7),
        state: row.get(8),
        failure: row.get(9),
        actor: row.get(10),
        started_at: row.get(11),
        finished_at: row.get(12),
    }
}

fn rollout_agent(row: &Row) -> Result<RolloutAgent> {
    Ok(RolloutAgent {
        rollout_id: row.get(0),
        agent_id: AgentId::parse(row.get::<_, &str>(1))
            .map_err(|e| crate::StoreError::Config(e.to_string()))?,
        position: row.get(2),
        previous_image: row.get(3),
        previous_deployment_id: row.get(4),
        state: row.get(5),
        deployment_id: row.get(6),
        deployed_at: row.get(7),
        healthy_since: row.get(8),
        error: row.get(9),
    })
}

impl Store {
    /// Starts a rollout over `members` (in order: the first is the canary). `Err(running)`
    /// when one of this runtime runs already; nothing is written then.
    pub async fn start_rollout(
        &self,
        new: &NewRollout,
        members: &[RolloutMember],
    ) -> Result<std::result::Result<Rollout, Rollout>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .query_one(
                &format!(
                    "INSERT INTO pool_rollouts (runtime, image, target, include_idle, include_claimed, batch, pause_ms, actor) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ROLLOUT_COLUMNS}"
                ),
                &[
                    &new.runtime,
                    &new.image,
                    &new.target,
                    &new.include_idle,
                    &new.include_claimed,
                    &new.batch,
                    &new.pause_ms,
                    &new.actor,
                ],
            )
            .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                drop(tx);
                return match self.running_rollout(&new.runtime).await? {
                    Some(running) => Ok(Err(running)),
                    // It ended between the two statements: the caller may ask again.
                    None => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let started = rollout(&row);
        for (position, m) in members.iter().enumerate() {
            tx.execute(
                "INSERT INTO pool_rollout_agents (rollout_id, agent_id, position, previous_image, previous_deployment_id) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &started.id,
                    &m.agent.as_str(),
                    &(position as i32),
                    &m.previous_image,
                    &m.previous_deployment_id,
                ],
            )
            .await?;
        }
        let detail = serde_json::json!({
            "rollout": started.id, "runtime": started.runtime, "image": started.image,
            "target": started.target, "agents": members.len(), "batch": started.batch,
            "pauseMs": started.pause_ms,
        });
        tx.execute(
            "INSERT INTO pool_events (kind, actor, detail) VALUES ('rollout_started', $1, $2)",
            &[&new.actor.as_deref().unwrap_or("pool"), &detail],
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(started))
    }

    /// The running rollout of a runtime.
    pub async fn running_rollout(&self, runtime: &str) -> Result<Option<Rollout>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {ROLLOUT_COLUMNS} FROM pool_rollouts WHERE runtime = $1 AND state = 'running'"
                ),
                &[&runtime],
            )
            .await?;
        Ok(row.as_ref().map(rollout))
    }

    /// Every running rollout, oldest first.
    pub async fn running_rollouts(&self) -> Result<Vec<Rollout>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {ROLLOUT_COLUMNS} FROM pool_rollouts WHERE state = 'running' ORDER BY id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(rollout).collect())
    }

    /// The newest rollout (running or not).
    pub async fn latest_rollout(&self) -> Result<Option<Rollout>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ROLLOUT_COLUMNS} FROM pool_rollouts ORDER BY id DESC LIMIT 1"),
                &[],
            )
            .await?;
        Ok(row.as_ref().map(rollout))
    }

    /// A rollout by id.
    pub async fn rollout(&self, id: i64) -> Result<Option<Rollout>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ROLLOUT_COLUMNS} FROM pool_rollouts WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(rollout))
    }

    /// A rollout's agents, canary first.
    pub async fn rollout_agents(&self, rollout_id: i64) -> Result<Vec<RolloutAgent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {AGENT_COLUMNS} FROM pool_rollout_agents WHERE rollout_id = $1 ORDER BY position"
                ),
                &[&rollout_id],
            )
            .await?;
        rows.iter().map(rollout_agent).collect()
    }

    /// How a rollout's agents stand.
    pub async fn rollout_counts(&self, rollout_id: i64) -> Result<RolloutCounts> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT state, count(*) FROM pool_rollout_agents WHERE rollout_id = $1 GROUP BY state",
                &[&rollout_id],
            )
            .await?;
        let mut counts = RolloutCounts::default();
        for row in rows {
            let n: i64 = row.get(1);
            match row.get::<_, &str>(0) {
                "pending" => counts.pending = n,
                "upgrading" => counts.upgrading = n,
                "done" => counts.done = n,
                "rolling_back" => counts.rolling_back = n,
                "rolled_back" => counts.rolled_back = n,
                _ => counts.skipped = n,
            }
        }
        Ok(counts)
    }

    /// Agents a running rollout owns now (deployed and behind the gate, or rolling back): the
    /// reconciler leaves their status to the rollout.
    pub async fn agents_held_by_rollouts(&self) -> Result<Vec<AgentId>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT ra.agent_id FROM pool_rollout_agents ra JOIN pool_rollouts r ON r.id = ra.rollout_id \
                 WHERE r.state = 'running' AND ra.state IN ('upgrading', 'rolling_back')",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| AgentId::parse(r.get::<_, &str>(0)).ok())
            .collect())
    }

    /// Moves one agent of a rollout from `from` to `to`, with the deployment asked for (when
    /// one was) and the problem (when there is one). `false`: it was not in `from`.
    pub async fn move_rollout_agent(
        &self,
        rollout_id: i64,
        agent: &AgentId,
        from: &str,
        to: &str,
        deployment_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE pool_rollout_agents SET state = $4, \
                   deployment_id = COALESCE($5, deployment_id), \
                   deployed_at = CASE WHEN $5::text IS NULL THEN deployed_at ELSE now() END, \
                   healthy_since = CASE WHEN $3 <> $4 THEN NULL ELSE healthy_since END, \
                   error = COALESCE($6, error) \
                 WHERE rollout_id = $1 AND agent_id = $2 AND state = $3",
                &[&rollout_id, &agent.as_str(), &from, &to, &deployment_id, &error],
            )
            .await?;
        Ok(n == 1)
    }

    /// Records a health check of an agent behind the gate: healthy keeps (or starts) its
    /// streak, anything else ends it. The streak's start, after the update.
    pub async fn record_rollout_health(
        &self,
        rollout_id: i64,
        agent: &AgentId,
        healthy: bool,
    ) -> Result<Option<DateTime<Utc>>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE pool_rollout_agents SET healthy_since = \
                   CASE WHEN $3 THEN COALESCE(healthy_since, now()) ELSE NULL END \
                 WHERE rollout_id = $1 AND agent_id = $2 RETURNING healthy_since",
                &[&rollout_id, &agent.as_str(), &healthy],
            )
            .await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Records why a running rollout stopped; it ends (`failed`) once its rollbacks are through.
    pub async fn set_rollout_failure(&self, rollout_id: i64, failure: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE pool_rollouts SET failure = $2 WHERE id = $1 AND state = 'running'",
                &[&rollout_id, &failure],
            )
            .await?;
        Ok(())
    }

    /// Ends a running rollout (`succeeded`, `failed`, `cancelled`), with an entry in the pool's
    /// audit log. `false`: it was not running.
    pub async fn finish_rollout(
        &self,
        rollout_id: i64,
        state: &str,
        failure: Option<&str>,
        actor: &str,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE pool_rollouts SET state = $2, failure = $3, finished_at = now() \
                 WHERE id = $1 AND state = 'running'",
                &[&rollout_id, &state, &failure],
            )
            .await?;
        if n == 1 {
            let detail = serde_json::json!({ "rollout": rollout_id, "failure": failure });
            tx.execute(
                "INSERT INTO pool_events (kind, actor, detail) VALUES ($1, $2, $3)",
                &[&format!("rollout_{state}"), &actor, &detail],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}
