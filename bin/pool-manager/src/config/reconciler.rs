//! The reconcile tick: how often it runs, when an agent counts as stuck, the sweeps, how much
//! history it keeps and how many agents it health-checks at once.

use pool_reconciler::ReconcilerConfig;

use super::reader::Reader;

pub(super) fn read(r: &mut Reader<'_>) -> ReconcilerConfig {
    let reconciler = ReconcilerConfig {
        health_concurrency: r.parse("POOL_HEALTH_CONCURRENCY", 64, "a whole number"),
        tick_interval: r.millis("TICK_INTERVAL_MS", 30_000),
        stuck_timeout: r.millis("POOL_STUCK_TIMEOUT_MS", 900_000),
        full_sweep_interval: r.millis("POOL_FULL_SWEEP_INTERVAL_MS", 600_000),
        orphan_sweep_interval: r.millis("POOL_ORPHAN_SWEEP_INTERVAL_MS", 1_800_000),
        orphan_grace: r.millis("POOL_ORPHAN_GRACE_MS", 600_000),
        orphan_sweep_max_deletes: r.parse("POOL_ORPHAN_SWEEP_MAX_DELETES", 5, "a whole number"),
        retention: pool_store::Retention {
            events: r.millis("POOL_EVENT_RETENTION_MS", 90 * 24 * 3600 * 1000),
            archived_agents: r.millis("POOL_ARCHIVE_RETENTION_MS", 30 * 24 * 3600 * 1000),
            ..pool_store::Retention::default()
        },
        ..ReconcilerConfig::default()
    };
    if reconciler.retention.events < pool_store::MIN_EVENT_RETENTION {
        r.problems.push(format!(
            "POOL_EVENT_RETENTION_MS must be at least {} (8 days: the demand forecast reads last week's claims)",
            pool_store::MIN_EVENT_RETENTION.as_millis()
        ));
    }
    if reconciler.retention.archived_agents < pool_store::MIN_ARCHIVE_RETENTION {
        r.problems.push(format!(
            "POOL_ARCHIVE_RETENTION_MS must be at least {} (a day)",
            pool_store::MIN_ARCHIVE_RETENTION.as_millis()
        ));
    }
    if reconciler.health_concurrency == 0 {
        r.problems
            .push("POOL_HEALTH_CONCURRENCY must be at least 1".into());
    }
    reconciler
}
