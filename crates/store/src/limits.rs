//! Limits every replica shares, kept in Postgres: hits per key in fixed windows (claim keys,
//! agents' proxy calls) and the console's sign-in limit (failures per client address, and
//! lockouts that double on repeats).
//!
//! A limit kept in one replica's memory lets a client that reaches N replicas try N times as
//! often; these are one count for the whole pool. Each check is one statement (a sign-in
//! failure one short transaction), cheap beside the requests they guard.

use std::time::Duration;

use crate::{Result, Store};

/// What a rate limit says about one more hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Within the limit (counted).
    Allowed,
    /// Over the limit: try again after this long.
    Limited {
        /// Until the window ends.
        retry_after: Duration,
    },
}

/// The console's sign-in limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimit {
    /// Failures from one address within `window` that lock it out.
    pub per_address: u32,
    /// Failures from all addresses within `window` that pause every sign-in.
    pub global: u32,
    /// The window (a lockout's first length too).
    pub window: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
    /// After this long without a lockout, an address's lockouts start short again.
    pub strikes_forgotten: Duration,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn retry_after(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds.max(0.0)).max(Duration::from_secs(1))
}

impl Store {
    /// Counts one hit of `key` in the current window of `window` and says whether it is within
    /// `limit` hits. Windows are aligned to the epoch, the same on every replica.
    pub async fn hit_rate_limit(&self, key: &str, window: Duration, limit: u32) -> Result<RateDecision> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now())::float8 / $2::float8) * $2::float8) AS start)
                 INSERT INTO rate_limit_windows (key, window_start, hits)
                 SELECT $1, w.start, 1 FROM w
                 ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1
                 RETURNING hits, extract(epoch FROM (window_start + make_interval(secs => $2::float8) - now()))::float8",
                &[&key, &secs(window)],
            )
            .await?;
        let hits: i32 = row.get(0);
        if i64::from(hits) <= i64::from(limit) {
            Ok(RateDecision::Allowed)
        } else {
            Ok(RateDecision::Limited {
                retry_after: retry_after(row.get(1)),
            })
        }
    }

    /// `Some(retry after)` when a sign-in from `address` must be refused now, unchecked: the
    /// address is locked out, or every sign-in is paused.
    pub async fn sign_in_refused(&self, address: &str, limit: &SignInLimit) -> Result<Option<Duration>> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT extract(epoch FROM (locked_until - now()))::float8
                           FROM sign_in_lockouts WHERE address = $1 AND locked_until > now()),
                        (SELECT CASE WHEN count(*) >= $2
                                THEN extract(epoch FROM (min(at) + make_interval(secs => $3) - now()))::float8 END
                           FROM (SELECT at FROM sign_in_failures WHERE at > now() - make_interval(secs => $3)
                                  ORDER BY at DESC LIMIT $2) recent)",
                &[&address, &i64::from(limit.global), &secs(limit.window)],
            )
            .await?;
        let locked: Option<f64> = row.get(0);
        let paused: Option<f64> = row.get(1);
        Ok(match (locked, paused) {
            (None, None) => None,
            (a, b) => Some(retry_after(a.unwrap_or(0.0).max(b.unwrap_or(0.0)))),
        })
    }

    /// Counts a failed sign-in from `address`; locks it out when it reached the limit. Returns
    /// the lockout, if one began.
    pub async fn sign_in_failed(&self, address: &str, limit: &SignInLimit) -> Result<Option<Duration>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One address's failures are counted one at a time on every replica.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('sign_in'), hashtext($1))",
            &[&address],
        )
        .await?;
        tx.execute("INSERT INTO sign_in_failures (address) VALUES ($1)", &[&address])
            .await?;
        let failures: i64 = tx
            .query_one(
                "SELECT count(*) FROM sign_in_failures WHERE address = $1 AND at > now() - make_interval(secs => $2)",
                &[&address, &secs(limit.window)],
            )
            .await?
            .get(0);
        let mut lockout = None;
        if failures >= i64::from(limit.per_address) {
            let row = tx
                .query_one(
                    "INSERT INTO sign_in_lockouts AS l (address, locked_until, strikes, last_strike_at)
                     VALUES ($1, now() + make_interval(secs => $2), 1, now())
                     ON CONFLICT (address) DO UPDATE SET
                        strikes = CASE WHEN l.last_strike_at < now() - make_interval(secs => $4) THEN 1
                                       ELSE l.strikes + 1 END,
                        locked_until = now() + make_interval(secs => LEAST($3,
                            $2 * power(2, CASE WHEN l.last_strike_at < now() - make_interval(secs => $4) THEN 0
                                               ELSE LEAST(l.strikes, 16) END))),
                        last_strike_at = now()
                     RETURNING extract(epoch FROM (locked_until - now()))::float8",
                    &[
                        &address,
                        &secs(limit.window),
                        &secs(limit.max_lockout),
                        &secs(limit.strikes_forgotten),
                    ],
                )
                .await?;
            tx.execute("DELETE FROM sign_in_failures WHERE address = $1", &[&address])
                .await?;
            lockout = Some(retry_after(row.get(0)));
        }
        tx.commit().await?;
        Ok(lockout)
    }

    /// A successful sign-in from `address`: its count and lockouts start again.
    pub async fn sign_in_succeeded(&self, address: &str) -> Result<()> {
        let client = self.client().await?;
        for table in ["sign_in_failures", "sign_in_lockouts"] {
            client
                .execute(&format!("DELETE FROM {table} WHERE address = $1"), &[&address])
                .await?;
        }
        Ok(())
    }
}
