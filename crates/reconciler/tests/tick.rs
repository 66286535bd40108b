//! The tick against the simulator and Postgres, driven tick by tick.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_provisioner::ClaimInput;
use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_reconciler::{Reconciler, ReconcilerConfig, sweep_orphans};
use pool_store::{AgentId, AgentStatus, StatusCounts};
use railway_api::{NewProject, WorkspaceId};
use railway_sim::{AgentBehaviour, Faults, OperationFaults, Quirks, SimConfig};

fn config() -> ReconcilerConfig {
    ReconcilerConfig {
        tick_interval: Duration::from_millis(200),
        stuck_timeout: Duration::from_secs(3),
        full_sweep_interval: Duration::ZERO,
        reprobe_delay: Duration::from_millis(100),
        orphan_sweep_interval: Duration::from_secs(3600),
        ..ReconcilerConfig::default()
    }
}

/// A reconciler over the pool's provisioner, with `min_idle` as the pool's floor.
async fn reconciler(pool: &TestPool, min_idle: u32) -> Reconciler {
    pool.set_settings(|s| s.min_idle = min_idle).await;
    Reconciler::new(pool.provisioner.clone(), config())
}

/// Ticks until `done` holds for the counts, at most `max_ticks` times.
async fn tick_until(
    reconciler: &Reconciler,
    pool: &TestPool,
    max_ticks: usize,
    done: impl Fn(&StatusCounts) -> bool,
) -> usize {
    for n in 1..=max_ticks {
        let report = reconciler.tick(None).await;
        assert!(!report.lost_leadership);
        let counts = pool.store.counts().await.unwrap();
        if done(&counts) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not done after {max_ticks} ticks: {:?}",
        pool.store.counts().await.unwrap()
    );
}

async fn total_rows(pool: &TestPool) -> i64 {
    pool.db
        .client()
        .await
        .query_one("SELECT count(*) FROM agent_metadata", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_empty_pool_fills_to_the_minimum_and_no_further() {
    // Railway as it is, throttle included: an empty pool fills at its pace.
    let pool = TestPool::quick().await;
    let reconciler = reconciler(&pool, 3).await;
    let ticks = tick_until(&reconciler, &pool, 100, |c| c.idle == 3).await;
    assert!(ticks > 1);
    for _ in 0..3 {
        reconciler.tick(None).await;
    }
    assert_eq!(total_rows(&pool).await, 3, "exactly the deficit was created");
    pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn crashed_failed_and_never_ready_agents_are_replaced_and_torn_down() {
    let pool = TestPool::start(unthrottled()).await;
    let reconciler = reconciler(&pool, 2).await;
    tick_until(&reconciler, &pool, 100, |c| c.idle == 2).await;

    // A crash: noticed by the idle health check, torn down, replaced.
    let victim = pool
        .store
        .agents_with_status(AgentStatus::Idle)
        .await
        .unwrap()
        .remove(0);
    assert!(pool.sim.crash_service(victim.service_id.as_deref().unwrap()));
    tick_until(&reconciler, &pool, 100, |c| c.idle == 2 && c.deleting == 0).await;
    assert_eq!(
        pool.store.agent(&victim.id).await.unwrap().unwrap().status,
        AgentStatus::Deleted
    );

    // A replacement whose deploy fails, then one that is never ready: both torn down (the
    // second after the stuck timeout), until healthy ones fill the pool.
    for behaviour in [
        AgentBehaviour {
            fail: 1.0,
            ..AgentBehaviour::default()
        },
        AgentBehaviour {
            never_ready: 1.0,
            ..AgentBehaviour::default()
        },
    ] {
        pool.sim.set_agent_behaviour(behaviour);
        let victim = pool
            .store
            .agents_with_status(AgentStatus::Idle)
            .await
            .unwrap()
            .remove(0);
        let deployments_before = pool.sim.snapshot().deployments.len();
        pool.sim.crash_service(victim.service_id.as_deref().unwrap());
        tick_until(&reconciler, &pool, 100, |c| c.creating + c.starting >= 1).await;
        // The replacement's deployment draws its fate when it is made: keep the bad behaviour
        // until it exists.
        for _ in 0..200 {
            if pool.sim.snapshot().deployments.len() > deployments_before {
                break;
            }
            reconciler.tick(None).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pool.sim.set_agent_behaviour(AgentBehaviour::default());
        tick_until(&reconciler, &pool, 200, |c| {
            c.idle == 2 && c.starting == 0 && c.deleting == 0 && c.creating == 0
        })
        .await;
    }
    let deleted = pool.store.agents_with_status(AgentStatus::Deleted).await.unwrap();
    assert!(
        deleted.len() >= 4,
        "the crashed, failed and never-ready agents: {}",
        deleted.len()
    );
    pool.assert_nothing_leaked().await;
}

/// Must show (issue 13): a claimed agent's deployment crashes, and within two ticks it is
/// `crashed`, with its project untouched; it recovers, and it is `claimed` again — each move
/// an event.
#[tokio::test]
async fn a_claimed_agent_that_crashes_is_crashed_within_two_ticks_and_claimed_again_when_it_recovers() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 2).await;
    let mut steady = config();
    steady.full_sweep_interval = Duration::from_secs(3600);
    let reconciler = Reconciler::new(pool.provisioner.clone(), steady);
    tick_until(&reconciler, &pool, 100, |c| c.idle == 2).await;
    reconciler.tick(None).await; // the first tick of a reconciler is a full sweep
    let input = ClaimInput {
        agent_name: "Ada".into(),
        instructions: "hi".into(),
        join_url: None,
        ..ClaimInput::default()
    };
    let claimed = pool.provisioner.claim(&input, None).await.unwrap();
    let id = AgentId::parse(&claimed.instance_id).unwrap();
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    pool.sim.crash_service(agent.service_id.as_deref().unwrap());
    let mut ticks = 0;
    while pool.store.agent(&id).await.unwrap().unwrap().status != AgentStatus::Crashed {
        ticks += 1;
        assert!(ticks <= 2, "still not crashed after {ticks} ticks");
        let report = reconciler.tick(None).await;
        assert!(!report.full_sweep, "found by its health check, not a sweep");
    }
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.invite_url.as_deref(), Some(claimed.invite_url.as_str()));
    let project = agent.project_id.clone().unwrap();
    let alive = |pool: &TestPool| {
        pool.sim
            .snapshot()
            .live_projects()
            .iter()
            .any(|p| p.id == project)
    };
    assert!(alive(&pool), "not torn down behind the user's back");
    for _ in 0..3 {
        reconciler.tick(None).await;
    }
    assert_eq!(
        pool.store.agent(&id).await.unwrap().unwrap().status,
        AgentStatus::Crashed,
        "kept"
    );

    // The restart policy brings it back: claimed again.
    assert!(pool.sim.recover_service(agent.service_id.as_deref().unwrap()));
    tick_until(&reconciler, &pool, 10, |c| c.crashed == 0 && c.claimed == 1).await;
    let events = pool.store.events(&id).await.unwrap();
    let moves: Vec<(Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| (e.from_status.as_deref(), e.to_status.as_deref()))
        .collect();
    assert!(moves.contains(&(Some("claimed"), Some("crashed"))), "{moves:?}");
    assert!(moves.contains(&(Some("crashed"), Some("claimed"))), "{moves:?}");
    assert!(alive(&pool));
    pool.assert_nothing_leaked().await;
}

/// Must show (issue 12): a minute of 30 % of ids left out of every batched read loses no
/// healthy agent.
#[tokio::test]
async fn a_minute_of_ids_left_out_of_batched_reads_loses_no_healthy_agent() {
    let pool = TestPool::start(unthrottled()).await;
    let reconciler = reconciler(&pool, 4).await;
    tick_until(&reconciler, &pool, 100, |c| c.idle == 4).await;
    let healthy: Vec<AgentId> = pool
        .store
        .agents_with_status(AgentStatus::Idle)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    pool.sim.set_quirks(Quirks {
        batch_omission: 0.3,
        ..pool.sim.quirks()
    });
    // Every tick is a full sweep (`config` sets the interval to zero): every agent is read, so
    // every agent is at risk every tick. A minute of 1 s ticks.
    let started = tokio::time::Instant::now();
    let mut omitted = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let report = reconciler.tick(None).await;
        omitted += report.omitted;
        assert_eq!(report.teardowns, 0, "{report:?}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert!(omitted > 10, "ids were left out {omitted} times");
    for id in &healthy {
        assert_eq!(
            pool.store.agent(id).await.unwrap().unwrap().status,
            AgentStatus::Idle
        );
    }
    assert_eq!(pool.sim.snapshot().live_projects().len(), 4);
}

/// A project deleted behind the pool's back is left out of every batch: a read of its own
/// confirms it is gone, and the agent is replaced.
#[tokio::test]
async fn an_agent_whose_project_was_deleted_out_of_band_is_replaced() {
    let pool = TestPool::start(unthrottled()).await;
    let reconciler = reconciler(&pool, 2).await;
    tick_until(&reconciler, &pool, 100, |c| c.idle == 2).await;
    let victim = pool
        .store
        .agents_with_status(AgentStatus::Idle)
        .await
        .unwrap()
        .remove(0);
    pool.deleter
        .delete_project(&railway_api::ProjectId::new(victim.project_id.clone().unwrap()))
        .await
        .unwrap();
    tick_until(&reconciler, &pool, 100, |c| c.idle == 2 && c.deleting == 0).await;
    assert_eq!(
        pool.store.agent(&victim.id).await.unwrap().unwrap().status,
        AgentStatus::Deleted
    );
    pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn a_railway_outage_for_several_ticks_changes_no_status_and_deletes_nothing() {
    let pool = TestPool::start(unthrottled()).await;
    let reconciler = reconciler(&pool, 3).await;
    tick_until(&reconciler, &pool, 100, |c| c.idle == 3).await;
    // One agent is starting when the outage begins (the riskiest case: it is being read).
    let moving = pool
        .store
        .agents_with_status(AgentStatus::Idle)
        .await
        .unwrap()
        .remove(0);
    pool.store
        .transition(&moving.id, AgentStatus::Idle, AgentStatus::Starting, "test")
        .await
        .unwrap();
    let before = pool.store.counts().await.unwrap();
    let projects_before = pool.sim.snapshot().live_projects().len();

    pool.sim.set_outage(true);
    for _ in 0..5 {
        let report = reconciler.tick(None).await;
        assert!(report.read_failed, "{report:?}");
        assert_eq!(
            report.teardowns + report.creations + report.transitions,
            0,
            "{report:?}"
        );
    }
    assert_eq!(pool.store.counts().await.unwrap(), before);
    assert_eq!(pool.sim.snapshot().live_projects().len(), projects_before);
    pool.sim.set_outage(false);
    tick_until(&reconciler, &pool, 50, |c| c.idle == 3).await;
    assert_eq!(total_rows(&pool).await, 3);
}

#[tokio::test]
async fn two_reconcilers_elect_one_leader_and_the_other_takes_over_when_it_dies() {
    let pool = TestPool::start(unthrottled()).await;
    let a = reconciler(&pool, 4).await;
    // Another process: its own store (its own replica id).
    let mut b_config = provisioner_config(&pool.sim, None);
    b_config.pool_id = Some(pool.pool_id.clone());
    let b_provisioner = pool_provisioner::Provisioner::new(
        b_config,
        pool.db.store().await,
        pool.railway.clone(),
        pool.deleter.clone(),
    )
    .unwrap();
    let b = Reconciler::new(b_provisioner, config());
    let run_a = tokio::spawn(a.clone().run(std::future::pending()));
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let run_b = tokio::spawn(b.clone().run(async {
        let _ = stopped_b.await;
    }));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = pool.store.counts().await.unwrap();
        assert!(!(a.is_leader() && b.is_leader()), "never two leaders");
        if counts.idle == 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "pool filled: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        assert!(a.is_leader() ^ b.is_leader(), "exactly one leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        total_rows(&pool).await,
        4,
        "never more creations than the deficit"
    );

    // The leader dies: the other takes over within about one interval.
    let (leader, follower, leader_task) = if a.is_leader() {
        (a, b, run_a)
    } else {
        (b, a, run_b)
    };
    leader_task.abort();
    let _ = leader_task.await;
    let died = tokio::time::Instant::now();
    while !follower.is_leader() {
        assert!(died.elapsed() < Duration::from_secs(5), "the follower took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "takeover after {:?} (tick interval {:?})",
        died.elapsed(),
        follower.config().tick_interval
    );
    assert!(!leader.is_leader() || leader.status().is_leader);
    drop(stop_b);
}

/// Terminates the backend holding the leader lock in this test's database (advisory locks
/// are per database; other tests' pools hold theirs in the same cluster).
async fn cut_leader_lock_connection(pool: &TestPool) {
    let admin = pool.db.client().await;
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
            &[&pool_store::LEADER_LOCK_KEY],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cut, 1, "the leader's lock connection was found and cut");
}

/// Waits up to `within` for the reconciler's leadership to be `leader`.
async fn until_leader(reconciler: &Reconciler, leader: bool, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if reconciler.is_leader() == leader {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test]
async fn a_leader_that_stepped_down_takes_the_lock_again_without_waiting_for_its_interval() {
    // The bench's stall (README, Benchmarks): with an hour's interval, a leader whose lock
    // check failed once stayed a follower until the next hour.
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 0).await;
    let reconciler = Reconciler::new(
        pool.provisioner.clone(),
        ReconcilerConfig {
            tick_interval: Duration::from_secs(3600),
            ..config()
        },
    );
    let task = tokio::spawn(reconciler.clone().run(std::future::pending()));
    assert!(until_leader(&reconciler, true, Duration::from_secs(10)).await);
    cut_leader_lock_connection(&pool).await;
    // It notices at its next wake-up: here a prompt, not the interval.
    reconciler.trigger();
    assert!(
        until_leader(&reconciler, false, Duration::from_secs(10)).await,
        "the leader stepped down after losing its lock connection"
    );
    let ticks = reconciler.status().ticks;
    // Nothing prompts it again; the interval is an hour away.
    assert!(
        until_leader(&reconciler, true, Duration::from_secs(60)).await,
        "the replica took the lock again within seconds, not at its next interval"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reconciler.status().ticks == ticks {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader ticked at once"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

#[tokio::test]
async fn a_leader_whose_lock_connection_is_cut_stops_reconciling() {
    let pool = TestPool::start(unthrottled()).await;
    let reconciler = reconciler(&pool, 1).await;
    let task = tokio::spawn(reconciler.clone().run(std::future::pending()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !reconciler.is_leader() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cut_leader_lock_connection(&pool).await;
    // It notices at its next check and steps down; then it may take the lock again, on a new
    // connection — but never acts on the old one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut stepped_down = false;
    while tokio::time::Instant::now() < deadline {
        if !reconciler.is_leader() {
            stepped_down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    assert!(
        stepped_down,
        "the leader stepped down after losing its lock connection"
    );
}

#[tokio::test]
async fn an_orphan_project_with_the_marker_is_deleted_and_an_unrelated_one_is_untouched() {
    let pool = TestPool::start(unthrottled()).await;
    let naming = pool.provisioner.naming().clone();
    let orphan_id = AgentId::random();
    // The orphan's agent is known to this database (archived): its row was written before
    // its project, as every creation's is.
    archived_row(&pool, &orphan_id).await;
    let orphan = pool
        .railway
        .create_project(&NewProject {
            name: naming.name(&orphan_id),
            description: naming.project_description(&orphan_id),
            workspace_id: WorkspaceId::new("ws-sim"),
            default_environment_name: None,
        })
        .await
        .unwrap();
    let unrelated = pool
        .sim
        .create_foreign_project("convos-agent-aaaaaaaaaaaa", Some("someone's own project"));
    let no_description = pool.sim.create_foreign_project("billing-service", None);
    // A live agent's project is not an orphan.
    let live = pool.create_one().await.unwrap();

    let report = sweep_orphans(&pool.provisioner, Duration::ZERO, 100).await;
    assert_eq!(report.projects, 1, "{report:?}");
    let snapshot = pool.sim.snapshot();
    let alive = |id: &str| snapshot.projects.iter().any(|p| p.id == id && !p.deleted);
    assert!(!alive(orphan.id.as_str()));
    assert!(alive(&unrelated));
    assert!(alive(&no_description));
    let live = pool.store.agent(&live).await.unwrap().unwrap();
    assert!(alive(live.project_id.as_deref().unwrap()));

    // A young orphan is spared (a creation may be between projectCreate and its journal).
    let young_id = AgentId::random();
    pool.railway
        .create_project(&NewProject {
            name: naming.name(&young_id),
            description: naming.project_description(&young_id),
            workspace_id: WorkspaceId::new("ws-sim"),
            default_environment_name: None,
        })
        .await
        .unwrap();
    let report = sweep_orphans(&pool.provisioner, Duration::from_secs(600), 100).await;
    assert_eq!(report.projects, 0);
}

/// An archived row for `id` (a creation that was torn down).
async fn archived_row(pool: &TestPool, id: &AgentId) {
    pool.db
        .client()
        .await
        .execute(
            "INSERT INTO agent_metadata (id, railway_project_id, status) VALUES ($1, '', 'deleted')",
            &[&id.as_str()],
        )
        .await
        .unwrap();
}

/// Issue 20: the sweep deletes only projects carrying this pool's id in their marker, named
/// after an agent this database knows, at most `max_deletes` a pass. Another pool's project —
/// even one named like ours, even under the old-form marker both pools shared — is never
/// deleted; nor is a project of ours an empty or restored database has no row for.
#[tokio::test]
async fn the_sweep_deletes_only_this_pools_projects_of_agents_it_knows_and_at_most_n_a_pass() {
    let pool = TestPool::start(unthrottled()).await;
    let ours = pool.provisioner.naming().clone();
    let theirs =
        pool_provisioner::Naming::new("convos-agent-", "0123456789abcdef0123456789abcdef", "staging")
            .unwrap();
    let mut spared = Vec::new();
    // Another pool's project, with an agent name this database even knows.
    let known = AgentId::random();
    archived_row(&pool, &known).await;
    spared.push(
        pool.sim
            .create_foreign_project(&ours.name(&known), Some(&theirs.project_description(&known))),
    );
    // The old shared marker (`pool=pool-own-project`, what two pools with one RAILWAY_PROJECT_ID
    // both wrote).
    let old = AgentId::random();
    archived_row(&pool, &old).await;
    spared.push(pool.sim.create_foreign_project(
        &ours.name(&old),
        Some(&format!(
            "[agent-pool pool=pool-own-project env=staging] agent {old}."
        )),
    ));
    // Our marker, but an agent this database has no row for (a restored or empty database).
    let stranger = AgentId::random();
    spared.push(
        pool.sim
            .create_foreign_project(&ours.name(&stranger), Some(&ours.project_description(&stranger))),
    );
    // Three true orphans.
    let mut orphans = Vec::new();
    for _ in 0..3 {
        let id = AgentId::random();
        archived_row(&pool, &id).await;
        orphans.push(
            pool.sim
                .create_foreign_project(&ours.name(&id), Some(&ours.project_description(&id))),
        );
    }
    let first = sweep_orphans(&pool.provisioner, Duration::ZERO, 2).await;
    assert_eq!(
        (first.projects, first.deferred, first.unknown),
        (2, 1, 1),
        "{first:?}"
    );
    let second = sweep_orphans(&pool.provisioner, Duration::ZERO, 2).await;
    assert_eq!(second.projects, 1, "{second:?}");
    let snapshot = pool.sim.snapshot();
    let alive = |id: &str| snapshot.projects.iter().any(|p| p.id == id && !p.deleted);
    for id in &spared {
        assert!(alive(id), "{id} was deleted");
    }
    for id in &orphans {
        assert!(!alive(id), "{id} is an orphan");
    }
}

#[tokio::test]
async fn a_key_left_by_an_archived_agent_and_an_inbox_no_row_records_are_swept() {
    let pool = TestPool::start(unthrottled()).await;
    let id = pool.create_one().await.unwrap();
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    // The agent's inbox, made on first use; then forgotten by a teardown gone wrong.
    pool.provisioner
        .provision_service(&agent, pool_store::ServiceKind::Email)
        .await
        .unwrap();
    pool.store
        .forget_service(&id, pool_store::ServiceKind::Email)
        .await
        .unwrap();
    // Simulate a teardown that lost track of the key and inbox (e.g. recorded as gone too early).
    pool.db
        .client()
        .await
        .execute(
            "UPDATE agent_metadata SET openrouter_key_hash = NULL, agentmail_inbox_id = NULL WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .unwrap();
    pool.provisioner.kill(&id, "test").await.unwrap();
    let snapshot = pool.sim.snapshot();
    assert!(
        snapshot
            .keys
            .iter()
            .any(|k| Some(&k.id) == agent.openrouter_key_hash.as_ref() && !k.deleted)
    );
    let report = sweep_orphans(&pool.provisioner, Duration::ZERO, 100).await;
    assert_eq!((report.keys, report.inboxes), (1, 1), "{report:?}");
    pool.assert_nothing_leaked().await;
}

/// Waits (up to a minute: a hang guard, not a timing assertion) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within a minute: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The orphan sweep is the leader's but no tick's: at 10,000 agents its workspace listing
/// (about 100 pages) took 6.5 s, and the tick that waited for it lost leadership. Here the
/// listing never answers (Railway holds it; the client would wait 10 minutes): the leader's
/// ticks go on beside it, and no sweep finishes meanwhile.
#[tokio::test]
async fn a_stalled_orphan_sweep_holds_up_none_of_the_leaders_ticks() {
    let pool = TestPool::start(unthrottled()).await;
    let mut client = pool_provisioner::testing::client_config(&pool.sim);
    client.request_timeout = Duration::from_secs(600);
    let (railway, deleter) = railway_api::RailwayClient::with_project_deleter(client).unwrap();
    let mut provisioner_config = provisioner_config(&pool.sim, None);
    provisioner_config.pool_id = Some(pool.pool_id.clone());
    let provisioner =
        pool_provisioner::Provisioner::new(provisioner_config, pool.store.clone(), railway, deleter).unwrap();
    let mut faults = Faults::default();
    faults.operations.insert(
        "projects".into(),
        OperationFaults {
            timeout_before_apply: 1.0,
            ..OperationFaults::default()
        },
    );
    pool.sim.set_faults(faults);
    let reconciler = Reconciler::new(provisioner, config());
    let running = tokio::spawn(reconciler.clone().run(std::future::pending()));
    let listings = || pool.sim.counters().requests.get("projects").copied().unwrap_or(0);
    until(
        "the leader's orphan sweep asked for the workspace listing",
        || listings() >= 1,
    )
    .await;
    let ticks = reconciler.status().ticks;
    for _ in 0..3 {
        reconciler.trigger();
        let before = reconciler.status().ticks;
        until("a tick while the listing stalls", || {
            reconciler.status().ticks > before
        })
        .await;
    }
    let status = reconciler.status();
    running.abort();
    assert!(status.ticks >= ticks + 3, "{status:?}");
    assert_eq!(
        (status.orphan_sweeps, listings()),
        (0, 1),
        "the one listing still stalls, and no sweep finished: {status:?}"
    );
}

/// The leader's orphan sweep, in its task, deletes an orphan and says so in the status.
#[tokio::test]
async fn the_leader_sweeps_orphans_in_a_task_of_its_own() {
    let pool = TestPool::start(unthrottled()).await;
    let naming = pool.provisioner.naming().clone();
    let orphan_id = AgentId::random();
    archived_row(&pool, &orphan_id).await;
    let orphan = pool.sim.create_foreign_project(
        &naming.name(&orphan_id),
        Some(&naming.project_description(&orphan_id)),
    );
    let reconciler = Reconciler::new(
        pool.provisioner.clone(),
        ReconcilerConfig {
            orphan_grace: Duration::ZERO,
            ..config()
        },
    );
    let running = tokio::spawn(reconciler.clone().run(std::future::pending()));
    until("an orphan sweep finished", || {
        reconciler.status().orphan_sweeps >= 1
    })
    .await;
    let status = reconciler.status();
    running.abort();
    let sweep = status.last_orphan_sweep.clone().unwrap();
    assert_eq!((sweep.projects, sweep.errors.len()), (1, 0), "{sweep:?}");
    assert!(
        pool.sim
            .snapshot()
            .projects
            .iter()
            .any(|p| p.id == orphan && p.deleted),
        "the orphan's project was deleted"
    );
}

/// Found by the chaos run: replenishment went on while Railway throttled projectCreate, so each
/// tick made keys and inboxes only to delete them again. The project step comes first and
/// waits for the workspace's turn; the row counts as warm, so ticks meanwhile start nothing.
#[tokio::test]
async fn a_throttled_creation_waits_its_turn_and_ticks_meanwhile_make_nothing() {
    let pool = TestPool::start(SimConfig {
        quirks: Quirks {
            project_create_interval: Some(Duration::from_secs(30)),
            ..Quirks::quick()
        },
        ..SimConfig::quick()
    })
    .await;
    let reconciler = reconciler(&pool, 1).await;
    tick_until(&reconciler, &pool, 100, |c| c.idle == 1).await;
    let victim = pool
        .store
        .agents_with_status(AgentStatus::Idle)
        .await
        .unwrap()
        .remove(0);
    pool.provisioner.kill(&victim.id, "test").await.unwrap();
    let keys_before = pool.sim.snapshot().keys.len();
    for _ in 0..5 {
        let report = reconciler.tick(None).await;
        assert!(report.creations <= 1, "{report:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let counts = pool.store.counts().await.unwrap();
    assert_eq!(
        counts.creating, 1,
        "one creation, waiting for the throttle: {counts:?}"
    );
    assert_eq!(
        pool.sim.snapshot().keys.len(),
        keys_before,
        "no key made while waiting"
    );
    assert!(
        pool.provisioner
            .railway()
            .project_create_available_in(&WorkspaceId::new("ws-sim"))
            .is_some(),
        "the workspace waits for its throttle to open"
    );
}

/// Railway's events ask for a look: only the agents named are observed (one batched read, their
/// health checks), their statuses follow what is found, and nothing else happens — no
/// creation, no other agent read. A look at an agent that is fine changes nothing, however
/// often it is asked for.
#[tokio::test]
async fn a_look_observes_only_the_agents_named_and_what_it_finds_decides() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.min_idle = 2).await;
    let mut steady = config();
    steady.full_sweep_interval = Duration::from_secs(3600);
    let reconciler = Reconciler::new(pool.provisioner.clone(), steady);
    tick_until(&reconciler, &pool, 100, |c| c.idle == 2).await;
    reconciler.tick(None).await;
    let input = ClaimInput {
        agent_name: "Ada".into(),
        instructions: "hi".into(),
        join_url: None,
        ..ClaimInput::default()
    };
    let claimed = pool.provisioner.claim(&input, None).await.unwrap();
    let id = AgentId::parse(&claimed.instance_id).unwrap();
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    let total_before = total_rows(&pool).await;

    // A duplicate "deployed" for a healthy agent: read, found fine, unchanged.
    for _ in 0..2 {
        let report = reconciler
            .look(std::collections::BTreeSet::from([id.clone()]), None)
            .await;
        assert_eq!(
            (report.agents, report.read, report.health_checks),
            (1, 1, 1),
            "{report:?}"
        );
        assert_eq!(report.railway_requests, 1, "one batched read");
        assert_eq!(
            (report.transitions, report.creations, report.teardowns),
            (0, 0, 0)
        );
    }
    assert_eq!(
        pool.store.agent(&id).await.unwrap().unwrap().status,
        AgentStatus::Claimed
    );

    // Its deployment crashed: one look makes it crashed, its project untouched.
    pool.sim.crash_service(agent.service_id.as_deref().unwrap());
    let report = reconciler
        .look(std::collections::BTreeSet::from([id.clone()]), None)
        .await;
    assert_eq!(report.transitions, 1, "{report:?}");
    assert_eq!(
        pool.store.agent(&id).await.unwrap().unwrap().status,
        AgentStatus::Crashed
    );
    assert_eq!(total_rows(&pool).await, total_before, "a look creates nothing");
    assert!(
        pool.sim
            .snapshot()
            .live_projects()
            .iter()
            .any(|p| Some(&p.id) == agent.project_id.as_ref())
    );

    // A look at an agent that does not exist does nothing.
    let report = reconciler
        .look(std::collections::BTreeSet::from([AgentId::random()]), None)
        .await;
    assert_eq!((report.agents, report.railway_requests), (0, 0));
}
