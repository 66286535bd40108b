//! The tick bench's fleet: a simulator, its agent hosts, and a database of realistic rows. It
//! runs in a process of its own (`xtask bench tick-fleet N`, started by the bench, pinned to
//! the other core than the pool), and answers the bench over its standard input and output,
//! one JSON line per request: `counters`, `keep-alive true|false`, `seed`. It stops (and drops
//! its database) when its input closes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use pool_store::testing::TestDatabase;
use railway_api::{ClientConfig, ProjectId, RailwayClient};
use railway_sim::{AgentBehaviour, AgentHosts, DeployTimings, Limits, SimConfig, SimHandle};
use secrecy::SecretString;

use super::{AGENT_ROUND_TRIP, CRASHED_EVERY, IDLE_EVERY};

/// Whether the fleet's `i`th agent is idle: one in [`IDLE_EVERY`], up to the most idle agents
/// the pool's settings accept (`POOL_MIN_IDLE` ≤ 10,000, so that the pool keeps exactly what
/// is there: at 100,000 agents, 10,000 idle and 90,000 claimed).
fn idle_at(i: usize) -> bool {
    i.is_multiple_of(IDLE_EVERY) && i / IDLE_EVERY < pool_provisioner::MAX_MIN_IDLE as usize
}

/// A simulator, its agent hosts and a database with a steady fleet in it.
struct Fleet {
    sim: SimHandle,
    hosts: AgentHosts,
    db: TestDatabase,
    project_ids: Vec<ProjectId>,
    agents: usize,
    idle: usize,
    /// Claimed agents whose deployment crashed and stays down.
    crashed: usize,
    ca_file: PathBuf,
}

/// When the fleet's crashed agents crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::bench) enum Crashed {
    /// As the pool starts: their rows say `claimed`, and the pool finds them down at its
    /// first tick (then reads each after 30 s, 1, 2, 4, 8 and every 10 min). `bench tick`.
    AtStart,
    /// A day before: their rows say `crashed` since then, as in a fleet that has been running
    /// (the pool reads each once at start, then every 10 min, its longest backoff step).
    /// `bench shards`.
    DayBefore,
}

impl Crashed {
    /// The fleet process's argument.
    pub(in crate::bench) fn arg(self) -> &'static str {
        match self {
            Self::AtStart => "crashed-at-start",
            Self::DayBefore => "crashed-a-day-before",
        }
    }

    fn parse(arg: Option<&String>) -> Result<Self, String> {
        match arg.map(String::as_str) {
            None | Some("crashed-at-start") => Ok(Self::AtStart),
            Some("crashed-a-day-before") => Ok(Self::DayBefore),
            Some(other) => Err(format!(
                "xtask bench tick-fleet: {other:?}: crashed-at-start or crashed-a-day-before"
            )),
        }
    }
}

impl Fleet {
    async fn new(agents: usize, when_crashed: Crashed) -> Result<Self, String> {
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
            .filter(|(i, _)| !idle_at(*i))
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
        let mut crashed_ids = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if i % CRASHED_EVERY == 1 && !idle_at(i) && sim.crash_service(&row.service_id) {
                crashed_ids.push(row.id.clone());
            }
        }
        let crashed = crashed_ids.len();
        if when_crashed == Crashed::DayBefore {
            client
                .execute(
                    "UPDATE agent_metadata SET status = 'crashed', deployment_status = 'CRASHED', \
                     status_changed_at = now() - interval '1 day' WHERE id = ANY($1)",
                    &[&crashed_ids],
                )
                .await
                .map_err(|e| format!("seeding the crashed agents: {e}"))?;
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

    /// What the bench reads between ticks: the simulator's counters and the agent hosts'.
    fn counters(&self) -> Value {
        let c = self.sim.counters();
        let h = self.hosts.stats();
        json!({
            "requests_total": c.requests_total,
            "requests": c.requests,
            "rate_limited": c.rate_limited,
            "health_checks": c.health_checks,
            "health_failures": c.health_failures,
            "connections": h.connections,
            "open": h.open,
            "handshakes": h.handshakes,
            "resumed": h.resumed,
            "handshake_failures": h.handshake_failures,
        })
    }

    /// The health checks recorded since `record-arrivals`: agents checked at all, and the
    /// longest time an agent went unchecked (between two checks, or since the recording
    /// started or until now).
    fn coverage(&self) -> Value {
        let now = Instant::now();
        let mut by_host: std::collections::HashMap<String, Vec<Instant>> = std::collections::HashMap::new();
        for (host, at) in self.hosts.arrivals() {
            by_host.entry(host).or_default().push(at);
        }
        let first = by_host.values().flatten().min().copied().unwrap_or(now);
        let mut longest = Duration::ZERO;
        for arrivals in by_host.values_mut() {
            arrivals.sort();
            let mut last = first;
            for at in arrivals.iter().chain(std::iter::once(&now)) {
                longest = longest.max(at.saturating_duration_since(last));
                last = *at;
            }
        }
        json!({
            "agents_checked": by_host.len(),
            "checks": by_host.values().map(Vec::len).sum::<usize>(),
            "recorded_ms": now.saturating_duration_since(first).as_millis() as u64,
            "longest_unchecked_ms": longest.as_millis() as u64,
        })
    }

    /// What the bench needs to start a pool against this fleet.
    fn description(&self) -> Value {
        // The pool's port and `POOL_URL` are the bench's, set per run.
        let mut env = pool_e2e::sim_environment(&self.sim, self.db.url(), 0);
        env.insert("POOL_AGENT_CA_FILE".into(), self.ca_file.display().to_string());
        env.insert("AGENT_URL_TEMPLATE".into(), self.hosts.https_url_template());
        json!({
            "env": env,
            "http_url_template": self.hosts.http_url_template(),
            "agents": self.agents,
            "idle": self.idle,
            "crashed": self.crashed,
        })
    }

    /// The seed's sketch: each agent's status read with its own request (the same health
    /// checks besides, which cost nothing against Railway's budget). Returns (requests, wall
    /// time).
    async fn seed_strategy(&self) -> Result<(u64, Duration), String> {
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

/// The fleet's process: builds the fleet, describes it on one line, then answers requests
/// until its input closes.
pub(in crate::bench) async fn serve(args: &[String]) -> Result<(), String> {
    let agents: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or("usage: xtask bench tick-fleet AGENTS [crashed-at-start|crashed-a-day-before] (started by `bench tick` and `bench shards`)")?;
    let fleet = Fleet::new(agents, Crashed::parse(args.get(1))?).await?;
    say(fleet.description())?;
    // Tokio's standard input wants a feature the workspace does not build: a blocking read
    // on the blocking pool, one line at a time.
    loop {
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map(|n| (n > 0).then_some(line))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the bench's pipe: {e}"))?;
        let Some(line) = line else { break };
        let answer = match line.trim() {
            "counters" => fleet.counters(),
            "keep-alive true" | "keep-alive false" => {
                fleet.hosts.set_keep_alive(line.trim().ends_with("true"));
                json!({})
            }
            "record-arrivals" => {
                fleet.hosts.record_arrivals();
                json!({})
            }
            "coverage" => fleet.coverage(),
            "seed" => match fleet.seed_strategy().await {
                Ok((requests, wall)) => json!({"requests": requests, "wall_ms": wall.as_millis() as u64}),
                Err(e) => json!({"error": e}),
            },
            other => json!({"error": format!("unknown request {other:?}")}),
        };
        say(answer)?;
    }
    Ok(())
}

/// One line to the bench.
fn say(value: Value) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("the bench's pipe: {e}"))
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}
