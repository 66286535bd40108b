//! The one place that reads the environment: every setting, validated, into typed configs.
//!
//! All problems are collected and reported together, each naming its variable, so an operator
//! fixes a deployment in one round.

use std::collections::BTreeMap;

use pool_store::{MigrateOptions, StoreConfig};

/// Everything the service needs, parsed.
#[derive(Debug)]
pub struct Config {
    /// The database.
    pub store: StoreConfig,
    /// Run migrations at start-up (`POOL_RUN_MIGRATIONS`).
    pub run_migrations: bool,
    /// Options for the migration run.
    pub migrate: MigrateOptions,
}

/// The problems found, one line per variable.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// A snapshot of the environment, so parsing is a pure function (and testable).
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

impl Config {
    /// Parses and validates every setting.
    pub fn from_env(env: &Env) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let database_url = match env.get("DATABASE_URL") {
            Some(url) => url.to_string(),
            None => {
                errors.push(
                    "DATABASE_URL is required (postgres://user:password@host:port/database)".to_string(),
                );
                String::new()
            }
        };
        let run_migrations = match env.get("POOL_RUN_MIGRATIONS") {
            None => true,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    errors.push(format!("POOL_RUN_MIGRATIONS must be true or false, got {v:?}"));
                    true
                }
            },
        };
        let migrate = MigrateOptions {
            legacy_project_id: env.get("RAILWAY_PROJECT_ID").map(str::to_string),
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Self {
            store: StoreConfig::new(database_url),
            run_migrations,
            migrate,
        })
    }
}
