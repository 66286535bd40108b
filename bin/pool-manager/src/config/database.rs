//! The database: where it is (`DATABASE_URL`), the schema the pool's tables live in
//! (`DATABASE_SCHEMA`), whether the service migrates it at start-up (`POOL_RUN_MIGRATIONS`),
//! and whether it takes over a Node pool's agents found in it (`POOL_ADOPT_NODE_SCHEMA`).

use super::reader::Reader;

/// The database's variables, before the secrets keys join them in the store's config.
pub(super) struct Database {
    /// `DATABASE_URL`.
    pub url: String,
    /// `DATABASE_SCHEMA` (`public` when unset).
    pub schema: String,
    /// `POOL_RUN_MIGRATIONS`.
    pub run_migrations: bool,
    /// `POOL_ADOPT_NODE_SCHEMA`.
    pub adopt_node: bool,
}

pub(super) fn read(r: &mut Reader<'_>) -> Database {
    let url = r.required("DATABASE_URL", "postgres://user:password@host:port/database");
    let schema = r
        .optional("DATABASE_SCHEMA")
        .unwrap_or_else(|| pool_store::DEFAULT_SCHEMA.to_string());
    let run_migrations = r.flag("POOL_RUN_MIGRATIONS", true);
    let adopt_node = r.flag("POOL_ADOPT_NODE_SCHEMA", false);
    let checked = pool_store::StoreConfig {
        schema: schema.clone(),
        ..pool_store::StoreConfig::new(url.clone())
    };
    match checked.checked_schema() {
        Err(e) => r.problems.push(e.to_string()),
        // The Node pool's tables are in `public`, and its `pool_settings` collides with ours.
        Ok(s) if adopt_node && s == pool_store::adopt_node::NODE_SCHEMA => r.problems.push(
            "POOL_ADOPT_NODE_SCHEMA=true needs DATABASE_SCHEMA: a schema of this pool's own (for example agent_pool), since the Node pool's tables are in public".into(),
        ),
        Ok(_) => {}
    }
    Database {
        url,
        schema,
        run_migrations,
        adopt_node,
    }
}
