//! The parked tier's journal: each park and wake is a short saga whose every step is written
//! before and after its remote call, so a crash between any two steps is resumed (by the
//! worker whose lease runs out next) and never loses a parked agent or wakes one twice.
//!
//! - park: `idle → parking` (under a work lease), `tier_step = remove` before
//!   `deploymentRemove`, then `parking → parked`;
//! - wake: `parked → waking` (under a work lease), `tier_step = deploy` before the deploy, then
//!   `waking → starting` with the new deployment's id (health decides the rest, as for a new
//!   agent); a failed wake goes back to `parked` with one more failure counted.

use std::time::Duration;

use crate::agent::{AgentId, AgentStatus, TierStep};
use crate::events::{EventKind, insert_event};
use crate::rows::current_status;
use crate::transitions::Transition;
use crate::{Result, Store};

impl Store {
    /// `from → to` under a fresh work lease of `lease`, with an event; the row must be in
    /// `from` and (for `parked` and `idle`) not legacy, quarantined or asked to redeploy.
    async fn enter_tier_motion(
        &self,
        id: &AgentId,
        from: AgentStatus,
        to: AgentStatus,
        lease: Duration,
        reason: &str,
    ) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE agent_metadata SET status = $3, status_changed_at = now(), tier_step = NULL, \
                 worker_lease_until = now() + make_interval(secs => $4), worker_replica = $5 \
                 WHERE id = $1 AND status = $2 AND NOT legacy AND NOT quarantined \
                 AND redeploy_requested_at IS NULL",
                &[
                    &id.as_str(),
                    &from.as_str(),
                    &to.as_str(),
                    &lease.as_secs_f64(),
                    &self.replica_id(),
                ],
            )
            .await?;
        if n == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        insert_event(&tx, id, EventKind::StatusChanged, Some(from), Some(to), reason).await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// Starts parking an idle agent (`idle → parking`): from here no claim can take it.
    pub async fn begin_park(&self, id: &AgentId, lease: Duration) -> Result<Transition> {
        self.enter_tier_motion(
            id,
            AgentStatus::Idle,
            AgentStatus::Parking,
            lease,
            "parking: idle above the warm target",
        )
        .await
    }

    /// Starts waking a parked agent (`parked → waking`).
    pub async fn begin_wake(&self, id: &AgentId, lease: Duration, reason: &str) -> Result<Transition> {
        self.enter_tier_motion(id, AgentStatus::Parked, AgentStatus::Waking, lease, reason)
            .await
    }

    /// Notes the step about to be tried (before its remote call); `false` when the agent is no
    /// longer in `status` (someone else took it: stop).
    pub async fn note_tier_step(&self, id: &AgentId, status: AgentStatus, step: TierStep) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE agent_metadata SET tier_step = $3 WHERE id = $1 AND status = $2",
                &[&id.as_str(), &status.as_str(), &step.as_str()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Takes the work lease of a park or wake whose worker is gone (its lease ran out), to
    /// resume it. `false`: someone holds it, or the agent moved on.
    pub async fn resume_tier_motion(
        &self,
        id: &AgentId,
        status: AgentStatus,
        lease: Duration,
    ) -> Result<bool> {
        if !matches!(status, AgentStatus::Parking | AgentStatus::Waking) {
            return Ok(false);
        }
        self.take_work_lease(id, status, lease).await
    }

    /// Parking done: the deployment is removed (`parking → parked`).
    pub async fn finish_park(&self, id: &AgentId, deployment: &str) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE agent_metadata SET status = 'parked', status_changed_at = now(), parked_at = now(), \
                 tier_step = NULL, worker_lease_until = NULL, worker_replica = NULL, deployment_status = 'REMOVED', \
                 last_health_ok = NULL WHERE id = $1 AND status = 'parking'",
                &[&id.as_str()],
            )
            .await?;
        if n == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        let reason = format!("parked: deployment {deployment} removed (deploymentRemove)");
        insert_event(
            &tx,
            id,
            EventKind::StatusChanged,
            Some(AgentStatus::Parking),
            Some(AgentStatus::Parked),
            &reason,
        )
        .await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// The wake's deploy exists (`waking → starting`, its deployment and image recorded): from
    /// here the agent is judged as a new one (SUCCESS, then a healthy `/pool/health`).
    pub async fn finish_wake(&self, id: &AgentId, deployment: &str, image: &str) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE agent_metadata SET status = 'starting', status_changed_at = now(), \
                 railway_deployment_id = $2, image = $3, tier_step = NULL, worker_lease_until = NULL, worker_replica = NULL, \
                 deployment_status = NULL, parked_at = NULL, wake_failures = 0 \
                 WHERE id = $1 AND status = 'waking'",
                &[&id.as_str(), &deployment, &image],
            )
            .await?;
        if n == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        let reason = format!("woken: deployment {deployment} of {image}");
        insert_event(
            &tx,
            id,
            EventKind::StatusChanged,
            Some(AgentStatus::Waking),
            Some(AgentStatus::Starting),
            &reason,
        )
        .await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// A wake that failed for a passing reason: back to `parked`, one more failure counted, the
    /// error kept. Returns the failures in a row.
    pub async fn wake_failed(&self, id: &AgentId, error: &str) -> Result<Option<i32>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "UPDATE agent_metadata SET status = 'parked', status_changed_at = now(), tier_step = NULL, \
                 worker_lease_until = NULL, worker_replica = NULL, wake_failures = wake_failures + 1, last_error = $2 \
                 WHERE id = $1 AND status = 'waking' RETURNING wake_failures",
                &[&id.as_str(), &error],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let failures: i32 = row.get(0);
        let reason = format!("wake failed ({failures} in a row): {error}");
        insert_event(
            &tx,
            id,
            EventKind::WakeFailed,
            Some(AgentStatus::Waking),
            Some(AgentStatus::Parked),
            &reason,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(failures))
    }
}

/// What the tick's tier pass reads of one shape: who may be parked, woken or deleted, oldest
/// first, a few at a time (never the whole tier).
impl Store {
    /// Idle agents of `shape` that may be parked now, oldest first: neither legacy,
    /// quarantined, held for a redeploy nor in `excluded` (protected), and either idle since
    /// before `idle_since` (`parkAfterMs` ago) or idle for the first time (never woken: a new
    /// agent that booted once, so it is known to work). The count of all of them, and the
    /// first `limit` ids.
    pub async fn parkable_idle(
        &self,
        shape: &str,
        idle_since: chrono::DateTime<chrono::Utc>,
        excluded: &[String],
        limit: usize,
    ) -> Result<(u32, Vec<AgentId>)> {
        let condition = "status = 'idle' AND shape = $1 AND NOT legacy AND NOT quarantined \
             AND redeploy_requested_at IS NULL AND NOT (id = ANY($2)) \
             AND (status_changed_at < $3 OR NOT EXISTS (SELECT 1 FROM agent_events e \
                  WHERE e.agent_id = a.id AND e.to_status = 'waking'))";
        let client = self.client().await?;
        let count: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM agent_metadata a WHERE {condition}"),
                &[&shape, &excluded, &idle_since],
            )
            .await?
            .get(0);
        let rows = client
            .query(
                &format!(
                    "SELECT id FROM agent_metadata a WHERE {condition} \
                     ORDER BY status_changed_at, id LIMIT $4"
                ),
                &[&shape, &excluded, &idle_since, &(limit as i64)],
            )
            .await?;
        let ids = rows
            .iter()
            .map(|r| crate::rows::stored_id(r.get(0)))
            .collect::<Result<_>>()?;
        Ok((count.max(0) as u32, ids))
    }

    /// Parked agents of `shape` that may be woken or deleted, parked longest first (a wake
    /// takes the oldest stock, so fewer reach their maximum age), at most `limit`; and how
    /// many of the shape's parked agents were parked before `over_age_since` (past their
    /// maximum age), when it is given.
    pub async fn parked_oldest(
        &self,
        shape: &str,
        over_age_since: Option<chrono::DateTime<chrono::Utc>>,
        limit: usize,
    ) -> Result<(u32, Vec<AgentId>)> {
        let client = self.client().await?;
        let over_age: i64 = match over_age_since {
            Some(since) => client
                .query_one(
                    "SELECT count(*) FROM agent_metadata WHERE status = 'parked' AND shape = $1 \
                     AND parked_at < $2",
                    &[&shape, &since],
                )
                .await?
                .get(0),
            None => 0,
        };
        let rows = client
            .query(
                "SELECT id FROM agent_metadata WHERE status = 'parked' AND shape = $1 AND NOT legacy \
                 AND NOT quarantined AND redeploy_requested_at IS NULL \
                 ORDER BY parked_at NULLS FIRST, id LIMIT $2",
                &[&shape, &(limit as i64)],
            )
            .await?;
        let ids = rows
            .iter()
            .map(|r| crate::rows::stored_id(r.get(0)))
            .collect::<Result<_>>()?;
        Ok((over_age.max(0) as u32, ids))
    }

    /// The 90th percentile of the last `last` wakes' time from `waking` to `idle` (the wake
    /// horizon of the warm target), `None` before any wake finished.
    pub async fn wake_time_p90(&self, last: i64) -> Result<Option<Duration>> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH wakes AS (
                    SELECT w.agent_id, w.at FROM agent_events w WHERE w.to_status = 'waking'
                     ORDER BY w.at DESC LIMIT $1),
                 timed AS (
                    SELECT extract(epoch FROM ((SELECT min(i.at) FROM agent_events i
                        WHERE i.agent_id = wakes.agent_id AND i.to_status = 'idle' AND i.at > wakes.at)
                        - wakes.at)) AS secs FROM wakes)
                 SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY secs)::float8 FROM timed
                  WHERE secs IS NOT NULL",
                &[&last],
            )
            .await?;
        Ok(crate::demand::seconds(row.get(0)))
    }
}
