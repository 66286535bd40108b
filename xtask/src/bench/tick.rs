//! `cargo xtask bench tick [--quick] [--runs N] [--steady N] [--closed]`: the reconcile tick of
//! a steady fleet at 1,000, 5,000 and 10,000 agents (`--quick`: 1,000; `BENCH_TICK_AGENTS=…`
//! other sizes), measured on the real `pool-manager` binary (release) run as its own process
//! and labelled tick by tick, so that no figure can flatter the pool:
//!
//! - each tick is asked for one at a time (`POST /api/pool/reconcile`, the interval set to an
//!   hour) and labelled by the bench as `first` (at start), `steady` or `sweep` (asked for once
//!   the full-sweep interval has passed); the run FAILS when a tick labelled steady swept (the
//!   pool's own `pool_tick_full_sweep`) or when the Railway requests the pool counted
//!   (`railway_requests_total`) disagree with what the simulator received in the same window;
//! - per tick: wall time (the pool's), Railway requests (pool and simulator) by operation,
//!   health checks, agents read, problems, the pool's CPU, the others' CPU and steal time
//!   (`/proc/stat`);
//! - at least 20 steady ticks × 3 runs, reported as median, p90, max and the spread of the
//!   runs' medians;
//! - peak RSS per phase (`/proc/<pid>/clear_refs` resets `VmHWM` before each phase), and the
//!   slope and intercept of the steady phase's peak over the sizes measured;
//! - realistic rows: one agent in four idle, the rest claimed with a few KiB of instructions,
//!   1 % crashed (claimed agents whose deployment crashed and stays down), 50 ms round trips to
//!   the agents, 50 ms to Railway with Pro's 50 requests/s;
//! - on Linux the pool is pinned to CPU 0 and this process (the simulator and its agent hosts)
//!   to CPU 1 (`taskset`); PostgreSQL, shared with the machine, is not pinned.
//!
//! The agents are served by [`railway_sim::AgentHosts`], each at a loopback address of its own
//! over HTTPS (the pool trusts the simulator's root through `POOL_AGENT_CA_FILE`), so the pool
//! holds one connection per agent as against `*.up.railway.app`; `--closed` sets
//! `POOL_AGENT_KEEP_ALIVE_MS=0` (and the agents close too). The seed's one-status-request-per-agent
//! strategy is measured in the same run, and its ratio printed.
//!
//! Not yet as the issue asks: the simulator and the agent hosts run in this process (pinned to
//! the other core), not in a process of their own.
//!
//! The simulator's hourly cap is raised to a million: the run sends more than an hour's worth
//! of requests in minutes. Its limit of 50 requests/s stays, and the pool's budget stays at
//! 10,000 an hour.

mod fleet;
mod procfs;
pub(super) use procfs::metric;
mod report;

use fleet::Fleet;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use pool_e2e::ManagerProcess;

use procfs::{CpuTimes, Memory};

/// Fleet sizes measured.
const SIZES: [usize; 3] = [1_000, 5_000, 10_000];
const QUICK_SIZES: [usize; 1] = [1_000];
/// Production's defaults, which the hourly figures are for.
const TICK: Duration = Duration::from_secs(30);
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(600);
const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(1800);
/// Railway Pro: requests per hour per token.
const HOURLY_BUDGET: f64 = 10_000.0;
/// The targets at 10,000 agents (issue 23).
const TARGET_STEADY_MEDIAN: Duration = Duration::from_secs(1);
const TARGET_STEADY_P90: Duration = Duration::from_secs(2);
const TARGET_SHARE: f64 = 0.10;
const TARGET_PEAK_MIB: f64 = 64.0;
/// Steady ticks per run, and runs per size.
const STEADY_TICKS: usize = 20;
const RUNS: usize = 3;
/// One agent in this many is idle; the others are claimed.
const IDLE_EVERY: usize = 4;
/// One agent in this many crashed (a claimed one).
const CRASHED_EVERY: usize = 100;
/// The round trip to an agent across the internet.
const AGENT_ROUND_TRIP: Duration = Duration::from_millis(50);
/// The pool is quiet when nothing moved for this long.
const QUIET: Duration = Duration::from_millis(1000);
const POLL: Duration = Duration::from_millis(50);

struct Options {
    sizes: Vec<usize>,
    runs: usize,
    steady: usize,
    closed: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Options {
            sizes: SIZES.to_vec(),
            runs: RUNS,
            steady: STEADY_TICKS,
            closed: false,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut number = |name: &str| -> Result<usize, String> {
                rest.next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or(format!("{name} needs a whole number above 0"))
            };
            match arg.as_str() {
                "--quick" => options.sizes = QUICK_SIZES.to_vec(),
                "--runs" => options.runs = number("--runs")?,
                "--steady" => options.steady = number("--steady")?,
                "--closed" => options.closed = true,
                other => {
                    return Err(format!(
                        "unknown option {other:?}\nusage: cargo xtask bench tick [--quick] [--runs N] [--steady N] [--closed]"
                    ));
                }
            }
        }
        // `BENCH_TICK_AGENTS=1000,2000` measures other sizes.
        if let Ok(list) = std::env::var("BENCH_TICK_AGENTS") {
            options.sizes = list
                .split(',')
                .map(|n| n.trim().replace('_', "").parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("BENCH_TICK_AGENTS must be sizes separated by commas: {e}"))?;
        }
        Ok(options)
    }
}

pub async fn run(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args)?;
    let started = Instant::now();
    let load_before = procfs::load_average();
    eprintln!("bench tick: building pool-manager (release)…");
    let binary = tokio::task::spawn_blocking(pool_e2e::pool_manager_release_binary)
        .await
        .map_err(|e| e.to_string())??;
    let pinned = procfs::pin(std::process::id(), 1).is_ok();
    let mut sizes = Vec::new();
    let mut failures = Vec::new();
    for &agents in &options.sizes {
        let measured = measure(&binary, agents, &options, pinned).await?;
        failures.extend(measured.failures.iter().cloned());
        sizes.push(measured);
    }
    report::print(&sizes, &options, pinned, load_before, procfs::load_average());
    eprintln!("bench tick: done in {:.0} s", started.elapsed().as_secs_f64());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("the bench FAILED:\n- {}", failures.join("\n- ")))
    }
}

/// What a tick is, as the bench asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    First,
    Steady,
    Sweep,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::First => "first",
            Kind::Steady => "steady",
            Kind::Sweep => "sweep",
        }
    }
}

/// One tick (the window from asking for it until the pool was quiet).
#[derive(Debug, Clone)]
struct TickRecord {
    kind: Kind,
    /// Ticks the pool finished in the window (1 unless something else woke it).
    ticks: u64,
    /// The pool's wall time of the last tick of the window.
    wall: Duration,
    /// Railway requests in the window: counted by the pool (`railway_requests_total`), and
    /// received by the simulator, by operation.
    pool_railway: u64,
    sim_railway: u64,
    by_operation: BTreeMap<String, u64>,
    health_checks: u64,
    read: u64,
    full_sweep: bool,
    problems: u64,
    pool_cpu: Duration,
    others_cpu: Duration,
    steal: Duration,
}

/// One process's run at one size.
#[derive(Debug, Clone, Default)]
struct Run {
    ticks: Vec<TickRecord>,
    /// Peak RSS per phase: start and first tick, steady ticks, the sweep.
    peaks: BTreeMap<&'static str, Memory>,
}

/// Everything measured at one fleet size.
struct Measured {
    agents: usize,
    crashed: usize,
    runs: Vec<Run>,
    /// The seed's strategy: requests of one tick's status reads, and their wall time.
    seed: (u64, Duration),
    failures: Vec<String>,
}

impl Measured {
    fn ticks(&self, kind: Kind) -> impl Iterator<Item = &TickRecord> {
        self.runs
            .iter()
            .flat_map(|r| r.ticks.iter())
            .filter(move |t| t.kind == kind)
    }
}

/// Time between the full sweeps of the binaries at this size: long enough for the first tick
/// and the steady ones to come before it (each steady tick checks every agent, at 64 in flight
/// and a 50 ms round trip).
fn full_sweep_interval(agents: usize, steady: usize) -> Duration {
    let per_tick = Duration::from_millis(1_500 + agents as u64 * AGENT_ROUND_TRIP.as_millis() as u64 / 32);
    Duration::from_secs(30) + per_tick * steady as u32
}

async fn measure(binary: &Path, agents: usize, options: &Options, pinned: bool) -> Result<Measured, String> {
    eprintln!("bench tick: {agents} agents: seeding…");
    let fleet = Fleet::new(agents).await?;
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for run in 1..=options.runs {
        eprintln!("bench tick: {agents} agents: run {run} of {}…", options.runs);
        let measured = run_binary(binary, &fleet, options, pinned).await?;
        for t in &measured.ticks {
            if t.kind == Kind::Steady && t.full_sweep {
                failures.push(format!(
                    "{agents} agents, run {run}: a tick labelled steady swept ({} Railway requests, {} agents read)",
                    t.sim_railway, t.read
                ));
            }
            if t.pool_railway != t.sim_railway {
                failures.push(format!(
                    "{agents} agents, run {run}: a {} tick: the pool counted {} Railway requests, the simulator received {}",
                    t.kind.name(),
                    t.pool_railway,
                    t.sim_railway
                ));
            }
        }
        if !measured
            .ticks
            .iter()
            .any(|t| t.kind == Kind::Sweep && t.full_sweep)
        {
            failures.push(format!(
                "{agents} agents, run {run}: the tick labelled sweep did not sweep"
            ));
        }
        runs.push(measured);
    }
    eprintln!("bench tick: {agents} agents: the seed's strategy…");
    let seed = fleet.seed_strategy().await?;
    Ok(Measured {
        agents,
        crashed: fleet.crashed,
        runs,
        seed,
        failures,
    })
}

/// The pool's counters in `/metrics`: (ticks, Railway requests in all, the last tick).
struct Metrics {
    ticks: u64,
    railway: u64,
    wall: Duration,
    health_checks: u64,
    read: u64,
    full_sweep: bool,
    problems: u64,
}

async fn metrics(pm: &ManagerProcess) -> Result<Metrics, String> {
    let answer = pm.get("/metrics", false).await?;
    let text = String::from_utf8_lossy(&answer.body);
    let read = |name: &str| procfs::metric(&text, name).unwrap_or(0.0);
    Ok(Metrics {
        ticks: read("pool_ticks_total") as u64,
        railway: procfs::metric_sum(&text, "railway_requests_total") as u64,
        wall: Duration::from_secs_f64(read("pool_tick_duration_seconds")),
        health_checks: read("pool_tick_health_checks") as u64,
        read: read("pool_tick_agents_read") as u64,
        full_sweep: read("pool_tick_full_sweep") > 0.0,
        problems: read("pool_tick_problems") as u64,
    })
}

/// Counters at one moment, for a window's differences.
struct Moment {
    pool: Metrics,
    sim_total: u64,
    by_operation: BTreeMap<String, u64>,
    pool_cpu: Duration,
    machine: CpuTimes,
}

async fn moment(fleet: &Fleet, pm: &ManagerProcess, pid: u32) -> Result<Moment, String> {
    let pool = metrics(pm).await?;
    let counters = fleet.sim.counters();
    Ok(Moment {
        pool,
        sim_total: counters.requests_total,
        by_operation: counters.requests,
        pool_cpu: procfs::cpu(pid)?,
        machine: procfs::machine()?,
    })
}

fn record(kind: Kind, a: &Moment, b: &Moment) -> TickRecord {
    let by_operation = b
        .by_operation
        .iter()
        .filter_map(|(op, n)| {
            let d = n - a.by_operation.get(op).copied().unwrap_or(0);
            (d > 0).then(|| (op.clone(), d))
        })
        .collect();
    let pool_cpu = b.pool_cpu.saturating_sub(a.pool_cpu);
    TickRecord {
        kind,
        ticks: b.pool.ticks - a.pool.ticks,
        wall: b.pool.wall,
        pool_railway: b.pool.railway.saturating_sub(a.pool.railway),
        sim_railway: b.sim_total - a.sim_total,
        by_operation,
        health_checks: b.pool.health_checks,
        read: b.pool.read,
        full_sweep: b.pool.full_sweep,
        problems: b.pool.problems,
        pool_cpu,
        others_cpu: b
            .machine
            .busy
            .saturating_sub(a.machine.busy)
            .saturating_sub(pool_cpu),
        steal: b.machine.steal.saturating_sub(a.machine.steal),
    }
}

/// Waits for the pool to finish more than `after` ticks, then for it to be quiet (no tick
/// finished, nothing sent to Railway or the agents, for [`QUIET`]). Returns the ticks
/// finished in all.
async fn follow(
    fleet: &Fleet,
    pm: &ManagerProcess,
    after: u64,
    timeout: Duration,
) -> Result<((), u64), String> {
    let deadline = Instant::now() + timeout;
    let mut ticks = after;
    let mut activity = fleet.activity();
    let mut still_since = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        let now_ticks = metrics(pm).await?.ticks;
        if now_ticks > ticks {
            ticks = now_ticks;
            still_since = Instant::now();
        }
        let now_activity = fleet.activity();
        if now_activity != activity {
            activity = now_activity;
            still_since = Instant::now();
        }
        if ticks > after && still_since.elapsed() >= QUIET {
            return Ok(((), ticks));
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

async fn run_binary(binary: &Path, fleet: &Fleet, options: &Options, pinned: bool) -> Result<Run, String> {
    fleet.hosts.set_keep_alive(!options.closed);
    let port = pool_e2e::free_port()?;
    let full_sweep = full_sweep_interval(fleet.agents, options.steady);
    let mut env = pool_e2e::sim_environment(&fleet.sim, fleet.db.url(), port);
    env.insert("POOL_AGENT_CA_FILE".into(), fleet.ca_file.display().to_string());
    env.insert("AGENT_URL_TEMPLATE".into(), fleet.hosts.https_url_template());
    if options.closed {
        env.insert("POOL_AGENT_KEEP_ALIVE_MS".into(), "0".into());
    }
    // Ticks come when asked for (and one at start).
    env.insert("TICK_INTERVAL_MS".into(), "3600000".into());
    env.insert(
        "POOL_FULL_SWEEP_INTERVAL_MS".into(),
        full_sweep.as_millis().to_string(),
    );
    env.insert("POOL_MIN_IDLE".into(), fleet.idle.to_string());
    env.insert("POOL_MAX_TOTAL".into(), fleet.agents.to_string());
    env.insert("RUST_LOG".into(), "warn".into());

    let before_start = Moment {
        pool: Metrics {
            ticks: 0,
            railway: 0,
            wall: Duration::ZERO,
            health_checks: 0,
            read: 0,
            full_sweep: false,
            problems: 0,
        },
        sim_total: fleet.sim.counters().requests_total,
        by_operation: fleet.sim.counters().requests,
        pool_cpu: Duration::ZERO,
        machine: procfs::machine()?,
    };
    let mut pm = ManagerProcess::start(&binary.to_path_buf(), &env).await?;
    let pid = pm.pid().ok_or("pool-manager exited")?;
    if pinned {
        procfs::pin(pid, 0)?;
    }
    pm.wait_healthy(Duration::from_secs(120)).await?;
    if pinned {
        // Threads started meanwhile.
        procfs::pin(pid, 0)?;
    }
    let tick_timeout = Duration::from_secs(600);
    let mut ticks = 0;
    let mut records = Vec::new();
    let mut peaks = BTreeMap::new();

    // The first tick comes at start (its window starts before the process).
    let (_, now) = follow(fleet, &pm, ticks, tick_timeout).await?;
    ticks = now;
    let first_done = Instant::now();
    let mut first = record(Kind::First, &before_start, &moment(fleet, &pm, pid).await?);
    // The start-up's token checks are no tick's.
    let tokens = first.by_operation.remove("apiToken").unwrap_or(0);
    first.sim_railway -= tokens;
    first.pool_railway = first.pool_railway.saturating_sub(tokens);
    records.push(first);
    peaks.insert("start + first tick", procfs::memory(pid)?);

    procfs::clear_peak(pid)?;
    for _ in 0..options.steady {
        let before = moment(fleet, &pm, pid).await?;
        trigger(&pm).await?;
        let (_, now) = follow(fleet, &pm, ticks, tick_timeout).await?;
        ticks = now;
        records.push(record(Kind::Steady, &before, &moment(fleet, &pm, pid).await?));
    }
    peaks.insert("steady ticks", procfs::memory(pid)?);

    // The sweep, once its interval has passed since the first tick's.
    let due = first_done + full_sweep + Duration::from_millis(500);
    tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
    procfs::clear_peak(pid)?;
    let before = moment(fleet, &pm, pid).await?;
    trigger(&pm).await?;
    let (_, _) = follow(fleet, &pm, ticks, tick_timeout).await?;
    records.push(record(Kind::Sweep, &before, &moment(fleet, &pm, pid).await?));
    peaks.insert("sweep tick", procfs::memory(pid)?);

    // Still the fleet it was: nothing created, drained or torn down.
    let counts = pm.counts().await?;
    let count = |key: &str| counts.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
    if count("idle") != fleet.idle || count("claimed") + count("crashed") != fleet.agents - fleet.idle {
        return Err(format!("the fleet did not stay steady: {counts}\n{}", tail(&pm)));
    }
    pm.signal("TERM")?;
    if pm.wait_exit(Duration::from_secs(60)).await.is_err() {
        let _ = pm.signal("KILL");
    }
    Ok(Run {
        ticks: records,
        peaks,
    })
}
