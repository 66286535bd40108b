//! Phase 4: what must hold after the faults.

use std::collections::{BTreeMap, BTreeSet};

use pool_provisioner::testing::check_leaks;

use super::replicas::Run;
use super::settle::Settled;
use super::{Check, Ledger, MIN_IDLE, REPLICA_RPS, TICK_MS};

/// Checks every invariant.
pub(super) async fn check(
    run: &Run,
    ledger: &Ledger,
    settled: &Settled,
    settle_ticks: u64,
) -> Result<Vec<Check>, String> {
    let snapshot = run.sim.snapshot();
    let rows = run.live_rows().await?;
    let all_rows = run
        .admin
        .query("SELECT id, status, invite_url FROM agent_metadata", &[])
        .await
        .map_err(|e| e.to_string())?;
    for r in rows.iter().filter(|r| r.status == "deleting").take(5) {
        println!(
            "  still deleting: {} after {} attempt(s): {}",
            r.id,
            r.teardown_attempts,
            r.last_error.as_deref().unwrap_or_default()
        );
    }
    let owned: Vec<_> = rows.iter().map(|r| r.owned.clone()).collect();
    let leaks = check_leaks(&snapshot, &owned);
    let mut checks = vec![Check {
        name: "no leaks",
        held: leaks.is_clean(),
        detail: format!(
            "{} live projects, {} keys, {} inboxes; {} without a live row, {} rows pointing at nothing",
            leaks.live_projects,
            leaks.live_keys,
            leaks.live_inboxes,
            leaks.without_row.len(),
            leaks.dangling.len()
        ),
    }];

    // No agent handed out twice: provisioned at most once, one agent per idempotency key, and
    // no agent in two answers.
    let twice = snapshot.deployments.iter().filter(|d| d.provisions > 1).count();
    let mut by_key: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (key, answer) in &ledger.claims_ok {
        if let Some(key) = key {
            by_key
                .entry(key)
                .or_default()
                .insert(answer["instanceId"].as_str().unwrap_or_default());
        }
    }
    let split_keys = by_key.values().filter(|ids| ids.len() > 1).count();
    let mut handed_out: Vec<&str> = ledger
        .claims_ok
        .iter()
        .filter(|(k, _)| k.is_none())
        .map(|(_, a)| a["instanceId"].as_str().unwrap_or_default())
        .collect();
    let keyed: BTreeSet<&str> = by_key.values().flatten().copied().collect();
    handed_out.extend(keyed.iter());
    let distinct: BTreeSet<&str> = handed_out.iter().copied().collect();
    checks.push(Check {
        name: "no double hand-out",
        held: twice == 0 && split_keys == 0 && distinct.len() == handed_out.len(),
        detail: format!(
            "{} agents handed out; {twice} provisioned twice; {split_keys} keys mapped to two agents",
            distinct.len()
        ),
    });

    // Every claim answered 200 is recorded as claimed (or crashed since) with its invite URL.
    let lost = ledger
        .claims_ok
        .iter()
        .filter(|(_, answer)| {
            let id = answer["instanceId"].as_str().unwrap_or_default();
            !all_rows.iter().any(|r| {
                r.get::<_, String>(0) == id
                    && ["claimed", "crashed"].contains(&r.get::<_, String>(1).as_str())
                    && r.get::<_, Option<String>>(2).as_deref() == answer["inviteUrl"].as_str()
            })
        })
        .count();
    checks.push(Check {
        name: "no lost claim",
        held: lost == 0,
        detail: format!(
            "{} claims answered 200; {lost} not recorded as claimed with their invite URL",
            ledger.claims_ok.len()
        ),
    });

    checks.push(Check {
        name: "convergence",
        held: settled.settled,
        detail: match settled.converged_after {
            Some(t) => format!(
                "idle ≥ {MIN_IDLE} after {:.1} s ({} ticks; bound {settle_ticks}); nothing creating or claiming: {}; teardowns still retrying: {}",
                t.as_secs_f64(),
                t.as_millis() as u64 / TICK_MS,
                settled.settled,
                settled.deleting_left
            ),
            None => format!("idle never reached {MIN_IDLE} within {settle_ticks} ticks"),
        },
    });

    let max_rps = snapshot.counters.max_requests_in_one_second;
    checks.push(Check {
        name: "budget",
        held: max_rps <= 2 * REPLICA_RPS && snapshot.counters.without_query_string == 0,
        detail: format!(
            "busiest second: {max_rps} requests (limit 2 replicas × {REPLICA_RPS}); {} without a query string; {} 429s served",
            snapshot.counters.without_query_string, snapshot.counters.rate_limited
        ),
    });
    Ok(checks)
}
