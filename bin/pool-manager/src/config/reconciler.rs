//! The reconcile tick: how often it runs, when an agent counts as stuck, the sweeps, how much
//! history it keeps and how many agents it health-checks at once.

use pool_reconciler::ReconcilerConfig;

use super::reader::Reader;

pub(super) fn read(r: &mut Reader<'_>) -> ReconcilerConfig {
    let tick_interval = r.millis("TICK_INTERVAL_MS", 30_000);
    let reconciler = ReconcilerConfig {
        health_concurrency: r.parse("POOL_HEALTH_CONCURRENCY", 64, "a whole number"),
        tick_interval,
        health_interval: r.millis(
            "POOL_HEALTH_INTERVAL_MS",
            tick_interval.as_millis().min(u128::from(u64::MAX)) as u64,
        ),
        // Zero (the default) closes each connection after its answer.
        probe_keep_alive: std::time::Duration::from_millis(r.parse(
            "POOL_PROBE_KEEP_ALIVE_MS",
            0,
            "a whole number of milliseconds",
        )),
        stuck_timeout: r.millis("POOL_STUCK_TIMEOUT_MS", 900_000),
        full_sweep_interval: r.millis("POOL_FULL_SWEEP_INTERVAL_MS", 600_000),
        reprobe_delay: r.millis("POOL_REPROBE_DELAY_MS", 3_000),
        down_backoff: r.millis("POOL_DOWN_BACKOFF_MS", 30_000),
        down_backoff_max: r.millis("POOL_DOWN_BACKOFF_MAX_MS", 600_000),
        breaker_min_failures: r.parse("POOL_BREAKER_MIN_FAILURES", 20, "a whole number"),
        breaker_fraction: r.parse::<f64>("POOL_BREAKER_PERCENT", 1.0, "a number") / 100.0,
        orphan_sweep_interval: r.millis("POOL_ORPHAN_SWEEP_INTERVAL_MS", 1_800_000),
        orphan_grace: r.millis("POOL_ORPHAN_GRACE_MS", 600_000),
        orphan_sweep_max_deletes: r.parse("POOL_ORPHAN_SWEEP_MAX_DELETES", 5, "a whole number"),
        shards: r.parse("POOL_SHARDS", pool_store::DEFAULT_SHARDS, "a whole number"),
        replica_lease: r.millis("POOL_REPLICA_LEASE_MS", 15_000),
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
    // Intervals out of range refuse to start, naming the variable: a tick of 0 would spin, a
    // day-long one would never notice a dead agent.
    let mut in_range = |name: &str, value: std::time::Duration, min_ms: u64, max_ms: u64| {
        let ms = value.as_millis();
        if ms < u128::from(min_ms) || ms > u128::from(max_ms) {
            r.problems.push(format!(
                "{name} must be between {min_ms} and {max_ms} (milliseconds), not {ms}"
            ));
        }
    };
    in_range("TICK_INTERVAL_MS", reconciler.tick_interval, 100, 3_600_000);
    in_range(
        "POOL_FULL_SWEEP_INTERVAL_MS",
        reconciler.full_sweep_interval,
        1_000,
        86_400_000,
    );
    in_range("POOL_REPROBE_DELAY_MS", reconciler.reprobe_delay, 1, 60_000);
    in_range(
        "POOL_HEALTH_INTERVAL_MS",
        reconciler.health_interval,
        100,
        3_600_000,
    );
    in_range(
        "POOL_PROBE_KEEP_ALIVE_MS",
        reconciler.probe_keep_alive,
        0,
        3_600_000,
    );
    in_range("POOL_DOWN_BACKOFF_MS", reconciler.down_backoff, 1_000, 3_600_000);
    in_range(
        "POOL_DOWN_BACKOFF_MAX_MS",
        reconciler.down_backoff_max,
        reconciler.down_backoff.as_millis() as u64,
        86_400_000,
    );
    in_range("POOL_REPLICA_LEASE_MS", reconciler.replica_lease, 1_000, 600_000);
    // Every replica must split the fleet the same way; out of range refuses to start.
    if !(1..=pool_store::MAX_SHARDS).contains(&reconciler.shards) {
        r.problems.push(format!(
            "POOL_SHARDS must be between 1 and {}, not {}",
            pool_store::MAX_SHARDS,
            reconciler.shards
        ));
    }
    if reconciler.breaker_min_failures == 0 {
        r.problems
            .push("POOL_BREAKER_MIN_FAILURES must be at least 1".into());
    }
    if !(reconciler.breaker_fraction > 0.0 && reconciler.breaker_fraction <= 1.0) {
        r.problems
            .push("POOL_BREAKER_PERCENT must be above 0 and at most 100".into());
    }
    if reconciler.health_concurrency == 0 {
        r.problems
            .push("POOL_HEALTH_CONCURRENCY must be at least 1".into());
    }
    reconciler
}
