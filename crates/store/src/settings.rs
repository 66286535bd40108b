//! The pool's runtime settings and its own audit log.
//!
//! One row per shape (runtime) every replica reads: the environment seeds each shape's on the
//! first start that knows the shape, and after that the API and the console change it. The
//! calls without a shape act on the default shape ([`crate::StoreConfig::default_shape`]). Every change is a `pool_events` row naming who made it,
//! with the settings before and after, written in the same transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Result, Store, StoreError};

/// The settings an operator can change while the pool runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSettings {
    /// The floor of warm agents when no schedule rule applies (`POOL_MIN_IDLE`).
    pub min_idle: u32,
    /// Never more live agents than this (`POOL_MAX_TOTAL`).
    pub max_total: Option<u32>,
    /// Create nothing; hand out what exists.
    pub paused: bool,
    /// `POOL_IDLE_SCHEDULE`, as written (checked by whoever changes it).
    pub idle_schedule: Option<String>,
    /// Idle agents older than this are recycled (`POOL_MAX_IDLE_AGE_MS`).
    #[serde(rename = "maxIdleAgeMs", with = "optional_millis")]
    pub max_idle_age: Option<Duration>,
    /// Consecutive failed creations that engage the brake (`POOL_CREATE_FAILURE_LIMIT`).
    pub create_failure_limit: u32,
    /// Agents kept parked at all times (`POOL_PARKED_MIN`).
    pub parked_min: u32,
    /// Never more parked agents than this; 0 turns the parked tier off (`POOL_PARKED_MAX`).
    pub parked_max: u32,
    /// Idle time after which an agent above the warm target is parked (`POOL_PARK_AFTER_MS`).
    #[serde(rename = "parkAfterMs", with = "millis")]
    pub park_after: Duration,
}

/// The settings with when and by whom they were last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSettings {
    /// The shape (runtime) they are for; `runtime` in JSON, the API's word.
    #[serde(rename = "runtime")]
    pub shape: String,
    /// The settings.
    #[serde(flatten)]
    pub settings: PoolSettings,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Who made it (`environment` for the seed).
    pub updated_by: String,
}

/// One entry of the pool's audit log.
#[derive(Debug, Clone, Serialize)]
pub struct PoolEvent {
    /// Position in the log.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// What (`settings_changed`, `brake_engaged`, `brake_released`).
    pub kind: String,
    /// Who (a key's name, `console`, `environment`, `pool`).
    pub actor: String,
    /// The details (for settings: `before` and `after`).
    pub detail: serde_json::Value,
}

mod millis {
    use std::time::Duration;

    use serde::Serializer;

    /// Writes `d` as whole milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

mod optional_millis {
    use std::time::Duration;

    use serde::Serializer;

    /// Writes `d` as whole milliseconds, `None` as `null`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
}

fn to_i32(n: u32, field: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| StoreError::Config(format!("{field}: {n} is too large")))
}

fn to_i64_millis(d: Duration, field: &str) -> Result<i64> {
    i64::try_from(d.as_millis()).map_err(|_| StoreError::Config(format!("{field}: {d:?} is too large")))
}

fn from_row(row: &tokio_postgres::Row) -> Result<StoredSettings> {
    let count = |col: &str| -> Result<u32> {
        let v: i32 = row.try_get(col)?;
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("pool_settings.{col} is {v}")))
    };
    let max_total: Option<i32> = row.try_get("max_total")?;
    let max_idle_age: Option<i64> = row.try_get("max_idle_age_ms")?;
    let park_after: i64 = row.try_get("park_after_ms")?;
    Ok(StoredSettings {
        settings: PoolSettings {
            min_idle: count("min_idle")?,
            max_total: max_total.map(|v| v.max(0) as u32),
            paused: row.try_get("paused")?,
            idle_schedule: row.try_get("idle_schedule")?,
            max_idle_age: max_idle_age.map(|ms| Duration::from_millis(ms.max(0) as u64)),
            create_failure_limit: count("create_failure_limit")?,
            parked_min: count("parked_min")?,
            parked_max: count("parked_max")?,
            park_after: Duration::from_millis(park_after.max(0) as u64),
        },
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
        shape: row.try_get("shape")?,
    })
}

const COLUMNS: &str = "min_idle, max_total, paused, idle_schedule, max_idle_age_ms, create_failure_limit, \
     parked_min, parked_max, park_after_ms, updated_at, updated_by, shape";

impl Store {
    /// Writes the default shape's settings if none are stored yet (the first start). Returns
    /// what is stored now, seeded or not.
    pub async fn seed_settings(&self, seed: &PoolSettings) -> Result<StoredSettings> {
        let shape = self.config.default_shape.clone();
        self.seed_shape_settings(&shape, seed).await
    }

    /// Writes a shape's settings (and its creation brake) if none are stored yet: the first
    /// start that knows the shape. Returns what is stored now, seeded or not.
    pub async fn seed_shape_settings(&self, shape: &str, seed: &PoolSettings) -> Result<StoredSettings> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO creation_brake (shape) VALUES ($1) ON CONFLICT (shape) DO NOTHING",
                &[&shape],
            )
            .await?;
        let max_idle_age = seed.max_idle_age.map(|d| d.as_millis() as i64);
        let max_total = seed.max_total.map(|n| to_i32(n, "maxTotal")).transpose()?;
        let inserted = client
            .execute(
                "INSERT INTO pool_settings (shape, min_idle, max_total, paused, idle_schedule, max_idle_age_ms, \
                 create_failure_limit, parked_min, parked_max, park_after_ms, updated_by) \
                 VALUES ($10, $1, $2, $3, $4, $5, $6, $7, $8, $9, 'environment') \
                 ON CONFLICT (shape) DO NOTHING",
                &[
                    &to_i32(seed.min_idle, "minIdle")?,
                    &max_total,
                    &seed.paused,
                    &seed.idle_schedule,
                    &max_idle_age,
                    &to_i32(seed.create_failure_limit, "createFailureLimit")?,
                    &to_i32(seed.parked_min, "parkedMin")?,
                    &to_i32(seed.parked_max, "parkedMax")?,
                    &to_i64_millis(seed.park_after, "parkAfterMs")?,
                    &shape,
                ],
            )
            .await?;
        if inserted == 1 {
            let detail = serde_json::json!({ "runtime": shape, "after": seed });
            client
                .execute(
                    "INSERT INTO pool_events (kind, actor, detail) VALUES ('settings_seeded', 'environment', $1)",
                    &[&detail],
                )
                .await?;
        }
        drop(client);
        self.shape_settings(shape).await
    }

    /// The default shape's stored settings.
    pub async fn settings(&self) -> Result<StoredSettings> {
        self.shape_settings(&self.config.default_shape).await
    }

    /// A shape's stored settings.
    pub async fn shape_settings(&self, shape: &str) -> Result<StoredSettings> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM pool_settings WHERE shape = $1");
        let row = client.query_opt(sql.as_str(), &[&shape]).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "pool_settings has no row for the shape {shape:?}: seed it at start-up"
            ))
        })?;
        from_row(&row)
    }

    /// Every shape's stored settings, by shape name.
    pub async fn all_settings(&self) -> Result<Vec<StoredSettings>> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM pool_settings ORDER BY shape");
        client
            .query(sql.as_str(), &[])
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Replaces the default shape's settings; see [`Self::update_shape_settings`].
    pub async fn update_settings(
        &self,
        new: &PoolSettings,
        actor: &str,
    ) -> Result<(StoredSettings, StoredSettings)> {
        let shape = self.config.default_shape.clone();
        self.update_shape_settings(&shape, new, actor).await
    }

    /// Replaces a shape's settings, recording who did it with the values before and after, in
    /// one transaction. Returns (before, after).
    pub async fn update_shape_settings(
        &self,
        shape: &str,
        new: &PoolSettings,
        actor: &str,
    ) -> Result<(StoredSettings, StoredSettings)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let sql = format!("SELECT {COLUMNS} FROM pool_settings WHERE shape = $1 FOR UPDATE");
        let before = from_row(
            &tx.query_opt(sql.as_str(), &[&shape])
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("pool_settings has no row for {shape:?}")))?,
        )?;
        let max_idle_age = new.max_idle_age.map(|d| d.as_millis() as i64);
        let max_total = new.max_total.map(|n| to_i32(n, "maxTotal")).transpose()?;
        let sql = format!(
            "UPDATE pool_settings SET min_idle = $1, max_total = $2, paused = $3, idle_schedule = $4, \
             max_idle_age_ms = $5, create_failure_limit = $6, updated_at = now(), updated_by = $7, \
             parked_min = $8, parked_max = $9, park_after_ms = $10 \
             WHERE shape = $11 RETURNING {COLUMNS}"
        );
        let after = from_row(
            &tx.query_one(
                sql.as_str(),
                &[
                    &to_i32(new.min_idle, "minIdle")?,
                    &max_total,
                    &new.paused,
                    &new.idle_schedule,
                    &max_idle_age,
                    &to_i32(new.create_failure_limit, "createFailureLimit")?,
                    &actor,
                    &to_i32(new.parked_min, "parkedMin")?,
                    &to_i32(new.parked_max, "parkedMax")?,
                    &to_i64_millis(new.park_after, "parkAfterMs")?,
                    &shape,
                ],
            )
            .await?,
        )?;
        let detail =
            serde_json::json!({ "runtime": shape, "before": before.settings, "after": after.settings });
        tx.execute(
            "INSERT INTO pool_events (kind, actor, detail) VALUES ('settings_changed', $1, $2)",
            &[&actor, &detail],
        )
        .await?;
        tx.commit().await?;
        Ok((before, after))
    }

    /// Appends an entry to the pool's audit log.
    pub async fn append_pool_event(&self, kind: &str, actor: &str, detail: &serde_json::Value) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO pool_events (kind, actor, detail) VALUES ($1, $2, $3)",
                &[&kind, &actor, detail],
            )
            .await?;
        Ok(())
    }

    /// The newest entries of the pool's audit log, newest first.
    pub async fn pool_events(&self, limit: i64) -> Result<Vec<PoolEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, at, kind, actor, detail FROM pool_events ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PoolEvent {
                id: r.get(0),
                at: r.get(1),
                kind: r.get(2),
                actor: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }
}
