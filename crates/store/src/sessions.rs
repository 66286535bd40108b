//! Operator console sessions.

use std::time::Duration;

use crate::{Result, Store};

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The token that must accompany every form post of this session.
    pub csrf_token: String,
}

impl Store {
    /// Records a new session lasting `ttl` (and forgets expired ones).
    pub async fn create_session(&self, token: &str, csrf_token: &str, ttl: Duration) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM console_sessions WHERE expires_at < now()", &[])
            .await?;
        client
            .execute(
                "INSERT INTO console_sessions (token, csrf_token, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
                &[&token, &csrf_token, &ttl.as_secs_f64()],
            )
            .await?;
        Ok(())
    }

    /// The session for a token, if it exists and has not expired.
    pub async fn session(&self, token: &str) -> Result<Option<ConsoleSession>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT csrf_token FROM console_sessions WHERE token = $1 AND expires_at > now()",
                &[&token],
            )
            .await?;
        Ok(row.map(|r| ConsoleSession { csrf_token: r.get(0) }))
    }

    /// Ends a session.
    pub async fn delete_session(&self, token: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM console_sessions WHERE token = $1", &[&token])
            .await?;
        Ok(())
    }
}
