//! `cargo xtask demo`: the pool manager running locally, as a newcomer first sees it.
//!
//! Against the local PostgreSQL and an in-process Railway simulator, it starts the real
//! `pool-manager` binary, shows the pool filling (counts by status, Railway budget used),
//! makes one claim and prints its invite URL, shows the parked tier filling behind it (a small
//! one: `POOL_PARKED_MIN` 2, `POOL_PARKED_MAX` 4), then keeps running until Ctrl-C and shuts
//! the pool manager down cleanly.
//!
//! When nothing answers at the database address but PostgreSQL's server programs are installed,
//! it runs on a private, throwaway cluster instead (`private_postgres`), removed on exit.

use std::time::Duration;

use crate::interrupt::Interrupt;
use crate::private_postgres::{INSTALL_HINT, PrivateCluster, ServerPrograms};
use pool_e2e::{ADMIN_KEY, ManagerProcess, pool_manager_binary, sim_environment};
use railway_sim::{SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio_postgres::NoTls;

const DEMO_DATABASE: &str = "pool_demo";
const MIN_IDLE: u64 = 3;
/// The parked tier the demo keeps (the harness turns it off): small, so it fills in seconds.
const PARKED_MIN: u64 = 2;
const PARKED_MAX: u64 = 4;

pub fn main(args: &[String]) -> Result<(), String> {
    let mut port = 8080u16;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--port" => {
                port = rest
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a number")?
            }
            other => {
                return Err(format!(
                    "unknown option {other:?}\nusage: cargo xtask demo [--port N]"
                ));
            }
        }
    }
    crate::runtime()?.block_on(demo(port))
}

/// The PostgreSQL the demo runs on. Holding the private cluster keeps it alive; dropping this
/// stops and deletes it.
struct DemoServer {
    url: String,
    _private: Option<PrivateCluster>,
}

/// Whether anything answers at a database address.
enum Probe {
    /// A server answered and let us in.
    Answers,
    /// Nothing answered (refused, unreachable, timed out): the cue for a private cluster.
    Silent(String),
}

async fn probe(server_url: &str) -> Result<Probe, String> {
    let mut config: tokio_postgres::Config = server_url
        .parse()
        .map_err(|e| format!("DATABASE_URL is not a valid Postgres URL: {e}"))?;
    // A blackholed address should not hold a newcomer up for minutes.
    config.connect_timeout(Duration::from_secs(3));
    match config.connect(NoTls).await {
        Ok(_) => Ok(Probe::Answers),
        // Only a failure to reach anything is silence; a server that answers and refuses (a
        // wrong password, a missing database) is reported, not papered over with a new one.
        Err(e) => {
            // tokio-postgres' own Display of a server error says only "db error".
            let said = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_string());
            // The store's one rule for "nothing answered" (an I/O failure, no server error).
            if pool_store::StoreError::from(e).is_unreachable() {
                Ok(Probe::Silent(said))
            } else {
                Err(format!(
                    "the PostgreSQL at {} refused the demo: {said}",
                    target(server_url)
                ))
            }
        }
    }
}

/// `host:port/database`, without credentials.
fn target(url: &str) -> String {
    pool_store::StoreConfig::new(url).display_target()
}

/// The server at `server_url`, or a private cluster when nothing answers there; prints one
/// line saying which.
async fn demo_server(server_url: &str) -> Result<DemoServer, String> {
    let reason = match probe(server_url).await? {
        Probe::Answers => {
            println!("using the PostgreSQL at {}", target(server_url));
            return Ok(DemoServer {
                url: server_url.to_string(),
                _private: None,
            });
        }
        Probe::Silent(reason) => reason,
    };
    let Some(programs) = ServerPrograms::find() else {
        return Err(format!(
            "no PostgreSQL answers at {} ({reason}) and its server programs (initdb, pg_ctl) are not installed: {INSTALL_HINT}",
            target(server_url)
        ));
    };
    // initdb and pg_ctl block for a second or two; keep them off the runtime's threads.
    let cluster = tokio::task::spawn_blocking(move || PrivateCluster::start(&programs))
        .await
        .map_err(|e| format!("starting the private PostgreSQL: {e}"))??;
    println!(
        "no PostgreSQL answers at {}: started a private throwaway one ({}) at 127.0.0.1:{} in {}, removed on exit",
        target(server_url),
        cluster.programs().bin_dir.display(),
        cluster.port(),
        cluster.dir().display()
    );
    Ok(DemoServer {
        url: cluster.url(),
        _private: Some(cluster),
    })
}

/// A fresh demo database on the server; a one-line error when there is no server.
async fn fresh_database(server_url: &str) -> Result<String, String> {
    let (client, connection) = tokio_postgres::connect(server_url, NoTls)
        .await
        .map_err(|e| format!("no PostgreSQL at {} ({e}); set DATABASE_URL", target(server_url)))?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)"))
        .await
        .map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!("CREATE DATABASE {DEMO_DATABASE}"))
        .await
        .map_err(|e| e.to_string())?;
    let base = server_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(server_url);
    Ok(format!("{base}/{DEMO_DATABASE}"))
}

fn field(v: &Value, name: &str) -> i64 {
    v[name].as_i64().unwrap_or(0)
}

async fn demo(port: u16) -> Result<(), String> {
    let mut interrupt = Interrupt::register()?;
    let server = demo_server(&crate::database_url()).await?;
    // Until the claim is shown, an interrupt abandons whatever is under way (the pool manager
    // is killed with its process handle); afterwards it is the demo's own way to stop.
    let started = tokio::select! {
        biased;
        () = interrupt.received() => Err("interrupted; stopped everything the demo started".to_string()),
        started = start_and_claim(&server.url, port) => started,
    };
    let result = match started {
        Ok((sim, manager)) => wait_and_stop(&mut interrupt, sim, manager).await,
        Err(e) => Err(e),
    };
    // Explicitly here, after the pool manager has let go of its connections.
    drop(server);
    result
}

async fn start_and_claim(server_url: &str, port: u16) -> Result<(SimHandle, ManagerProcess), String> {
    let database_url = fresh_database(server_url).await?;
    println!("building pool-manager …");
    // Off the runtime's threads, so an interrupt during the build is acted on at once (the
    // build itself runs to its end in the background; a terminal's Ctrl-C stops it too).
    let binary = tokio::task::spawn_blocking(pool_manager_binary)
        .await
        .map_err(|e| format!("building pool-manager: {e}"))??;
    let sim = railway_sim::start(SimConfig::quick())
        .await
        .map_err(|e| e.to_string())?;
    let mut env = sim_environment(&sim, &database_url, port);
    env.insert("POOL_MIN_IDLE".into(), MIN_IDLE.to_string());
    env.insert("POOL_PARKED_MIN".into(), PARKED_MIN.to_string());
    env.insert("POOL_PARKED_MAX".into(), PARKED_MAX.to_string());
    env.insert("TICK_INTERVAL_MS".into(), "1000".into());
    env.insert("RUST_LOG".into(), "warn".into());
    let mut manager = ManagerProcess::start(&binary, &env).await?;
    manager.wait_healthy(Duration::from_secs(60)).await?;
    println!("pool manager listening on {}", manager.base_url);
    println!(
        "  Railway simulator: {}  (inspect: {}/_sim/state)",
        sim.graphql_url(),
        sim.base_url()
    );
    println!("  API key: {ADMIN_KEY}");
    println!(
        "  try: curl -s -H 'Authorization: Bearer {ADMIN_KEY}' {}/api/pool/status",
        manager.base_url
    );
    println!();

    // The pool fills.
    let started = tokio::time::Instant::now();
    loop {
        let counts = manager.counts().await?;
        let requests = sim.counters().requests_total;
        println!(
            "[{:>4.1}s] {}   Railway requests so far: {requests}",
            started.elapsed().as_secs_f64(),
            counts_line(&counts),
        );
        // The first claim waits for the warm agents only, not for the parked tier.
        if field(&counts, "idle") >= MIN_IDLE as i64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "the pool did not fill in 2 minutes:\n{}",
                manager.output_text()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // One claim.
    let claim = manager
        .send(
            hyper::Method::POST,
            "/api/pool/claim",
            true,
            Some(&json!({"agentName": "Demo agent", "instructions": "Say hello to the newcomer."})),
        )
        .await?;
    let body: Value = serde_json::from_slice(&claim.body).map_err(|e| e.to_string())?;
    if claim.status != 200 {
        return Err(format!("the claim failed: {body}"));
    }
    println!();
    println!(
        "claimed agent {}",
        body["instanceId"].as_str().unwrap_or_default()
    );
    println!("  invite URL: {}", body["inviteUrl"].as_str().unwrap_or_default());
    println!();
    show_parked_tier(&sim, &manager).await?;
    println!();
    println!("the pool refills in the background; press Ctrl-C to stop");
    Ok((sim, manager))
}

/// Counts by status, the parked tier's included.
fn counts_line(counts: &Value) -> String {
    format!(
        "creating {} · starting {} · idle {} · claimed {} · parking {} · parked {} · waking {}",
        field(counts, "creating"),
        field(counts, "starting"),
        field(counts, "idle"),
        field(counts, "claimed"),
        field(counts, "parking"),
        field(counts, "parked"),
        field(counts, "waking"),
    )
}

/// Watches the pool after the claim until the warm and parked tiers are full again (at most a
/// minute; the demo goes on either way), then says what the parked agents are.
async fn show_parked_tier(sim: &SimHandle, manager: &ManagerProcess) -> Result<(), String> {
    let requests = |name: &str| sim.counters().requests.get(name).copied().unwrap_or(0);
    let started = tokio::time::Instant::now();
    let mut full = false;
    while started.elapsed() < Duration::from_secs(60) {
        let counts = manager.counts().await?;
        println!(
            "[{:>4.1}s] {}",
            started.elapsed().as_secs_f64(),
            counts_line(&counts)
        );
        full = field(&counts, "idle") >= MIN_IDLE as i64
            && field(&counts, "parked") >= PARKED_MIN as i64
            && field(&counts, "creating") + field(&counts, "starting") + field(&counts, "parking") == 0;
        if full {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (creates, removes, deploys) = (
        requests("projectCreate"),
        requests("deploymentRemove"),
        requests("serviceInstanceDeployV2"),
    );
    println!(
        "parked agents (POOL_PARKED_MIN={PARKED_MIN}, POOL_PARKED_MAX={PARKED_MAX}){}: provisioned, their deployment removed (deploymentRemove), so they cost storage only; a claim on an empty warm tier wakes one with one deploy (serviceInstanceDeployV2), no projectCreate",
        if full { "" } else { " (still filling)" }
    );
    println!(
        "  Railway so far: projectCreate {creates} · deploymentRemove (parks) {removes} · serviceInstanceDeployV2 (wakes) {deploys}"
    );
    Ok(())
}

/// Keeps the simulator and the pool manager running until interrupted, then stops the pool
/// manager cleanly. A terminal's Ctrl-C reaches the whole process group, so the pool manager
/// may have received it too and be stopping (or stopped) on its own: a stopped one is not
/// signalled, only reaped (a SIGTERM to one still stopping changes nothing: its handlers stay
/// installed), and how it ended is reported either way.
async fn wait_and_stop(
    interrupt: &mut Interrupt,
    sim: SimHandle,
    mut manager: ManagerProcess,
) -> Result<(), String> {
    interrupt.received().await;
    println!("\nstopping the pool manager …");
    if manager.exited()?.is_none()
        && let Err(e) = manager.signal("TERM")
        // Gone between the two looks: it stopped on its own after all.
        && manager.exited()?.is_none()
    {
        return Err(e);
    }
    let stopped = match manager.wait_exit(Duration::from_secs(30)).await? {
        Some(0) => {
            println!("stopped cleanly");
            Ok(())
        }
        Some(code) => Err(format!(
            "pool-manager exited with code {code}:\n{}",
            manager.output_text()
        )),
        None => Err(format!(
            "pool-manager was killed by a signal:\n{}",
            manager.output_text()
        )),
    };
    drop(sim);
    stopped
}
