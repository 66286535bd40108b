//! `cargo xtask bench railway`: requests and wall time to read every agent's status, with the
//! batched read and with the seed's one-request-per-agent sketch, side by side, against the
//! simulator with 50 ms latency and Railway Pro's limits.

use std::time::{Duration, Instant};

use railway_api::{ClientConfig, ProjectId, RailwayClient, STATUS_BATCH_SIZE};
use railway_sim::SimConfig;
use secrecy::SecretString;

use super::Table;

const TICK: Duration = Duration::from_secs(30);
const HOURLY_BUDGET: f64 = 10_000.0;

pub async fn run() -> Result<(), String> {
    println!(
        "## bench railway: one status read of every agent (50 ms latency, Pro limits: 50 req/s, 10,000 req/h)\n"
    );
    let table = Table::new(&[
        "agents",
        "strategy",
        "requests",
        "wall time",
        "req/h at 30 s tick",
        "share of 10k/h",
    ]);
    let mut ratios = Vec::new();
    for agents in [100usize, 1_000, 5_000] {
        let mut results = Vec::new();
        for (strategy, batch) in [("batched", STATUS_BATCH_SIZE), ("one per agent (seed)", 1)] {
            let (requests, wall) = measure(agents, batch).await?;
            let per_hour = requests as f64 * (3600.0 / TICK.as_secs_f64());
            table.row(&[
                agents.to_string(),
                strategy.to_string(),
                requests.to_string(),
                format!("{:.2} s", wall.as_secs_f64()),
                format!("{per_hour:.0}"),
                format!("{:.1}%", 100.0 * per_hour / HOURLY_BUDGET),
            ]);
            results.push((requests, wall));
        }
        ratios.push((
            agents,
            results[1].0 as f64 / results[0].0 as f64,
            results[1].1.as_secs_f64() / results[0].1.as_secs_f64(),
        ));
    }
    println!();
    for (agents, requests, wall) in ratios {
        println!(
            "{agents} agents: one-per-agent sends {requests:.0}x the requests and takes {wall:.1}x the time of the batched read"
        );
    }
    println!("(batch size N = {STATUS_BATCH_SIZE} projects per request)");
    Ok(())
}

async fn measure(agents: usize, batch: usize) -> Result<(usize, Duration), String> {
    let sim = railway_sim::start(SimConfig {
        latency: Duration::from_millis(50),
        ..SimConfig::without_quirks()
    })
    .await
    .map_err(|e| e.to_string())?;
    let ids: Vec<ProjectId> = sim
        .seed_projects(agents, "production", "ghcr.io/xmtplabs/convos-agent:production")
        .into_iter()
        .map(|p| ProjectId::new(p.project_id))
        .collect();
    let mut config = ClientConfig::new(sim.graphql_url(), vec![SecretString::from("sim-token")]);
    config.budget.max_in_flight = 64;
    let client = RailwayClient::new(config).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let read = client.projects_status_batched(&ids, batch).await;
    let wall = start.elapsed();
    if read.projects.len() != agents {
        return Err(format!(
            "read {} of {agents} projects ({} failed, {} left out: {:?})",
            read.projects.len(),
            read.failed.len(),
            read.omitted.len(),
            read.last_error
        ));
    }
    let counters = sim.counters();
    if counters.rate_limited > 0 {
        return Err(format!("the simulator served {} 429s", counters.rate_limited));
    }
    Ok((read.requests, wall))
}
