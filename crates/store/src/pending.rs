//! `pending_acceptance` and the way back to idle: a join waiting for approval, and an agent
//! whose provision failed but which its runtime says is clean.
//!
//! The Node pool at the pinned commit writes the same transitions: `markClaimPendingAcceptance`,
//! `completePendingAcceptance`, `failPendingAcceptance` and `recoverClaimToIdle`
//! (pool/src/db/pool.ts:153-188). Each names the status it expects, like every transition here.

use std::time::Duration;

use crate::agent::{AgentId, AgentStatus};
use crate::events::{EventKind, insert_event};
use crate::rows::{current_status, stored_id};
use crate::transitions::Transition;
use crate::{Result, Store};

/// The claim's fields, cleared when an agent goes back to idle (the Node pool's
/// `IDLE_RECOVERY_FIELDS`, pool/src/db/pool.ts:179-182, and ours).
const CLEARED_CLAIM: &str = "agent_name = NULL, instructions = NULL, join_url = NULL, \
    conversation_id = NULL, invite_url = NULL, joined = NULL, claimed_at = NULL, \
    claim_expires_at = NULL, pending_acceptance_at = NULL, claim_source = NULL, \
    profile_image = NULL, claim_metadata = NULL, provision_status = NULL";

impl Store {
    /// A claim whose agent answered `status: "pending_acceptance"`: `claiming →
    /// pending_acceptance`, with the invite URL it answered (the join URL) and, under an
    /// idempotency key, the sealed answer. The status change, the answer and the event commit
    /// together.
    pub async fn enter_pending_acceptance(
        &self,
        id: &AgentId,
        invite_url: &str,
        idempotency: Option<(&str, &serde_json::Value)>,
    ) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                "UPDATE agent_metadata SET status = 'pending_acceptance', status_changed_at = now(), \
                 claimed_at = now(), pending_acceptance_at = now(), claim_expires_at = NULL, \
                 invite_url = $2, conversation_id = NULL, joined = false, \
                 provision_status = 'pending_acceptance' \
                 WHERE id = $1 AND status = 'claiming'",
                &[&id.as_str(), &invite_url],
            )
            .await?;
        if updated == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        self.store_claim_answer(&tx, id, idempotency).await?;
        insert_event(
            &tx,
            id,
            EventKind::StatusChanged,
            Some(AgentStatus::Claiming),
            Some(AgentStatus::PendingAcceptance),
            "the join waits for acceptance",
        )
        .await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// The conversation accepted the agent: `pending_acceptance → claimed`, with its
    /// conversation (`completePendingAcceptance`, pool/src/db/pool.ts:165-171).
    pub async fn complete_pending_acceptance(
        &self,
        id: &AgentId,
        conversation_id: &str,
    ) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                "UPDATE agent_metadata SET status = 'claimed', status_changed_at = now(), \
                 conversation_id = $2, joined = true, provision_status = 'joined', \
                 claimed_at = COALESCE(claimed_at, now()) \
                 WHERE id = $1 AND status = 'pending_acceptance'",
                &[&id.as_str(), &conversation_id],
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
            Some(AgentStatus::PendingAcceptance),
            Some(AgentStatus::Claimed),
            "the join was accepted",
        )
        .await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// An agent goes back to the pool from `from` (`claiming` after a provision that did not
    /// happen, `pending_acceptance` after a failed join) to `to` (`idle`: its runtime said it
    /// is clean, or it refused the claim's fields; `starting`: it was not ready), with the
    /// claim's fields cleared (`recoverClaimToIdle`, pool/src/db/pool.ts:184-188). Under an
    /// idempotency key, the claim's (failed) answer is stored with it.
    pub async fn return_to_pool(
        &self,
        id: &AgentId,
        from: AgentStatus,
        to: AgentStatus,
        reason: &str,
        idempotency: Option<(&str, &serde_json::Value)>,
    ) -> Result<Transition> {
        if !matches!(to, AgentStatus::Idle | AgentStatus::Starting) {
            return Err(crate::StoreError::Corrupt(format!(
                "an agent goes back to the pool as idle or starting, not {to}"
            )));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                &format!(
                    "UPDATE agent_metadata SET status = $3, status_changed_at = now(), {CLEARED_CLAIM} \
                     WHERE id = $1 AND status = $2 AND NOT quarantined"
                ),
                &[&id.as_str(), &from.as_str(), &to.as_str()],
            )
            .await?;
        if updated == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        self.store_claim_answer(&tx, id, idempotency).await?;
        insert_event(
            &tx,
            id,
            EventKind::StatusChanged,
            Some(from),
            Some(AgentStatus::Idle),
            reason,
        )
        .await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// Agents `pending_acceptance` for longer than `limit`, oldest first.
    pub async fn overdue_pending_acceptances(&self, limit: Duration) -> Result<Vec<AgentId>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM agent_metadata WHERE status = 'pending_acceptance' \
                 AND pending_acceptance_at < now() - make_interval(secs => $1) \
                 ORDER BY pending_acceptance_at, id",
                &[&limit.as_secs_f64()],
            )
            .await?;
        rows.iter().map(|r| stored_id(r.get(0))).collect()
    }

    /// Records what an agent's `/pool/health` said it runs (`{version, runtime}`); a field it
    /// did not send keeps the last value.
    pub async fn record_runtime(
        &self,
        id: &AgentId,
        version: Option<&str>,
        runtime: Option<&str>,
    ) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE agent_metadata SET runtime_version = COALESCE($2, runtime_version), \
                 runtime_name = COALESCE($3, runtime_name) WHERE id = $1",
                &[&id.as_str(), &version, &runtime],
            )
            .await?;
        Ok(())
    }

    /// Live agents by what their `/pool/health` said they run: `(runtime, version, count)`,
    /// "unknown" where nothing was recorded yet.
    pub async fn runtime_versions(&self) -> Result<Vec<(String, String, i64)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT COALESCE(runtime_name, 'unknown'), COALESCE(runtime_version, 'unknown'), count(*) \
                 FROM agent_metadata WHERE status NOT IN ('creating', 'deleting', 'deleted') \
                 GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}
