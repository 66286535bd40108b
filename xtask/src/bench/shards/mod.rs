//! `cargo xtask bench shards [--agents N] [--replicas N] [--lease-ms N] [--steady-s N] [--sweep-s N] [--tls]`:
//! one fleet shared by several `pool-manager` replicas (release builds, processes of their
//! own), split into `POOL_SHARDS` (256) shards:
//!
//! - the fleet is the tick bench's (`xtask bench tick-fleet N`: the simulator, its agent hosts
//!   and a database of realistic rows, in a process of its own); its agents are reached over
//!   plain HTTP unless `--tls` (a leaf certificate and a TLS session per agent do not fit
//!   100,000 agents on a small machine);
//! - production's intervals: a tick every 30 s, every agent checked once per 30 s, the
//!   rolling sweep over 10 min, which each replica lengthens to stay within 4 % of its lease
//!   of Railway's hourly budget (`--sweep-s` sets the 10 min);
//! - the fleet is a fleet that has been running: its 1 % crashed agents crashed a day before
//!   (their rows say `crashed`), so the pool reads each once at start and then every 10 min,
//!   its longest backoff step (`bench tick` has them crash as the pool starts);
//! - it measures, over a steady phase of `--steady-s` seconds: each replica's peak RSS
//!   (`VmHWM`), the Railway requests the simulator received from all replicas together as a
//!   share of the hourly budget (10,000), by operation — the steady phase starts once the
//!   leader's start-up orphan sweep has listed the workspace, and that listing, every 30 min in
//!   production (longer for a large workspace: 5 h at 100,000), is added to the total spread
//!   over the pool's interval —, every agent checked within the interval (the agent
//!   hosts' arrivals), and — sampled every 250 ms from `pg_locks` and `pool_replicas` — that
//!   no shard is held by two replicas, nor listed by two live ones;
//! - then it SIGKILLs one replica and measures how long until every one of its shards is held
//!   by another (the target: two leases).
//!
//! The run FAILS when a target is missed. Its figures are for reading, never assertions in
//! tests; the machine is shared.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pool_e2e::ManagerProcess;

mod ownership;

use super::tick::fleet::Crashed;
use super::tick::process::FleetProcess;
use super::tick::procfs;
use ownership::{doubly_owned, ownership};

const AGENTS: usize = 100_000;
const REPLICAS: usize = 4;
const LEASE: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_secs(30);
const SHARDS: u32 = 256;
const HOURLY_BUDGET: f64 = 10_000.0;
const TARGET_SHARE: f64 = 0.10;
const TARGET_RSS_MIB: f64 = 64.0;
const SAMPLE: Duration = Duration::from_millis(250);
/// The orphan sweep's workspace listing (its Railway operation), and production's interval
/// between two sweeps (`POOL_ORPHAN_SWEEP_INTERVAL_MS`), which the pool lengthens for a large
/// workspace ([`pool_reconciler::orphan_sweep_interval`]).
const LISTING: &str = "projects";
const ORPHAN_SWEEP: Duration = Duration::from_secs(1800);

struct Options {
    agents: usize,
    replicas: usize,
    lease: Duration,
    steady: Duration,
    /// The rolling status sweep's period (`POOL_FULL_SWEEP_INTERVAL_MS`).
    sweep: Option<Duration>,
    tls: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Options {
            agents: AGENTS,
            replicas: REPLICAS,
            lease: LEASE,
            steady: INTERVAL * 2 + Duration::from_secs(5),
            sweep: None,
            tls: false,
        };
        let mut args = super::options::Args::new(
            args,
            "cargo xtask bench shards [--agents N] [--replicas N] [--lease-ms N] [--steady-s N] [--sweep-s N] [--tls]",
        );
        while let Some(arg) = args.next() {
            match arg {
                "--agents" => options.agents = args.number(arg)? as usize,
                "--replicas" => options.replicas = args.number(arg)?.max(2) as usize,
                "--lease-ms" => options.lease = Duration::from_millis(args.number(arg)?.max(1_000)),
                "--steady-s" => options.steady = Duration::from_secs(args.number(arg)?),
                "--sweep-s" => options.sweep = Some(Duration::from_secs(args.number(arg)?)),
                "--tls" => options.tls = true,
                other => return Err(args.unknown(other)),
            }
        }
        // The replicas' `POOL_MAX_TOTAL` is the fleet: no more than the pool accepts.
        if options.agents > pool_provisioner::MAX_MAX_TOTAL as usize {
            return Err(format!(
                "--agents {} is above the most agents a pool accepts (POOL_MAX_TOTAL ≤ {})",
                options.agents,
                pool_provisioner::MAX_MAX_TOTAL
            ));
        }
        Ok(options)
    }
}

/// The workspace listing's pages the simulator has served so far.
async fn listing_pages(fleet: &FleetProcess) -> Result<u64, String> {
    Ok(fleet
        .counters()
        .await?
        .requests
        .get(LISTING)
        .copied()
        .unwrap_or(0))
}

/// `GET /api/pool/status` from one replica, whole: its instances, size and time, in words.
async fn read_status(pm: &ManagerProcess) -> Result<String, String> {
    let client = pool_provisioner::outbound::OutboundClient::for_probes(
        &railway_api::https::ExtraRoots::default(),
        Duration::ZERO,
        std::sync::Arc::new(railway_api::sessions::PerHostSessions::new(1)),
        512 * 1024 * 1024,
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let answer = client
        .send(
            hyper::Method::GET,
            &format!("{}/api/pool/status", pm.base_url),
            Some(pool_e2e::ADMIN_KEY),
            None,
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| format!("reading a replica's status: {e}"))?;
    let took = started.elapsed();
    if answer.status != 200 {
        return Err(format!("a replica's status answered {}", answer.status));
    }
    let status: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| format!("a replica's status: {e}"))?;
    let instances = status["instances"].as_array().map_or(0, Vec::len);
    Ok(format!(
        "{instances} instances, {:.1} MiB in {:.1} s",
        answer.body.len() as f64 / (1024.0 * 1024.0),
        took.as_secs_f64()
    ))
}

pub async fn run(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args)?;
    let started = Instant::now();
    let load_before = procfs::load_average();
    eprintln!("bench shards: building pool-manager (release)…");
    let binary = tokio::task::spawn_blocking(pool_e2e::pool_manager_release_binary)
        .await
        .map_err(|e| e.to_string())??;
    eprintln!(
        "bench shards: {} agents: seeding the fleet's process…",
        options.agents
    );
    let fleet = FleetProcess::start(options.agents, Crashed::DayBefore, None).await?;
    fleet.set_keep_alive(false).await?;
    let database_url = fleet
        .env
        .get("DATABASE_URL")
        .cloned()
        .ok_or("the fleet's process gave no DATABASE_URL")?;
    let (db, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("the fleet's database: {e}"))?;
    tokio::spawn(connection);

    let mut env = fleet.env.clone();
    if !options.tls {
        env.insert("AGENT_URL_TEMPLATE".into(), fleet.http_url_template.clone());
    }
    env.insert("TICK_INTERVAL_MS".into(), INTERVAL.as_millis().to_string());
    env.insert("POOL_HEALTH_INTERVAL_MS".into(), INTERVAL.as_millis().to_string());
    // Production's rolling sweep unless `--sweep-s`: 10 min, lengthened by each replica to
    // stay within 4 % of its lease of the hourly budget (`pool_reconciler::sweep_pace`).
    if let Some(sweep) = options.sweep {
        env.insert(
            "POOL_FULL_SWEEP_INTERVAL_MS".into(),
            sweep.as_millis().to_string(),
        );
    }
    env.insert("POOL_AGENT_KEEP_ALIVE_MS".into(), "0".into());
    env.insert("POOL_SHARDS".into(), SHARDS.to_string());
    env.insert(
        "POOL_REPLICA_LEASE_MS".into(),
        options.lease.as_millis().to_string(),
    );
    // The fleet's idle agents: one in four, at most the 10,000 `POOL_MIN_IDLE` accepts
    // (`pool_provisioner::MAX_MIN_IDLE`), so that the pool neither creates nor retires.
    env.insert("POOL_MIN_IDLE".into(), fleet.idle.to_string());
    env.insert("POOL_MAX_TOTAL".into(), fleet.agents.to_string());
    env.insert("RUST_LOG".into(), "warn".into());

    eprintln!("bench shards: starting {} replicas…", options.replicas);
    let mut replicas = Vec::new();
    for _ in 0..options.replicas {
        let port = pool_e2e::free_port()?;
        let mut env = env.clone();
        env.insert("PORT".into(), port.to_string());
        env.insert("POOL_URL".into(), format!("http://127.0.0.1:{port}"));
        let mut pm = ManagerProcess::start(&binary, &env).await?;
        pm.wait_healthy(Duration::from_secs(300)).await?;
        replicas.push(pm);
    }
    let pids: Vec<u32> = replicas.iter().filter_map(|pm| pm.pid()).collect();

    // Until every shard is held, by every replica (each near its share).
    let split = Instant::now();
    loop {
        let o = ownership(&db).await?;
        let holders: BTreeSet<&String> = o.locked.values().flatten().collect();
        if o.locked.len() == SHARDS as usize && holders.len() == options.replicas {
            break;
        }
        if split.elapsed() > options.lease * 6 {
            return Err(format!(
                "the replicas did not split the shards within {:?}: {} shards held by {} replicas",
                options.lease * 6,
                o.locked.len(),
                holders.len()
            ));
        }
        tokio::time::sleep(SAMPLE).await;
    }
    eprintln!(
        "bench shards: shards split after {:.1} s; a first walk each…",
        split.elapsed().as_secs_f64()
    );
    // The first walks enlist each replica's agents on its prober.
    tokio::time::sleep(INTERVAL + Duration::from_secs(5)).await;

    // The leader's first tick lists the whole workspace (the orphan sweep: a page of 100
    // projects a request, 1,000 at 100,000 agents). It comes again at the interval the pool
    // gives it at that size (`orphan_sweep_interval`): the steady phase starts once it is over, and its cost is added to the steady rate below,
    // spread over its interval.
    let listing_started = Instant::now();
    let mut listed = listing_pages(&fleet).await?;
    // Every page of the workspace (the fleet's projects), or no page for a minute: the
    // listing is paced within the leader's lease of the budget, a page may wait seconds.
    let pages = options.agents.div_ceil(railway_api::WORKSPACE_PAGE) as u64;
    let mut quiet_since = Instant::now();
    while listed < pages
        && quiet_since.elapsed() < Duration::from_secs(60)
        && listing_started.elapsed() < Duration::from_secs(900)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = listing_pages(&fleet).await?;
        if now != listed || now == 0 {
            listed = now;
            quiet_since = Instant::now();
        }
    }
    eprintln!(
        "bench shards: the start-up orphan sweep listed {listed} pages ({:.0} s waited); steady phase ({:?})…",
        listing_started.elapsed().as_secs_f64(),
        options.steady
    );
    fleet.record_arrivals().await?;
    let before = fleet.counters().await?;
    let cpu_before = pids
        .iter()
        .map(|pid| procfs::cpu(*pid))
        .collect::<Result<Vec<_>, _>>()?;
    let steady_started = Instant::now();
    let mut samples = 0usize;
    // Samples that found a shard owned twice, and the most shards one such sample found.
    let mut double = 0usize;
    let mut most_double = 0usize;
    let mut per_replica_shards: BTreeMap<String, usize> = BTreeMap::new();
    // Halfway through, each replica is asked for `/api/pool/status` (every live agent, streamed
    // a page at a time): its peak RSS below includes that.
    let mut status_reads: Vec<String> = Vec::new();
    while steady_started.elapsed() < options.steady {
        if status_reads.is_empty() && steady_started.elapsed() >= options.steady / 2 {
            for pm in &replicas {
                status_reads.push(read_status(pm).await?);
            }
        }
        let o = ownership(&db).await?;
        samples += 1;
        let twice = doubly_owned(&o);
        double += usize::from(twice > 0);
        most_double = most_double.max(twice);
        per_replica_shards.clear();
        for holder in o.locked.values().flatten() {
            *per_replica_shards.entry(holder.clone()).or_default() += 1;
        }
        tokio::time::sleep(SAMPLE).await;
    }
    let steady = steady_started.elapsed();
    let after = fleet.counters().await?;
    let coverage = fleet.coverage().await?;
    let railway = after.requests_total - before.requests_total;
    let by_operation: Vec<String> = after
        .requests
        .iter()
        .map(|(op, n)| (op, n - before.requests.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    let steady_share = railway as f64 * 3600.0 / steady.as_secs_f64() / HOURLY_BUDGET;
    // The pool's own spacing of its sweeps for a workspace this size.
    let sweep_every =
        pool_reconciler::orphan_sweep_interval(ORPHAN_SWEEP, fleet.agents, HOURLY_BUDGET as usize);
    let sweep_share = listed as f64 * 3600.0 / sweep_every.as_secs_f64() / HOURLY_BUDGET;
    let share = steady_share + sweep_share;
    let mut peaks = Vec::new();
    let mut cpu_shares = Vec::new();
    for (pid, before) in pids.iter().zip(&cpu_before) {
        peaks.push(procfs::memory(*pid)?.peak_kib as f64 / 1024.0);
        cpu_shares.push((procfs::cpu(*pid)? - *before).as_secs_f64() / steady.as_secs_f64());
    }

    // What went wrong on the way, in each replica's words (the bench runs them at `warn`).
    for (i, pm) in replicas.iter().enumerate() {
        let text = pm.output_text();
        let warnings: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        for line in warnings.iter().take(10) {
            eprintln!("bench shards: replica {}: {line}", i + 1);
        }
        if warnings.len() > 10 {
            eprintln!(
                "bench shards: replica {}: … {} more warnings",
                i + 1,
                warnings.len() - 10
            );
        }
    }

    // One replica dies.
    let victim = replicas.len() - 1;
    let before_kill = ownership(&db).await?;
    replicas[victim].signal("KILL")?;
    let killed = Instant::now();
    let _ = replicas[victim].wait_exit(Duration::from_secs(10)).await;
    let mut survivors_by_name: Option<BTreeSet<String>> = None;
    let mut orphaned: BTreeSet<u32> = BTreeSet::new();
    // When Postgres had freed the killed replica's locks (its connection gone).
    let mut freed = Duration::ZERO;
    let takeover = loop {
        let o = ownership(&db).await?;
        samples += 1;
        let twice = doubly_owned(&o);
        double += usize::from(twice > 0);
        most_double = most_double.max(twice);
        let names: BTreeSet<String> = o.locked.values().flatten().cloned().collect();
        if survivors_by_name.is_none() && names.len() < options.replicas {
            freed = killed.elapsed();
            // The killed replica's lock connection is gone: its shards are those it held.
            let dead: BTreeSet<String> = before_kill
                .locked
                .values()
                .flatten()
                .filter(|n| !names.contains(*n))
                .cloned()
                .collect();
            orphaned = before_kill
                .locked
                .iter()
                .filter(|(_, h)| h.iter().any(|n| dead.contains(n)))
                .map(|(s, _)| *s)
                .collect();
            survivors_by_name = Some(names.clone());
        }
        if survivors_by_name.is_some()
            && orphaned.iter().all(|s| o.locked.contains_key(s))
            && o.locked.len() == SHARDS as usize
        {
            break killed.elapsed();
        }
        if killed.elapsed() > options.lease * 6 {
            return Err(format!(
                "the killed replica's shards were not taken over within {:?}",
                options.lease * 6
            ));
        }
        tokio::time::sleep(SAMPLE / 5).await;
    };
    let live_after = ownership(&db).await?.live;

    let load_after = procfs::load_average();
    println!();
    println!(
        "### bench shards: {} agents over {} replicas, {SHARDS} shards, lease {:?}",
        fleet.agents, options.replicas, options.lease
    );
    println!();
    println!(
        "Agents over {}; checks every {:?}, ticks every {:?}, the rolling status sweep {}; the 1 % crashed agents crashed a day before the run; load average before {load_before}, after {load_after}; {} CPUs, nothing pinned.",
        if options.tls {
            "HTTPS"
        } else {
            "plain HTTP (in the fleet's process)"
        },
        INTERVAL,
        INTERVAL,
        match options.sweep {
            Some(sweep) => format!("over {:.0} min (--sweep-s)", sweep.as_secs_f64() / 60.0),
            None =>
                "production's (10 min, lengthened by each replica to 4 % of its lease of the budget)".into(),
        },
        procfs::cpus()
    );
    println!();
    let table = super::Table::new(&["figure", "measured", "target"]);
    for (i, read) in status_reads.iter().enumerate() {
        table.row(&[
            format!("replica {} status read (steady)", i + 1),
            read.clone(),
            "(for reading)".into(),
        ]);
    }
    for (i, peak) in peaks.iter().enumerate() {
        table.row(&[
            format!("replica {} peak RSS", i + 1),
            format!("{peak:.1} MiB"),
            format!("≤ {TARGET_RSS_MIB} MiB"),
        ]);
    }
    table.row(&[
        "replicas' CPU (steady), of one core".into(),
        cpu_shares
            .iter()
            .map(|c| format!("{:.1} %", c * 100.0))
            .collect::<Vec<_>>()
            .join(" / "),
        "(for reading)".into(),
    ]);
    table.row(&[
        "shards per replica (steady)".into(),
        per_replica_shards
            .values()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        format!("≈ {}", SHARDS as usize / options.replicas),
    ]);
    table.row(&[
        "Railway, steady, all replicas".into(),
        format!(
            "{railway} in {:.0} s = {:.1} % of the hour's budget ({})",
            steady.as_secs_f64(),
            steady_share * 100.0,
            by_operation.join(", ")
        ),
        "(for reading)".into(),
    ]);
    table.row(&[
        "Railway, the orphan sweep".into(),
        format!(
            "{listed} listing pages every {:.0} min = {:.1} % of the hour's budget",
            sweep_every.as_secs_f64() / 60.0,
            sweep_share * 100.0
        ),
        "(for reading)".into(),
    ]);
    table.row(&[
        "Railway, in total".into(),
        format!("{:.1} % of the hour's budget", share * 100.0),
        format!("≤ {:.0} %", TARGET_SHARE * 100.0),
    ]);
    table.row(&[
        "agents checked in the steady phase".into(),
        format!("{} of {}", coverage.agents_checked, fleet.agents),
        "all".into(),
    ]);
    table.row(&[
        "longest an agent went unchecked".into(),
        format!("{:.1} s", coverage.longest_unchecked.as_secs_f64()),
        format!("≤ {:?} (the interval)", INTERVAL),
    ]);
    table.row(&[
        "samples with a shard owned twice".into(),
        format!("{double} of {samples} (at most {most_double} shards)"),
        "0".into(),
    ]);
    table.row(&[
        "killed replica's shards taken over".into(),
        format!(
            "{} shards in {:.2} s (locks freed after {:.2} s; {} live replicas after)",
            orphaned.len(),
            takeover.as_secs_f64(),
            freed.as_secs_f64(),
            live_after
        ),
        format!("≤ {:.0} s (two leases)", (options.lease * 2).as_secs_f64()),
    ]);

    let mut failures = Vec::new();
    for (i, peak) in peaks.iter().enumerate() {
        if *peak > TARGET_RSS_MIB {
            failures.push(format!("replica {} peaked at {peak:.1} MiB", i + 1));
        }
    }
    if share > TARGET_SHARE {
        failures.push(format!("Railway at {:.1} % of the hourly budget", share * 100.0));
    }
    if coverage.agents_checked < fleet.agents {
        failures.push(format!(
            "{} agents were not checked in the steady phase",
            fleet.agents - coverage.agents_checked
        ));
    }
    // An agent may wait a whole interval between two checks, and a little more when a check
    // of the prober comes late: a second of slack.
    if coverage.longest_unchecked > INTERVAL + Duration::from_secs(1) {
        failures.push(format!(
            "an agent went {:.1} s unchecked",
            coverage.longest_unchecked.as_secs_f64()
        ));
    }
    if double > 0 {
        failures.push(format!("{double} samples found a shard owned twice"));
    }
    if orphaned.is_empty() {
        failures.push("the killed replica held no shards".into());
    }
    if takeover > options.lease * 2 {
        failures.push(format!(
            "the killed replica's shards were taken over in {:.1} s, more than two leases",
            takeover.as_secs_f64()
        ));
    }
    for mut pm in replicas {
        let _ = pm.signal("TERM");
        if pm.wait_exit(Duration::from_secs(30)).await.is_err() {
            let _ = pm.signal("KILL");
        }
    }
    fleet.stop().await;
    eprintln!("bench shards: done in {:.0} s", started.elapsed().as_secs_f64());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("the bench FAILED:\n- {}", failures.join("\n- ")))
    }
}
