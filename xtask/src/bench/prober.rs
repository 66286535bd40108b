//! `cargo xtask bench prober [--agents N,N] [--rounds N]`: the prober's health checks with
//! connections kept alive against connections closed after each answer, at 1,000 and 5,000
//! agents (issue 23, part 3: "measure kept connections against closed ones, and choose by the
//! figures").
//!
//! The agents are the simulator's [`railway_sim::AgentHosts`] over HTTPS, each at a loopback
//! address of its own with its own certificate (leaf + intermediate), in this process. The
//! checks run in a child process (this binary again, `bench prober-client`) on the prober's
//! own client (`OutboundClient::for_probes`: the 4 KiB body cap, one TLS ticket per host), so
//! its CPU time and resident memory are the client's alone. On Linux the child is pinned to
//! CPU 0 and this process to CPU 1 (`taskset`). Each mode checks every agent once per round,
//! 64 at a time, 50 ms round trip to each agent; the first round (full handshakes, new
//! connections) is reported apart from the steady rounds after it.
//!
//! Modes:
//! - `kept`: connections kept 90 s (`POOL_PROBE_KEEP_ALIVE_MS=90000`), one per agent;
//! - `closed`: `Connection: close`, none kept (`POOL_PROBE_KEEP_ALIVE_MS=0`), TLS sessions
//!   resumed from the store of one ticket per host sized to the fleet;
//! - `closed, rustls cache`: closed, with the client before this change (rustls'
//!   `ClientSessionMemoryCache` of 16,384 tickets: 2,048 hosts).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use railway_api::https::ExtraRoots;
use railway_api::sessions::PerHostSessions;
use railway_sim::{AgentBehaviour, AgentHosts, DeployTimings, SimConfig};

use super::Table;

const SIZES: [usize; 2] = [1_000, 5_000];
const ROUNDS: usize = 4;
const CONCURRENCY: usize = 64;
const ROUND_TRIP: Duration = Duration::from_millis(50);
const KEPT: Duration = Duration::from_secs(90);
/// `USER_HZ`: clock ticks per second of `/proc/self/stat` (100 wherever Linux runs).
const USER_HZ: u64 = 100;

const MODES: [&str; 3] = ["kept", "closed", "closed-rustls-cache"];

/// One round of checks, as the client measured it.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    wall: Duration,
    cpu: Duration,
    rss_kib: u64,
    failures: u64,
}

pub async fn run(args: &[String]) -> Result<(), String> {
    let mut sizes = SIZES.to_vec();
    let mut rounds = ROUNDS;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--agents" => {
                sizes = rest
                    .next()
                    .map(|v| v.split(',').map(|n| n.trim().replace('_', "").parse()).collect())
                    .transpose()
                    .map_err(|e| format!("--agents needs sizes separated by commas: {e}"))?
                    .unwrap_or_default();
            }
            "--rounds" => {
                rounds = rest
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n >= 2)
                    .ok_or("--rounds needs a whole number of at least 2")?;
            }
            other => {
                return Err(format!(
                    "unknown option {other:?}\nusage: cargo xtask bench prober [--agents N,N] [--rounds N]"
                ));
            }
        }
    }
    let pinned = pin(std::process::id(), 1).is_ok();
    println!(
        "\n### Prober: kept against closed connections\n\n{} rounds of checks of every agent, {CONCURRENCY} at a time, {} ms round trip, HTTPS (leaf + intermediate, one host and certificate per agent); client in a process of its own{}; steady = the rounds after the first.\n",
        rounds,
        ROUND_TRIP.as_millis(),
        if pinned {
            ", pinned to CPU 0 (agents on CPU 1)"
        } else {
            " (not pinned)"
        },
    );
    let table = Table::new(&[
        "agents",
        "connections",
        "first round CPU/check",
        "steady CPU/check",
        "steady wall/round",
        "client RSS after",
        "RSS / agents",
        "steady handshakes",
        "resumed",
        "open at end",
        "failed checks",
    ]);
    for &agents in &sizes {
        for mode in MODES {
            let measured = measure(agents, mode, rounds).await?;
            table.row(&measured);
        }
    }
    Ok(())
}

/// Pins a process (all its threads) to one CPU with `taskset`.
fn pin(pid: u32, cpu: usize) -> Result<(), String> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return Err("fewer than two CPUs".into());
    }
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or(format!("taskset failed ({status})"))
}

async fn measure(agents: usize, mode: &str, rounds: usize) -> Result<Vec<String>, String> {
    let sim = railway_sim::start(SimConfig {
        deploy: DeployTimings::instant(),
        agents: AgentBehaviour {
            ready_after: Duration::ZERO,
            ..AgentBehaviour::default()
        },
        ..SimConfig::without_quirks()
    })
    .await
    .map_err(|e| e.to_string())?;
    let seeded = sim.seed_projects(agents, "staging", "ghcr.io/xmtplabs/convos-agent:staging");
    let hosts: AgentHosts = sim.serve_agent_hosts().await.map_err(|e| e.to_string())?;
    hosts.set_round_trip(ROUND_TRIP);
    hosts.set_keep_alive(mode == "kept");
    let template = hosts.https_url_template();
    let mut urls = String::new();
    for s in &seeded {
        let host = hosts.host_for(&s.domain).map_err(|e| e.to_string())?;
        urls.push_str(&template.replace("{domain}", &host));
        urls.push('\n');
    }
    let dir = std::env::temp_dir().join(format!("bench-prober-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let urls_file = dir.join("urls");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&urls_file, urls).map_err(|e| e.to_string())?;
    std::fs::write(&ca_file, hosts.ca_pem()).map_err(|e| e.to_string())?;

    let before = hosts.stats();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["bench", "prober-client", mode, &rounds.to_string()])
        .arg(&urls_file)
        .arg(&ca_file)
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the client: {e}"))?;
    let _ = pin(child.id(), 0);
    let stdout = child.stdout.take().ok_or("no stdout of the client")?;
    let mut stdin = child.stdin.take().ok_or("no stdin of the client")?;
    // The client prints one line a round, and `done` at the end; it then waits on its stdin,
    // so its connections are still its own when the hosts count those open.
    let (lines, stdout) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line.trim() == "done" {
                break;
            }
            lines.push(line.trim().to_string());
            line.clear();
        }
        (lines, reader)
    })
    .await
    .map_err(|e| e.to_string())?;
    let after_first = {
        // The hosts count a handshake when it completes: give the last ones a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        hosts.stats()
    };
    let _ = writeln!(stdin, "exit");
    drop(stdin);
    drop(stdout);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let parsed: Vec<Round> = lines.iter().filter_map(|l| parse_round(l)).collect();
    if parsed.len() != rounds {
        return Err(format!("the client reported {} rounds: {lines:?}", parsed.len()));
    }
    let first = parsed[0];
    let steady = &parsed[1..];
    let steady_checks = (steady.len() * agents) as f64;
    let steady_cpu: Duration = steady.iter().map(|r| r.cpu).sum();
    let steady_wall: Duration = steady.iter().map(|r| r.wall).sum();
    let last = parsed[parsed.len() - 1];
    let failures: u64 = parsed.iter().map(|r| r.failures).sum();
    let stats = after_first;
    // Handshakes of the steady rounds: all of them but the first round's (one per agent).
    let handshakes = (stats.handshakes - before.handshakes).saturating_sub(agents as u64);
    let resumed = stats.resumed - before.resumed;
    let us = |d: Duration, n: f64| format!("{:.0} µs", d.as_secs_f64() * 1e6 / n);
    Ok(vec![
        format!("{agents}"),
        mode.to_string(),
        us(first.cpu, agents as f64),
        us(steady_cpu, steady_checks),
        format!("{:.2} s", steady_wall.as_secs_f64() / steady.len() as f64),
        format!("{:.1} MiB", last.rss_kib as f64 / 1024.0),
        format!("{:.1} KiB", last.rss_kib as f64 / agents as f64),
        format!("{:.2}/check", handshakes as f64 / steady_checks),
        format!(
            "{:.0} %",
            100.0 * resumed as f64 / (stats.handshakes - before.handshakes).max(1) as f64
        ),
        format!("{}", stats.open),
        format!("{failures}"),
    ])
}

fn parse_round(line: &str) -> Option<Round> {
    let mut fields = line.split_whitespace();
    let mut next = || fields.next()?.parse::<u64>().ok();
    Some(Round {
        wall: Duration::from_micros(next()?),
        cpu: Duration::from_millis(next()? * 1000 / USER_HZ),
        rss_kib: next()?,
        failures: next()?,
    })
}

/// `utime + stime` of this process, in clock ticks, and its resident set in KiB.
fn own_usage() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks = stat
        .rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect::<Vec<_>>())
        .and_then(|f| Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?))
        .unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_default();
    (ticks, rss)
}

/// The child: `bench prober-client MODE ROUNDS URLS_FILE CA_FILE`. Checks every URL once a
/// round on the prober's client and prints `wall_us cpu_ticks rss_kib failures` per round.
pub async fn client(args: &[String]) -> Result<(), String> {
    let [mode, rounds, urls, ca] = args else {
        return Err("usage: bench prober-client MODE ROUNDS URLS_FILE CA_FILE".into());
    };
    let rounds: usize = rounds.parse().map_err(|e| format!("rounds: {e}"))?;
    let urls: Vec<String> = std::fs::read_to_string(Path::new(urls))
        .map_err(|e| e.to_string())?
        .lines()
        .map(str::to_string)
        .collect();
    let roots = ExtraRoots {
        pem: std::fs::read(Path::new(ca)).map_err(|e| e.to_string())?,
    };
    use pool_provisioner::outbound::OutboundClient;
    let sessions = Arc::new(PerHostSessions::new(urls.len() + urls.len() / 4));
    let http = match mode.as_str() {
        "kept" => OutboundClient::for_probes(&roots, KEPT, sessions, pool_reconciler::PROBE_MAX_BODY),
        "closed" => {
            OutboundClient::for_probes(&roots, Duration::ZERO, sessions, pool_reconciler::PROBE_MAX_BODY)
        }
        "closed-rustls-cache" => OutboundClient::for_agents(&roots, Duration::ZERO),
        other => return Err(format!("unknown mode {other}")),
    }
    .map_err(|e| e.to_string())?;
    let client = pool_provisioner::AgentClient::new(http, Duration::from_secs(10), Duration::from_secs(10));
    let mut out = std::io::stdout();
    for _ in 0..rounds {
        let (ticks_before, _) = own_usage();
        let started = Instant::now();
        let failures = futures_util::stream::iter(urls.iter())
            .map(|url| {
                let client = client.clone();
                async move { client.health_report(url, None).await.0.is_ready() }
            })
            .buffer_unordered(CONCURRENCY)
            .filter(|ready| std::future::ready(!ready))
            .count()
            .await;
        let wall = started.elapsed();
        let (ticks_after, rss) = own_usage();
        writeln!(
            out,
            "{} {} {rss} {failures}",
            wall.as_micros(),
            ticks_after - ticks_before
        )
        .map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    writeln!(out, "done").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    // Hold the connections until the bench has counted them.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}
