//! The tick between the tiers (issue 21) on real PostgreSQL and the simulator over HTTP: new
//! agents parked once they booted, idle agents above the warm target parked (not deleted), a
//! warm shortfall served by waking (no `projectCreate`), parked agents above the parked target
//! deleted, and a waiting claim on an empty warm tier served by a wake of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_provisioner::ClaimInput;
use pool_provisioner::testing::{TestPool, unthrottled};
use pool_reconciler::{Reconciler, ReconcilerConfig};
use pool_store::{AgentId, AgentStatus, StatusCounts};

fn config() -> ReconcilerConfig {
    ReconcilerConfig {
        tick_interval: Duration::from_millis(200),
        stuck_timeout: Duration::from_secs(5),
        full_sweep_interval: Duration::ZERO,
        reprobe_delay: Duration::from_millis(100),
        orphan_sweep_interval: Duration::from_secs(3600),
        ..ReconcilerConfig::default()
    }
}

/// Ticks until `done` holds for the counts (nothing in motion), at most `max_ticks` times.
async fn tick_until(
    reconciler: &Reconciler,
    pool: &TestPool,
    max_ticks: usize,
    done: impl Fn(&StatusCounts) -> bool,
) -> StatusCounts {
    for _ in 0..max_ticks {
        let report = reconciler.tick(None).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let counts = pool.store.counts().await.unwrap();
        let settled =
            counts.creating + counts.starting + counts.parking + counts.waking + counts.deleting == 0;
        if settled && done(&counts) {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not done after {max_ticks} ticks: {:?}",
        pool.store.counts().await.unwrap()
    );
}

fn project_creates(pool: &TestPool) -> u64 {
    pool.sim
        .counters()
        .requests
        .get("projectCreate")
        .copied()
        .unwrap_or(0)
}

/// Agents deleted so far (rows kept as `deleted`).
async fn deleted(pool: &TestPool) -> usize {
    pool.store
        .agents_with_status(AgentStatus::Deleted)
        .await
        .unwrap()
        .len()
}

async fn ids_with(pool: &TestPool, status: AgentStatus) -> Vec<AgentId> {
    pool.store
        .agents_with_status(status)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect()
}

#[tokio::test]
async fn the_tick_parks_above_the_warm_target_wakes_before_creating_and_deletes_only_above_the_parked_target()
{
    let pool = TestPool::start(unthrottled()).await;
    // (a) An empty pool with one warm and two parked: three created, the two above the warm
    // target parked as soon as they were idle (they booted once), though parkAfterMs is an hour.
    pool.set_settings(|s| {
        s.min_idle = 1;
        s.parked_min = 2;
        s.parked_max = 3;
        s.park_after = Duration::from_secs(3600);
    })
    .await;
    let reconciler = Reconciler::new(pool.provisioner.clone(), config());
    let c = tick_until(&reconciler, &pool, 150, |c| c.idle == 1 && c.parked == 2).await;
    assert_eq!(c.total(), 3, "{c:?}");
    assert_eq!(project_creates(&pool), 3);
    assert_eq!(pool.sim.running_deployments(), 1, "parked agents run nothing");
    let parked_first = ids_with(&pool, AgentStatus::Parked).await;

    // (b) The warm target goes up to 3 and the parked target to 0: the shortfall is served by
    // waking both parked agents, with no projectCreate.
    pool.set_settings(|s| {
        s.min_idle = 3;
        s.parked_min = 0;
    })
    .await;
    let c = tick_until(&reconciler, &pool, 150, |c| c.idle == 3).await;
    assert_eq!((c.parked, c.total()), (0, 3), "{c:?}");
    assert_eq!(project_creates(&pool), 3, "the shortfall was woken, not created");
    for id in &parked_first {
        assert_eq!(
            pool.store.agent(id).await.unwrap().unwrap().status,
            AgentStatus::Idle,
            "{id} was woken"
        );
    }
    assert_eq!(pool.sim.running_deployments(), 3);

    // (c) The warm target goes down to 1 with room for two parked: the idle agents above it are
    // parked, not deleted. The woken ones wait parkAfterMs (an hour): only the one that never
    // parked goes at once; with parkAfterMs 0 the second follows.
    pool.set_settings(|s| {
        s.min_idle = 1;
        s.parked_min = 2;
        s.parked_max = 2;
    })
    .await;
    let c = tick_until(&reconciler, &pool, 150, |c| c.parked == 1).await;
    for _ in 0..3 {
        reconciler.tick(None).await;
    }
    let c2 = pool.store.counts().await.unwrap();
    assert_eq!(
        (c2.idle, c2.parked),
        (2, 1),
        "woken agents wait parkAfterMs: {c:?} then {c2:?}"
    );
    pool.set_settings(|s| s.park_after = Duration::ZERO).await;
    let c = tick_until(&reconciler, &pool, 150, |c| c.parked == 2 && c.idle == 1).await;
    assert_eq!(c.total(), 3, "{c:?}");
    assert_eq!(deleted(&pool).await, 0, "parked, not deleted");
    assert_eq!(project_creates(&pool), 3);
    assert_eq!(pool.sim.running_deployments(), 1);

    // (d) The parked target goes down to 1: one parked agent is deleted (the one parked
    // longest), nothing else.
    pool.set_settings(|s| {
        s.parked_min = 1;
        s.parked_max = 1;
    })
    .await;
    let c = tick_until(&reconciler, &pool, 150, |c| c.parked == 1).await;
    assert_eq!((c.idle, c.total()), (1, 2), "{c:?}");
    assert_eq!(deleted(&pool).await, 1);
    assert_eq!(project_creates(&pool), 3);
    pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn a_waiting_claim_on_an_empty_warm_tier_is_served_by_a_wake_of_its_own() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| {
        s.min_idle = 0;
        s.parked_min = 1;
        s.parked_max = 1;
    })
    .await;
    let reconciler = Reconciler::new(pool.provisioner.clone(), config());
    tick_until(&reconciler, &pool, 150, |c| c.parked == 1 && c.idle == 0).await;
    let parked = ids_with(&pool, AgentStatus::Parked).await.remove(0);
    let creates = project_creates(&pool);

    // No tick runs while the claim starts waiting: the wake is the claim's own.
    let provisioner = pool.provisioner.clone();
    let claim = tokio::spawn(async move {
        let input = ClaimInput {
            agent_name: "Ada".into(),
            ..ClaimInput::default()
        };
        provisioner
            .claim_waiting(&input, None, Duration::from_secs(60))
            .await
    });
    let mut woken = false;
    for _ in 0..100 {
        let status = pool.store.agent(&parked).await.unwrap().unwrap().status;
        if matches!(status, AgentStatus::Waking | AgentStatus::Starting) {
            woken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(woken, "the waiting claim woke the parked agent");
    let events = pool.store.events(&parked).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.to_status.as_deref() == Some("waking") && e.reason.contains("waiting claim")),
        "{events:?}"
    );
    assert_eq!(project_creates(&pool), creates, "no projectCreate for the claim");
    // The tick judges the woken agent as a new one (SUCCESS, healthy): the claim gets it.
    let mut answer = None;
    for _ in 0..150 {
        reconciler.tick(None).await;
        if claim.is_finished() {
            answer = Some(claim.await.unwrap().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = answer.expect("the claim was served within its wait");
    assert_eq!(answer.instance_id, parked.to_string());
}

/// The idle schedule of a simulated day's night and day: the day floor (4) is a rule that
/// holds now; at night the same rule is moved to an hour that is not now, so the floor is the
/// `*` default (1) while the schedule's peak stays 4 (the parked target's ramp term).
fn schedule(day: bool) -> String {
    if day {
        "mon-sun 00:00-24:00 UTC=4; *=1".into()
    } else {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let hour = (secs / 3600) % 24;
        let other = if hour < 12 { 20 } else { 2 };
        format!("mon-sun {other:02}:00-{:02}:00 UTC=4; *=1", other + 1)
    }
}

/// Three simulated days of a morning ramp from the night floor (1) to the day floor (4);
/// `projectCreate` counted by the simulator over each night and each morning ramp.
async fn ramp_days(parked_max: u32) -> Vec<(u64, u64)> {
    let pool = TestPool::start(unthrottled()).await;
    let reconciler = Reconciler::new(pool.provisioner.clone(), config());
    let mut days = Vec::new();
    for _ in 0..3 {
        let before_night = project_creates(&pool);
        pool.set_settings(|s| {
            s.min_idle = 1;
            s.idle_schedule = Some(schedule(false));
            s.parked_min = 0;
            s.parked_max = parked_max;
            s.park_after = Duration::ZERO;
        })
        .await;
        // Night: one warm, and with the tier on the ramp's three parked.
        let parked = if parked_max > 0 { 3 } else { 0 };
        tick_until(&reconciler, &pool, 300, |c| c.idle == 1 && c.parked == parked).await;
        let before_ramp = project_creates(&pool);
        pool.set_settings(|s| s.idle_schedule = Some(schedule(true)))
            .await;
        tick_until(&reconciler, &pool, 300, |c| c.idle == 4).await;
        days.push((before_ramp - before_night, project_creates(&pool) - before_ramp));
    }
    pool.assert_nothing_leaked().await;
    days
}

#[tokio::test]
async fn a_morning_ramp_with_the_parked_tier_creates_nothing() {
    let before = ramp_days(0).await;
    let after = ramp_days(10).await;
    for (label, days) in [
        ("before (parkedMax 0)", &before),
        ("after (parkedMax 10)", &after),
    ] {
        for (day, (night, ramp)) in days.iter().enumerate() {
            println!(
                "{label}: simulated day {}: projectCreate {night} over the night, {ramp} during the morning ramp 1 -> 4",
                day + 1
            );
        }
    }
    // Without the tier each night drains three agents and each morning creates them again.
    assert!(before.iter().all(|(_, ramp)| *ramp == 3), "{before:?}");
    // With it the ramp is woken: no projectCreate during any morning ramp.
    assert!(after.iter().all(|(_, ramp)| *ramp == 0), "{after:?}");
}
