//! The database: where it is (`DATABASE_URL`) and whether the service migrates it at start-up
//! (`POOL_RUN_MIGRATIONS`).

use super::reader::Reader;

/// The database's variables, before the secrets keys join them in the store's config.
pub(super) struct Database {
    /// `DATABASE_URL`.
    pub url: String,
    /// `POOL_RUN_MIGRATIONS`.
    pub run_migrations: bool,
}

pub(super) fn read(r: &mut Reader<'_>) -> Database {
    let url = r.required("DATABASE_URL", "postgres://user:password@host:port/database");
    let run_migrations = r.flag("POOL_RUN_MIGRATIONS", true);
    Database { url, run_migrations }
}
