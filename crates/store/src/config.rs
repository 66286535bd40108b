//! How to reach the database: the URL, pool sizes and timeouts, and the TLS mode the URL asks
//! for (`sslmode`, see [`SslMode`]).
//!
//! tokio-postgres' own URL parser knows only `sslmode=disable|prefer|require` and refuses
//! parameters it does not know, so `sslmode` and `sslrootcert` are taken out of the URL's query
//! here, before it sees the rest. They are read from the URL form (`postgres://…?sslmode=…`)
//! only; a key/value connection string (`host=… sslmode=require`) keeps tokio-postgres' three
//! modes and its own error for anything else.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::StoreError;
use crate::secrets::SecretsKeys;
use crate::tls::{PostgresTls, TlsSettings};

/// How a connection uses TLS: libpq's `sslmode`, read from `DATABASE_URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// Accepted for libpq compatibility and treated as `prefer`: libpq tries plain first and
    /// TLS second, tokio-postgres can only try TLS first; either way the certificate is not
    /// checked and plain is accepted.
    Allow,
    /// TLS when the server offers it, plain when the server refuses TLS; the certificate is
    /// not checked. libpq's default, and the default here when the URL names no mode.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked, unless `sslrootcert` is given, in
    /// which case it behaves as `verify-ca` (as libpq does).
    Require,
    /// TLS, with the chain checked against `sslrootcert` (required); the host name is not.
    VerifyCa,
    /// TLS, with the chain checked against the webpki roots plus `sslrootcert`, and the host
    /// name checked against the certificate.
    VerifyFull,
}

impl SslMode {
    /// Parses an `sslmode` value. Unknown values are a configuration error naming `sslmode`.
    pub fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(StoreError::Config(format!(
                    "DATABASE_URL: sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }

    /// The value as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// tokio-postgres' mode: whether TLS is attempted and whether plain is accepted. What a
    /// handshake accepts is the connector's business (`tls.rs`).
    fn wire(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Wire;
        match self {
            Self::Disable => Wire::Disable,
            Self::Allow | Self::Prefer => Wire::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Wire::Require,
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection settings. The URL may carry a password, so it never prints.
#[derive(Clone)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database`, optionally with `?sslmode=…` (see
    /// [`SslMode`]) and `sslrootcert=PATH` (a PEM file of certificates to trust).
    pub database_url: SecretString,
    /// Connections in the pool.
    pub max_connections: usize,
    /// Time allowed to open one connection.
    pub connect_timeout: Duration,
    /// Time a caller waits for a free pooled connection.
    pub acquire_timeout: Duration,
    /// The keys agents' secrets are sealed and opened with (see [`SecretsKeys`]). The default
    /// holds none and refuses to write a secret.
    pub secrets: SecretsKeys,
    /// The schema the pool's tables live in (`DATABASE_SCHEMA`, `public` by default). Every
    /// connection searches only this schema. A database the Node pool wrote keeps its own
    /// tables in `public`, and its `pool_settings` has the name of ours (migration V6), so the
    /// pool's tables go in a schema of their own there (see [`crate::adopt_node`]).
    pub schema: String,
    /// The shape (runtime) the calls that name none act on: [`Store::settings`],
    /// [`Store::brake`], the Node adoption's `target_idle` (`POOL_DEFAULT_RUNTIME`, by default
    /// the first shape configured; [`DEFAULT_SHAPE`] when the pool has one).
    ///
    /// [`Store::settings`]: crate::Store::settings
    /// [`Store::brake`]: crate::Store::brake
    pub default_shape: String,
}

/// The shape of every row written before shapes existed (migration V16).
pub const DEFAULT_SHAPE: &str = "openclaw";

/// The schema the pool's tables live in unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "public";

impl StoreConfig {
    /// Settings with defaults suited to one pool-manager replica.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: SecretString::from(database_url.into()),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            secrets: SecretsKeys::default(),
            schema: DEFAULT_SCHEMA.to_string(),
            default_shape: DEFAULT_SHAPE.to_string(),
        }
    }

    /// The schema checked: a plain lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63
    /// bytes), so it can be written into SQL and `search_path` without quoting.
    pub fn checked_schema(&self) -> Result<&str, StoreError> {
        let s = self.schema.as_str();
        let valid = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !s.starts_with("pg_");
        if valid {
            Ok(s)
        } else {
            Err(StoreError::Config(format!(
                "DATABASE_SCHEMA {:?} is not a schema name: lowercase letters, digits and '_', not starting with a digit or pg_, at most 63 characters",
                s.chars().take(70).collect::<String>()
            )))
        }
    }

    /// The TLS mode the URL asks for (`prefer` when it names none).
    pub fn ssl_mode(&self) -> Result<SslMode, StoreError> {
        Ok(self.parse()?.1.mode)
    }

    /// The parsed tokio-postgres configuration, with its TLS mode set from `sslmode`.
    pub(crate) fn pg_config(&self) -> Result<tokio_postgres::Config, StoreError> {
        Ok(self.parse()?.0)
    }

    /// The TLS connector every connection of this store goes through (pool, migrations,
    /// leader lock), built for the URL's `sslmode` and `sslrootcert`.
    pub(crate) fn tls_connector(&self) -> Result<PostgresTls, StoreError> {
        self.parse()?.1.connector()
    }

    fn parse(&self) -> Result<(tokio_postgres::Config, TlsSettings), StoreError> {
        let url = TlsParams::take(self.database_url.expose_secret())?;
        let mut config = parse_pg(&url.rest)?;
        let mode = match url.sslmode.as_deref() {
            Some(value) => SslMode::parse(value)?,
            // Not in a URL's query: a key/value string's own sslmode, or the default (prefer).
            None => match config.get_ssl_mode() {
                tokio_postgres::config::SslMode::Disable => SslMode::Disable,
                tokio_postgres::config::SslMode::Prefer => SslMode::Prefer,
                tokio_postgres::config::SslMode::Require => SslMode::Require,
                other => {
                    return Err(StoreError::Config(format!(
                        "DATABASE_URL: sslmode {other:?} is not supported by this store"
                    )));
                }
            },
        };
        config.ssl_mode(mode.wire());
        config.connect_timeout(self.connect_timeout);
        config.application_name("pool-manager");
        let schema = self.checked_schema()?;
        if schema != DEFAULT_SCHEMA {
            // Only this schema (pg_catalog is always searched first): a name the pool does
            // not create can never resolve to a table of another schema (the Node pool's).
            config.options(format!("-c search_path={schema}"));
        }
        Ok((
            config,
            TlsSettings {
                mode,
                root_cert: url.sslrootcert.map(PathBuf::from),
            },
        ))
    }

    /// Where the database is, without credentials: `host:port/database`.
    pub fn display_target(&self) -> String {
        // Read past a bad sslmode, so the error that names it can still say where it points.
        let target = TlsParams::take(self.database_url.expose_secret()).and_then(|url| parse_pg(&url.rest));
        match target {
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
        let tls = self.tls_connector()?;
        let (client, connection) = self
            .pg_config()?
            .connect(tls)
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
            .field("schema", &self.schema)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

fn parse_pg(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    url.parse()
        .map_err(|e| StoreError::Config(format!("DATABASE_URL is not a valid Postgres URL: {e}")))
}

/// A URL split into the TLS parameters this crate reads itself and the rest, for tokio-postgres.
#[derive(Debug, PartialEq, Eq)]
struct TlsParams {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsParams {
    fn take(url: &str) -> Result<Self, StoreError> {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (base, query) = match url.split_once('?') {
            Some((base, query)) if is_url => (base, query),
            _ => {
                return Ok(Self {
                    rest: url.to_string(),
                    sslmode: None,
                    sslrootcert: None,
                });
            }
        };
        let (mut sslmode, mut sslrootcert, mut kept) = (None, None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // As in libpq, a parameter given twice takes its last value.
            match key {
                "sslmode" => sslmode = Some(decode(key, value)?),
                "sslrootcert" => sslrootcert = Some(decode(key, value)?),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok(Self {
            rest,
            sslmode,
            sslrootcert,
        })
    }
}

fn decode(key: &str, value: &str) -> Result<String, StoreError> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| {
            StoreError::Config(format!(
                "DATABASE_URL: {key} is not valid UTF-8 once percent-decoded"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_and_the_others_kept_in_order() {
        let url = TlsParams::take(
            "postgres://u:pw@db:5432/pool?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            url.rest,
            "postgres://u:pw@db:5432/pool?application_name=x&connect_timeout=3"
        );
        assert_eq!(url.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(url.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            TlsParams::take("postgres://db/pool?sslmode=require")
                .unwrap()
                .rest,
            "postgres://db/pool"
        );
    }

    #[test]
    fn a_url_without_sslmode_prefers_tls_like_libpq() {
        let config = StoreConfig::new("postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(config.ssl_mode().unwrap(), SslMode::Prefer);
        let config = StoreConfig::new("host=127.0.0.1 user=postgres sslmode=disable");
        assert_eq!(config.ssl_mode().unwrap(), SslMode::Disable);
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        let with = |schema: &str| StoreConfig {
            schema: schema.into(),
            ..StoreConfig::new("postgres://postgres@127.0.0.1:5432/postgres")
        };
        for good in ["public", "agent_pool", "_pool2"] {
            assert_eq!(with(good).checked_schema().unwrap(), good);
            assert!(with(good).pg_config().is_ok());
        }
        for bad in [
            "",
            "Agent",
            "2pool",
            "pool;drop",
            "a b",
            "pg_temp",
            &"x".repeat(64),
        ] {
            let err = with(bad).pg_config().unwrap_err().to_string();
            assert!(err.contains("DATABASE_SCHEMA"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn every_libpq_mode_parses_and_prints_back() {
        for text in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert_eq!(SslMode::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn an_unknown_sslmode_is_a_config_error_naming_sslmode_and_still_shows_the_target() {
        let config = StoreConfig::new("postgres://postgres:s3cret@127.0.0.1:5432/postgres?sslmode=bogus");
        let err = config.ssl_mode().unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("sslmode \"bogus\""), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        assert_eq!(config.display_target(), "127.0.0.1:5432/postgres");
    }
}
