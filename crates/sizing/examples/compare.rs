//! Replays a claim trace (the shipped synthetic week, or the CSV file given as the argument)
//! under each sizing policy and prints the comparison as Markdown:
//! `cargo run -p pool-sizing --release --example compare [trace.csv]`

use std::error::Error;
use std::time::Instant;

use pool_sizing::{ClaimTrace, ComparisonSetup, RailwayModel, SYNTHETIC_WEEK_SCHEDULE, compare_policies};

const SHIPPED: &str = include_str!("../data/synthetic-week.csv");

fn main() -> Result<(), Box<dyn Error>> {
    let (name, trace) = match std::env::args().nth(1) {
        Some(path) => (path.clone(), ClaimTrace::parse(&std::fs::read_to_string(&path)?)?),
        None => ("data/synthetic-week.csv".to_string(), ClaimTrace::parse(SHIPPED)?),
    };
    let model = RailwayModel::default();
    let setup = ComparisonSetup::for_synthetic_week()?;
    let started = Instant::now();
    let comparison = compare_policies(&trace, &model, &setup);
    let elapsed = started.elapsed();
    println!("Trace: {name}, {} claims.", trace.len());
    println!(
        "Railway: one creation every {} s, ready after {} s, {} in flight at most. \
         Headroom {}. Schedule: `{SYNTHETIC_WEEK_SCHEDULE}`.\n",
        model.create_interval.as_secs(),
        model.time_to_ready.as_secs(),
        model.create_concurrency,
        setup.config.headroom,
    );
    print!("{}", comparison.to_markdown());
    println!(
        "\n({} replays in {:.2} s of wall time.)",
        comparison.rows.len(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
