//! Schema migrations: refinery, embedded from the workspace's `migrations/`, run under an
//! advisory lock so replicas starting together cannot race.

use chrono::{DateTime, Utc};

use crate::{Result, Store, StoreConfig, StoreError};

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// Advisory lock key held while migrating ("pool-mig" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x706f_6f6c_2d6d_6967;

/// Options for a migration run.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// The pool manager's own Railway project id (`RAILWAY_PROJECT_ID`): agents that existed
    /// before one-project-per-agent lived there, and the seed migration backfills it into
    /// their rows. Required only when such rows exist.
    pub legacy_project_id: Option<String>,
}

/// One migration and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Version number (`V{n}`).
    pub version: i64,
    /// Name after the version.
    pub name: String,
    /// When it was applied; `None` while pending.
    pub applied_on: Option<DateTime<Utc>>,
}

/// The database's schema compared with this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// Every migration this binary knows is applied.
    Current,
    /// Some migrations are pending.
    Pending(Vec<i64>),
    /// The database has migrations this binary does not know.
    TooNew {
        /// Highest version in the database.
        database: i64,
        /// Highest version this binary knows.
        binary: i64,
    },
}

fn known_versions() -> Vec<(i64, String)> {
    let mut v: Vec<(i64, String)> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_string()))
        .collect();
    v.sort();
    v
}

async fn applied_versions(client: &tokio_postgres::Client) -> Result<Vec<(i64, DateTime<Utc>)>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    // refinery stores `applied_on` as RFC 3339 text.
    let rows = client
        .query(
            "SELECT version::bigint, applied_on FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let text: String = r.get(1);
            let at = DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    StoreError::Corrupt(format!("refinery_schema_history.applied_on {text:?}: {e}"))
                })?;
            Ok((r.get::<_, i64>(0), at))
        })
        .collect()
}

/// Runs every pending migration. Holds a session advisory lock on a dedicated connection for
/// the whole run: a second replica waits, then finds nothing to do. All pending migrations run
/// in one transaction, so a failure changes nothing.
pub async fn run_migrations(config: &StoreConfig, options: &MigrateOptions) -> Result<Vec<MigrationStatus>> {
    let (mut client, connection) = config.connect_dedicated().await?;
    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let result = migrate_locked(&mut client, config.checked_schema()?, options).await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        result
    }
    .await;
    drop(client);
    let _ = connection.await;
    result
}

async fn migrate_locked(
    client: &mut tokio_postgres::Client,
    schema: &str,
    options: &MigrateOptions,
) -> Result<Vec<MigrationStatus>> {
    // `schema` is a checked identifier (`StoreConfig::checked_schema`). Every connection of
    // this store searches only it, so refinery's history and every table land there.
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await?;
    let state = state_of(client).await?;
    if let MigrationState::TooNew { database, binary } = state {
        return Err(StoreError::SchemaTooNew { database, binary });
    }
    if matches!(state, MigrationState::Pending(_)) {
        crate::adopt_node::refuse_node_schema(client, schema).await?;
    }
    // The seed migration reads the legacy project id from this session setting.
    let legacy = options.legacy_project_id.clone().unwrap_or_default();
    client
        .execute(
            "SELECT set_config('pool.legacy_project_id', $1, false)",
            &[&legacy],
        )
        .await?;
    let report = embedded::migrations::runner()
        .set_grouped(true)
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(client)
        .await
        .map_err(|e| StoreError::Migration(migration_message(&e)))?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "applied migration");
    }
    status_of(client).await
}

/// The database error's own message (e.g. the seed migration's "set RAILWAY_PROJECT_ID"),
/// rather than refinery's wrapper text.
fn migration_message(e: &refinery::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(pg) = s.downcast_ref::<tokio_postgres::Error>()
            && let Some(db) = pg.as_db_error()
        {
            return db.message().to_string();
        }
        source = s.source();
    }
    e.to_string()
}

async fn state_of(client: &tokio_postgres::Client) -> Result<MigrationState> {
    let known = known_versions();
    let binary = known.last().map(|(v, _)| *v).unwrap_or(0);
    let applied = applied_versions(client).await?;
    let database = applied.last().map(|(v, _)| *v).unwrap_or(0);
    if database > binary {
        return Ok(MigrationState::TooNew { database, binary });
    }
    let pending: Vec<i64> = known
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| !applied.iter().any(|(a, _)| a == v))
        .collect();
    Ok(if pending.is_empty() {
        MigrationState::Current
    } else {
        MigrationState::Pending(pending)
    })
}

async fn status_of(client: &tokio_postgres::Client) -> Result<Vec<MigrationStatus>> {
    let applied = applied_versions(client).await?;
    Ok(known_versions()
        .into_iter()
        .map(|(version, name)| MigrationStatus {
            version,
            name,
            applied_on: applied.iter().find(|(v, _)| *v == version).map(|(_, at)| *at),
        })
        .collect())
}

impl Store {
    /// Runs pending migrations (see [`run_migrations`]).
    pub async fn migrate(&self, options: &MigrateOptions) -> Result<Vec<MigrationStatus>> {
        run_migrations(&self.config, options).await
    }

    /// Every migration this binary knows, applied or pending.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>> {
        let client = self.client().await?;
        status_of(&client).await
    }

    /// Whether the schema is current (for readiness).
    pub async fn migration_state(&self) -> Result<MigrationState> {
        let client = self.client().await?;
        state_of(&client).await
    }
}
