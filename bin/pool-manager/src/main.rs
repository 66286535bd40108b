//! `pool-manager`: keeps a warm pool of AI agents on Railway and hands one out per claim.
//!
//! This binary is the only place that knows every layer: it reads the environment once
//! (`config`), opens the store, runs migrations, and starts the service.

mod config;

use std::process::ExitCode;

use pool_store::Store;

use crate::config::{Config, Env};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pool-manager: {}", message.trim_end());
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let config = Config::from_env(&Env::from_process()).map_err(|e| e.to_string())?;
    let store = Store::connect(config.store.clone())
        .await
        .map_err(|e| e.to_string())?;
    if config.run_migrations {
        store.migrate(&config.migrate).await.map_err(|e| e.to_string())?;
    }
    tracing::info!("database ready; the service itself is not built yet");
    Ok(())
}
