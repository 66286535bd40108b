//! `cargo xtask migrate status|run|adopt-node`: the schema of the database at `DATABASE_URL`
//! (in `DATABASE_SCHEMA`, `public` when unset), and the take-over of a Node pool's agents.

use std::time::Duration;

use pool_store::{
    AdoptOptions, MigrateOptions, MigrationStatus, PoolSettings, SecretsKey, SecretsKeys, Store, StoreConfig,
};

const USAGE: &str = "usage: cargo xtask migrate status|run [--legacy-project-id ID] | adopt-node [--dry-run] [--legacy-project-id ID]";

pub fn main(args: &[String]) -> Result<(), String> {
    let mut legacy_project_id = std::env::var("RAILWAY_PROJECT_ID").ok().filter(|s| !s.is_empty());
    let mut dry_run = false;
    let command = args.first().map(String::as_str);
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--legacy-project-id" => {
                legacy_project_id = Some(rest.next().ok_or("--legacy-project-id needs a value")?.clone())
            }
            "--dry-run" if command == Some("adopt-node") => dry_run = true,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let config = StoreConfig {
        schema: variable("DATABASE_SCHEMA").unwrap_or_else(|| pool_store::DEFAULT_SCHEMA.into()),
        secrets: secrets_keys()?,
        ..StoreConfig::new(crate::database_url())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = Store::connect(config).await.map_err(|e| e.to_string())?;
        let statuses = match command {
            Some("status") => store.migration_status().await,
            Some("run") => store.migrate(&MigrateOptions { legacy_project_id }).await,
            Some("adopt-node") => {
                let report = store
                    .adopt_node(&AdoptOptions {
                        dry_run,
                        legacy_project_id,
                        settings_seed: settings_seed()?,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                print!("{report}");
                return Ok(());
            }
            _ => return Err(USAGE.into()),
        }
        .map_err(|e| e.to_string())?;
        print_statuses(&statuses);
        Ok(())
    })
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

/// The keys the adopted agents' gateway tokens are sealed with, as the service reads them
/// (`POOL_SECRETS_KEY`, `POOL_SECRETS_KEY_PREVIOUS`; `POOL_ALLOW_PLAINTEXT_SECRETS=true` outside
/// staging and production). Without any, the store refuses to write a token and the adoption
/// changes nothing.
fn secrets_keys() -> Result<SecretsKeys, String> {
    let key = |name: &str| -> Result<Option<SecretsKey>, String> {
        variable(name)
            .map(|text| SecretsKey::parse(&text).map_err(|e| format!("{name} {e}")))
            .transpose()
    };
    Ok(
        match (key("POOL_SECRETS_KEY")?, key("POOL_SECRETS_KEY_PREVIOUS")?) {
            (Some(current), previous) => SecretsKeys::new(current, previous),
            (None, _) if variable("POOL_ALLOW_PLAINTEXT_SECRETS").as_deref() == Some("true") => {
                SecretsKeys::plaintext()
            }
            (None, _) => SecretsKeys::default(),
        },
    )
}

/// The settings the service would seed on its first start (`POOL_MAX_TOTAL`, …, with the
/// service's defaults), written only when the database has none; `minIdle` comes from Node's
/// `target_idle`.
fn settings_seed() -> Result<PoolSettings, String> {
    fn number<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
        variable(name)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("{name}: not a whole number"))
            })
            .transpose()
    }
    let settings = PoolSettings {
        min_idle: number("POOL_MIN_IDLE")?.unwrap_or(1),
        max_total: number("POOL_MAX_TOTAL")?,
        paused: false,
        idle_schedule: variable("POOL_IDLE_SCHEDULE"),
        max_idle_age: number::<u64>("POOL_MAX_IDLE_AGE_MS")?.map(Duration::from_millis),
        create_failure_limit: number("POOL_CREATE_FAILURE_LIMIT")?.unwrap_or(5),
        parked_min: 0,
        parked_max: number("POOL_PARKED_MAX")?.unwrap_or(pool_sizing::DEFAULT_PARKED_MAX),
        park_after: Duration::from_millis(
            number("POOL_PARK_AFTER_MS")?.unwrap_or(pool_sizing::DEFAULT_PARK_AFTER.as_millis() as u64),
        ),
    };
    let settings = PoolSettings {
        parked_min: number("POOL_PARKED_MIN")?
            .unwrap_or(pool_sizing::DEFAULT_PARKED_MIN.min(settings.parked_max)),
        ..settings
    };
    pool_provisioner::validate_settings(&settings).map_err(|e| e.to_string())?;
    Ok(settings)
}

fn print_statuses(statuses: &[MigrationStatus]) {
    println!("{:<8} {:<32} applied", "version", "name");
    for s in statuses {
        let applied = s
            .applied_on
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "pending".into());
        println!("V{:<7} {:<32} {applied}", s.version, s.name);
    }
}
