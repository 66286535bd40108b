//! `pool-manager`: keeps a warm pool of AI agents on Railway and hands one out per claim.
//!
//! This binary is the only place that knows every layer. Start-up, in order: read and check
//! the configuration → connect to the database → run migrations (under an advisory lock) →
//! adopt the Node pool's agents when asked (`POOL_ADOPT_NODE_SCHEMA`) →
//! check the Railway token can act on the workspace → listen → start the reconciler. On
//! SIGTERM or SIGINT it stops accepting requests, lets in-flight requests (claims included)
//! finish, stops the reconciler and exits 0.

mod config;
mod control;

use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use pool_http::{AppState, ServiceInfo};
use pool_provisioner::Provisioner;
use pool_reconciler::Reconciler;
use pool_store::{MigrationState, Store};
use railway_api::RailwayClient;
use tokio::sync::watch;

use crate::config::{Config, Env};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pool-manager: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pool-manager: {}", message.trim_end());
            ExitCode::FAILURE
        }
    }
}

/// `POOL_ADOPT_NODE_SCHEMA=true`: the Node pool's agents in this database become this pool's,
/// in one transaction (a second start adopts nothing new). A row that cannot be adopted stops
/// the start-up, named, with nothing changed.
async fn adopt_node(store: &Store, config: &Config) -> Result<(), String> {
    let report = store
        .adopt_node(&pool_store::AdoptOptions {
            dry_run: false,
            legacy_project_id: config.migrate.legacy_project_id.clone(),
            settings_seed: config.settings.clone(),
        })
        .await
        .map_err(|e| e.to_string())?;
    for line in report.to_string().lines() {
        tracing::info!(
            adopted = report.adopted.len(),
            already = report.already_adopted.len(),
            "{}",
            line.trim()
        );
    }
    Ok(())
}

async fn run() -> Result<(), String> {
    let config = Config::from_env(&Env::from_process()).map_err(|problems| {
        let mut message = String::from("invalid configuration:\n");
        for p in problems {
            message.push_str(&format!("  - {p}\n"));
        }
        message
    })?;

    let store = Store::connect(config.store.clone())
        .await
        .map_err(|e| e.to_string())?;
    if config.run_migrations {
        store.migrate(&config.migrate).await.map_err(|e| e.to_string())?;
    }
    match store.migration_state().await.map_err(|e| e.to_string())? {
        MigrationState::Current => {}
        MigrationState::Pending(versions) => {
            return Err(format!(
                "the database schema is behind (pending migrations {versions:?}); run them (cargo xtask migrate run) or set POOL_RUN_MIGRATIONS=true"
            ));
        }
        MigrationState::TooNew { database, binary } => {
            return Err(pool_store::StoreError::SchemaTooNew { database, binary }.to_string());
        }
    }
    if config.adopt_node {
        adopt_node(&store, &config).await?;
    }
    check_secrets(&store).await?;
    // Once every secret was found sealed, plaintext is refused (pool_identity, V12).
    store.refresh_secrets_sealed().await.map_err(|e| e.to_string())?;

    let (railway, deleter) =
        RailwayClient::with_project_deleter(config.railway.clone()).map_err(|e| e.to_string())?;
    verify_tokens(&config, &railway).await?;

    // Every project's marker names this pool by its database's random id (made by V12).
    let mut provisioner_config = config.provisioner.clone();
    provisioner_config.pool_id = Some(store.pool_id().await.map_err(|e| e.to_string())?);
    let provisioner = Provisioner::new(provisioner_config, store.clone(), railway, deleter)
        .map_err(|e| format!("agents: {e}"))?;
    // The environment seeds the runtime settings on the first start only; after that the API
    // and the console change them, and the stored values win.
    // Every shape's settings start from the same variables (a shape added later too).
    provisioner
        .seed_shape_settings(&config.settings)
        .await
        .map_err(|e| e.to_string())?;
    let stored = provisioner.settings().await.map_err(|e| e.to_string())?;
    if stored.settings != config.settings {
        tracing::warn!(
            stored = ?stored.settings,
            environment = ?config.settings,
            updated_by = %stored.updated_by,
            "the stored runtime settings differ from the environment's; the stored ones apply (change them with PUT /api/pool/settings)"
        );
    }
    let reconciler = Reconciler::new(provisioner.clone(), config.reconciler.clone());
    let state = AppState {
        provisioner: provisioner.clone(),
        control: Arc::new(control::ReconcilerControl::new(reconciler.clone())),
        admin_key: config.admin_key.clone(),
        info: ServiceInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        console: config.console.clone(),
        webhook_secret: config.webhook_secret.clone(),
        security: config.security.clone(),
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (PORT): {e}", config.listen))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let upkeep_task = tokio::spawn(secrets_upkeep(store.clone(), reconciler.clone(), stop_rx.clone()));
    let reconciler_task = tokio::spawn(reconciler.run(wait_for(stop_rx.clone())));
    tracing::info!(
        listen = %config.listen,
        runtimes = %config.provisioner.shapes.names().join(","),
        image = %config.provisioner.default_shape().image,
        environment = %config.provisioner.environment_name,
        "pool manager ready"
    );

    // Header-read timeout, load shedding and route timeouts (pool_http::serve).
    let server = pool_http::serve(listener, state, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new requests; finishing in-flight ones");
        let _ = stop_tx.send(true);
    });
    server.await.map_err(|e| format!("server error: {e}"))?;
    // A pass cut off here loses nothing: each value is rewritten on its own.
    upkeep_task.abort();
    // The reconciler stops at its next step; a tick in progress is given a moment to finish.
    if tokio::time::timeout(Duration::from_secs(30), reconciler_task)
        .await
        .is_err()
    {
        tracing::warn!("the reconciler did not stop within 30 s");
    }
    // Creations and teardowns in flight get a moment too; whatever is cut off is resumed by
    // crash recovery from its journal.
    if !provisioner.shutdown(Duration::from_secs(20)).await {
        tracing::warn!(
            tasks = provisioner.tasks_running(),
            "creations or teardowns still running at exit; recovery resumes them"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Rows a pass of the secrets upkeep reads at a time.
const SECRETS_UPKEEP_BATCH: usize = 200;

/// How often the leader runs the secrets upkeep after the start-up pass.
const SECRETS_UPKEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Every stored secret must open with the configured keys: a start-up whose keys cannot read
/// some is refused (a rotation's `POOL_SECRETS_KEY_PREVIOUS` dropped too early must not strand
/// the fleet's secrets, nor would a wrong key). Says which key seals; warns about plaintext.
async fn check_secrets(store: &Store) -> Result<(), String> {
    let keys = &store.config().secrets;
    let census = store.secrets_census().await.map_err(|e| e.to_string())?;
    let unreadable = census.unreadable(keys);
    if !unreadable.is_empty() {
        let list = unreadable
            .iter()
            .map(|(id, n)| format!("{n} under key {id}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(match keys.current_id() {
            Some(current) => format!(
                "stored secrets are sealed under keys this configuration does not hold ({list}); POOL_SECRETS_KEY is key {current}{}: set POOL_SECRETS_KEY_PREVIOUS to the key they were sealed under (a rotation ends only once the upkeep logs left=0)",
                keys.previous_id()
                    .map(|p| format!(" and POOL_SECRETS_KEY_PREVIOUS key {p}"))
                    .unwrap_or_default()
            ),
            None => format!(
                "stored secrets are sealed ({list}) but POOL_SECRETS_KEY is not set: set it to the key they were sealed under"
            ),
        });
    }
    match keys.current_id() {
        Some(current) => tracing::info!(
            key = current,
            previous = keys.previous_id(),
            not_under_current_key = census.not_current(keys),
            "agents' secrets are sealed at rest under POOL_SECRETS_KEY"
        ),
        None => tracing::warn!(
            plaintext = census.plaintext,
            "POOL_ALLOW_PLAINTEXT_SECRETS: agents' secrets are stored unencrypted; set POOL_SECRETS_KEY"
        ),
    }
    Ok(())
}

/// Keeps the stored secrets under the current key: a pass at start-up on every replica
/// (plaintext from earlier versions, values under a rotation's previous key), then one every
/// [`SECRETS_UPKEEP_INTERVAL`] on the leader (values written meanwhile by older replicas, and
/// agents whose secret was tampered with, which it quarantines). Passes on several replicas at
/// once are safe: each value is rewritten by compare-and-set.
async fn secrets_upkeep(store: Store, reconciler: Reconciler, stop: watch::Receiver<bool>) {
    let keys = store.config().secrets.clone();
    let mut first = true;
    loop {
        // Whether plaintext is refused now (another replica's pass may have sealed the rest).
        if let Err(e) = store.refresh_secrets_sealed().await {
            tracing::warn!(error = %e, "could not read whether every secret is sealed");
        }
        if first || reconciler.is_leader() {
            match store.upkeep_secrets(SECRETS_UPKEEP_BATCH).await {
                Ok(done) => {
                    let left = match store.secrets_census().await {
                        Ok(census) => census.not_current(&keys),
                        Err(_) => -1,
                    };
                    if left == 0 {
                        match store.seal_for_good_if_done().await {
                            Ok(true) => tracing::info!(
                                "every stored secret is sealed: plaintext values are refused from now on"
                            ),
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "could not record that every secret is sealed")
                            }
                        }
                    }
                    if first || done != pool_store::SecretsUpkeep::default() {
                        tracing::info!(
                            sealed = done.sealed,
                            quarantined = done.quarantined.len(),
                            unreadable = done.unreadable,
                            raced = done.raced,
                            left,
                            "secrets upkeep pass done (left: values not yet under POOL_SECRETS_KEY)"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "secrets upkeep pass failed; the next one retries"),
            }
            first = false;
        }
        tokio::select! {
            () = tokio::time::sleep(SECRETS_UPKEEP_INTERVAL) => {}
            () = wait_for(stop.clone()) => return,
        }
    }
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Every configured token must be able to create projects in the workspace (a project token
/// cannot): each is checked, and a bad one is named by its position, never shown.
async fn verify_tokens(config: &Config, railway: &RailwayClient) -> Result<(), String> {
    let workspace = &config.provisioner.workspace_id;
    let mut problems = Vec::new();
    let checks = railway.check_tokens().await;
    let count = checks.len();
    for check in checks {
        let name = if count == 1 {
            "RAILWAY_API_TOKEN".to_string()
        } else {
            format!("Railway token #{} of {count}", check.index + 1)
        };
        match check.workspaces {
            Err(e) if e.kind() == railway_api::ErrorKind::Unauthorized => problems.push(format!(
                "Railway refused {name} ({e}); a workspace token is needed (a project token cannot create projects)"
            )),
            // Anything but a refusal (a 5xx, a timeout, an error nobody understands) says
            // nothing about the token: a restart during a Railway blip must not crash-loop.
            // Every answer from now on checks the token anyway.
            Err(e) => {
                tracing::warn!(token = %name, error = %e, "could not check a Railway token now; starting anyway");
            }
            Ok(workspaces) if workspaces.is_empty() => problems.push(format!(
                "{name} can act on no workspace: it looks like a project token; a workspace (team) token is needed to create one project per agent"
            )),
            Ok(workspaces) if !workspaces.iter().any(|w| &w.id == workspace) => {
                let known: Vec<String> = workspaces
                    .iter()
                    .map(|w| format!("{} ({})", w.id, w.name))
                    .collect();
                problems.push(format!(
                    "RAILWAY_WORKSPACE_ID {workspace} is not a workspace {name} can act on; it can act on: {}",
                    known.join(", ")
                ));
            }
            Ok(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
