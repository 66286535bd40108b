//! `cargo xtask migrate status|run`: the schema of the database at `DATABASE_URL`.

use pool_store::{MigrateOptions, MigrationStatus, Store, StoreConfig};

pub fn main(args: &[String]) -> Result<(), String> {
    let mut legacy_project_id = std::env::var("RAILWAY_PROJECT_ID").ok().filter(|s| !s.is_empty());
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--legacy-project-id" => {
                legacy_project_id = Some(rest.next().ok_or("--legacy-project-id needs a value")?.clone())
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = Store::connect(StoreConfig::new(crate::database_url()))
            .await
            .map_err(|e| e.to_string())?;
        let statuses = match args.first().map(String::as_str) {
            Some("status") => store.migration_status().await,
            Some("run") => store.migrate(&MigrateOptions { legacy_project_id }).await,
            _ => return Err("usage: cargo xtask migrate status|run [--legacy-project-id ID]".into()),
        }
        .map_err(|e| e.to_string())?;
        print_statuses(&statuses);
        Ok(())
    })
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
