//! `cargo xtask bench claim`: 10,000 claims from 100 concurrent clients over real HTTP against
//! a pool that is full (10,000 idle agents of the simulator, which answer provisions at once).
//! Reports claims/s and the pool manager's own latency: each claim's total time minus the
//! time its agent took to answer `/pool/provision` (measured by the simulator).

use axum::serve::ListenerExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_http::{AppState, ServiceInfo};
use pool_provisioner::Provisioner;
use pool_provisioner::outbound::OutboundClient;
use pool_provisioner::testing::provisioner_config;
use pool_store::Store;
use railway_api::{ClientConfig, RailwayClient};
use railway_sim::{AgentBehaviour, DeployTimings, Limits, SimConfig};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::Table;

/// (concurrent clients, claims): the target run last, lighter ones first to show where time goes.
const RUNS: [(usize, usize); 3] = [(1, 1_000), (10, 3_000), (100, 10_000)];
const CLAIMS: usize = 14_000;
const KEY: &str = "bench-admin-key-0123456789";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run() -> Result<(), String> {
    println!(
        "## bench claim: claims over HTTP against a full pool of instant agents (10,000 from 100 concurrent clients is the target run)\n"
    );
    let sim = railway_sim::start(SimConfig {
        deploy: DeployTimings::instant(),
        limits: Limits {
            requests_per_second: 0,
            requests_per_hour: 0,
            ..Limits::default()
        },
        agents: AgentBehaviour {
            ready_after: Duration::ZERO,
            provision_time: Duration::ZERO,
            ..AgentBehaviour::default()
        },
        ..SimConfig::quick()
    })
    .await
    .map_err(|e| e.to_string())?;
    let (db, rows) = super::seed_fleet(&sim, CLAIMS).await;
    let service_of: BTreeMap<String, String> = rows
        .iter()
        .map(|r| (r.id.clone(), r.service_id.clone()))
        .collect();

    let mut store_config = db.config();
    store_config.max_connections = 32;
    let store = Store::connect(store_config).await.map_err(|e| e.to_string())?;
    let (railway, deleter) = RailwayClient::with_project_deleter(ClientConfig::new(
        sim.graphql_url(),
        vec![SecretString::from("sim-token")],
    ))
    .map_err(|e| e.to_string())?;
    let mut config = provisioner_config(&sim, None);
    config.openrouter = None;
    config.agentmail = None;
    config.telnyx = None;
    config.pool_id = Some(store.pool_id().await.map_err(|e| e.to_string())?);
    let provisioner = Provisioner::new(config, store, railway, deleter).map_err(|e| e.to_string())?;
    let app = pool_http::router(AppState {
        provisioner,
        control: std::sync::Arc::new(pool_http::DetachedControl::default()),
        admin_key: SecretString::from(KEY),
        info: ServiceInfo {
            version: "bench".into(),
        },
        console: pool_http::console::ConsoleConfig::default(),
        webhook_secret: None,
        security: pool_http::SecurityConfig::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/api/pool/claim",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, app).await;
    });

    let http = OutboundClient::new().map_err(|e| e.to_string())?;
    let url = Arc::new(url);
    let table = Table::new(&[
        "clients",
        "claims ok",
        "failed",
        "double claims",
        "claims/s",
        "p50 total",
        "p99 total",
        "p50 overhead",
        "p99 overhead",
    ]);
    let mut all_claimed: Vec<String> = Vec::new();
    for (clients, claims) in RUNS {
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    let mut results = Vec::with_capacity(claims / clients);
                    for i in 0..claims / clients {
                        let body = json!({"agentName": format!("user-{c}-{i}"), "instructions": "bench"});
                        let sent = Instant::now();
                        let answer = http
                            .send(
                                hyper::Method::POST,
                                &url,
                                Some(KEY),
                                Some(&body),
                                Duration::from_secs(30),
                            )
                            .await;
                        results.push((sent.elapsed(), answer));
                    }
                    results
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut claimed: Vec<String> = Vec::new();
        let mut failures = 0;
        for task in tasks {
            for (latency, answer) in task.await.map_err(|e| e.to_string())? {
                match answer {
                    Ok(a) if a.status == 200 => {
                        let v: Value = serde_json::from_slice(&a.body).map_err(|e| e.to_string())?;
                        claimed.push(v["instanceId"].as_str().unwrap_or_default().to_string());
                        latencies.push(latency);
                    }
                    _ => failures += 1,
                }
            }
        }
        let wall = start.elapsed();
        let snapshot = sim.snapshot();
        let by_service: BTreeMap<&str, &railway_sim::DeploymentView> = snapshot
            .deployments
            .iter()
            .map(|d| (d.service_id.as_str(), d))
            .collect();
        let mut totals: Vec<f64> = latencies.iter().map(|l| l.as_secs_f64() * 1000.0).collect();
        let mut overheads: Vec<f64> = claimed
            .iter()
            .zip(&latencies)
            .filter_map(|(id, latency)| {
                let d = by_service.get(service_of.get(id)?.as_str())?;
                Some(latency.as_secs_f64() * 1000.0 - d.provision_micros? as f64 / 1000.0)
            })
            .collect();
        totals.sort_by(f64::total_cmp);
        overheads.sort_by(f64::total_cmp);
        all_claimed.extend(claimed.iter().cloned());
        let distinct: BTreeSet<&String> = all_claimed.iter().collect();
        let double_provisions = snapshot.deployments.iter().filter(|d| d.provisions > 1).count();
        let doubles = all_claimed.len() - distinct.len() + double_provisions;
        table.row(&[
            clients.to_string(),
            claimed.len().to_string(),
            failures.to_string(),
            doubles.to_string(),
            format!("{:.0}", claimed.len() as f64 / wall.as_secs_f64()),
            format!("{:.2} ms", percentile(&totals, 0.5)),
            format!("{:.2} ms", percentile(&totals, 0.99)),
            format!("{:.2} ms", percentile(&overheads, 0.5)),
            format!("{:.2} ms", percentile(&overheads, 0.99)),
        ]);
        if doubles > 0 {
            return Err("an agent was handed out twice".into());
        }
    }
    println!(
        "\n(overhead = claim time at the client − the agent's own /pool/provision time, as the simulator measured it; \
         client, server, simulator and PostgreSQL share this machine's {} cores)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    Ok(())
}
