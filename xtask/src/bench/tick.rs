//! `cargo xtask bench tick [--quick] [--runs N] [--steady N] [--closed]`: the reconcile tick of
//! a steady fleet at 1,000, 5,000 and 10,000 agents (`--quick`: 1,000; `BENCH_TICK_AGENTS=…`
//! other sizes), measured on the real `pool-manager` binary (release) run as its own process
//! and labelled tick by tick, so that no figure can flatter the pool:
//!
//! - each tick is asked for one at a time (`POST /api/pool/reconcile`, the interval set to an
//!   hour so that no tick comes unasked) and labelled by the bench: `first` (at start: the
//!   orphan sweep and the retention pass come due), `steady` (one slice of the rolling status
//!   sweep, as every production tick), `sweep` (asked for once the orphan sweep, the one sweep
//!   of the whole fleet left, is due again). The rolling sweep has as many slices as in
//!   production at that fleet size ([`slices`]: production's 10 min over 30 s, 20, lengthened
//!   past 3,000 agents so that the sweep stays within its share of the budget), so each tick
//!   reads one slice;
//! - the run FAILS when a tick labelled steady swept (the pool's `pool_tick_full_sweep`, the
//!   workspace listing of the orphan sweep in its window, or more agents read than twice a
//!   slice plus the crashed ones), when the tick labelled sweep did not list the workspace, or
//!   when the Railway requests the pool counted (`railway_requests_total`) disagree with what
//!   the simulator received in the same window;
//! - per tick: wall time (the pool's), Railway requests (pool and simulator) by operation and
//!   the cause it serves, failures by cause (health answers other than 200 by status, Railway
//!   answers other than ok, 429s, TLS handshake failures, a lost leadership — logged, or
//!   `pool_is_leader` fallen to 0 —, the pool's other warnings), health checks,
//!   agents read, the pool's CPU, the fleet process's, the others' (PostgreSQL and whatever
//!   else runs on the machine) and steal time (`/proc/stat`);
//! - at least 20 steady ticks × 3 runs, reported as median, p90, max and the spread of the
//!   runs' medians; the hourly budget from the ticks' means (a median would hide the ticks
//!   that read suspects);
//! - peak RSS per phase (`/proc/<pid>/clear_refs` resets `VmHWM` before each phase), and the
//!   slope and intercept of the steady phase's peak over the sizes measured;
//! - realistic rows: one agent in four idle, the rest claimed with a few KiB of instructions,
//!   1 % crashed (claimed agents whose deployment crashed and stays down), 50 ms round trips to
//!   the agents, 50 ms to Railway with Pro's 50 requests/s;
//! - the simulator and its agent hosts run in a process of their own (`xtask bench
//!   tick-fleet N`, [`fleet`]); on Linux the pool is pinned to CPU 0, the fleet's process and
//!   this one to CPU 1 (`taskset`); PostgreSQL, shared with the machine, is not pinned.
//!
//! Ticks come back to back, not every 30 s: what runs on wall-clock time (a crashed agent's
//! backoff of 30 s rising to 10 min, re-probes 3 s after a failed check) comes due in more
//! ticks than in production, so the crashed agents cost more reads here than they would.
//!
//! The agents are served by [`railway_sim::AgentHosts`], each at a loopback address of its own
//! over HTTPS (the pool trusts the simulator's root through `POOL_AGENT_CA_FILE`), so the pool
//! holds one connection per agent as against `*.up.railway.app`; `--closed` sets
//! `POOL_AGENT_KEEP_ALIVE_MS=0` (and the agents close too). The seed's one-status-request-per-agent
//! strategy is measured in the same run, and its ratio printed.
//!
//! The simulator's hourly cap is raised to a million: the run sends more than an hour's worth
//! of requests in minutes. Its limit of 50 requests/s stays, and the pool's budget stays at
//! 10,000 an hour.

mod drive;
pub(super) mod fleet;
pub(super) mod process;
pub(super) mod procfs;
pub(super) use fleet::serve as serve_fleet;
pub(super) use procfs::metric;
mod report;

use drive::{follow, tail, trigger};
use process::{Coverage, FleetProcess, SimCounters};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use pool_e2e::ManagerProcess;

use procfs::{CpuTimes, Memory, Metrics, metrics};

/// Fleet sizes measured.
const SIZES: [usize; 3] = [1_000, 5_000, 10_000];
const QUICK_SIZES: [usize; 1] = [1_000];
/// Production's defaults, which the hourly figures are for.
const TICK: Duration = Duration::from_secs(30);
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(600);
const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(1800);
/// The bench's tick interval (ticks come when asked for): an hour, or less where its
/// full-sweep interval, as many of them as production's slices (see [`slices`]), would pass
/// the configuration's longest, a day (67 slices at 10,000 agents: 21.5 min, still far
/// longer than a run).
const BENCH_TICK: Duration = Duration::from_secs(3600);
const LONGEST_FULL_SWEEP: Duration = Duration::from_secs(86_400);

fn bench_tick(agents: usize) -> Duration {
    BENCH_TICK.min(LONGEST_FULL_SWEEP / slices(agents))
}
/// The Railway operation of the orphan sweep's workspace listing (`projects`).
const LISTING: &str = "projects";
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
        let mut args = super::options::Args::new(
            args,
            "cargo xtask bench tick [--quick] [--runs N] [--steady N] [--closed]",
        );
        while let Some(arg) = args.next() {
            match arg {
                "--quick" => options.sizes = QUICK_SIZES.to_vec(),
                "--runs" => options.runs = args.number(arg)? as usize,
                "--steady" => options.steady = args.number(arg)? as usize,
                "--closed" => options.closed = true,
                other => return Err(args.unknown(other)),
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
    // The pool on CPU 0; the fleet's process and this one on CPU 1.
    let pinned = procfs::cpus() >= 2 && procfs::pin(std::process::id(), 1).is_ok();
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
    /// Failures in the window by cause.
    failures: BTreeMap<String, u64>,
    /// Where the last tick of the window spent its wall time (the pool's `tick phases`), ms.
    phases: BTreeMap<String, u64>,
    /// Health checks the agents received in the window (the prober's, between and during
    /// ticks; the tick itself sends none while the prober runs).
    health_checks: u64,
    read: u64,
    full_sweep: bool,
    problems: u64,
    pool_cpu: Duration,
    fleet_cpu: Duration,
    others_cpu: Duration,
    steal: Duration,
}

/// One process's run at one size.
#[derive(Debug, Clone, Default)]
struct Run {
    ticks: Vec<TickRecord>,
    /// Peak RSS per phase: start and first tick, steady ticks, the sweep.
    peaks: BTreeMap<&'static str, Memory>,
    /// From the first tick's end to the last steady tick's.
    steady_phase: Duration,
    /// The prober's checks over the steady phase, as the agents received them.
    coverage: Coverage,
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

/// When the orphan sweep comes due again after the first tick: after the steady ticks. The
/// first run guesses from a slow tick (a re-probe's 3 s, the bench's second of quiet, a
/// millisecond per agent); later runs take the last run's steady phase, half again.
fn orphan_sweep_interval(agents: usize, steady: usize, last: Option<Duration>) -> Duration {
    let guess = || Duration::from_millis(4_500 + agents as u64) * steady as u32;
    Duration::from_secs(20) + last.map_or_else(guess, |l| l * 3 / 2)
}

/// The rolling sweep's slices in production at this fleet size: the reconciler's own
/// computation at production's intervals and budget (the bench's hour-long tick interval would
/// give the sweep the budget of an hour a tick).
fn slices(agents: usize) -> u32 {
    pool_reconciler::sweep_slices(FULL_SWEEP_EVERY, TICK, agents, HOURLY_BUDGET as usize) as u32
}

/// Why a steady tick counts as a sweep, if it does.
fn swept(t: &TickRecord, agents: usize, crashed: usize) -> Option<String> {
    let slice = agents.div_ceil(slices(agents) as usize);
    if t.full_sweep {
        Some("the pool says it read every steady agent (pool_tick_full_sweep)".into())
    } else if t.by_operation.contains_key(LISTING) {
        Some("the orphan sweep listed the workspace in its window".into())
    } else if t.read as usize > 2 * slice + crashed {
        Some(format!(
            "it read {} agents, more than twice a slice ({slice}) and the {crashed} crashed",
            t.read
        ))
    } else {
        None
    }
}

async fn measure(binary: &Path, agents: usize, options: &Options, pinned: bool) -> Result<Measured, String> {
    eprintln!("bench tick: {agents} agents: seeding the fleet's process…");
    let fleet = FleetProcess::start(agents, fleet::Crashed::AtStart, pinned.then_some(1)).await?;
    let mut runs: Vec<Run> = Vec::new();
    let mut failures = Vec::new();
    for run in 1..=options.runs {
        eprintln!("bench tick: {agents} agents: run {run} of {}…", options.runs);
        let last = runs.last().map(|r| r.steady_phase);
        let measured = run_binary(binary, &fleet, options, pinned, last).await?;
        for t in &measured.ticks {
            if t.kind == Kind::Steady
                && let Some(why) = swept(t, fleet.agents, fleet.crashed)
            {
                failures.push(format!(
                    "{agents} agents, run {run}: a tick labelled steady swept: {why}"
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
            .any(|t| t.kind == Kind::First && t.by_operation.contains_key(LISTING))
        {
            // The leader sweeps at once; later sweeps space out with the workspace's size
            // (`pool_reconciler::orphan_sweep_interval`: 30 min up to 9,999 projects), so the
            // budget counts the first tick's listing that often.
            failures.push(format!(
                "{agents} agents, run {run}: the first tick did not list the workspace (no orphan sweep)"
            ));
        }
        runs.push(measured);
    }
    eprintln!("bench tick: {agents} agents: the seed's strategy…");
    let seed = fleet.seed_strategy().await?;
    let crashed = fleet.crashed;
    fleet.stop().await;
    Ok(Measured {
        agents,
        crashed,
        runs,
        seed,
        failures,
    })
}

/// Counters at one moment, for a window's differences.
struct Moment {
    pool: Metrics,
    sim: SimCounters,
    /// Warnings and errors the pool has logged, by message.
    warnings: BTreeMap<String, u64>,
    /// The pool's `tick phases` events so far.
    phases: Vec<BTreeMap<String, u64>>,
    pool_cpu: Duration,
    fleet_cpu: Duration,
    bench_cpu: Duration,
    machine: CpuTimes,
}

async fn moment(fleet: &FleetProcess, pm: Option<&ManagerProcess>, pid: u32) -> Result<Moment, String> {
    let (pool, log, pool_cpu) = match pm {
        Some(pm) => (metrics(pm).await?, pm.output_text(), procfs::cpu(pid)?),
        None => (Metrics::default(), String::new(), Duration::ZERO),
    };
    Ok(Moment {
        pool,
        sim: fleet.counters().await?,
        warnings: procfs::warnings(&log),
        phases: procfs::tick_phases(&log),
        pool_cpu,
        fleet_cpu: procfs::cpu(fleet.pid)?,
        bench_cpu: procfs::cpu(std::process::id())?,
        machine: procfs::machine()?,
    })
}

/// What grew from `a` to `b`, by key.
fn grown(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    b.iter()
        .filter_map(|(k, n)| {
            let d = n.saturating_sub(a.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn record(kind: Kind, a: &Moment, b: &Moment) -> TickRecord {
    let mut failures = grown(&a.pool.railway_failed, &b.pool.railway_failed);
    for (status, n) in grown(&a.sim.health_failures, &b.sim.health_failures) {
        failures.insert(format!("health answered {status}"), n);
    }
    for (message, n) in grown(&a.warnings, &b.warnings) {
        if message.contains(procfs::LEADERSHIP_LOST) {
            failures.insert("leadership lost (the pool logged it)".into(), n);
        } else {
            failures.insert(format!("pool logged: {message}"), n);
        }
    }
    if !b.pool.leader && a.pool.leader {
        failures.insert("not the leader at the window's end (pool_is_leader 0)".into(), 1);
    }
    let mut count = |name: &str, n: u64| {
        if n > 0 {
            failures.insert(name.into(), n);
        }
    };
    count("429s served", b.sim.rate_limited - a.sim.rate_limited);
    count(
        "TLS handshakes failed",
        b.sim.handshake_failures - a.sim.handshake_failures,
    );
    let pool_cpu = b.pool_cpu.saturating_sub(a.pool_cpu);
    let fleet_cpu = b.fleet_cpu.saturating_sub(a.fleet_cpu);
    let bench_cpu = b.bench_cpu.saturating_sub(a.bench_cpu);
    TickRecord {
        kind,
        ticks: b.pool.ticks - a.pool.ticks,
        wall: b.pool.wall,
        pool_railway: b.pool.railway.saturating_sub(a.pool.railway),
        sim_railway: b.sim.requests_total - a.sim.requests_total,
        by_operation: grown(&a.sim.requests, &b.sim.requests),
        failures,
        phases: b
            .phases
            .get(a.phases.len()..)
            .and_then(<[_]>::last)
            .cloned()
            .unwrap_or_default(),
        health_checks: b.sim.health_checks - a.sim.health_checks,
        read: b.pool.read,
        full_sweep: b.pool.full_sweep,
        problems: b.pool.problems,
        pool_cpu,
        fleet_cpu,
        others_cpu: b
            .machine
            .busy
            .saturating_sub(a.machine.busy)
            .saturating_sub(pool_cpu + fleet_cpu + bench_cpu),
        steal: b.machine.steal.saturating_sub(a.machine.steal),
    }
}

async fn run_binary(
    binary: &Path,
    fleet: &FleetProcess,
    options: &Options,
    pinned: bool,
    last_steady_phase: Option<Duration>,
) -> Result<Run, String> {
    fleet.set_keep_alive(!options.closed).await?;
    let port = pool_e2e::free_port()?;
    let orphan_sweep = orphan_sweep_interval(fleet.agents, options.steady, last_steady_phase);
    let mut env = fleet.env.clone();
    env.insert("PORT".into(), port.to_string());
    env.insert("POOL_URL".into(), format!("http://127.0.0.1:{port}"));
    if options.closed {
        env.insert("POOL_AGENT_KEEP_ALIVE_MS".into(), "0".into());
    }
    // Ticks come when asked for (and one at start); the status sweep rolls over as many
    // slices as in production.
    let tick = bench_tick(fleet.agents);
    env.insert("TICK_INTERVAL_MS".into(), tick.as_millis().to_string());
    env.insert(
        "POOL_FULL_SWEEP_INTERVAL_MS".into(),
        (tick * slices(fleet.agents)).as_millis().to_string(),
    );
    env.insert(
        "POOL_ORPHAN_SWEEP_INTERVAL_MS".into(),
        orphan_sweep.as_millis().to_string(),
    );
    // The prober checks every agent once per production's tick interval, whatever the
    // bench's.
    env.insert("POOL_HEALTH_INTERVAL_MS".into(), TICK.as_millis().to_string());
    env.insert("POOL_MIN_IDLE".into(), fleet.idle.to_string());
    env.insert("POOL_MAX_TOTAL".into(), fleet.agents.to_string());
    // Warnings, and each tick's phases.
    env.insert("RUST_LOG".into(), "warn,pool_reconciler::phases=debug".into());

    let before_start = moment(fleet, None, 0).await?;
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
    let mut records = Vec::new();
    let mut peaks = BTreeMap::new();

    // The first tick comes at start (its window starts before the process).
    let mut ticks = follow(fleet, &pm, 0, tick_timeout).await?;
    let first_done = Instant::now();
    let mut first = record(Kind::First, &before_start, &moment(fleet, Some(&pm), pid).await?);
    // The start-up's token checks are no tick's.
    let tokens = first.by_operation.remove("apiToken").unwrap_or(0);
    first.sim_railway -= tokens;
    first.pool_railway = first.pool_railway.saturating_sub(tokens);
    records.push(first);
    peaks.insert("start + first tick", procfs::memory(pid)?);

    procfs::clear_peak(pid)?;
    fleet.record_arrivals().await?;
    let recording = Instant::now();
    for _ in 0..options.steady {
        let before = moment(fleet, Some(&pm), pid).await?;
        trigger(&pm).await?;
        ticks = follow(fleet, &pm, ticks, tick_timeout).await?;
        records.push(record(
            Kind::Steady,
            &before,
            &moment(fleet, Some(&pm), pid).await?,
        ));
    }
    let steady_phase = first_done.elapsed();
    // "Every agent checked once per interval" is judged over one interval at least: steady
    // ticks that came back to back faster than that are followed by the rest of it.
    tokio::time::sleep(
        (recording + TICK + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
    )
    .await;
    let coverage = fleet.coverage().await?;
    peaks.insert("steady ticks", procfs::memory(pid)?);

    // The sweep, once the orphan sweep is due again.
    let due = first_done + orphan_sweep + Duration::from_millis(500);
    tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
    procfs::clear_peak(pid)?;
    let before = moment(fleet, Some(&pm), pid).await?;
    trigger(&pm).await?;
    follow(fleet, &pm, ticks, tick_timeout).await?;
    records.push(record(
        Kind::Sweep,
        &before,
        &moment(fleet, Some(&pm), pid).await?,
    ));
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
        steady_phase,
        coverage,
    })
}
