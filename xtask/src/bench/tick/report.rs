//! The tick bench's report: ticks by kind (median, p90, max, the spread of the runs' medians),
//! what they cost (Railway, counted by the pool and by the simulator; CPU; memory per phase),
//! the hourly budget against the seed's strategy, and the targets, as Markdown tables.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::Table;
use super::{
    AGENT_ROUND_TRIP, CRASHED_EVERY, FULL_SWEEP_EVERY, HOURLY_BUDGET, IDLE_EVERY, Kind, Measured,
    ORPHAN_SWEEP_EVERY, Options, TARGET_PEAK_MIB, TARGET_SHARE, TARGET_STEADY_MEDIAN, TARGET_STEADY_P90,
    TICK, TickRecord,
};

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn secs(d: f64) -> String {
    format!("{d:.2} s")
}

fn share(per_hour: f64) -> String {
    format!("{:.1}%", 100.0 * per_hour / HOURLY_BUDGET)
}

/// (median, p90, max) of some figures.
fn spread_of(mut values: Vec<f64>) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| values[(((values.len() - 1) as f64) * p).round() as usize];
    (at(0.5), at(0.9), values[values.len() - 1])
}

fn median(values: Vec<f64>) -> f64 {
    spread_of(values).0
}

/// Requests an hour of production's ticks costs: every tick's steady reads, the full sweeps'
/// extra on top, and the orphan sweeps'.
fn hourly(steady: f64, full: f64, orphan_extra: f64) -> f64 {
    let hour = 3600.0;
    let ticks = hour / TICK.as_secs_f64();
    let full_sweeps = hour / FULL_SWEEP_EVERY.as_secs_f64();
    let orphan_sweeps = hour / ORPHAN_SWEEP_EVERY.as_secs_f64();
    (ticks - full_sweeps) * steady + full_sweeps * full + orphan_sweeps * orphan_extra
}

/// The median Railway requests (simulator's count) of a kind of tick.
fn requests(m: &Measured, kind: Kind) -> f64 {
    median(m.ticks(kind).map(|t| t.sim_railway as f64).collect())
}

fn budget(m: &Measured) -> f64 {
    let full = requests(m, Kind::Sweep);
    hourly(
        requests(m, Kind::Steady),
        full,
        (requests(m, Kind::First) - full).max(0.0),
    )
}

/// Railway requests by operation, summed over ticks, per tick.
fn by_operation<'a>(ticks: impl Iterator<Item = &'a TickRecord>) -> String {
    let mut sum: BTreeMap<&str, u64> = BTreeMap::new();
    let mut n = 0;
    for t in ticks {
        n += 1;
        for (op, count) in &t.by_operation {
            *sum.entry(op.as_str()).or_default() += count;
        }
    }
    if sum.is_empty() {
        return "-".into();
    }
    sum.iter()
        .map(|(op, count)| format!("{op} {:.1}", *count as f64 / n.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn print(
    sizes: &[Measured],
    options: &Options,
    pinned: bool,
    load_before: String,
    load_after: String,
) {
    println!(
        "## bench tick: a steady fleet (1 agent in {IDLE_EVERY} idle, the rest claimed with instructions, 1 in {CRASHED_EVERY} crashed), {} ms round trips to the agents, the real pool-manager binary (release), 50 ms Railway latency, Pro's 50 req/s\n",
        AGENT_ROUND_TRIP.as_millis()
    );
    println!(
        "{} run(s) × {} steady ticks per size; agents over HTTPS, connections {}; pool {}; load average before {load_before}, after {load_after}\n",
        options.runs,
        options.steady,
        if options.closed {
            "closed after each check"
        } else {
            "kept alive"
        },
        if pinned {
            "pinned to CPU 0, the simulator, its agent hosts and the bench to CPU 1 (PostgreSQL unpinned)"
        } else {
            "not pinned"
        }
    );
    println!(
        "### Ticks by kind (wall time as the pool measured it; Railway requests as the simulator received them)\n"
    );
    let table = Table::new(&[
        "agents",
        "kind",
        "ticks",
        "wall median / p90 / max",
        "spread of runs' medians",
        "Railway req/tick (median)",
        "by operation (per tick)",
        "health checks/tick",
        "agents read/tick",
        "problems/tick",
        "pool CPU/tick",
        "others' CPU/tick",
        "steal/tick",
    ]);
    for m in sizes {
        for kind in [Kind::First, Kind::Steady, Kind::Sweep] {
            let ticks: Vec<&TickRecord> = m.ticks(kind).collect();
            if ticks.is_empty() {
                continue;
            }
            let (med, p90, max) = spread_of(ticks.iter().map(|t| t.wall.as_secs_f64()).collect());
            let run_medians: Vec<f64> = m
                .runs
                .iter()
                .map(|r| {
                    median(
                        r.ticks
                            .iter()
                            .filter(|t| t.kind == kind)
                            .map(|t| t.wall.as_secs_f64())
                            .collect(),
                    )
                })
                .collect();
            let (lo, hi) = run_medians
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let ms = |f: &dyn Fn(&TickRecord) -> Duration| {
                format!(
                    "{:.0} ms",
                    median(ticks.iter().map(|t| f(t).as_secs_f64() * 1000.0).collect())
                )
            };
            let each = |f: &dyn Fn(&TickRecord) -> u64| {
                format!("{:.0}", median(ticks.iter().map(|t| f(t) as f64).collect()))
            };
            table.row(&[
                m.agents.to_string(),
                kind.name().into(),
                format!(
                    "{} (pool ran {})",
                    ticks.len(),
                    ticks.iter().map(|t| t.ticks).sum::<u64>()
                ),
                format!("{} / {} / {}", secs(med), secs(p90), secs(max)),
                format!("{} ({} – {})", secs(hi - lo), secs(lo), secs(hi)),
                format!(
                    "{:.1} (pool counted {:.1})",
                    median(ticks.iter().map(|t| t.sim_railway as f64).collect()),
                    median(ticks.iter().map(|t| t.pool_railway as f64).collect())
                ),
                by_operation(ticks.iter().copied()),
                each(&|t| t.health_checks),
                each(&|t| t.read),
                each(&|t| t.problems),
                ms(&|t| t.pool_cpu),
                ms(&|t| t.others_cpu),
                ms(&|t| t.steal),
            ]);
        }
    }

    println!(
        "\n### Peak RSS per phase (`VmHWM`, reset with `clear_refs` at each phase's start; median of the runs)\n"
    );
    let phases = ["start + first tick", "steady ticks", "sweep tick"];
    let mut headers = vec!["agents"];
    headers.extend(phases);
    let table = Table::new(&headers);
    let mut points = Vec::new();
    for m in sizes {
        let mut row = vec![m.agents.to_string()];
        for phase in phases {
            let peak = median(
                m.runs
                    .iter()
                    .filter_map(|r| r.peaks.get(phase))
                    .map(|p| mib(p.peak_kib))
                    .collect(),
            );
            if phase == "steady ticks" {
                points.push((m.agents as f64, peak));
            }
            row.push(format!("{peak:.1} MiB"));
        }
        table.row(&row);
    }
    if points.len() >= 2 {
        let n = points.len() as f64;
        let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
        let slope = sxy / sxx;
        println!(
            "\nSteady peak RSS ≈ {:.1} MiB + {:.2} KiB per agent (least squares over {} sizes)",
            my - slope * mx,
            slope * 1024.0,
            points.len()
        );
    }

    println!(
        "\n### Railway budget at production's intervals (30 s ticks, full sweep every 10 min, orphan sweep every 30 min), against the seed's strategy in the same run\n"
    );
    let table = Table::new(&[
        "agents",
        "crashed",
        "steady req/tick",
        "sweep req/tick",
        "first (orphan sweep) req/tick",
        "pool req/h",
        "share of 10k/h",
        "seed req/tick (reads alone)",
        "seed req/h",
        "seed ÷ pool",
    ]);
    for m in sizes {
        let per_hour = budget(m);
        let seed_per_hour = m.seed.0 as f64 * 3600.0 / TICK.as_secs_f64();
        table.row(&[
            m.agents.to_string(),
            m.crashed.to_string(),
            format!("{:.1}", requests(m, Kind::Steady)),
            format!("{:.0}", requests(m, Kind::Sweep)),
            format!("{:.0}", requests(m, Kind::First)),
            format!("{per_hour:.0}"),
            share(per_hour),
            format!("{} ({})", m.seed.0, secs(m.seed.1.as_secs_f64())),
            format!("{seed_per_hour:.0}"),
            format!("{:.0}x", seed_per_hour / per_hour.max(1.0)),
        ]);
    }

    if let Some(m) = sizes.iter().max_by_key(|m| m.agents) {
        let (med, p90, _) = spread_of(m.ticks(Kind::Steady).map(|t| t.wall.as_secs_f64()).collect());
        let per_hour = budget(m);
        let peak = m
            .runs
            .iter()
            .flat_map(|r| r.peaks.values())
            .map(|p| mib(p.peak_kib))
            .fold(0.0, f64::max);
        let checked = m.ticks(Kind::Steady).map(|t| t.health_checks).min().unwrap_or(0);
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        println!("\n### Targets (set for 10,000 agents), at {} agents\n", m.agents);
        let table = Table::new(&["target", "measured", "verdict"]);
        table.row(&[
            format!(
                "steady median ≤ {}, p90 ≤ {}",
                secs(TARGET_STEADY_MEDIAN.as_secs_f64()),
                secs(TARGET_STEADY_P90.as_secs_f64())
            ),
            format!("{} / {}", secs(med), secs(p90)),
            verdict(med <= TARGET_STEADY_MEDIAN.as_secs_f64() && p90 <= TARGET_STEADY_P90.as_secs_f64())
                .into(),
        ]);
        table.row(&[
            "every agent checked each interval".into(),
            format!("fewest checks in a steady tick: {checked} of {}", m.agents),
            verdict(checked as usize >= m.agents).into(),
        ]);
        table.row(&[
            format!(
                "Railway ≤ {:.0}% of 10k/h (simulator's count)",
                TARGET_SHARE * 100.0
            ),
            format!("{per_hour:.0}/h = {}", share(per_hour)),
            verdict(per_hour <= TARGET_SHARE * HOURLY_BUDGET).into(),
        ]);
        table.row(&[
            format!("pool peak RSS ≤ {TARGET_PEAK_MIB:.0} MiB"),
            format!("{peak:.1} MiB (highest phase)"),
            verdict(peak <= TARGET_PEAK_MIB).into(),
        ]);
    }
    let failures: Vec<&String> = sizes.iter().flat_map(|m| m.failures.iter()).collect();
    if !failures.is_empty() {
        println!("\n### FAILED\n");
        for f in failures {
            println!("- {f}");
        }
    }
}
