//! Operator console sessions.
//!
//! Only a hash of a session's token is stored (the console computes it, bound to the admin
//! key): a read of the table signs no one in, and a session whose key has been rotated is
//! simply not found. A session ends at its expiry, after an idle period, or at sign-out.

use std::time::Duration;

use crate::{Result, Store};

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The token that must accompany every form post of this session.
    pub csrf_token: String,
}

impl Store {
    /// Records a new session, by the hash of its token, lasting at most `ttl` (and forgets
    /// expired ones).
    pub async fn create_session(&self, token_hash: &str, csrf_token: &str, ttl: Duration) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM console_sessions WHERE expires_at < now()", &[])
            .await?;
        client
            .execute(
                "INSERT INTO console_sessions (token_hash, csrf_token, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
                &[&token_hash, &csrf_token, &ttl.as_secs_f64()],
            )
            .await?;
        Ok(())
    }

    /// The session with this token hash, if it exists, has not expired and was last used
    /// less than `idle` ago; using it now restarts its idle period.
    pub async fn session(&self, token_hash: &str, idle: Duration) -> Result<Option<ConsoleSession>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE console_sessions SET last_seen_at = now()
                  WHERE token_hash = $1 AND expires_at > now()
                    AND last_seen_at > now() - make_interval(secs => $2)
                 RETURNING csrf_token",
                &[&token_hash, &idle.as_secs_f64()],
            )
            .await?;
        Ok(row.map(|r| ConsoleSession { csrf_token: r.get(0) }))
    }

    /// [`Self::session`] without using it: the idle period goes on (a page's background
    /// refresh is no sign of an operator).
    pub async fn peek_session(&self, token_hash: &str, idle: Duration) -> Result<Option<ConsoleSession>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT csrf_token FROM console_sessions
                  WHERE token_hash = $1 AND expires_at > now()
                    AND last_seen_at > now() - make_interval(secs => $2)",
                &[&token_hash, &idle.as_secs_f64()],
            )
            .await?;
        Ok(row.map(|r| ConsoleSession { csrf_token: r.get(0) }))
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM console_sessions WHERE token_hash = $1",
                &[&token_hash],
            )
            .await?;
        Ok(())
    }
}
