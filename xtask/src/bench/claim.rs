//! `cargo xtask bench claim`: 14,000 claims over real HTTP (1, then 10, then 100 concurrent
//! clients) against the real `pool-manager` binary (release, a process of its own, its
//! reconciler leading) over a full pool (14,000 idle agents of the simulator, which answer
//! provisions at once; the fleet at its `maxTotal`, so sizing creates nothing). Reports
//! claims/s, latency, the pool manager's own latency (each claim's total time minus the time
//! its agent took to answer `/pool/provision`, measured by the simulator), double hand-outs,
//! and what the claims cost the reconciler: ticks and sizing passes per claim, from the
//! process's `/metrics` (a claim asks for a sizing pass, never a tick; the interval's ticks,
//! every 30 s as in production, are counted too).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_e2e::{ADMIN_KEY, ManagerProcess};
use pool_provisioner::outbound::OutboundClient;
use railway_sim::{AgentBehaviour, DeployTimings, Limits, SimConfig};
use serde_json::{Value, json};

use super::Table;

/// (concurrent clients, claims): the target run last, lighter ones first to show where time goes.
const RUNS: [(usize, usize); 3] = [(1, 1_000), (10, 3_000), (100, 10_000)];
const CLAIMS: usize = 14_000;
/// Production's interval.
const TICK_INTERVAL: Duration = Duration::from_secs(30);
/// The target at 100 clients (issue 23).
const TARGET_P99_MS: f64 = 100.0;

/// (ticks, sizing passes) the process has run.
async fn reconciler_counts(pm: &ManagerProcess) -> Result<(u64, u64), String> {
    let answer = pm.get("/metrics", false).await?;
    let text = String::from_utf8_lossy(&answer.body);
    let read = |name: &str| super::tick::metric(&text, name).unwrap_or(0.0) as u64;
    Ok((read("pool_ticks_total"), read("pool_sizing_passes_total")))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run() -> Result<(), String> {
    println!(
        "## bench claim: claims over HTTP against the real pool-manager (release) over a full pool of instant agents (10,000 from 100 concurrent clients is the target run)\n"
    );
    eprintln!("bench claim: building pool-manager (release)…");
    let binary = tokio::task::spawn_blocking(pool_e2e::pool_manager_release_binary)
        .await
        .map_err(|e| e.to_string())??;
    let sim = railway_sim::start(SimConfig {
        deploy: DeployTimings::instant(),
        limits: Limits {
            requests_per_second: 0,
            // A million, as bench tick's: the claims send none, the ticks few. (With the
            // hourly limit off, 0, the simulator answered `X-RateLimit-Remaining: 0` and the
            // pool paused for an hour before its first tick.)
            requests_per_hour: 1_000_000,
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
    eprintln!("bench claim: seeding {CLAIMS} idle agents…");
    let (db, rows) = super::seed_fleet(&sim, CLAIMS).await;
    let service_of: BTreeMap<String, String> = rows
        .iter()
        .map(|r| (r.id.clone(), r.service_id.clone()))
        .collect();
    // The fleet at its cap: the sizing passes the claims ask for run, and create nothing.
    let store = db.store().await;
    let mut settings = store.settings().await.map_err(|e| e.to_string())?.settings;
    settings.max_total = Some(CLAIMS as u32);
    settings.min_idle = 0;
    store
        .update_settings(&settings, "bench")
        .await
        .map_err(|e| e.to_string())?;
    let port = pool_e2e::free_port()?;
    let mut env = pool_e2e::sim_environment(&sim, db.url(), port);
    env.insert("POOL_MAX_TOTAL".into(), CLAIMS.to_string());
    env.insert("POOL_MIN_IDLE".into(), "0".into());
    env.insert("TICK_INTERVAL_MS".into(), TICK_INTERVAL.as_millis().to_string());
    env.insert("POOL_FULL_SWEEP_INTERVAL_MS".into(), "600000".into());
    env.insert("RUST_LOG".into(), "warn".into());
    let mut pm = ManagerProcess::start(&binary, &env).await?;
    pm.wait_healthy(Duration::from_secs(120)).await?;
    // The first tick (at start: every agent checked, a full sweep) is not the claims'.
    let deadline = Instant::now() + Duration::from_secs(600);
    while reconciler_counts(&pm).await?.0 == 0 {
        if Instant::now() > deadline {
            return Err("the pool-manager ran no first tick within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let url = format!("{}/api/pool/claim", pm.base_url);
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
        "ticks (per claim)",
        "sizing passes (per claim)",
    ]);
    let mut all_claimed: Vec<String> = Vec::new();
    let mut target_p99 = None;
    let mut all_failures: Vec<String> = Vec::new();
    for (clients, claims) in RUNS {
        let (ticks_before, sizings_before) = reconciler_counts(&pm).await?;
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
                                Some(ADMIN_KEY),
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
        // Failed claims by answer: status and body, or the client's error.
        let mut failed_by: BTreeMap<String, usize> = BTreeMap::new();
        for task in tasks {
            for (latency, answer) in task.await.map_err(|e| e.to_string())? {
                match answer {
                    Ok(a) if a.status == 200 => {
                        let v: Value = serde_json::from_slice(&a.body).map_err(|e| e.to_string())?;
                        claimed.push(v["instanceId"].as_str().unwrap_or_default().to_string());
                        latencies.push(latency);
                    }
                    Ok(a) => {
                        failures += 1;
                        let body = String::from_utf8_lossy(&a.body);
                        *failed_by
                            .entry(format!(
                                "{} {}",
                                a.status,
                                body.chars().take(300).collect::<String>()
                            ))
                            .or_default() += 1;
                    }
                    Err(e) => {
                        failures += 1;
                        *failed_by.entry(format!("no answer: {e}")).or_default() += 1;
                    }
                }
            }
        }
        let wall = start.elapsed();
        // Sizing passes come at most once a second after the last claim: let the last one run.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (ticks_after, sizings_after) = reconciler_counts(&pm).await?;
        let (ticks, sizings) = (ticks_after - ticks_before, sizings_after - sizings_before);
        let per_claim = |n: u64| format!("{n} ({:.4})", n as f64 / claimed.len().max(1) as f64);
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
            per_claim(ticks),
            per_claim(sizings),
        ]);
        for (answer, n) in &failed_by {
            eprintln!("bench claim: {clients} clients: {n} claim(s) failed: {answer}");
            all_failures.push(format!("{clients} clients: {n} × {answer}"));
        }
        if clients == 100 {
            target_p99 = Some(percentile(&totals, 0.99));
        }
        if doubles > 0 {
            return Err("an agent was handed out twice".into());
        }
    }
    pm.signal("TERM")?;
    if pm.wait_exit(Duration::from_secs(60)).await.is_err() {
        let _ = pm.signal("KILL");
    }
    println!(
        "\n(overhead = claim time at the client − the agent's own /pool/provision time, as the simulator measured it; \
         ticks: the interval's, every {} s — claims ask for none; client, pool-manager, simulator and PostgreSQL share this machine's {} cores)",
        TICK_INTERVAL.as_secs(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if !all_failures.is_empty() {
        println!("\nFailed claims, by answer:\n");
        for failure in &all_failures {
            println!("- {failure}");
        }
    }
    if let Some(p99) = target_p99 {
        println!(
            "\ntarget: p99 ≤ {TARGET_P99_MS:.0} ms at 100 clients, 0 double hand-outs: p99 {p99:.2} ms — {}",
            if p99 <= TARGET_P99_MS { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
