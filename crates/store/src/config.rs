//! How to reach the database.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::StoreError;

/// Connection settings. The URL may carry a password, so it never prints.
#[derive(Clone)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database`.
    pub database_url: SecretString,
    /// Connections in the pool.
    pub max_connections: usize,
    /// Time allowed to open one connection.
    pub connect_timeout: Duration,
    /// Time a caller waits for a free pooled connection.
    pub acquire_timeout: Duration,
}

impl StoreConfig {
    /// Settings with defaults suited to one pool-manager replica.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: SecretString::from(database_url.into()),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
        }
    }

    /// The parsed tokio-postgres configuration.
    pub(crate) fn pg_config(&self) -> Result<tokio_postgres::Config, StoreError> {
        let mut config: tokio_postgres::Config = self
            .database_url
            .expose_secret()
            .parse()
            .map_err(|e| StoreError::Config(format!("DATABASE_URL is not a valid Postgres URL: {e}")))?;
        config.connect_timeout(self.connect_timeout);
        config.application_name("pool-manager");
        Ok(config)
    }

    /// Where the database is, without credentials: `host:port/database`.
    pub fn display_target(&self) -> String {
        match self.pg_config() {
            Ok(c) => {
                let host = c
                    .get_hosts()
                    .first()
                    .map(|h| match h {
                        tokio_postgres::config::Host::Tcp(h) => h.clone(),
                        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .unwrap_or_else(|| "localhost".into());
                let port = c.get_ports().first().copied().unwrap_or(5432);
                format!("{host}:{port}/{}", c.get_dbname().unwrap_or(""))
            }
            Err(_) => "<invalid url>".into(),
        }
    }

    /// Opens one dedicated connection outside the pool (migrations, the leader lock).
    pub(crate) async fn connect_dedicated(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), StoreError> {
        let (client, connection) = self
            .pg_config()?
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::from_connect(e, self))?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "dedicated database connection closed");
            }
        });
        Ok((client, task))
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("database", &self.display_target())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}
