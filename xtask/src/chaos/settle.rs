//! Phase 3: the faults are off; the pool must converge.

use std::time::{Duration, Instant};

use pool_provisioner::testing::check_leaks;

use super::replicas::Run;
use super::{MIN_IDLE, TICK_MS};

/// How the pool settled.
pub(super) struct Settled {
    /// When idle first reached the floor, after the faults stopped.
    pub converged_after: Option<Duration>,
    /// Idle at the floor, nothing creating, claiming or starting, no orphan.
    pub settled: bool,
    /// Teardowns still retrying at the end (tracked rows, never leaks).
    pub deleting_left: i64,
}

/// Waits up to `settle_ticks` ticks for the pool to settle.
pub(super) async fn phase(run: &mut Run, settle_ticks: u64) -> Result<Settled, String> {
    let started = Instant::now();
    let limit = Duration::from_millis(TICK_MS * settle_ticks);
    let mut converged_after = None;
    let mut settled = false;
    while started.elapsed() < limit {
        let counts = run.counts().await;
        if started.elapsed().as_millis() % 5000 < TICK_MS as u128 {
            println!("  settling: {counts}");
            run.print_replicas().await;
            run.print_rows_in_motion().await?;
        }
        let idle = counts["idle"].as_i64().unwrap_or(0);
        if converged_after.is_none() && idle >= MIN_IDLE {
            converged_after = Some(started.elapsed());
        }
        if idle >= MIN_IDLE
            && counts["creating"] == 0
            && counts["claiming"] == 0
            && counts["starting"] == 0
            && orphan_free(run).await?
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
    }
    // Teardowns that failed during the faults retry on their backoff; give them the rest of
    // the window.
    while started.elapsed() < limit && run.counts().await["deleting"] != 0 {
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
    }
    Ok(Settled {
        converged_after,
        settled,
        deleting_left: run.counts().await["deleting"].as_i64().unwrap_or(0),
    })
}

/// True when every live project, key and inbox in the simulator belongs to a live row.
async fn orphan_free(run: &Run) -> Result<bool, String> {
    let owned: Vec<_> = run.live_rows().await?.into_iter().map(|r| r.owned).collect();
    Ok(check_leaks(&run.sim.snapshot(), &owned).without_row.is_empty())
}
