//! The tick bench's report: ticks by kind (median, p90, max, the spread of the runs' medians),
//! what they cost (Railway, counted by the pool and by the simulator, by operation and cause;
//! failures by cause; CPU; memory per phase), the hourly budget against the seed's strategy,
//! and the targets, as Markdown tables.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::Table;
use super::{
    AGENT_ROUND_TRIP, CRASHED_EVERY, HOURLY_BUDGET, IDLE_EVERY, Kind, LISTING, Measured, ORPHAN_SWEEP_EVERY,
    Options, TARGET_PEAK_MIB, TARGET_SHARE, TARGET_STEADY_MEDIAN, TARGET_STEADY_P90, TICK, TickRecord,
    slices,
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

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The mean Railway requests (simulator's count) of a kind of tick: the budget's figure (a
/// median would hide the ticks that read suspects).
fn requests(m: &Measured, kind: Kind) -> f64 {
    mean(&m.ticks(kind).map(|t| t.sim_railway as f64).collect::<Vec<_>>())
}

/// Requests an hour of production's ticks costs: every tick reads its slice (and suspects),
/// and the orphan sweep lists the workspace (as the first tick's listing measured it) as often
/// as the pool sweeps a workspace that size: every 30 min, or further apart past 9,999
/// projects ([`pool_reconciler::orphan_sweep_interval`]).
fn budget(m: &Measured) -> f64 {
    let hour = 3600.0;
    let ticks = hour / TICK.as_secs_f64();
    hour / orphan_sweep_every(m).as_secs_f64() * listing(m) + ticks * requests(m, Kind::Steady)
}

/// The pool's time between two orphan sweeps at this fleet size, at production's settings.
fn orphan_sweep_every(m: &Measured) -> std::time::Duration {
    pool_reconciler::orphan_sweep_interval(ORPHAN_SWEEP_EVERY, m.agents, HOURLY_BUDGET as usize)
}

/// The mean pages of a whole workspace listing (the first tick's, which always sweeps).
fn listing(m: &Measured) -> f64 {
    mean(
        &m.ticks(Kind::First)
            .map(|t| t.by_operation.get(LISTING).copied().unwrap_or(0) as f64)
            .collect::<Vec<_>>(),
    )
}

/// What a Railway operation (the simulator's root field) is sent for.
fn cause(operation: &str) -> &'static str {
    match operation {
        "projectsByIds" => "status reads: the slice, suspects",
        "project" => "single reads: left out of a batch",
        LISTING => "orphan sweep: workspace listing",
        "apiToken" => "start-up: token check",
        _ => "other",
    }
}

/// Counts summed over ticks, per tick, as `name n (cause)`.
fn per_tick<'a>(
    ticks: &[&'a TickRecord],
    counts: impl Fn(&'a TickRecord) -> &'a BTreeMap<String, u64>,
    label: impl Fn(&str) -> String,
) -> String {
    let mut sum: BTreeMap<&str, u64> = BTreeMap::new();
    for t in ticks {
        for (key, count) in counts(t) {
            *sum.entry(key.as_str()).or_default() += count;
        }
    }
    if sum.is_empty() {
        return "-".into();
    }
    sum.iter()
        .map(|(key, count)| format!("{} {:.2}", label(key), *count as f64 / ticks.len().max(1) as f64))
        .collect::<Vec<_>>()
        .join("; ")
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
            "pinned to CPU 0; the fleet's process (simulator and agent hosts) and the bench pinned to CPU 1; PostgreSQL unpinned"
        } else {
            "not pinned"
        }
    );
    println!(
        "Kinds: `first` at start (the orphan sweep and retention come due), `steady` (one slice of the rolling status sweep, as every production tick; slices by agents: {}), `sweep` (the orphan sweep due again). Ticks come back to back, so wall-clock backoffs (a crashed agent read again after 30 s rising to 10 min) come due in more ticks than at production's 30 s.\n",
        sizes
            .iter()
            .map(|m| format!("{}: {}", m.agents, slices(m.agents)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "### Ticks by kind (wall time as the pool measured it; Railway requests as the simulator received them; CPU and steal medians per tick; others' CPU: PostgreSQL and whatever else ran on the machine)\n"
    );
    let table = Table::new(&[
        "agents",
        "kind",
        "ticks",
        "wall median / p90 / max",
        "spread of runs' medians",
        "Railway req/tick mean (pool's count)",
        "health checks in the window (agents' count)",
        "agents read/tick (slice)",
        "pool CPU",
        "fleet process CPU",
        "others' CPU",
        "steal",
    ]);
    let mut causes = Vec::new();
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
                    "{:.2} ({:.2})",
                    mean(&ticks.iter().map(|t| t.sim_railway as f64).collect::<Vec<_>>()),
                    mean(&ticks.iter().map(|t| t.pool_railway as f64).collect::<Vec<_>>())
                ),
                each(&|t| t.health_checks),
                format!(
                    "{} ({})",
                    each(&|t| t.read),
                    m.agents.div_ceil(slices(m.agents) as usize)
                ),
                ms(&|t| t.pool_cpu),
                ms(&|t| t.fleet_cpu),
                ms(&|t| t.others_cpu),
                ms(&|t| t.steal),
            ]);
            causes.push(vec![
                m.agents.to_string(),
                kind.name().into(),
                per_tick(&ticks, |t| &t.by_operation, |op| format!("{op} ({})", cause(op))),
                per_tick(&ticks, |t| &t.failures, str::to_string),
                format!(
                    "{:.2}",
                    mean(&ticks.iter().map(|t| t.problems as f64).collect::<Vec<_>>())
                ),
            ]);
        }
    }

    println!(
        "\n### Where the ticks' wall time went (medians of the pool's own timings per phase, ms: `tick phases`; other = the tick's wall time less its phases: deciding, enlisting, waiting for a CPU)\n"
    );
    let mut headers = vec!["agents", "kind", "wall"];
    headers.extend(super::procfs::PHASES.map(|p| p.trim_end_matches("_ms")));
    headers.push("other");
    let table = Table::new(&headers);
    for m in sizes {
        for kind in [Kind::First, Kind::Steady, Kind::Sweep] {
            let ticks: Vec<&TickRecord> = m.ticks(kind).filter(|t| !t.phases.is_empty()).collect();
            if ticks.is_empty() {
                continue;
            }
            let of = |name: &str| {
                median(
                    ticks
                        .iter()
                        .map(|t| t.phases.get(name).copied().unwrap_or(0) as f64)
                        .collect(),
                )
            };
            let mut row = vec![
                m.agents.to_string(),
                kind.name().into(),
                format!("{:.0}", of("duration_ms")),
            ];
            row.extend(super::procfs::PHASES.map(|p| format!("{:.0}", of(p))));
            let other = median(
                ticks
                    .iter()
                    .map(|t| {
                        let phases: u64 = super::procfs::PHASES
                            .iter()
                            .filter_map(|p| t.phases.get(*p))
                            .sum();
                        t.phases
                            .get("duration_ms")
                            .copied()
                            .unwrap_or(0)
                            .saturating_sub(phases) as f64
                    })
                    .collect(),
            );
            row.push(format!("{other:.0}"));
            table.row(&row);
        }
    }

    println!(
        "\n### By cause, per tick (means): Railway requests as the simulator received them, by operation; failures (health answers other than 200 by status, Railway answers other than ok by operation and outcome, 429s, TLS handshake failures, the pool's warnings by message)\n"
    );
    let table = Table::new(&[
        "agents",
        "kind",
        "Railway requests by operation (cause)",
        "failures by cause",
        "the pool's tick problems",
    ]);
    for row in causes {
        table.row(&row);
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
        "\n### Railway budget at production's intervals (30 s ticks, each reading one slice of the rolling status sweep: 10 min, longer past 3,000 agents to keep the sweep within 4 % of the budget; 120 steady ticks an hour at the measured mean; the orphan sweep's listing, as the first tick measured it, every 30 min, or further apart for a workspace past 9,999 projects), against the seed's strategy (every agent's status read with a request of its own each tick) in the same run\n"
    );
    let table = Table::new(&[
        "agents",
        "crashed",
        "steady req/tick (mean)",
        "sweep req/tick (mean)",
        "first req/tick (mean)",
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
            format!("{:.2}", requests(m, Kind::Steady)),
            format!("{:.1}", requests(m, Kind::Sweep)),
            format!("{:.1}", requests(m, Kind::First)),
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
        let checked = m
            .runs
            .iter()
            .map(|r| r.coverage.agents_checked)
            .min()
            .unwrap_or(0);
        let checks: u64 = m.runs.iter().map(|r| r.coverage.checks).sum();
        let longest = m
            .runs
            .iter()
            .map(|r| r.coverage.longest_unchecked)
            .max()
            .unwrap_or_default();
        let recorded = m
            .runs
            .iter()
            .map(|r| r.coverage.recorded)
            .min()
            .unwrap_or_default();
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
            format!("every agent checked each interval ({})", secs(TICK.as_secs_f64())),
            format!(
                "{checked} of {} agents checked ({checks} checks in {} runs); longest unchecked {} (over ≥ {} of steady ticks, the agents' count)",
                m.agents,
                m.runs.len(),
                secs(longest.as_secs_f64()),
                secs(recorded.as_secs_f64())
            ),
            verdict(checked >= m.agents && longest <= TICK && recorded >= TICK).into(),
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
