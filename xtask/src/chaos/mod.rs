//! `cargo xtask chaos [--duration-secs N] [--short]`: the run that proves the pool loses
//! nothing, leaks nothing and hands nothing out twice under faults.
//!
//! Real PostgreSQL, the simulator, and two `pool-manager` processes (two replicas on one
//! database). The run goes in phases, one module each:
//! 1. [`replicas`] — start the simulator (Railway as it is, every quirk on), the database and
//!    two replicas, and let the pool fill;
//! 2. [`faults`] — the simulator fails every operation now and then (5xx, timeouts after
//!    applying, GraphQL errors), sends 429 storms, throttles `projectCreate` and makes agents
//!    crash, fail, never become ready, hang or fail provisioning; a client claims continuously
//!    (some with repeated idempotency keys), kills, drains and redeploys; a replica is SIGKILLed
//!    and restarted; the leader's lock connection is cut once;
//! 3. [`settle`] — the faults stop and the pool converges;
//! 4. [`invariants`] — no leak, no double hand-out, no lost claim, convergence, budget;
//! 5. [`report`] — the tables.

mod faults;
mod invariants;
mod replicas;
mod report;
mod settle;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The pool's floor during the run.
const MIN_IDLE: i64 = 3;
/// The replicas' tick.
const TICK_MS: u64 = 500;
/// Each replica's own Railway limit; together they stay under the simulator's 50/s.
const REPLICA_RPS: usize = 20;

/// How long the run lasts.
struct Options {
    duration: Duration,
    settle_ticks: u64,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        duration: Duration::from_secs(180),
        settle_ticks: 120,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--short" => {
                o.duration = Duration::from_secs(25);
                o.settle_ticks = 60;
            }
            "--duration-secs" => {
                o.duration = Duration::from_secs(
                    rest.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or("--duration-secs N")?,
                )
            }
            other => {
                return Err(format!(
                    "unknown option {other:?}\nusage: cargo xtask chaos [--short] [--duration-secs N]"
                ));
            }
        }
    }
    Ok(o)
}

/// What the client saw and did during the fault phase.
#[derive(Default)]
struct Ledger {
    claims_sent: u64,
    claims_ok: Vec<(Option<String>, Value)>,
    claims_by_status: BTreeMap<u16, u64>,
    kills: u64,
    drains: u64,
    redeploys: u64,
    sigkills: u64,
    connection_cuts: u64,
    storms: u64,
}

/// One invariant's verdict.
struct Check {
    name: &'static str,
    held: bool,
    detail: String,
}

pub fn main(args: &[String]) -> Result<(), String> {
    let options = options(args)?;
    crate::runtime()?.block_on(run(options))
}

async fn run(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let mut run = replicas::Run::start(2).await?;
    println!("two replicas up; filling the pool");
    run.wait_idle(MIN_IDLE, Duration::from_secs(60)).await?;

    println!("faults on for {:?}", options.duration);
    let ledger = faults::phase(&mut run, options.duration).await?;

    println!("faults off; waiting for the pool to settle");
    let settled = settle::phase(&mut run, options.settle_ticks).await?;

    let checks = invariants::check(&run, &ledger, &settled, options.settle_ticks).await?;
    report::print(&run, &ledger, &checks, options.duration, started);

    run.stop().await;
    if checks.iter().all(|c| c.held) {
        Ok(())
    } else {
        run.print_last_output();
        Err("an invariant was violated".into())
    }
}
