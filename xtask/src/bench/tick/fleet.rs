//! The tick bench's fleet: a simulator, its agent hosts, and a database of realistic rows.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pool_store::testing::TestDatabase;
use railway_api::{ClientConfig, ProjectId, RailwayClient};
use railway_sim::{AgentBehaviour, AgentHosts, DeployTimings, Limits, SimConfig, SimHandle};
use secrecy::SecretString;

use super::{AGENT_ROUND_TRIP, CRASHED_EVERY, IDLE_EVERY};

/// A simulator, its agent hosts and a database with a steady fleet in it.
pub(super) struct Fleet {
    pub(super) sim: SimHandle,
    pub(super) hosts: AgentHosts,
    pub(super) db: TestDatabase,
    pub(super) project_ids: Vec<ProjectId>,
    pub(super) agents: usize,
    pub(super) idle: usize,
    /// Claimed agents whose deployment crashed and stays down.
    pub(super) crashed: usize,
    pub(super) ca_file: PathBuf,
}

impl Fleet {
    pub(super) async fn new(agents: usize) -> Result<Self, String> {
        let sim = railway_sim::start(SimConfig {
            latency: Duration::from_millis(50),
            deploy: DeployTimings::instant(),
            agents: AgentBehaviour {
                ready_after: Duration::ZERO,
                ..AgentBehaviour::default()
            },
            // See the module docs: an hour's cap far above what the run sends (not 0,
            // "unlimited", whose `X-RateLimit-Remaining: 0` would pause the pool's budget).
            limits: Limits {
                requests_per_hour: 1_000_000,
                ..Limits::default()
            },
            ..SimConfig::without_quirks()
        })
        .await
        .map_err(|e| e.to_string())?;
        let (db, rows) = crate::bench::seed_fleet(&sim, agents).await;
        let hosts = sim.serve_agent_hosts().await.map_err(|e| e.to_string())?;
        // Each agent at a host of its own: its row's domain is its address.
        let mut ids = Vec::with_capacity(rows.len());
        let mut addresses = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.id.clone());
            addresses.push(hosts.host_for(&row.domain).map_err(|e| e.to_string())?);
        }
        let claimed: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % IDLE_EVERY != 0)
            .map(|(_, id)| id.clone())
            .collect();
        let client = db.client().await;
        client
            .execute(
                "UPDATE agent_metadata a SET railway_domain = m.host \
                 FROM unnest($1::text[], $2::text[]) AS m(id, host) WHERE a.id = m.id",
                &[&ids, &addresses],
            )
            .await
            .map_err(|e| format!("seeding the hosts: {e}"))?;
        client
            .execute(
                "UPDATE agent_metadata SET status = 'claimed', claimed_at = now(), agent_name = 'bench' \
                 WHERE id = ANY($1)",
                &[&claimed],
            )
            .await
            .map_err(|e| format!("seeding the claims: {e}"))?;
        // Realistic rows: a claimed agent carries its user's instructions (a few KiB).
        client
            .execute(
                "UPDATE agent_metadata SET instructions = repeat('You are a helpful agent. ', 160) \
                 WHERE id = ANY($1)",
                &[&claimed],
            )
            .await
            .map_err(|e| format!("seeding the instructions: {e}"))?;
        // 1 % of the agents crashed and stay down (claimed ones: the pool keeps them, as
        // `crashed`, and keeps checking them).
        let mut crashed = 0;
        for (i, row) in rows.iter().enumerate() {
            if i % CRASHED_EVERY == 1 && i % IDLE_EVERY != 0 && sim.crash_service(&row.service_id) {
                crashed += 1;
            }
        }
        hosts.set_round_trip(AGENT_ROUND_TRIP);
        let idle = rows.len() - claimed.len();
        // Steady: the target is exactly the idle agents there are, so nothing is created or
        // drained.
        let store = db.store().await;
        let mut settings = store.settings().await.map_err(|e| e.to_string())?.settings;
        settings.min_idle = idle as u32;
        store
            .update_settings(&settings, "bench")
            .await
            .map_err(|e| e.to_string())?;
        let ca_file = std::env::temp_dir().join(format!(
            "pool-bench-agents-ca-{}-{agents}.pem",
            std::process::id()
        ));
        std::fs::write(&ca_file, hosts.ca_pem()).map_err(|e| format!("{}: {e}", ca_file.display()))?;
        Ok(Self {
            project_ids: rows.into_iter().map(|s| ProjectId::new(s.project_id)).collect(),
            sim,
            hosts,
            db,
            agents,
            idle,
            crashed,
            ca_file,
        })
    }

    /// What moves while the pool works.
    pub(super) fn activity(&self) -> (u64, u64, u64) {
        let counters = self.sim.counters();
        (
            counters.requests_total,
            counters.health_checks,
            self.hosts.stats().connections,
        )
    }

    /// The seed's sketch: each agent's status read with its own request (the same health
    /// checks besides, which cost nothing against Railway's budget). Returns (requests, wall
    /// time).
    pub(super) async fn seed_strategy(&self) -> Result<(u64, Duration), String> {
        let mut config = ClientConfig::new(self.sim.graphql_url(), vec![SecretString::from("sim-token")]);
        config.budget.max_in_flight = 64;
        // The strategy needs far more than an hour's budget per tick; let it through to
        // measure it (Railway's 50/s still applies, on both sides).
        config.budget.requests_per_hour = 100 * self.agents.max(10_000);
        let railway = RailwayClient::new(config).map_err(|e| e.to_string())?;
        let before = self.sim.counters().requests_total;
        let start = Instant::now();
        let read = railway.projects_status_batched(&self.project_ids, 1).await;
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

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}
