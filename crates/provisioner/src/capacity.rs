//! How many creations may start: the one check every caller goes through (the tick, the API's
//! replenish, the console's add).

use pool_store::StatusCounts;
use serde::Serialize;

/// What a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationDemand {
    /// As many as fit, up to this many (the tick filling a deficit: never more than the free
    /// creation slots, so rows do not pile up behind Railway's pace).
    UpTo(usize),
    /// Exactly this many, or none (an operator's request). Creations beyond the free slots
    /// wait for one, holding their row's lease meanwhile.
    Exactly(usize),
}

/// Why fewer creations started than asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "limit", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CreationLimit {
    /// `POOL_MAX_TOTAL` would be passed.
    #[error("POOL_MAX_TOTAL is {max} and {live} agents are live")]
    MaxTotal {
        /// The cap.
        max: usize,
        /// Live agents now.
        live: i64,
    },
    /// Every creation slot is taken (`POOL_CREATE_CONCURRENCY`).
    #[error("all {concurrency} creation slots are in use")]
    Slots {
        /// The slots.
        concurrency: usize,
    },
    /// An operator paused creation.
    #[error("creation is paused")]
    Paused,
    /// The creation brake is engaged: too many creations failed in a row. One probe creation
    /// goes now and then; the first success releases it.
    #[error(
        "the creation brake is engaged after {failures} failed creations in a row (last: {last_failure})"
    )]
    Brake {
        /// Failed creations in a row.
        failures: u32,
        /// The last failure, in words.
        last_failure: String,
    },
}

/// How many of `demand` may start now, and what held back the rest.
pub fn creations_allowed(
    demand: CreationDemand,
    counts: &StatusCounts,
    max_total: Option<usize>,
    concurrency: usize,
) -> (usize, Option<CreationLimit>) {
    let (wanted, limited_by_slots) = match demand {
        CreationDemand::UpTo(n) => (n, true),
        CreationDemand::Exactly(n) => (n, false),
    };
    let mut allowed = wanted;
    let mut limit = None;
    if let Some(max) = max_total {
        let room = (max as i64 - counts.total()).max(0) as usize;
        if room < allowed {
            allowed = room;
            limit = Some(CreationLimit::MaxTotal {
                max,
                live: counts.total(),
            });
        }
    }
    if limited_by_slots {
        let free = (concurrency as i64 - counts.creating).max(0) as usize;
        if free < allowed {
            allowed = free;
            limit = Some(CreationLimit::Slots { concurrency });
        }
    }
    if matches!(demand, CreationDemand::Exactly(_)) && allowed < wanted {
        return (0, limit);
    }
    (allowed, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(creating: i64, idle: i64, claimed: i64) -> StatusCounts {
        StatusCounts {
            creating,
            idle,
            claimed,
            ..StatusCounts::default()
        }
    }

    #[test]
    fn creations_fit_the_total_cap_and_the_free_slots() {
        use CreationDemand::*;
        assert_eq!(creations_allowed(UpTo(5), &counts(0, 0, 0), None, 8), (5, None));
        assert_eq!(
            creations_allowed(UpTo(5), &counts(6, 0, 0), None, 8),
            (2, Some(CreationLimit::Slots { concurrency: 8 }))
        );
        assert_eq!(
            creations_allowed(UpTo(5), &counts(0, 2, 7), Some(10), 8),
            (1, Some(CreationLimit::MaxTotal { max: 10, live: 9 }))
        );
        assert_eq!(
            creations_allowed(Exactly(20), &counts(6, 0, 0), None, 8),
            (20, None)
        );
        assert_eq!(
            creations_allowed(Exactly(3), &counts(0, 2, 7), Some(10), 8),
            (0, Some(CreationLimit::MaxTotal { max: 10, live: 9 })),
            "all or nothing"
        );
        assert_eq!(
            creations_allowed(UpTo(3), &counts(0, 5, 7), Some(10), 8).0,
            0,
            "past the cap already"
        );
    }
}
