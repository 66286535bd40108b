//! `cargo xtask bench tick`: one reconcile tick over a steady fleet of 500 and 5,000 agents
//! (simulator with 50 ms latency and Pro limits), against the seed's one-status-request-per-
//! agent-per-tick strategy measured in the same run.

use std::time::{Duration, Instant};

use pool_provisioner::Provisioner;
use pool_provisioner::testing::provisioner_config;
use pool_reconciler::{Reconciler, ReconcilerConfig};
use pool_store::testing::TestDatabase;
use railway_api::{ClientConfig, ProjectId, RailwayClient};
use railway_sim::{AgentBehaviour, DeployTimings, SimConfig};
use secrecy::SecretString;

use super::Table;

const TICK: Duration = Duration::from_secs(30);
const FULL_SWEEP_EVERY: u64 = 20; // the default full sweep interval (10 min) at 30 s ticks
const HOURLY_BUDGET: f64 = 10_000.0;

pub async fn run() -> Result<(), String> {
    println!(
        "## bench tick: a steady fleet, 50 ms Railway latency, Pro limits (50 req/s, 10,000 req/h), 30 s ticks\n"
    );
    let table = Table::new(&[
        "agents",
        "strategy",
        "requests/tick",
        "tick wall time",
        "req/h at 30 s",
        "share of 10k/h",
    ]);
    for agents in [500usize, 5_000] {
        let fleet = Fleet::new(agents).await?;
        let steady2 = fleet.tick(Duration::from_secs(3600)).await?;
        let full = fleet.tick(Duration::ZERO).await?;
        let per_tick =
            (steady2.0 as f64 * (FULL_SWEEP_EVERY - 1) as f64 + full.0 as f64) / FULL_SWEEP_EVERY as f64;
        let rows = [
            ("pool: steady tick", steady2.0 as f64, steady2.1),
            ("pool: full-sweep tick", full.0 as f64, full.1),
            ("pool: average (1 full in 20)", per_tick, steady2.1),
        ];
        for (name, requests, wall) in rows {
            let per_hour = requests * 3600.0 / TICK.as_secs_f64();
            table.row(&[
                agents.to_string(),
                name.to_string(),
                format!("{requests:.1}"),
                format!("{:.2} s", wall.as_secs_f64()),
                format!("{per_hour:.0}"),
                format!("{:.1}%", 100.0 * per_hour / HOURLY_BUDGET),
            ]);
        }
        let seed = fleet.seed_strategy().await?;
        let per_hour = seed.0 as f64 * 3600.0 / TICK.as_secs_f64();
        table.row(&[
            agents.to_string(),
            "seed: one request per agent".into(),
            seed.0.to_string(),
            format!("{:.2} s", seed.1.as_secs_f64()),
            format!("{per_hour:.0}"),
            format!("{:.1}%", 100.0 * per_hour / HOURLY_BUDGET),
        ]);
        println!(
            "|  {agents} agents: the seed sends {:.0}x the requests of the pool's average tick and takes {:.1}x its wall time |",
            seed.0 as f64 / per_tick.max(1.0),
            seed.1.as_secs_f64() / steady2.1.as_secs_f64().max(0.001)
        );
    }
    Ok(())
}

struct Fleet {
    sim: railway_sim::SimHandle,
    _db: TestDatabase,
    provisioner: Provisioner,
    project_ids: Vec<ProjectId>,
}

impl Fleet {
    async fn new(agents: usize) -> Result<Self, String> {
        let sim = railway_sim::start(SimConfig {
            latency: Duration::from_millis(50),
            deploy: DeployTimings::instant(),
            agents: AgentBehaviour {
                ready_after: Duration::ZERO,
                ..AgentBehaviour::default()
            },
            ..SimConfig::without_quirks()
        })
        .await
        .map_err(|e| e.to_string())?;
        let (db, rows) = super::seed_fleet(&sim, agents).await;
        let mut client_config = ClientConfig::new(sim.graphql_url(), vec![SecretString::from("sim-token")]);
        client_config.budget.max_in_flight = 64;
        let (railway, deleter) =
            RailwayClient::with_project_deleter(client_config).map_err(|e| e.to_string())?;
        let mut config = provisioner_config(&sim, None);
        config.openrouter = None;
        config.agentmail = None;
        let provisioner =
            Provisioner::new(config, db.store().await, railway, deleter).map_err(|e| e.to_string())?;
        Ok(Self {
            project_ids: rows.into_iter().map(|s| ProjectId::new(s.project_id)).collect(),
            sim,
            _db: db,
            provisioner,
        })
    }

    /// One tick; returns (Railway requests, wall time).
    async fn tick(&self, full_sweep_interval: Duration) -> Result<(u64, Duration), String> {
        let reconciler = Reconciler::new(
            self.provisioner.clone(),
            ReconcilerConfig {
                full_sweep_interval,
                orphan_sweep_interval: Duration::from_secs(3600),
                health_concurrency: 64,
                ..ReconcilerConfig::default()
            },
        );
        // A reconciler's first tick is a full sweep and an orphan sweep (every 30 minutes,
        // about 1% of the budget at 5,000 agents); measure the next.
        reconciler.tick(None).await;
        let before = self.sim.counters().requests_total;
        let start = Instant::now();
        let report = reconciler.tick(None).await;
        let wall = start.elapsed();
        if !report.errors.is_empty() || report.transitions + report.teardowns > 0 {
            return Err(format!("the tick was not steady: {report:?}"));
        }
        Ok((self.sim.counters().requests_total - before, wall))
    }

    /// The seed's sketch: each agent's status read with its own request (plus the same
    /// health checks, which cost nothing against Railway's budget).
    async fn seed_strategy(&self) -> Result<(u64, Duration), String> {
        let before = self.sim.counters().requests_total;
        let start = Instant::now();
        let read = self
            .provisioner
            .railway()
            .projects_status_batched(&self.project_ids, 1)
            .await;
        let wall = start.elapsed();
        if !read.failed.is_empty() {
            return Err(format!(
                "{} reads failed: {:?}",
                read.failed.len(),
                read.last_error
            ));
        }
        Ok((self.sim.counters().requests_total - before, wall))
    }
}
