//! Announcements to every replica through `NOTIFY`, gathered: a claim asks the leader to size
//! the pool, and at a thousand claims a second one `NOTIFY` each would be a third commit per
//! claim (PostgreSQL serialises notifying commits on one queue). The leader sizes at most once
//! a second, so one announcement stands for every request made while the last was on its way
//! or within [`SPACING`] of it; a request is never lost, only joined to the next one. The
//! other announcements (a tick, a look) are rarer and go out one each.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use pool_store::{AgentId, PoolSignal};

use crate::Reconciler;

/// The least time between two announcements of the same kind.
pub(crate) const SPACING: Duration = Duration::from_millis(100);

const IDLE: u8 = 0;
const SENDING: u8 = 1;
const AGAIN: u8 = 2;

/// Whether an announcement is on its way, and whether another was asked for meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    state: AtomicU8,
}

impl Gathered {
    /// Asks for an announcement. True when the caller must send it (none is on its way);
    /// false when the one on its way will be followed by another that stands for this one.
    pub fn ask(&self) -> bool {
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            let next = if current == IDLE { SENDING } else { AGAIN };
            match self
                .state
                .compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return current == IDLE,
                Err(actual) => current = actual,
            }
        }
    }

    /// The sender sent one. True when it must send another (asked for meanwhile).
    pub fn sent(&self) -> bool {
        loop {
            if self
                .state
                .compare_exchange(AGAIN, SENDING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return true;
            }
            if self
                .state
                .compare_exchange(SENDING, IDLE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return false;
            }
        }
    }
}

impl Reconciler {
    /// Asks whichever replica leads to look at this agent now: read its deployment from
    /// Railway and check its health (a deploy event arrived for it). Every replica hears it
    /// once: this one at once, the others through `NOTIFY`.
    pub fn look_everywhere(&self, agent: AgentId) {
        let store = self.provisioner.store().clone();
        tokio::spawn(async move {
            if let Err(e) = store.notify(PoolSignal::Look(agent)).await {
                tracing::debug!(error = %e, "could not announce a look to the other replicas");
            }
        });
    }

    /// Asks whichever replica leads for a tick now (after a replenish, a drain, a settings
    /// change), so the pool moves without waiting for the interval. Every replica hears it once:
    /// this one at once, the others through `NOTIFY` (this replica drops its own echo). The
    /// notification is a hint; a lost one costs at most an interval.
    pub fn trigger_everywhere(&self) {
        let store = self.provisioner.store().clone();
        tokio::spawn(async move {
            if let Err(e) = store.notify(PoolSignal::TickSoon).await {
                tracing::debug!(error = %e, "could not announce a tick to the other replicas");
            }
        });
    }

    /// Asks whichever replica leads to size the pool soon (a claim took an agent, or waits for
    /// one): the claim is counted as demand in the database, and the leader's sizing pass
    /// creates what the target asks for — no health checks, no Railway reads, no sweeps, at
    /// most one pass a second. Heard once per replica, as [`Self::trigger_everywhere`].
    /// Requests made while an announcement is on its way, or within
    /// [`SPACING`] of the last, are gathered into the next one (`announce`).
    pub fn size_everywhere(&self) {
        if !self.size_announced.ask() {
            return;
        }
        let store = self.provisioner.store().clone();
        let gathered = self.size_announced.clone();
        tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                if let Err(e) = store.notify(PoolSignal::SizeSoon).await {
                    tracing::debug!(error = %e, "could not announce sizing to the other replicas");
                }
                if !gathered.sent() {
                    break;
                }
                tokio::time::sleep_until(started + SPACING).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_made_while_one_is_on_its_way_make_one_more_and_none_is_lost() {
        let g = Gathered::default();
        assert!(g.ask(), "the first request sends");
        assert!(!g.ask(), "a second joins the one on its way");
        assert!(!g.ask());
        assert!(g.sent(), "those two make one more");
        assert!(!g.sent(), "then nothing was asked");
        assert!(g.ask(), "idle again: the next request sends");
        assert!(!g.sent());
    }

    #[test]
    fn concurrent_requests_are_each_covered_by_an_announcement_sent_after_them() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        let g = Arc::new(Gathered::default());
        let sends = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (g, sends) = (g.clone(), sends.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if g.ask() {
                            loop {
                                sends.fetch_add(1, Ordering::SeqCst);
                                if !g.sent() {
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Every sender finished: nothing is left asked for and unsent.
        assert_eq!(g.state.load(Ordering::SeqCst), IDLE);
        let sends = sends.load(Ordering::SeqCst);
        assert!((1..=80_000).contains(&sends), "{sends}");
    }
}
