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
    let run = async |client: &mut tokio_postgres::Client| {
        embedded::migrations::runner()
            .set_grouped(true)
            .set_abort_divergent(true)
            .set_abort_missing(true)
            .run_async(client)
            .await
    };
    let report = match run(client).await {
        // The run was one transaction, so it changed nothing; run again, it finds the role.
        Err(e) if refinery_role_race(&e) => {
            tracing::info!(
                "another database of this server created a role at the same moment; migrating again"
            );
            run(client).await
        }
        other => other,
    }
    .map_err(|e| StoreError::Migration(migration_message(&e)))?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "applied migration");
    }
    status_of(client).await
}

/// Roles belong to the server, advisory locks to one database: two databases of one server
/// migrating at the same moment (a test suite's on a fresh server, two pools sharing one) can
/// both find V12's role `pool_pruner` missing and both create it. The second fails with a
/// unique violation on `pg_authid`; nothing else is this error.
fn refinery_role_race(e: &refinery::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(pg) = s.downcast_ref::<tokio_postgres::Error>() {
            return role_race(pg);
        }
        source = s.source();
    }
    false
}

fn role_race(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && (db.constraint() == Some("pg_authid_rolname_index")
                || db.message().contains("pg_authid_rolname_index"))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A real race on a role: one session's `CREATE ROLE` waits on another's uncommitted one,
    /// then fails as a migration racing another database's does; a role that simply exists
    /// already is another error.
    #[tokio::test]
    async fn a_role_created_meanwhile_by_another_session_is_told_apart() {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let config = StoreConfig::new(&url);
        let (first, _first_task) = config.connect_dedicated().await.unwrap();
        let (second, _second_task) = config.connect_dedicated().await.unwrap();
        let (watcher, _watcher_task) = config.connect_dedicated().await.unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let role = format!("pool_test_role_race_{}_{nanos}", std::process::id());
        let create = format!("CREATE ROLE {role} NOLOGIN");
        first.batch_execute(&format!("BEGIN; {create}")).await.unwrap();
        let second_pid: i32 = second
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let racing = tokio::spawn({
            let create = create.clone();
            async move {
                let result = second.batch_execute(&create).await;
                (second, result)
            }
        });
        // Until the second session waits on the first one's row lock.
        loop {
            let waiting: Option<String> = watcher
                .query_one(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                    &[&second_pid],
                )
                .await
                .unwrap()
                .get(0);
            if waiting.as_deref() == Some("Lock") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        first.batch_execute("COMMIT").await.unwrap();
        let (second, raced) = racing.await.unwrap();
        let raced = raced.unwrap_err();
        let exists = second.batch_execute(&create).await.unwrap_err();
        watcher.batch_execute(&format!("DROP ROLE {role}")).await.unwrap();
        assert!(role_race(&raced), "{raced:?}");
        assert!(
            !role_race(&exists),
            "a role that exists is not a race: {exists:?}"
        );
    }
}
