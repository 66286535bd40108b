//! Prints the synthetic week as CSV, to (re)write the shipped trace:
//! `cargo run -p pool-sizing --example synthetic_week > crates/sizing/data/synthetic-week.csv`

use std::io::Write;

use pool_sizing::{SYNTHETIC_WEEK_SEED, synthetic_week};

fn main() -> std::io::Result<()> {
    let csv = synthetic_week(SYNTHETIC_WEEK_SEED).trace.to_csv();
    std::io::stdout().lock().write_all(csv.as_bytes())
}
