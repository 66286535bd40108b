//! `cargo xtask bench sizing [--trace FILE] [--schedule RULES] [--min-idle N]
//! [--create-interval-secs S] [--ready-secs S]`: replays a claim trace through the pool's own
//! sizing policy (`pool-sizing`, the code the reconciler runs) under Railway's create rate and
//! time to ready, in simulated time, and prints one row per policy.
//!
//! Without `--trace` it replays the synthetic week shipped in `crates/sizing/data/`, with the
//! schedule written for it. A trace is a CSV of RFC 3339 claim timestamps, one per line, with
//! an optional `claimed_at` header.

use std::time::{Duration, Instant};

use pool_sizing::{
    AgentSize, ClaimTrace, ComparisonSetup, DEFAULT_PARK_AFTER, DEFAULT_PARKED_MAX, DEFAULT_PARKED_MIN,
    IdleSchedule, Launch, RailwayModel, SYNTHETIC_WEEK_SCHEDULE, TIERED_WEEK_SCHEDULE, TierSetup,
    compare_policies, compare_tiers, launch_markdown, launch_rows,
};

/// The shipped synthetic week.
const SYNTHETIC_WEEK: &str = include_str!("../../../crates/sizing/data/synthetic-week.csv");

/// What the command line asked for.
#[derive(Debug, Default, PartialEq)]
struct Options {
    trace: Option<String>,
    schedule: Option<String>,
    min_idle: Option<u32>,
    create_interval_secs: Option<u64>,
    ready_secs: Option<u64>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--trace" => options.trace = Some(value()?),
            "--schedule" => options.schedule = Some(value()?),
            "--min-idle" => options.min_idle = Some(number(flag, &value()?)?),
            "--create-interval-secs" => options.create_interval_secs = Some(positive(flag, &value()?)?),
            "--ready-secs" => options.ready_secs = Some(positive(flag, &value()?)?),
            other => {
                return Err(format!(
                    "unknown option {other:?} (--trace FILE, --schedule RULES, --min-idle N, \
                     --create-interval-secs S, --ready-secs S)"
                ));
            }
        }
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a whole number"))
}

fn positive(flag: &str, value: &str) -> Result<u64, String> {
    match number(flag, value)? {
        0 => Err(format!("{flag}: must be at least 1")),
        n => Ok(n),
    }
}

/// Runs the comparison and prints it.
pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let (name, trace) = match &options.trace {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("--trace {path}: {e}"))?;
            let trace = ClaimTrace::parse(&text).map_err(|e| format!("--trace {path}: {e}"))?;
            (path.clone(), trace)
        }
        None => (
            "crates/sizing/data/synthetic-week.csv (shipped)".to_string(),
            ClaimTrace::parse(SYNTHETIC_WEEK).map_err(|e| format!("the shipped week: {e}"))?,
        ),
    };
    if trace.is_empty() {
        return Err(format!("{name}: no claims to replay"));
    }
    let mut setup = ComparisonSetup::for_synthetic_week().map_err(|e| e.to_string())?;
    if let Some(rules) = &options.schedule {
        setup.schedule = IdleSchedule::parse(rules).map_err(|e| format!("--schedule: {e}"))?;
    }
    if let Some(min_idle) = options.min_idle {
        setup.min_idle = min_idle;
    }
    let mut model = RailwayModel::default();
    if let Some(secs) = options.create_interval_secs {
        model.create_interval = Duration::from_secs(secs);
    }
    if let Some(secs) = options.ready_secs {
        model.time_to_ready = Duration::from_secs(secs);
    }
    let schedule = options.schedule.as_deref().unwrap_or(SYNTHETIC_WEEK_SCHEDULE);
    println!("## Sizing policies on {name}: {} claims\n", trace.len());
    println!(
        "Railway: one project creation every {} s per workspace, ready {} s after it starts, \
         at most {} in flight. Claims wait up to {} s. Headroom {}. Schedule: `{schedule}`; \
         minIdle {} where no rule applies.\n",
        model.create_interval.as_secs(),
        model.time_to_ready.as_secs(),
        model.create_concurrency,
        setup.config.claim_wait_limit.as_secs(),
        setup.config.headroom,
        setup.min_idle,
    );
    let started = Instant::now();
    let comparison = compare_policies(&trace, &model, &setup);
    let elapsed = started.elapsed();
    print!("{}", comparison.to_markdown());
    match comparison.idle_hours_ratio() {
        Some(ratio) => println!(
            "\nIdle agent-hours, schedule + demand ÷ smallest fixed minIdle at ≤ 1 % late: {ratio:.2}"
        ),
        None => println!("\nNo fixed minIdle in the comparison reaches ≤ 1 % late: no ratio."),
    }
    println!(
        "({} replays of {} claims in {:.2} s of wall time.)",
        comparison.rows.len(),
        trace.len(),
        elapsed.as_secs_f64()
    );
    tiers(&name, &trace, &model, options.schedule.is_some())
}

/// The tier comparison (issue 21): wakes modelled, cost columns, the unscheduled launch.
fn tiers(name: &str, trace: &ClaimTrace, model: &RailwayModel, custom_schedule: bool) -> Result<(), String> {
    let mut setup = TierSetup::for_synthetic_week().map_err(|e| e.to_string())?;
    if custom_schedule {
        // The tiered warm schedule is written for the shipped week; with another schedule
        // the tiered policy uses minIdle and demand alone.
        setup.tiered_schedule =
            IdleSchedule::parse(&format!("*={}", setup.min_idle)).map_err(|e| e.to_string())?;
    }
    let size = AgentSize::ASSUMED;
    println!("\n## Tiers on {name}: warm, parked, cold\n");
    println!(
        "Wakes are log-normal, p50 {} s, p95 {} s (p90 {:.0} s: the warm horizon). Claims wait up to {} s \
         (`Prefer: wait`). Idle agents above the warm target park after {} min. Tiered: warm schedule \
         `{TIERED_WEEK_SCHEDULE}`, parkedMin {}, parkedMax {}. Agent (assumption): {size}. Prices: Railway \
         Pro, memory $0.000231/GB-min, CPU $0.000463/vCPU-min (docs.railway.com/reference/pricing), \
         volume $0.15/GB-month. Warm agent-hours count every unclaimed running deployment (idle, \
         booting, waking).\n",
        model.wake.median.as_secs(),
        model.wake.p95.as_secs(),
        model.wake.p90().as_secs_f64(),
        setup.config.claim_wait_limit.as_secs(),
        DEFAULT_PARK_AFTER.as_secs() / 60,
        setup.parked_min,
        setup.parked_max,
    );
    let started = Instant::now();
    let comparison = compare_tiers(trace, model, &setup);
    print!("{}", comparison.to_markdown());
    match (comparison.warm_hours_ratio(), comparison.dollars_ratio()) {
        (Some(warm), Some(dollars)) => println!(
            "\nTiered ÷ smallest fixed minIdle at ≤ 1 % late: warm agent-hours {warm:.3}, dollars {dollars:.3}."
        ),
        _ => println!("\nNo fixed minIdle in the comparison reaches ≤ 1 % late: no ratio."),
    }
    let launch = Launch::synthetic_week_launch();
    let rows = launch_rows(
        trace,
        &launch,
        &[0, 100, 200, 250, DEFAULT_PARKED_MIN],
        model,
        &setup,
    );
    println!(
        "\n### An unscheduled launch, default settings (minIdle 1, no schedule, parkedMax {DEFAULT_PARKED_MAX})\n"
    );
    print!("{}", launch_markdown(&rows, &launch, &size));
    if let Some(default) = rows.iter().find(|r| r.parked_min == DEFAULT_PARKED_MIN) {
        println!(
            "\nDefault parkedMin {DEFAULT_PARKED_MIN}: {} of {} claims in the launch's hour late; it costs \
             ${:.2} a month parked (${:.2} a month if those agents ran warm).",
            default.late_in_launch,
            default.claims_in_launch,
            default.parked_min_monthly,
            size.monthly(DEFAULT_PARKED_MIN, 0),
        );
    }
    println!("({:.2} s of wall time.)", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_read_and_bad_ones_named() {
        assert_eq!(
            parse(&args(&[
                "--trace",
                "t.csv",
                "--min-idle",
                "3",
                "--ready-secs",
                "90"
            ]))
            .unwrap(),
            Options {
                trace: Some("t.csv".into()),
                min_idle: Some(3),
                ready_secs: Some(90),
                ..Options::default()
            }
        );
        assert!(
            parse(&args(&["--trace"]))
                .unwrap_err()
                .contains("--trace needs a value")
        );
        assert!(
            parse(&args(&["--min-idle", "-2"]))
                .unwrap_err()
                .contains("--min-idle")
        );
        assert!(
            parse(&args(&["--create-interval-secs", "0"]))
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(parse(&args(&["--speed", "9"])).unwrap_err().contains("--speed"));
    }

    #[test]
    fn a_trace_line_that_is_not_a_timestamp_is_named_with_its_line() {
        let dir = std::env::temp_dir().join(format!("sizing-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.csv");
        std::fs::write(&path, "claimed_at\n2026-11-02T09:00:00Z\nyesterday at noon\n").unwrap();
        let error = run(&args(&["--trace", path.to_str().unwrap()])).unwrap_err();
        assert!(
            error.contains("line 3") && error.contains("yesterday at noon"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_schedule_that_does_not_parse_is_named() {
        let error = run(&args(&["--schedule", "mon-fri 25:00-26:00 UTC=3"])).unwrap_err();
        assert!(error.starts_with("--schedule:"), "{error}");
    }
}
