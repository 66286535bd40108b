//! Phase 5: the tables — what was injected, and whether each invariant held.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::replicas::Run;
use super::{Check, Ledger};
use crate::bench::Table;

/// Prints the run's report.
pub(super) fn print(run: &Run, ledger: &Ledger, checks: &[Check], duration: Duration, started: Instant) {
    let snapshot = run.sim.snapshot();
    println!(
        "\n## chaos run: {duration:?} of faults, two replicas, {:.0} s in all\n",
        started.elapsed().as_secs_f64()
    );
    let table = Table::new(&["fault", "injected"]);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for (name, n) in &snapshot.counters.faults {
        let kind = name.rsplit(':').next().unwrap_or(name).to_string();
        *by_kind.entry(kind).or_default() += n;
    }
    for (kind, n) in &by_kind {
        table.row(&[format!("Railway/resource {kind}"), n.to_string()]);
    }
    let fates: BTreeMap<String, usize> = snapshot.deployments.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(format!("agent {:?}", d.fate).to_lowercase()).or_default() += 1;
        m
    });
    for (fate, n) in fates.iter().filter(|(f, _)| !f.ends_with("healthy")) {
        table.row(&[fate.clone(), n.to_string()]);
    }
    for (name, n) in [
        ("429 storms", ledger.storms),
        ("429s served", snapshot.counters.rate_limited),
        ("SIGKILLed replicas", ledger.sigkills),
        ("leader lock connections cut", ledger.connection_cuts),
        ("claims sent", ledger.claims_sent),
        ("kills", ledger.kills),
        ("drains", ledger.drains),
        ("redeploys", ledger.redeploys),
    ] {
        table.row(&[name.to_string(), n.to_string()]);
    }
    println!("\nclaims by status: {:?}\n", ledger.claims_by_status);
    let table = Table::new(&["invariant", "held", "detail"]);
    for check in checks {
        table.row(&[
            check.name.to_string(),
            if check.held { "yes" } else { "NO" }.to_string(),
            check.detail.clone(),
        ]);
    }
}
