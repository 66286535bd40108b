//! Demand as the database remembers it: claims served and refused, per minute, and how long a
//! new agent takes to become ready — what the sizing policy needs.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Result, Store};

/// Claims per minute, as the forecast wants them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimCounts {
    /// Claims (served and refused) per minute, oldest first, the last one ending now.
    pub per_minute: Vec<u32>,
    /// Claims per minute over the hour that started one week ago, if the pool was running
    /// then (there is any sample of that hour).
    pub last_week_same_hour: Option<f64>,
}

impl Store {
    /// Records a claim the pool could not serve (it is demand all the same), on behalf of
    /// `claimant` (the caller's key name) — unless `claimant` had `max_per_minute` refusals
    /// recorded in the current minute already: one caller hammering an empty pool counts as
    /// a few claims a minute, not as demand that makes the pool create at Railway's pace (and
    /// again a week later, when the forecast replays the hour). The refusal counts as demand
    /// for the shape (runtime) the claim asked for. Returns whether it was counted.
    pub async fn record_refused_claim(
        &self,
        claimant: &str,
        max_per_minute: u32,
        shape: &str,
    ) -> Result<bool> {
        let client = self.client().await?;
        let counted = client
            .execute(
                "INSERT INTO claim_refusals (at, claimant, shape)
                 SELECT now(), $1, $3
                  WHERE (SELECT count(*) FROM claim_refusals
                          WHERE claimant = $1 AND at >= date_trunc('minute', now())) < $2",
                &[&claimant, &i64::from(max_per_minute), &shape],
            )
            .await?;
        Ok(counted > 0)
    }

    /// Claims per minute over the last `minutes` minutes, and the same hour a week ago: of one
    /// shape (the claims that took its agents or asked for it and were refused), or of the
    /// whole pool (`None`).
    pub async fn claim_counts(&self, shape: Option<&str>, minutes: u32) -> Result<ClaimCounts> {
        let client = self.client().await?;
        let minutes = i32::try_from(minutes.max(1)).unwrap_or(i32::MAX);
        let rows = client
            .query(
                "WITH claims AS (
                    SELECT e.at FROM agent_events e WHERE e.to_status = 'claiming'
                        AND e.at > now() - make_interval(mins => $1)
                        AND ($2::text IS NULL OR EXISTS (
                            SELECT 1 FROM agent_metadata a WHERE a.id = e.agent_id AND a.shape = $2))
                    UNION ALL
                    SELECT at FROM claim_refusals WHERE at > now() - make_interval(mins => $1)
                        AND ($2::text IS NULL OR shape = $2))
                 SELECT floor(extract(epoch FROM (now() - at)) / 60)::int AS minutes_ago, count(*)::int
                   FROM claims GROUP BY 1",
                &[&minutes, &shape],
            )
            .await?;
        let mut per_minute = vec![0u32; minutes as usize];
        for row in rows {
            let ago: i32 = row.get(0);
            let n: i32 = row.get(1);
            if let Some(slot) = usize::try_from(ago)
                .ok()
                .and_then(|ago| (minutes as usize).checked_sub(ago + 1))
            {
                per_minute[slot] += n.max(0) as u32;
            }
        }
        let week = client
            .query_one(
                "WITH hour AS (SELECT now() - interval '7 days' AS start)
                 SELECT (SELECT count(*) FROM agent_events e, hour WHERE e.to_status = 'claiming'
                            AND e.at >= hour.start AND e.at < hour.start + interval '1 hour'
                            AND ($1::text IS NULL OR EXISTS (
                                SELECT 1 FROM agent_metadata a WHERE a.id = e.agent_id AND a.shape = $1)))
                      + (SELECT count(*) FROM claim_refusals, hour
                            WHERE at >= hour.start AND at < hour.start + interval '1 hour'
                              AND ($1::text IS NULL OR shape = $1)),
                        EXISTS (SELECT 1 FROM pool_samples, hour
                            WHERE at >= hour.start AND at < hour.start + interval '1 hour')",
                &[&shape],
            )
            .await?;
        let total: i64 = week.get(0);
        let running: bool = week.get(1);
        Ok(ClaimCounts {
            per_minute,
            last_week_same_hour: running.then_some(total as f64 / 60.0),
        })
    }

    /// The 90th percentile of the time from a creation's start to its first `idle`, over the
    /// last `last` agents that got there (`None` before any did).
    pub async fn time_to_ready_p90(&self, last: i64) -> Result<Option<Duration>> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH ready AS (
                    SELECT a.id, extract(epoch FROM (min(e.at) - a.created_at)) AS secs, min(e.at) AS at
                      FROM agent_metadata a JOIN agent_events e ON e.agent_id = a.id AND e.to_status = 'idle'
                     WHERE NOT a.legacy
                     GROUP BY a.id, a.created_at
                     ORDER BY min(e.at) DESC LIMIT $1)
                 SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY secs)::float8 FROM ready",
                &[&last],
            )
            .await?;
        Ok(seconds(row.get(0)))
    }

    /// Samples the whole pool for the console's chart: one row per minute (the minute's last
    /// tick wins), so a day is at most 1,440 rows however fast the pool ticks.
    pub async fn record_sample(&self, sample: &PoolSample) -> Result<()> {
        self.record_shape_sample("", sample).await
    }

    /// Samples one shape (`""`: the whole pool), as [`Self::record_sample`].
    pub async fn record_shape_sample(&self, shape: &str, sample: &PoolSample) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO pool_samples (shape, at, idle, claimed, warm, target, reason) \
                 VALUES ($6, date_trunc('minute', now()), $1, $2, $3, $4, $5) \
                 ON CONFLICT (shape, at) DO UPDATE SET idle = EXCLUDED.idle, claimed = EXCLUDED.claimed, \
                 warm = EXCLUDED.warm, target = EXCLUDED.target, reason = EXCLUDED.reason",
                &[
                    &sample.idle,
                    &sample.claimed,
                    &sample.warm,
                    &sample.target,
                    &sample.reason,
                    &shape,
                ],
            )
            .await?;
        Ok(())
    }

    /// The newest sample, when it is newer than `since`.
    pub async fn latest_sample(&self, since: DateTime<Utc>) -> Result<Option<(DateTime<Utc>, PoolSample)>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT at, idle, claimed, warm, target, reason FROM pool_samples WHERE at >= $1 \
                 AND shape = '' ORDER BY at DESC LIMIT 1",
                &[&since],
            )
            .await?;
        Ok(row.as_ref().map(sample))
    }

    /// The newest sample of each shape (`""`: the whole pool) newer than `since`, by shape.
    pub async fn latest_samples_by_shape(
        &self,
        since: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, PoolSample>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT ON (shape) at, idle, claimed, warm, target, reason, shape FROM pool_samples \
                 WHERE at >= $1 ORDER BY shape, at DESC",
                &[&since],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(6), sample(r).1))
            .collect())
    }

    /// The whole pool's samples since `since`, oldest first.
    pub async fn samples_since(&self, since: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, PoolSample)>> {
        self.shape_samples_since("", since).await
    }

    /// One shape's samples (`""`: the whole pool's) since `since`, oldest first.
    pub async fn shape_samples_since(
        &self,
        shape: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, PoolSample)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT at, idle, claimed, warm, target, reason FROM pool_samples WHERE at >= $1 AND shape = $2 \
                 ORDER BY at",
                &[&since, &shape],
            )
            .await?;
        Ok(rows.iter().map(sample).collect())
    }

    /// Claims served and refused per hour since `since` (hour start, served, refused).
    pub async fn claims_per_hour(&self, since: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, i64, i64)>> {
        self.shape_claims_per_hour(None, since).await
    }

    /// [`Self::claims_per_hour`] of one shape (`None`: every shape): a claim served counts
    /// for the shape of the agent it took, a refusal for the shape it asked for.
    pub async fn shape_claims_per_hour(
        &self,
        shape: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64, i64)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "WITH served AS (SELECT date_trunc('hour', e.at) AS hour, count(*) AS n
                                   FROM agent_events e LEFT JOIN agent_metadata a ON a.id = e.agent_id
                                  WHERE e.to_status = 'claiming' AND e.at >= $1
                                    AND ($2::text IS NULL OR a.shape = $2) GROUP BY 1),
                      refused AS (SELECT date_trunc('hour', at) AS hour, count(*) AS n FROM claim_refusals
                                  WHERE at >= $1 AND ($2::text IS NULL OR shape = $2) GROUP BY 1)
                 SELECT coalesce(s.hour, r.hour), coalesce(s.n, 0), coalesce(r.n, 0)
                   FROM served s FULL JOIN refused r ON s.hour = r.hour ORDER BY 1",
                &[&since, &shape],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

/// What the pool looked like at one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSample {
    /// Idle agents.
    pub idle: i32,
    /// Claimed agents (claiming and crashed included).
    pub claimed: i32,
    /// Warm agents (idle, starting, creating).
    pub warm: i32,
    /// The sizing policy's target.
    pub target: i32,
    /// Its reason, in words.
    pub reason: String,
}

fn sample(r: &tokio_postgres::Row) -> (DateTime<Utc>, PoolSample) {
    (
        r.get(0),
        PoolSample {
            idle: r.get(1),
            claimed: r.get(2),
            warm: r.get(3),
            target: r.get(4),
            reason: r.get(5),
        },
    )
}

/// A percentile in seconds, as PostgreSQL computed it (`None` without any sample).
pub(crate) fn seconds(secs: Option<f64>) -> Option<Duration> {
    secs.filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}
