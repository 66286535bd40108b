//! Shards across replicas, on PostgreSQL and the simulator over HTTP: two replicas (each with
//! its own store, so their signals travel by `NOTIFY`) split the shards, never own one both,
//! take over a replica's shards when its lock connection is cut, send a webhook look to the
//! owner of the agent's shard, and refuse a replica with another shard count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pool_provisioner::Provisioner;
use pool_provisioner::testing::{TestPool, provisioner_config, railway_client, unthrottled};
use pool_reconciler::{Reconciler, ReconcilerConfig};
use pool_store::{AgentId, AgentStatus, shard_of};

const SHARDS: u32 = 16;
const LEASE: Duration = Duration::from_millis(1_500);

fn config(shards: u32) -> ReconcilerConfig {
    ReconcilerConfig {
        tick_interval: Duration::from_millis(300),
        health_interval: Duration::from_millis(300),
        stuck_timeout: Duration::from_secs(30),
        full_sweep_interval: Duration::ZERO,
        orphan_sweep_interval: Duration::from_secs(3600),
        shards,
        replica_lease: LEASE,
        ..ReconcilerConfig::default()
    }
}

/// Another replica: its own store (its own notifications) and its own Railway client (its own
/// slice of the budget) on the same database and simulator.
async fn replica(pool: &TestPool, config: ReconcilerConfig) -> Reconciler {
    let mut provisioner = provisioner_config(&pool.sim, None);
    provisioner.pool_id = Some(pool.pool_id.clone());
    let (railway, deleter) = railway_client(&pool.sim);
    let provisioner = Provisioner::new(provisioner, pool.db.store().await, railway, deleter).unwrap();
    Reconciler::new(provisioner, config)
}

async fn until(within: Duration, what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return Err(what.to_string());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Samples both replicas' shards until aborted; counts the samples where a shard was owned
/// by both.
fn watch_overlap(a: &Reconciler, b: &Reconciler) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (a, b, seen) = (a.clone(), b.clone(), overlaps.clone());
    let task = tokio::spawn(async move {
        loop {
            let (sa, sb) = (a.owned_shards(), b.owned_shards());
            if sa.intersection(&sb).next().is_some() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    (overlaps, task)
}

fn covered(a: &Reconciler, b: &Reconciler) -> bool {
    let mut all: BTreeSet<u32> = a.owned_shards();
    all.extend(b.owned_shards());
    all.len() == SHARDS as usize
}

#[tokio::test]
async fn a_replicas_shards_are_taken_over_after_its_lock_connection_is_cut_and_none_is_owned_twice() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 0).await;
    let a = Reconciler::new(pool.provisioner.clone(), config(SHARDS));
    let b = replica(&pool, config(SHARDS)).await;
    let (overlaps, watching) = watch_overlap(&a, &b);
    let run_a = tokio::spawn(a.clone().run(std::future::pending()));
    let run_b = tokio::spawn(b.clone().run(std::future::pending()));
    until(LEASE * 10, "the replicas split the shards", || {
        covered(&a, &b) && a.owned_shards().len() == 8 && b.owned_shards().len() == 8
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: A {:?}, B {:?}", a.status().shards, b.status().shards));

    // Cut A's lock connection: A notices, owns nothing until it joins again on a new
    // connection, and meanwhile B may take what A held. Every shard is owned again soon.
    let lost = a.owned_shards();
    let at = tokio::time::Instant::now();
    cut_lock_connection(&pool, &a).await;
    until(Duration::from_secs(5), "A noticed it lost its shards", || {
        a.owned_shards().is_disjoint(&lost)
    })
    .await
    .unwrap();
    until(LEASE * 10, "every shard is owned again", || covered(&a, &b))
        .await
        .unwrap();
    eprintln!(
        "all shards owned again {:?} after the cut (lease {LEASE:?}); A {} B {}",
        at.elapsed(),
        a.owned_shards().len(),
        b.owned_shards().len()
    );

    // A joins again on a new connection, and B gives back what is above its share.
    until(LEASE * 10, "A joined again and took its share", || {
        covered(&a, &b) && !a.owned_shards().is_empty() && !b.owned_shards().is_empty()
    })
    .await
    .unwrap();

    // A dies (its loop stops and its connection is cut, as when its process is killed): B
    // takes over every shard.
    run_a.abort();
    let _ = run_a.await;
    let held_by_a = a.owned_shards();
    assert!(!held_by_a.is_empty(), "A held shards when it died");
    let at = tokio::time::Instant::now();
    cut_lock_connection(&pool, &a).await;
    until(LEASE * 10, "B took over every shard", || {
        b.owned_shards().len() == SHARDS as usize
    })
    .await
    .unwrap();
    eprintln!(
        "B owns all {SHARDS} shards {:?} after A died (lease {LEASE:?})",
        at.elapsed()
    );
    watching.abort();
    run_b.abort();
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "no shard was owned by both replicas at any sample"
    );
}

/// Terminates the replica's lock connection (found by its name, in this test's database only).
async fn cut_lock_connection(pool: &TestPool, replica: &Reconciler) {
    let name = format!("pool-shards {}", replica.replica_id());
    let cut: i64 = pool
        .db
        .client()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cut, 1, "the replica's lock connection was found and cut");
}

#[tokio::test]
async fn a_webhook_look_goes_to_the_replica_that_owns_the_agents_shard() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 0).await;
    let agents = pool.idle_agents(1).await;
    // No tick comes unasked: a tick would take the look along with it.
    let quiet = ReconcilerConfig {
        tick_interval: Duration::from_secs(3600),
        ..config(SHARDS)
    };
    let a = Reconciler::new(pool.provisioner.clone(), quiet.clone());
    let b = replica(&pool, quiet).await;
    let run_a = tokio::spawn(a.clone().run(std::future::pending()));
    let run_b = tokio::spawn(b.clone().run(std::future::pending()));
    until(LEASE * 10, "the replicas split the shards", || {
        a.owned_shards().len() == 8 && b.owned_shards().len() == 8
    })
    .await
    .unwrap();
    let agent: AgentId = agents[0].clone();
    let shard = shard_of(&agent, SHARDS);
    let (owner, other) = if a.owned_shards().contains(&shard) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // The walks that taking shards prompts come first (a tick would take the look along).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (owner_looks, other_looks) = (owner.status().looks, other.status().looks);
    // The webhook arrives at the replica that does not own the shard: the look travels by
    // NOTIFY to the owner, and the other drops it.
    other.look_everywhere(agent.clone());
    until(Duration::from_secs(30), "the owner looked at the agent", || {
        owner.status().looks > owner_looks
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: shard {shard}; owner {:?} {:?}; other {:?} {:?}",
            owner.status(),
            owner.owned_shards(),
            other.status(),
            other.owned_shards()
        )
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        other.status().looks,
        other_looks,
        "the replica that does not own the shard did not look"
    );
    run_a.abort();
    run_b.abort();
}

#[tokio::test]
async fn a_replica_started_with_another_shard_count_takes_no_shards_and_names_both() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 0).await;
    let fleet = Reconciler::new(pool.provisioner.clone(), config(SHARDS));
    let run_fleet = tokio::spawn(fleet.clone().run(std::future::pending()));
    until(LEASE * 10, "the first replica took every shard", || {
        fleet.owned_shards().len() == SHARDS as usize
    })
    .await
    .unwrap();
    let odd = replica(&pool, config(8)).await;
    let run_odd = tokio::spawn(odd.clone().run(std::future::pending()));
    until(LEASE * 10, "the odd replica refused", || {
        odd.status().shards.is_some_and(|s| s.refused.is_some())
    })
    .await
    .unwrap();
    let refused = odd.status().shards.unwrap().refused.unwrap();
    assert!(
        refused.contains("POOL_SHARDS") && refused.contains("8 shards") && refused.contains("have 16"),
        "{refused}"
    );
    tokio::time::sleep(LEASE).await;
    assert!(odd.owned_shards().is_empty());
    assert_eq!(
        fleet.owned_shards().len(),
        SHARDS as usize,
        "the fleet kept its shards"
    );
    run_fleet.abort();
    run_odd.abort();
}

/// Found by the chaos run (`cargo xtask chaos --short`, "idle never reached 3"): a replica
/// SIGKILLed mid-creation kept its rows for the whole work lease, and the leader counted those
/// creations as on their way, so it made none in their place. Now the work of a replica that
/// is gone (its lease ran out, its lock connection is no more) is resumed by the others as
/// soon as they see it gone. Here A's creations hold an hour's lease: without that, B could
/// only take them over after an hour (or give them up after four stuck timeouts, two minutes).
#[tokio::test]
async fn a_creation_of_a_replica_that_died_mid_saga_is_resumed_by_the_other_without_waiting_out_its_lease() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 0).await;
    // A: its own store (its own replica id), an hour's work lease, and every saga stops for
    // good after its project is made (the process dies there).
    let reached = Arc::new(tokio::sync::Notify::new());
    let signal = reached.clone();
    let hook: pool_provisioner::StepHook = Arc::new(move |step| {
        let signal = signal.clone();
        Box::pin(async move {
            if step == pool_store::CreationStep::Project {
                signal.notify_one();
                std::future::pending::<()>().await;
            }
        })
    });
    let mut a_config = provisioner_config(&pool.sim, None);
    a_config.pool_id = Some(pool.pool_id.clone());
    a_config.work_lease = Duration::from_secs(3600);
    let (railway, deleter) = railway_client(&pool.sim);
    // A runs on a runtime of its own, so that it can die whole — its loop, its keeper, its
    // sagas and its connections — as a SIGKILLed process does.
    let a_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store_config = pool.db.config();
    let a = a_runtime
        .spawn(async move {
            let store = pool_store::Store::connect(store_config).await.unwrap();
            let provisioner =
                Provisioner::with_step_hook(a_config, store, railway, deleter, Some(hook)).unwrap();
            let a = Reconciler::new(provisioner, config(SHARDS));
            tokio::spawn(a.clone().run(std::future::pending()));
            a
        })
        .await
        .unwrap();
    until(LEASE * 10, "A leads and owns every shard", || {
        a.is_leader() && a.owned_shards().len() == SHARDS as usize
    })
    .await
    .unwrap();
    pool.set_settings(|s| s.min_idle = 1).await;
    a.trigger();
    tokio::time::timeout(Duration::from_secs(30), reached.notified())
        .await
        .expect("A's creation made its project");
    let creating = pool
        .store
        .agents_with_status(AgentStatus::Creating)
        .await
        .unwrap();
    assert_eq!(creating.len(), 1, "A has one creation in flight");
    let id = creating[0].id.clone();
    let held_until = creating[0].worker_lease_until.expect("A holds its lease");
    assert!(held_until > chrono::Utc::now() + chrono::Duration::minutes(50));

    // A dies, all of it at once.
    a_runtime.shutdown_background();
    let b = replica(&pool, config(SHARDS)).await;
    let run_b = tokio::spawn(b.clone().run(std::future::pending()));

    // B resumes A's creation from its journal: the same agent becomes idle, with the one
    // project A made, and nothing is created in its place.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let agent = pool.store.agent(&id).await.unwrap().unwrap();
        if agent.status == AgentStatus::Idle {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's creation was not resumed: {:?} (lease until {:?}); B {:?}",
            agent.status,
            agent.worker_lease_until,
            b.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = pool.store.counts().await.unwrap();
    assert_eq!((counts.idle, counts.total()), (1, 1), "{counts:?}");
    assert_eq!(pool.sim.snapshot().live_projects().len(), 1, "one project, A's");
    run_b.abort();
}
