//! Announcements to every replica through `NOTIFY`, gathered: a claim asks the leader to size
//! the pool, and at a thousand claims a second one `NOTIFY` each would be a third commit per
//! claim (PostgreSQL serialises notifying commits on one queue). The leader sizes at most once
//! a second, so one announcement stands for every request made while the last was on its way
//! or within [`SPACING`] of it; a request is never lost, only joined to the next one.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

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
