//! `cargo xtask demo`: the pool manager running locally, as a newcomer first sees it.
//!
//! Against the local PostgreSQL and an in-process Railway simulator, it starts the real
//! `pool-manager` binary, shows the pool filling (counts by status, Railway budget used),
//! makes one claim and prints its invite URL, then keeps running until Ctrl-C and shuts the
//! pool manager down cleanly.

use std::time::Duration;

use pool_e2e::{ADMIN_KEY, ManagerProcess, pool_manager_binary, sim_environment};
use railway_sim::SimConfig;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

const DEMO_DATABASE: &str = "pool_demo";
const MIN_IDLE: u64 = 3;

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

/// A fresh demo database on the local server; a one-line error when there is no server.
async fn fresh_database(server_url: &str) -> Result<String, String> {
    let (client, connection) = tokio_postgres::connect(server_url, NoTls).await.map_err(|e| {
        format!(
            "no PostgreSQL at {server_url} ({e}); start one (e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main start`) or set DATABASE_URL"
        )
    })?;
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
    let database_url = fresh_database(&crate::database_url()).await?;
    println!("building pool-manager …");
    let binary = pool_manager_binary()?;
    let sim = railway_sim::start(SimConfig::quick())
        .await
        .map_err(|e| e.to_string())?;
    let mut env = sim_environment(&sim, &database_url, port);
    env.insert("POOL_MIN_IDLE".into(), MIN_IDLE.to_string());
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
            "[{:>4.1}s] creating {} · starting {} · idle {} · claimed {}   Railway requests so far: {requests}",
            started.elapsed().as_secs_f64(),
            field(&counts, "creating"),
            field(&counts, "starting"),
            field(&counts, "idle"),
            field(&counts, "claimed"),
        );
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
    println!("the pool refills in the background; press Ctrl-C to stop");

    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    println!("\nstopping the pool manager …");
    manager.signal("TERM")?;
    match manager.wait_exit(Duration::from_secs(30)).await? {
        Some(0) => {
            println!("stopped cleanly");
            Ok(())
        }
        code => Err(format!("pool-manager exited with {code:?}")),
    }
}
