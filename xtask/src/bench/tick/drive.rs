//! Driving the pool's ticks from the bench: ask for one (`POST /api/pool/reconcile`), follow
//! it to its end (the tick counter moves, then nothing is sent to Railway or the agents for a
//! while), and show the pool's last words when it does not come.

use std::time::{Duration, Instant};

use pool_e2e::ManagerProcess;

use super::process::FleetProcess;
use super::procfs::metrics;
use super::{POLL, QUIET};

/// Waits for the pool to finish more than `after` ticks, then for it to be quiet (no tick
/// finished, nothing sent to Railway or the agents, for [`QUIET`]). Returns the ticks
/// finished in all.
pub(super) async fn follow(
    fleet: &FleetProcess,
    pm: &ManagerProcess,
    after: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let mut ticks = after;
    let mut activity = fleet.activity().await?;
    let mut still_since = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        let now_ticks = metrics(pm).await?.ticks;
        if now_ticks > ticks {
            ticks = now_ticks;
            still_since = Instant::now();
        }
        let now_activity = fleet.activity().await?;
        if now_activity != activity {
            activity = now_activity;
            still_since = Instant::now();
        }
        if ticks > after && still_since.elapsed() >= QUIET {
            return Ok(ticks);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the pool finished {} of the ticks expected within {timeout:?} (Railway requests: {activity}):\n{}",
                ticks - after,
                tail(pm)
            ));
        }
    }
}

pub(super) fn tail(pm: &ManagerProcess) -> String {
    let out = pm.output_text();
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

pub(super) async fn trigger(pm: &ManagerProcess) -> Result<(), String> {
    let answer = pm
        .send(hyper::Method::POST, "/api/pool/reconcile", true, None)
        .await?;
    if answer.status != 202 {
        return Err(format!("POST /api/pool/reconcile answered {}", answer.status));
    }
    Ok(())
}
