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

/// A connection of its own whose session holds advisory locks (the leader lock, a replica's
/// shards): they live exactly as long as it. Dropping it closes it, which releases them.
pub(crate) struct LockConnection {
    pub(crate) client: tokio_postgres::Client,
    connection: JoinHandle<()>,
    /// A check failed: the locks are taken as lost, whatever the connection does next.
    lost: std::sync::atomic::AtomicBool,
}

impl LockConnection {
    pub(crate) async fn open(config: &StoreConfig) -> Result<Self> {
        let (client, connection) = config.connect_dedicated().await?;
        Ok(Self {
            client,
            connection,
            lost: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// True once the connection is gone, and its locks with it.
    pub(crate) fn is_gone(&self) -> bool {
        self.client.is_closed()
            || self.connection.is_finished()
            || self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// True when the connection is alive and answers within `timeout`.
    pub(crate) async fn answers(&self, timeout: Duration) -> bool {
        let answered = !self.is_gone()
            && matches!(
                tokio::time::timeout(timeout, self.client.simple_query("SELECT 1")).await,
                Ok(Ok(_))
            );
        if !answered {
            self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        answered
    }

    /// Closes the connection now.
    pub(crate) fn close(&self) {
        self.connection.abort();
    }

    pub(crate) async fn backend_pid(&self) -> Result<i32> {
        Ok(self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0))
    }
}

impl Drop for LockConnection {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A held leader lock. Dropping it closes the connection, which releases the lock.
pub struct LeaderLock {
    lock: LockConnection,
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
        Self::try_on(LockConnection::open(config).await?, key).await
    }

    /// Tries to become leader as replica `replica`: the lock's connection is named
    /// `pool-leader <replica>`, so [`crate::Store::replicas`] says which replica leads.
    pub async fn try_acquire_for(config: &StoreConfig, key: i64, replica: &str) -> Result<Option<Self>> {
        let lock = LockConnection::open(config).await?;
        lock.client
            .execute(
                "SELECT set_config('application_name', $1, false)",
                &[&format!("pool-leader {replica}")],
            )
            .await?;
        Self::try_on(lock, key).await
    }

    async fn try_on(lock: LockConnection, key: i64) -> Result<Option<Self>> {
        let row = lock
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await?;
        Ok(row.get::<_, bool>(0).then_some(Self { lock, key }))
    }

    /// True when the lock's connection is alive and answers within `timeout`. False means
    /// leadership is lost: Postgres has released (or will release) the lock.
    pub async fn still_held(&self, timeout: Duration) -> bool {
        self.lock.answers(timeout).await
    }

    /// Gives the lock up now.
    pub async fn release(self) {
        let _ = self
            .lock
            .client
            .query("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await;
        self.lock.close();
    }

    /// The backend process id of the lock's connection (tests cut it with
    /// `pg_terminate_backend` to simulate a lost connection).
    pub async fn backend_pid(&self) -> Result<i32> {
        self.lock.backend_pid().await
    }
}
