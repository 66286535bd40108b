//! The creation brake's state, one per shape (runtime), shared by every replica: one
//! runtime's broken image stops only its own creations. The calls without a shape act on the
//! default shape's.
//!
//! Consecutive failed creations are counted; at the limit the brake engages and creation stops,
//! but for one probe creation per interval (taken atomically, so two replicas never probe at
//! once). The first success releases it, as does an operator.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Result, Store};

/// Where the brake stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrakeState {
    /// Failed creations since the last success.
    pub consecutive_failures: u32,
    /// When it engaged (`None`: creation runs).
    pub engaged_at: Option<DateTime<Utc>>,
    /// The last failure, in words.
    pub last_failure: Option<String>,
    /// When it happened.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// When the last probe creation started.
    pub last_probe_at: Option<DateTime<Utc>>,
}

impl BrakeState {
    /// True while creation is stopped.
    pub fn engaged(&self) -> bool {
        self.engaged_at.is_some()
    }
}

const COLUMNS: &str = "consecutive_failures, engaged_at, last_failure, last_failure_at, last_probe_at";

fn from_row(row: &tokio_postgres::Row) -> Result<BrakeState> {
    let failures: i32 = row.try_get("consecutive_failures")?;
    Ok(BrakeState {
        consecutive_failures: failures.max(0) as u32,
        engaged_at: row.try_get("engaged_at")?,
        last_failure: row.try_get("last_failure")?,
        last_failure_at: row.try_get("last_failure_at")?,
        last_probe_at: row.try_get("last_probe_at")?,
    })
}

impl Store {
    /// The default shape's brake now.
    pub async fn brake(&self) -> Result<BrakeState> {
        self.shape_brake(&self.config.default_shape).await
    }

    /// A shape's brake now (released when the shape has none stored yet).
    pub async fn shape_brake(&self, shape: &str) -> Result<BrakeState> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM creation_brake WHERE shape = $1");
        match client.query_opt(sql.as_str(), &[&shape]).await? {
            Some(row) => from_row(&row),
            None => Ok(BrakeState::default()),
        }
    }

    /// Counts a failed creation of a shape; engages its brake (with an event) when the count
    /// reaches `limit`. Returns the state after, and whether this failure engaged it.
    pub async fn record_creation_failure(
        &self,
        shape: &str,
        reason: &str,
        limit: u32,
    ) -> Result<(BrakeState, bool)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO creation_brake (shape) VALUES ($1) ON CONFLICT (shape) DO NOTHING",
            &[&shape],
        )
        .await?;
        let sql = format!(
            "UPDATE creation_brake SET consecutive_failures = consecutive_failures + 1, last_failure = $1, \
             last_failure_at = now(), \
             engaged_at = CASE WHEN engaged_at IS NULL AND consecutive_failures + 1 >= $2 THEN now() ELSE engaged_at END \
             WHERE shape = $3 RETURNING {COLUMNS}, (engaged_at = now() AND consecutive_failures >= $2) AS engaged_now"
        );
        let row = tx
            .query_one(
                sql.as_str(),
                &[&reason, &(limit.min(i32::MAX as u32) as i32), &shape],
            )
            .await?;
        let state = from_row(&row)?;
        let engaged_now: Option<bool> = row.try_get("engaged_now")?;
        let engaged_now = engaged_now.unwrap_or(false);
        if engaged_now {
            let detail = serde_json::json!({
                "runtime": shape,
                "consecutiveFailures": state.consecutive_failures,
                "lastFailure": reason,
            });
            tx.execute(
                "INSERT INTO pool_events (kind, actor, detail) VALUES ('brake_engaged', 'pool', $1)",
                &[&detail],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((state, engaged_now))
    }

    /// Counts a successful creation of a shape: its failure count resets and its engaged
    /// brake releases. Returns whether it was engaged.
    pub async fn record_creation_success(&self, shape: &str) -> Result<bool> {
        self.release_brake_as(shape, "pool", "a creation succeeded").await
    }

    /// An operator resumes the default shape's creation. Returns whether its brake was engaged.
    pub async fn release_brake(&self, actor: &str) -> Result<bool> {
        let shape = self.config.default_shape.clone();
        self.release_shape_brake(&shape, actor).await
    }

    /// An operator resumes a shape's creation. Returns whether its brake was engaged.
    pub async fn release_shape_brake(&self, shape: &str, actor: &str) -> Result<bool> {
        self.release_brake_as(shape, actor, "resumed by an operator")
            .await
    }

    async fn release_brake_as(&self, shape: &str, actor: &str, why: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let was_engaged: bool = tx
            .query_opt(
                "WITH old AS (SELECT engaged_at IS NOT NULL AS engaged, consecutive_failures FROM creation_brake WHERE shape = $1 FOR UPDATE) \
                 UPDATE creation_brake SET consecutive_failures = 0, engaged_at = NULL, last_probe_at = NULL \
                 FROM old WHERE shape = $1 RETURNING old.engaged",
                &[&shape],
            )
            .await?
            .is_some_and(|row| row.get(0));
        if was_engaged {
            let detail = serde_json::json!({ "runtime": shape, "why": why });
            tx.execute(
                "INSERT INTO pool_events (kind, actor, detail) VALUES ('brake_released', $1, $2)",
                &[&actor, &detail],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(was_engaged)
    }

    /// Takes the right to one probe creation of a shape while its brake is engaged: at most
    /// one per `interval`, across replicas. `false`: not engaged, or the last probe is too
    /// recent.
    pub async fn take_brake_probe(&self, shape: &str, interval: Duration) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE creation_brake SET last_probe_at = now() WHERE shape = $2 AND engaged_at IS NOT NULL \
                 AND (last_probe_at IS NULL OR last_probe_at <= now() - make_interval(secs => $1))",
                &[&interval.as_secs_f64(), &shape],
            )
            .await?;
        Ok(n == 1)
    }
}
