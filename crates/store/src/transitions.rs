//! Status changes and what the tick observed. Every change names the status it expects to
//! replace, in the `WHERE` clause, so two writers (two replicas, or a claim racing the tick)
//! can never both win; the loser is told ([`Transition::LostRace`]).

use chrono::{DateTime, Utc};

use crate::agent::{AgentId, AgentStatus};
use crate::events::{EventKind, insert_event};
use crate::rows::current_status;
use crate::{Result, Store};

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

impl Store {
    /// Changes an agent's status from `expected` to `to`, with an event; `LostRace` with the
    /// actual status when the agent was not in `expected`. Archiving (`to` = `deleted`) also
    /// removes every secret of the agent (trigger `agent_archive_forgets_secrets`, V7).
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
}
