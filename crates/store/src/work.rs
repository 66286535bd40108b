//! Work on agents that outlives one process: leases on rows being created or torn down,
//! teardown retries, and redeploy requests.
//!
//! A creation saga or a teardown holds a lease (`worker_lease_until`) on the row it works on
//! and renews it as it goes. Recovery after a crash, and teardown retries, only take rows
//! whose lease has run out — so two replicas never work on one agent at once, and an agent
//! whose worker died is picked up again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::agent::{Agent, AgentId, AgentStatus};
use crate::events::{EventKind, insert_event, insert_event_by};
use crate::rows::{current_status, select_agents};
use crate::transitions::Transition;
use crate::{Result, Store};

impl Store {
    /// Takes the work lease on an agent in `status` if nobody holds it. `false`: someone does
    /// (or the agent is no longer in `status`).
    pub async fn take_work_lease(&self, id: &AgentId, status: AgentStatus, lease: Duration) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE agent_metadata SET worker_lease_until = now() + make_interval(secs => $3), \
                 worker_replica = $4 \
                 WHERE id = $1 AND status = $2 AND (worker_lease_until IS NULL OR worker_lease_until < now())",
                &[&id.as_str(), &status.as_str(), &lease.as_secs_f64(), &self.replica_id()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Extends a creation's lease — only while the row is still `creating` and no other
    /// replica took the lease over. `false` when it is not (the reconciler abandoned it, a
    /// teardown took it, a replica resumed it after this one was taken for gone): the creation
    /// must stop, and a lease renewed anyway would lock the teardown out for as long as the
    /// creation waits.
    pub async fn renew_creation_lease(&self, id: &AgentId, lease: Duration) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE agent_metadata SET worker_lease_until = now() + make_interval(secs => $2), \
                 worker_replica = $3 \
                 WHERE id = $1 AND status = 'creating' AND (worker_replica IS NULL OR worker_replica = $3)",
                &[&id.as_str(), &lease.as_secs_f64(), &self.replica_id()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Gives a lease up.
    pub async fn release_work_lease(&self, id: &AgentId) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE agent_metadata SET worker_lease_until = NULL, worker_replica = NULL WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Frees the work leases held by replicas that are gone: their lease in `pool_replicas`
    /// ran out and their lock connection is no more (a process SIGKILLed, or crashed, mid-work;
    /// one that only lost its lock connection joins again on a new one well within its lease,
    /// so its work in flight stays its own). Their creations, teardowns, parks and wakes are
    /// then resumed at once from their journals, instead of after the rest of a work lease — a
    /// minute during which the leader counted their creations as on their way and made none in
    /// their place. Returns the rows freed.
    pub async fn free_leases_of_gone_replicas(&self) -> Result<u64> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE agent_metadata a SET worker_lease_until = NULL, worker_replica = NULL \
                 WHERE a.worker_replica IS NOT NULL AND a.worker_lease_until > now() \
                 AND EXISTS (SELECT 1 FROM pool_replicas r WHERE r.replica = a.worker_replica \
                   AND r.lease_until < now() \
                   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity s \
                     WHERE s.application_name = 'pool-shards ' || r.replica \
                     AND s.datname = current_database()))",
                &[],
            )
            .await?)
    }

    /// Agents in `creating` whose worker is gone (lease run out): a crash mid-saga.
    pub async fn abandoned_creations(&self) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        select_agents(
            &client,
            self.keys(),
            "a.status = 'creating' AND (a.worker_lease_until IS NULL OR a.worker_lease_until < now())",
            "a.created_at",
            &[],
        )
        .await
    }

    /// Agents in `deleting` that are due for a (first or next) teardown attempt.
    pub async fn due_teardowns(&self) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        select_agents(
            &client,
            self.keys(),
            "a.status = 'deleting' AND (a.worker_lease_until IS NULL OR a.worker_lease_until < now()) \
             AND (a.next_attempt_at IS NULL OR a.next_attempt_at <= now())",
            "a.status_changed_at",
            &[],
        )
        .await
    }

    /// Moves an agent to `deleting` (from `expected`), optionally quarantining it so it can
    /// never be handed out even if the teardown is slow. A creation's work lease on the row is
    /// cut to a minute: if its worker died, the teardown need not wait out the saga's lease.
    pub async fn begin_teardown(
        &self,
        id: &AgentId,
        expected: AgentStatus,
        reason: &str,
        quarantine: bool,
    ) -> Result<Transition> {
        self.begin_teardown_by(id, expected, reason, quarantine, None)
            .await
    }

    /// [`Self::begin_teardown`] with who asked for it on the event (`actor`, e.g.
    /// `agent:<id>` for an agent's own self-destruct; `None`: the pool by itself).
    pub async fn begin_teardown_by(
        &self,
        id: &AgentId,
        expected: AgentStatus,
        reason: &str,
        quarantine: bool,
        actor: Option<&str>,
    ) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE agent_metadata SET status = 'deleting', status_changed_at = now(), \
                 quarantined = quarantined OR $3, next_attempt_at = NULL, claim_expires_at = NULL, \
                 redeploy_requested_at = NULL, \
                 worker_lease_until = CASE WHEN worker_lease_until IS NULL THEN NULL \
                     ELSE LEAST(worker_lease_until, now() + interval '60 seconds') END \
                 WHERE id = $1 AND status = $2",
                &[&id.as_str(), &expected.as_str(), &quarantine],
            )
            .await?;
        if n == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        let kind = if quarantine {
            EventKind::Quarantined
        } else {
            EventKind::StatusChanged
        };
        let moved = (Some(expected), Some(AgentStatus::Deleting));
        insert_event_by(&tx, id, kind, moved, reason, actor).await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// Marks idle agents (all, or the named ones) for a redeploy to the current image.
    /// Returns how many were marked.
    pub async fn request_redeploy(&self, ids: Option<&[AgentId]>) -> Result<u64> {
        let client = self.client().await?;
        let n = match ids {
            None => {
                client
                    .execute(
                        "UPDATE agent_metadata SET redeploy_requested_at = now() WHERE status = 'idle' AND NOT legacy",
                        &[],
                    )
                    .await?
            }
            Some(ids) => {
                let ids: Vec<&str> = ids.iter().map(AgentId::as_str).collect();
                client
                    .execute(
                        "UPDATE agent_metadata SET redeploy_requested_at = now() \
                         WHERE id = ANY($1) AND status = 'idle' AND NOT legacy",
                        &[&ids],
                    )
                    .await?
            }
        };
        Ok(n)
    }

    /// Idle agents waiting for a requested redeploy, oldest request first.
    pub async fn redeploy_candidates(&self, limit: i64) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        select_agents(
            &client,
            self.keys(),
            "a.status = 'idle' AND a.redeploy_requested_at IS NOT NULL",
            "a.redeploy_requested_at, a.id LIMIT $1",
            &[&limit],
        )
        .await
    }

    /// How many agents are waiting for a redeploy, and how many are redeploying now.
    pub async fn redeploy_progress(&self) -> Result<(i64, i64)> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'idle' AND redeploy_requested_at IS NOT NULL), \
                        count(*) FILTER (WHERE status = 'starting' AND EXISTS (SELECT 1 FROM agent_events e \
                            WHERE e.agent_id = agent_metadata.id AND e.kind = 'redeployed' \
                            AND e.at >= agent_metadata.status_changed_at)) \
                 FROM agent_metadata",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Takes an idle agent out of the pool before its redeploy is sent (`idle → starting`), so
    /// no claim can take it mid-redeploy.
    pub async fn hold_for_redeploy(&self, id: &AgentId) -> Result<Transition> {
        self.transition(id, AgentStatus::Idle, AgentStatus::Starting, "redeploy")
            .await
    }

    /// Saves the deployment and image of a redeploy that was sent.
    pub async fn record_redeployed(&self, id: &AgentId, deployment_id: &str, image: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE agent_metadata SET railway_deployment_id = $2, image = $3, redeploy_requested_at = NULL, \
             deployment_status = NULL, last_health_ok = NULL WHERE id = $1",
            &[&id.as_str(), &deployment_id, &image],
        )
        .await?;
        insert_event(&tx, id, EventKind::Redeployed, None, None, image).await?;
        tx.commit().await?;
        Ok(())
    }

    /// When the database thinks it is (tests and the tick compare lease times with it).
    pub async fn now(&self) -> Result<DateTime<Utc>> {
        let client = self.client().await?;
        Ok(client.query_one("SELECT now()", &[]).await?.get(0))
    }
}
