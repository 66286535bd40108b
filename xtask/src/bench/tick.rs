//! `cargo xtask bench tick`: the reconcile tick of a steady fleet of 1,000, 5,000 and 10,000
//! agents (one in four idle, the rest claimed; every one health-checked every tick), measured
//! on the real `pool-manager` binary (release build) run as its own process, against the
//! simulator (in this process: its memory is not the pool's) with 50 ms Railway latency and
//! Pro's 50 requests/s, and a seeded database. The seed's one-status-request-per-agent
//! strategy is measured in the same run.
//!
//! The agents are served by [`railway_sim::AgentHosts`]: each at a loopback address of its
//! own, so the pool's connection pool holds one connection per agent as it does against
//! `*.up.railway.app`. Four transports are measured on the same fleet: HTTPS and plain HTTP,
//! each with connections kept alive between ticks (the pool's default: an idle connection
//! per host for 90 s, longer than a tick) and closed after each answer
//! (`POOL_AGENT_KEEP_ALIVE_MS=0`, and the agents close too: every check a new connection,
//! over HTTPS a handshake, resumed from the session the pool remembers for that host). HTTPS trusts
//! the simulator's root through `POOL_AGENT_CA_FILE`, never by turning verification off.
//!
//! Each binary's ticks are asked for one at a time (`POST /api/pool/reconcile`, the interval
//! set to an hour), so each is measured between quiet moments: the first (at start, a full
//! sweep and an orphan sweep), three steady ones, and one full sweep. Railway requests and
//! health checks are counted by the simulator, handshakes and connections by its agent hosts,
//! CPU from `/proc/<pid>/stat`, memory from `/proc/<pid>/status` (`VmHWM`, the peak).
//!
//! The simulator's hourly cap is raised to a million: the run sends more than an hour's worth of requests
//! in minutes (the seed's strategy alone reads 10,000 projects at 10,000 agents). Its limit of
//! 50 requests/s stays, and the pool's own budget stays at 10,000 an hour.

mod procfs;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pool_e2e::ManagerProcess;
use pool_store::testing::TestDatabase;
use railway_api::{ClientConfig, ProjectId, RailwayClient};
use railway_sim::{AgentBehaviour, AgentHosts, DeployTimings, Limits, SimConfig, SimHandle};
use secrecy::SecretString;

use procfs::Memory;

/// Fleet sizes measured.
const SIZES: [usize; 3] = [1_000, 5_000, 10_000];
/// Production's defaults, which the hourly figures are for.
const TICK: Duration = Duration::from_secs(30);
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(600);
const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(1800);
/// Railway Pro: requests per hour per token.
const HOURLY_BUDGET: f64 = 10_000.0;
/// The targets at 10,000 agents (issue 13).
const TARGET_TICK: Duration = Duration::from_secs(5);
const TARGET_SHARE: f64 = 0.10;
const TARGET_PEAK_MIB: f64 = 64.0;
/// Steady ticks measured per binary.
const STEADY_TICKS: usize = 3;
/// One agent in this many is idle; the others are claimed.
const IDLE_EVERY: usize = 4;
/// The pool is quiet when nothing moved for this long.
const QUIET: Duration = Duration::from_millis(1000);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Https,
    Http,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    transport: Transport,
    keep_alive: bool,
}

/// The first is production's: HTTPS, connections kept alive between ticks.
const VARIANTS: [Variant; 4] = [
    Variant {
        transport: Transport::Https,
        keep_alive: true,
    },
    Variant {
        transport: Transport::Https,
        keep_alive: false,
    },
    Variant {
        transport: Transport::Http,
        keep_alive: true,
    },
    Variant {
        transport: Transport::Http,
        keep_alive: false,
    },
];

impl Variant {
    fn name(&self) -> &'static str {
        match (self.transport, self.keep_alive) {
            (Transport::Https, true) => "HTTPS, kept alive",
            (Transport::Https, false) => "HTTPS, closed after each check",
            (Transport::Http, true) => "HTTP, kept alive",
            (Transport::Http, false) => "HTTP, closed after each check",
        }
    }
}

pub async fn run() -> Result<(), String> {
    let started = Instant::now();
    eprintln!("bench tick: building pool-manager (release)…");
    let binary = tokio::task::spawn_blocking(pool_e2e::pool_manager_release_binary)
        .await
        .map_err(|e| e.to_string())??;
    // `BENCH_TICK_AGENTS=1000,2000` measures other sizes (a quicker look).
    let agents: Vec<usize> = match std::env::var("BENCH_TICK_AGENTS") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().replace('_', "").parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("BENCH_TICK_AGENTS must be sizes separated by commas: {e}"))?,
        Err(_) => SIZES.to_vec(),
    };
    let mut sizes = Vec::new();
    for agents in agents {
        sizes.push(measure(&binary, agents).await?);
    }
    report::print(&sizes);
    eprintln!("bench tick: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One tick as `/metrics` showed it when it had just finished.
#[derive(Debug, Clone, Copy, Default)]
struct TickSeen {
    /// Its wall time, as the pool measured it.
    wall: Duration,
    /// Railway requests, as the pool counted them.
    railway: u64,
    /// More than one tick finished between two polls: these are the last one's figures.
    merged: bool,
}

/// Counters at a quiet moment between ticks.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    ticks: u64,
    /// Railway requests, less the start-up's token checks (`apiToken`).
    railway: u64,
    health_checks: u64,
    connections: u64,
    handshakes: u64,
    resumed: u64,
    cpu: Duration,
}

/// Ticks between two snapshots, per tick.
#[derive(Debug, Clone, Copy, Default)]
struct PerTick {
    railway: f64,
    health_checks: f64,
    connections: f64,
    handshakes: f64,
    resumed: f64,
    cpu: Duration,
    /// Mean wall time of the ticks seen.
    wall: Duration,
}

impl PerTick {
    fn between(a: &Snapshot, b: &Snapshot, seen: &[TickSeen]) -> Self {
        let ticks = ticks_after(a, b);
        let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / ticks as f64;
        let wall = if seen.is_empty() {
            Duration::ZERO
        } else {
            seen.iter().map(|t| t.wall).sum::<Duration>() / seen.len() as u32
        };
        Self {
            railway: per(a.railway, b.railway),
            health_checks: per(a.health_checks, b.health_checks),
            connections: per(a.connections, b.connections),
            handshakes: per(a.handshakes, b.handshakes),
            resumed: per(a.resumed, b.resumed),
            cpu: b.cpu.saturating_sub(a.cpu) / ticks as u32,
            wall,
        }
    }
}

/// Ticks finished between two snapshots (at least one).
fn ticks_after(a: &Snapshot, b: &Snapshot) -> u64 {
    b.ticks.saturating_sub(a.ticks).max(1)
}

/// One binary's run on one transport.
#[derive(Debug, Clone, Default)]
struct Run {
    /// The first tick: a full sweep and an orphan sweep, every connection new (its Railway
    /// requests counted by the simulator, less any steady tick that came right after it).
    first: TickSeen,
    /// CPU time from start until the first tick was done.
    first_cpu: Duration,
    steady: PerTick,
    /// The worst steady tick's wall time.
    steady_max: Duration,
    full: TickSeen,
    /// Connections the agents held open after the steady ticks.
    open_after: u64,
    memory: Memory,
}

/// Everything measured at one fleet size.
struct Measured {
    agents: usize,
    runs: Vec<(Variant, Run)>,
    /// The seed's strategy: requests of one tick's status reads, and their wall time.
    seed: (u64, Duration),
}

impl Measured {
    fn production(&self) -> &Run {
        &self.runs[0].1
    }

    fn run(&self, transport: Transport, keep_alive: bool) -> Option<&Run> {
        self.runs
            .iter()
            .find(|(v, _)| v.transport == transport && v.keep_alive == keep_alive)
            .map(|(_, r)| r)
    }
}

/// A simulator, its agent hosts and a database with a steady fleet in it.
struct Fleet {
    sim: SimHandle,
    hosts: AgentHosts,
    db: TestDatabase,
    project_ids: Vec<ProjectId>,
    agents: usize,
    idle: usize,
    ca_file: PathBuf,
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
        let (db, rows) = super::seed_fleet(&sim, agents).await;
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
            ca_file,
        })
    }

    /// The counters now, with the CPU time of `pid` (none: a process yet to start).
    fn snapshot(&self, pid: Option<u32>, ticks: u64) -> Result<Snapshot, String> {
        let counters = self.sim.counters();
        let hosts = self.hosts.stats();
        Ok(Snapshot {
            ticks,
            railway: counters.requests_total - counters.requests.get("apiToken").copied().unwrap_or(0),
            health_checks: counters.health_checks,
            connections: hosts.connections,
            handshakes: hosts.handshakes,
            resumed: hosts.resumed,
            cpu: pid.map(procfs::cpu).transpose()?.unwrap_or_default(),
        })
    }

    /// What moves while the pool works.
    fn activity(&self) -> (u64, u64, u64) {
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

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// Time between the full sweeps of the binaries at this size: long enough for the first tick
/// and the steady ones to come before it.
fn full_sweep_interval(agents: usize) -> Duration {
    Duration::from_secs(10 + (agents as u64 / 500))
}

async fn measure(binary: &Path, agents: usize) -> Result<Measured, String> {
    eprintln!("bench tick: {agents} agents: seeding…");
    let fleet = Fleet::new(agents).await?;
    let mut runs = Vec::new();
    for variant in VARIANTS {
        eprintln!("bench tick: {agents} agents: {}…", variant.name());
        let run = run_binary(binary, &fleet, variant).await?;
        runs.push((variant, run));
    }
    eprintln!("bench tick: {agents} agents: the seed's strategy…");
    let seed = fleet.seed_strategy().await?;
    Ok(Measured { agents, runs, seed })
}

async fn metrics(pm: &ManagerProcess) -> Result<(u64, TickSeen), String> {
    let answer = pm.get("/metrics", false).await?;
    let text = String::from_utf8_lossy(&answer.body);
    let ticks = procfs::metric(&text, "pool_ticks_total").unwrap_or(0.0) as u64;
    let wall = procfs::metric(&text, "pool_tick_duration_seconds").unwrap_or(0.0);
    let railway = procfs::metric(&text, "pool_tick_railway_requests").unwrap_or(0.0) as u64;
    Ok((
        ticks,
        TickSeen {
            wall: Duration::from_secs_f64(wall),
            railway,
            merged: false,
        },
    ))
}

/// Waits for the pool to finish more than `after` ticks, then for it to be quiet (no tick
/// finished, nothing sent to Railway or the agents, for [`QUIET`]): a tick asked for may
/// bring another (the request's `NOTIFY` comes back to the leader), and both are counted.
/// Returns the ticks seen (each as `/metrics` showed it just after it finished) and the count.
async fn follow(
    fleet: &Fleet,
    pm: &ManagerProcess,
    after: u64,
    timeout: Duration,
) -> Result<(Vec<TickSeen>, u64), String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut ticks = after;
    let mut activity = fleet.activity();
    let mut still_since = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        let (now_ticks, last) = metrics(pm).await?;
        if now_ticks > ticks {
            // A tick missed between two polls leaves no figures of its own.
            seen.push(TickSeen {
                merged: now_ticks > ticks + 1,
                ..last
            });
            ticks = now_ticks;
            still_since = Instant::now();
        }
        let now_activity = fleet.activity();
        if now_activity != activity {
            activity = now_activity;
            still_since = Instant::now();
        }
        if ticks > after && still_since.elapsed() >= QUIET {
            return Ok((seen, ticks));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the pool finished {} of the ticks expected within {timeout:?} (simulator: {:?}, agent hosts: {:?}):\n{}",
                ticks - after,
                fleet.activity(),
                fleet.hosts.stats(),
                tail(pm)
            ));
        }
    }
}

fn tail(pm: &ManagerProcess) -> String {
    let out = pm.output_text();
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn trigger(pm: &ManagerProcess) -> Result<(), String> {
    let answer = pm
        .send(hyper::Method::POST, "/api/pool/reconcile", true, None)
        .await?;
    if answer.status != 202 {
        return Err(format!("POST /api/pool/reconcile answered {}", answer.status));
    }
    Ok(())
}

async fn run_binary(binary: &Path, fleet: &Fleet, variant: Variant) -> Result<Run, String> {
    fleet.hosts.set_keep_alive(variant.keep_alive);
    let port = pool_e2e::free_port()?;
    let full_sweep = full_sweep_interval(fleet.agents);
    let mut env = pool_e2e::sim_environment(&fleet.sim, fleet.db.url(), port);
    let template = match variant.transport {
        Transport::Https => {
            env.insert("POOL_AGENT_CA_FILE".into(), fleet.ca_file.display().to_string());
            fleet.hosts.https_url_template()
        }
        Transport::Http => fleet.hosts.http_url_template(),
    };
    env.insert("AGENT_URL_TEMPLATE".into(), template);
    if !variant.keep_alive {
        // What an operator sets to trade memory for handshakes.
        env.insert("POOL_AGENT_KEEP_ALIVE_MS".into(), "0".into());
    }
    // Ticks come when asked for (and one at start).
    env.insert("TICK_INTERVAL_MS".into(), "3600000".into());
    env.insert(
        "POOL_FULL_SWEEP_INTERVAL_MS".into(),
        full_sweep.as_millis().to_string(),
    );
    env.insert("POOL_MIN_IDLE".into(), fleet.idle.to_string());
    env.insert("RUST_LOG".into(), "info".into());

    // The first tick comes at start: a full sweep and an orphan sweep, every connection new.
    // Its window starts before the process (start-up is in its CPU time).
    let before_first = fleet.snapshot(None, 0)?;
    let mut pm = ManagerProcess::start(&binary.to_path_buf(), &env).await?;
    pm.wait_healthy(Duration::from_secs(120)).await?;
    let process = pm.pid().ok_or("pool-manager exited")?;
    let pid = Some(process);
    let tick_timeout = Duration::from_secs(300);
    let (seen, mut ticks) = follow(fleet, &pm, 0, tick_timeout).await?;
    let first_done = Instant::now();
    let mut first = seen.first().copied().unwrap_or_default();
    let after_first = fleet.snapshot(pid, ticks)?;

    let before = fleet.snapshot(pid, ticks)?;
    let mut steady_seen = Vec::new();
    for _ in 0..STEADY_TICKS {
        trigger(&pm).await?;
        let (seen, now) = follow(fleet, &pm, ticks, tick_timeout).await?;
        ticks = now;
        steady_seen.extend(seen);
    }
    let after = fleet.snapshot(pid, ticks)?;
    let steady = PerTick::between(&before, &after, &steady_seen);
    let steady_max = steady_seen.iter().map(|t| t.wall).max().unwrap_or_default();
    let first_extra_ticks = ticks_after(&before_first, &after_first) as f64 - 1.0;
    first.railway = (after_first.railway.saturating_sub(before_first.railway) as f64
        - first_extra_ticks * steady.railway)
        .round()
        .max(0.0) as u64;
    let open_after = fleet.hosts.stats().open;
    if steady.railway > (fleet.agents as f64 / 50.0) / 2.0 {
        return Err(format!(
            "{}: a steady tick sent {:.0} Railway requests: was it a full sweep? (the full-sweep interval, {full_sweep:?}, is too short for this machine)",
            variant.name(),
            steady.railway
        ));
    }

    // The full sweep, once its interval has passed since the first tick's.
    tokio::time::sleep(
        (first_done + full_sweep + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
    )
    .await;
    let before_full = fleet.snapshot(pid, ticks)?;
    trigger(&pm).await?;
    let (seen, ticks) = follow(fleet, &pm, ticks, tick_timeout).await?;
    let mut full = seen.first().copied().unwrap_or_default();
    if full.merged {
        eprintln!(
            "bench tick: {}: the full sweep and the tick after it finished between two polls; its wall time is the latter's",
            variant.name()
        );
    }
    // The simulator's count, less the steady ticks that came with it.
    let window = fleet.snapshot(pid, ticks)?;
    let extra_ticks = ticks_after(&before_full, &window) as f64 - 1.0;
    full.railway = (window.railway.saturating_sub(before_full.railway) as f64 - extra_ticks * steady.railway)
        .round()
        .max(0.0) as u64;
    let memory = procfs::memory(process)?;

    // Still the fleet it was: nothing was created, drained, or judged crashed.
    let counts = pm.counts().await?;
    let count = |key: &str| counts.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
    if count("idle") != fleet.idle || count("claimed") != fleet.agents - fleet.idle {
        return Err(format!(
            "{}: the fleet did not stay steady: {counts}\n{}",
            variant.name(),
            tail(&pm)
        ));
    }
    pm.signal("TERM")?;
    if pm.wait_exit(Duration::from_secs(60)).await.is_err() {
        let _ = pm.signal("KILL");
    }
    Ok(Run {
        first,
        first_cpu: after_first.cpu,
        steady,
        steady_max,
        full,
        open_after,
        memory,
    })
}
