//! The tick bench's report: the Railway budget an hour of production's ticks costs, the
//! transports side by side, and the targets at 10,000 agents, as Markdown tables.

use std::time::Duration;

use super::super::Table;
use super::{
    FULL_SWEEP_EVERY, HOURLY_BUDGET, IDLE_EVERY, Measured, ORPHAN_SWEEP_EVERY, Run, STEADY_TICKS,
    TARGET_PEAK_MIB, TARGET_SHARE, TARGET_TICK, TICK, Transport,
};

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn share(per_hour: f64) -> String {
    format!("{:.1}%", 100.0 * per_hour / HOURLY_BUDGET)
}

/// Requests an hour of production's ticks costs: every tick's steady reads, the full sweeps'
/// extra on top, and the orphan sweeps'.
fn hourly(steady: f64, full: f64, orphan_extra: f64) -> f64 {
    let hour = Duration::from_secs(3600).as_secs_f64();
    let ticks = hour / TICK.as_secs_f64();
    let full_sweeps = hour / FULL_SWEEP_EVERY.as_secs_f64();
    let orphan_sweeps = hour / ORPHAN_SWEEP_EVERY.as_secs_f64();
    (ticks - full_sweeps) * steady + full_sweeps * full + orphan_sweeps * orphan_extra
}

pub(super) fn print(sizes: &[Measured]) {
    println!(
        "## bench tick: a steady fleet (1 agent in {IDLE_EVERY} idle, the rest claimed, every one health-checked every tick), the real pool-manager binary (release), 50 ms Railway latency, Pro's 50 req/s\n"
    );
    println!(
        "### Railway budget: production's intervals (30 s ticks, full sweep every 10 min, orphan sweep every 30 min); wall times over HTTPS, connections kept alive\n"
    );
    let table = Table::new(&[
        "agents",
        "strategy",
        "health checks/tick",
        "Railway req/tick",
        "tick wall time",
        "Railway req/h",
        "share of 10k/h",
    ]);
    for m in sizes {
        let run = m.production();
        let steady = run.steady.railway;
        let full = run.full.railway as f64;
        let orphan_extra = (run.first.railway as f64 - full).max(0.0);
        let per_hour = hourly(steady, full, orphan_extra);
        let checks = format!("{:.0}", run.steady.health_checks);
        let ticks_per_hour = 3600.0 / TICK.as_secs_f64();
        let rows: [(&str, String, String, String, f64); 4] = [
            (
                "pool: steady tick",
                checks.clone(),
                format!("{steady:.1}"),
                format!("{} (max {})", secs(run.steady.wall), secs(run.steady_max)),
                steady * ticks_per_hour,
            ),
            (
                "pool: full-sweep tick",
                checks.clone(),
                format!("{full:.0}"),
                secs(run.full.wall),
                full * ticks_per_hour,
            ),
            (
                "pool: orphan sweep (extra)",
                "-".into(),
                format!("{orphan_extra:.0}"),
                "-".into(),
                orphan_extra * 3600.0 / ORPHAN_SWEEP_EVERY.as_secs_f64(),
            ),
            (
                "pool: hourly average",
                checks.clone(),
                format!("{:.1}", per_hour / ticks_per_hour),
                "-".into(),
                per_hour,
            ),
        ];
        for (name, checks, requests, wall, per_hour) in rows {
            table.row(&[
                m.agents.to_string(),
                name.into(),
                checks,
                requests,
                wall,
                format!("{per_hour:.0}"),
                share(per_hour),
            ]);
        }
        let seed_per_hour = m.seed.0 as f64 * ticks_per_hour;
        table.row(&[
            m.agents.to_string(),
            "seed: one request per agent".into(),
            checks,
            m.seed.0.to_string(),
            format!("{} (reads alone)", secs(m.seed.1)),
            format!("{seed_per_hour:.0}"),
            share(seed_per_hour),
        ]);
        table.row(&[
            m.agents.to_string(),
            "seed ÷ pool (hourly)".into(),
            "1x".into(),
            format!("{:.0}x", seed_per_hour / per_hour.max(1.0)),
            "-".into(),
            format!("{:.0}x", seed_per_hour / per_hour.max(1.0)),
            "-".into(),
        ]);
    }

    println!(
        "\n### The pool-manager process: transport, CPU and memory (per tick: the mean of {STEADY_TICKS} steady ticks)\n"
    );
    let table = Table::new(&[
        "agents",
        "agents' transport",
        "connections/tick",
        "TLS handshakes/tick",
        "steady tick wall time",
        "CPU/tick",
        "first tick (all new; CPU with start-up)",
        "kept open after",
        "peak RSS (VmHWM)",
        "RSS at the end",
    ]);
    for m in sizes {
        for (variant, run) in &m.runs {
            let handshakes = match variant.transport {
                Transport::Https if run.steady.resumed > 0.0 => {
                    format!("{:.0} ({:.0} resumed)", run.steady.handshakes, run.steady.resumed)
                }
                Transport::Https => format!("{:.0}", run.steady.handshakes),
                Transport::Http => "-".into(),
            };
            table.row(&[
                m.agents.to_string(),
                variant.name().into(),
                format!("{:.0}", run.steady.connections),
                handshakes,
                secs(run.steady.wall),
                format!("{:.0} ms", run.steady.cpu.as_secs_f64() * 1000.0),
                format!(
                    "{} / {:.0} ms CPU",
                    if run.first.merged {
                        "-".into()
                    } else {
                        secs(run.first.wall)
                    },
                    run.first_cpu.as_secs_f64() * 1000.0
                ),
                run.open_after.to_string(),
                format!("{:.1} MiB", mib(run.memory.peak_kib)),
                format!("{:.1} MiB", mib(run.memory.now_kib)),
            ]);
        }
    }

    println!("\n### What TLS costs\n");
    let table = Table::new(&[
        "agents",
        "CPU per handshake",
        "CPU per check, kept alive (HTTPS − HTTP)",
        "peak RSS per kept-alive HTTPS connection",
        "peak RSS per kept-alive HTTP connection",
    ]);
    for m in sizes {
        let (Some(tls_keep), Some(tls_close), Some(http_keep), Some(http_close)) = (
            m.run(Transport::Https, true),
            m.run(Transport::Https, false),
            m.run(Transport::Http, true),
            m.run(Transport::Http, false),
        ) else {
            continue;
        };
        let per_handshake = (tls_close.steady.cpu.as_secs_f64() - http_close.steady.cpu.as_secs_f64())
            / tls_close.steady.handshakes.max(1.0);
        let per_check = (tls_keep.steady.cpu.as_secs_f64() - http_keep.steady.cpu.as_secs_f64())
            / tls_keep.steady.health_checks.max(1.0);
        let per_connection = |keep: &Run, close: &Run| {
            let extra = keep.memory.peak_kib as f64 - close.memory.peak_kib as f64;
            format!(
                "{:.1} KiB ({:+.1} MiB for {})",
                extra / keep.open_after.max(1) as f64,
                extra / 1024.0,
                keep.open_after
            )
        };
        table.row(&[
            m.agents.to_string(),
            format!("{:.0} µs", per_handshake * 1e6),
            format!("{:.0} µs", per_check * 1e6),
            per_connection(tls_keep, tls_close),
            per_connection(http_keep, http_close),
        ]);
    }

    if let Some(m) = sizes.iter().max_by_key(|m| m.agents) {
        let run = m.production();
        let full = run.full.railway as f64;
        let per_hour = hourly(
            run.steady.railway,
            full,
            (run.first.railway as f64 - full).max(0.0),
        );
        let worst_tick = run.full.wall.max(run.steady_max);
        let peak = mib(run.memory.peak_kib);
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        println!(
            "\n### Targets (set for 10,000 agents), at {} agents (HTTPS, kept alive)\n",
            m.agents
        );
        let table = Table::new(&["target", "measured", "verdict"]);
        table.row(&[
            format!("tick ≤ {}", secs(TARGET_TICK)),
            format!(
                "steady {} (max {}), full sweep {}",
                secs(run.steady.wall),
                secs(run.steady_max),
                secs(run.full.wall)
            ),
            verdict(worst_tick <= TARGET_TICK).into(),
        ]);
        table.row(&[
            format!("Railway ≤ {:.0}% of 10k/h", TARGET_SHARE * 100.0),
            format!("{per_hour:.0}/h = {}", share(per_hour)),
            verdict(per_hour <= TARGET_SHARE * HOURLY_BUDGET).into(),
        ]);
        table.row(&[
            format!("peak RSS ≤ {TARGET_PEAK_MIB:.0} MiB"),
            format!("{peak:.1} MiB"),
            verdict(peak <= TARGET_PEAK_MIB).into(),
        ]);
    }
}
