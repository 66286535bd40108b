//! The reconciler's leader lock: a session-level advisory lock on a dedicated connection.
//!
//! `pg_try_advisory_lock` belongs to the session that took it, so the lock lives exactly as
//! long as that one connection. The holder checks the connection before each tick; when the
//! connection is gone, so is the lock (Postgres released it), and the holder must stop acting
//! as leader at once.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Result, StoreConfig};

/// The advisory lock key the reconciler's leader holds ("pool-ldr" in ASCII).
pub const LEADER_LOCK_KEY: i64 = 0x706f_6f6c_2d6c_6472;

/// A held leader lock. Dropping it closes the connection, which releases the lock.
pub struct LeaderLock {
    client: tokio_postgres::Client,
    connection: JoinHandle<()>,
    key: i64,
}

impl std::fmt::Debug for LeaderLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderLock")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl LeaderLock {
    /// Tries to become leader. `Ok(None)`: another session holds the lock.
    pub async fn try_acquire(config: &StoreConfig, key: i64) -> Result<Option<Self>> {
        let (client, connection) = config.connect_dedicated().await?;
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await?;
        if row.get::<_, bool>(0) {
            Ok(Some(Self {
                client,
                connection,
                key,
            }))
        } else {
            connection.abort();
            Ok(None)
        }
    }

    /// True when the lock's connection is alive and answers within `timeout`. False means
    /// leadership is lost: Postgres has released (or will release) the lock.
    pub async fn still_held(&self, timeout: Duration) -> bool {
        if self.client.is_closed() || self.connection.is_finished() {
            return false;
        }
        matches!(
            tokio::time::timeout(timeout, self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }

    /// Gives the lock up now.
    pub async fn release(self) {
        let _ = self
            .client
            .query("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await;
        self.connection.abort();
    }

    /// The backend process id of the lock's connection (tests cut it with
    /// `pg_terminate_backend` to simulate a lost connection).
    pub async fn backend_pid(&self) -> Result<i32> {
        Ok(self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0))
    }
}

impl Drop for LeaderLock {
    fn drop(&mut self) {
        self.connection.abort();
    }
}
