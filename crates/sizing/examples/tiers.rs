//! The tier comparison on the shipped week and the launch week:
//! `cargo run -p pool-sizing --release --example tiers [warm-schedule] [parkedMin]`

use std::error::Error;

use pool_sizing::{
    ClaimTrace, IdleSchedule, Launch, RailwayModel, TierSetup, compare_tiers, launch_markdown, launch_rows,
};

const SHIPPED: &str = include_str!("../data/synthetic-week.csv");

fn main() -> Result<(), Box<dyn Error>> {
    let trace = ClaimTrace::parse(SHIPPED)?;
    let model = RailwayModel::default();
    let mut setup = TierSetup::for_synthetic_week()?;
    if let Some(rules) = std::env::args().nth(1) {
        setup.tiered_schedule = IdleSchedule::parse(&rules)?;
    }
    if let Some(n) = std::env::args().nth(2) {
        setup.parked_min = n.parse()?;
    }
    let comparison = compare_tiers(&trace, &model, &setup);
    print!("{}", comparison.to_markdown());
    let launch = Launch::synthetic_week_launch();
    let rows = launch_rows(&trace, &launch, &[0, 50, 100, 150, 200, 250, 300], &model, &setup);
    print!("\n{}", launch_markdown(&rows, &launch, &setup.size));
    Ok(())
}
