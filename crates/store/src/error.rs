//! The store's one error type.

use tokio_postgres::error::SqlState;

use crate::StoreConfig;

/// What went wrong talking to the database, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The settings are unusable (for example a malformed URL).
    #[error("{0}")]
    Config(String),
    /// Nothing answered at the database address, or it stopped answering.
    #[error("database unreachable at {target}: {reason}")]
    Unreachable {
        /// `host:port/database`, without credentials.
        target: String,
        /// The underlying cause, in one line.
        reason: String,
    },
    /// TLS to the database failed: the server refused it (`sslmode=require` or stricter
    /// against a server with `ssl = off`), or its certificate did not pass the checks the
    /// `sslmode` asks for. Retrying does not help; the URL or the certificate must change.
    #[error("database refused TLS at {target}: {reason}")]
    TlsRefused {
        /// `host:port/database`, without credentials.
        target: String,
        /// What failed, in one line (for a certificate, rustls' name for the problem).
        reason: String,
    },
    /// The database refused the credentials.
    #[error("database refused the login to {target}: {reason}")]
    AuthenticationFailed {
        /// `host:port/database`, without credentials.
        target: String,
        /// The server's message.
        reason: String,
    },
    /// The database was migrated by a newer binary; running this one could corrupt it.
    #[error(
        "database schema is at version {database}, newer than this binary knows (up to {binary}); deploy a newer pool-manager"
    )]
    SchemaTooNew {
        /// Highest migration applied in the database.
        database: i64,
        /// Highest migration this binary embeds.
        binary: i64,
    },
    /// A migration failed; nothing was changed.
    #[error("migration failed, nothing was changed: {0}")]
    Migration(String),
    /// No free connection within the acquire timeout.
    #[error("database pool exhausted: {0}")]
    PoolExhausted(String),
    /// A query failed.
    #[error("database query failed: {message}")]
    Query {
        /// The server's message (tokio-postgres' own `Display` says only "db error").
        message: String,
        /// The query error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Taking over a Node pool's database was refused before anything changed: the message
    /// names every row (or setting) that stopped it.
    #[error("Node pool adoption refused: {0}")]
    AdoptionRefused(String),
    /// This replica was started with another shard count (`POOL_SHARDS`) than the fleet's
    /// replicas (the longest-lived one's): it would split the agents differently, so it takes
    /// no shards until they agree.
    #[error(
        "shard counts differ between replicas: this replica has {ours} shards, the running replicas have {theirs}; it takes no shards until every replica has the same count"
    )]
    ShardCountMismatch {
        /// This replica's count.
        ours: u32,
        /// The fleet's count.
        theirs: u32,
    },
    /// A stored value could not be understood (for example an unknown status).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A stored secret could not be read: tampered with (or copied from another row or
    /// column), or sealed under a key this process does not hold. Names whose secret and
    /// which column, never the value.
    #[error(transparent)]
    Secret(#[from] crate::SecretError),
}

impl StoreError {
    pub(crate) fn from_connect(e: tokio_postgres::Error, config: &StoreConfig) -> Self {
        let target = config.display_target();
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                return Self::AuthenticationFailed {
                    target,
                    reason: db.message().to_string(),
                };
            }
            return Self::Unreachable {
                target,
                reason: db.message().to_string(),
            };
        }
        if let Some(reason) = tls_failure(&e) {
            return Self::TlsRefused { target, reason };
        }
        Self::Unreachable {
            target,
            reason: one_line(&e),
        }
    }

    pub(crate) fn from_pool(e: deadpool_postgres::PoolError, config: &StoreConfig) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Backend(e) => Self::from_connect(e, config),
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                Self::PoolExhausted("no free connection within the acquire timeout".into())
            }
            other => Self::Unreachable {
                target: config.display_target(),
                reason: other.to_string(),
            },
        }
    }

    /// True when a stored secret is sealed under a key this process does not hold: not the
    /// value's fault, and a replica (or a configuration) with that key reads it.
    pub fn is_missing_secrets_key(&self) -> bool {
        matches!(self, Self::Secret(e) if !e.is_tampered())
    }

    /// True when the database could not be reached at all (as opposed to refusing a query).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::PoolExhausted(_))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() || (e.as_db_error().is_none() && e.code().is_none() && is_io(&e)) {
            return Self::Unreachable {
                target: "database".into(),
                reason: one_line(&e),
            };
        }
        let message = match e.as_db_error() {
            Some(db) => match db.constraint() {
                Some(c) => format!("{} (constraint {c})", db.message()),
                None => db.message().to_string(),
            },
            None => one_line(&e),
        };
        Self::Query { message, source: e }
    }
}

/// The reason, when a connection failed in TLS. A certificate problem arrives as the rustls
/// error inside the handshake's `io::Error`; the server refusing TLS is a message-only error,
/// recognisable only by tokio-postgres' fixed wording for its TLS error kind (it exposes no
/// kind), so both are checked.
fn tls_failure(e: &tokio_postgres::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(rustls) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(rustls.to_string());
        }
        source = s.source();
    }
    let text = e.to_string();
    let rest = text.strip_prefix("error performing TLS handshake")?;
    let cause = std::error::Error::source(e).map(one_line);
    Some(cause.unwrap_or_else(|| rest.trim_start_matches(": ").to_string()))
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The error and its causes on one line (`a: b: c`), for one-line start-up failures.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.replace('\n', " ")
}
