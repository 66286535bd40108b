//! Shapes (issue 22): a pool of two runtimes filled, claimed and counted per shape, on the
//! simulator over HTTP and a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_provisioner::testing::{TestPool, unthrottled};
use pool_provisioner::{ClaimInput, ProvisionError};
use pool_reconciler::{Reconciler, ReconcilerConfig};
use pool_store::StatusCounts;

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

async fn counts(pool: &TestPool, shape: &str) -> StatusCounts {
    pool.store
        .counts_by_shape()
        .await
        .unwrap()
        .remove(shape)
        .unwrap_or_default()
}

/// Ticks until both shapes have `idle` idle agents, at most `max_ticks` times.
async fn tick_until_idle(reconciler: &Reconciler, pool: &TestPool, idle: i64, max_ticks: usize) {
    for _ in 0..max_ticks {
        let report = reconciler.tick(None).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        if counts(pool, "openclaw").await.idle >= idle && counts(pool, "hermes").await.idle >= idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not filled after {max_ticks} ticks: {:?}",
        pool.store.counts_by_shape().await.unwrap()
    );
}

fn claim(runtime: Option<&str>) -> ClaimInput {
    ClaimInput {
        agent_name: "Ada".into(),
        runtime: runtime.map(str::to_string),
        ..ClaimInput::default()
    }
}

#[tokio::test]
async fn two_shapes_fill_apart_and_a_claim_gets_the_runtime_it_names() {
    let pool = TestPool::two_shapes(unthrottled()).await;
    for shape in ["openclaw", "hermes"] {
        let mut settings = pool.store.shape_settings(shape).await.unwrap().settings;
        settings.min_idle = 2;
        pool.store
            .update_shape_settings(shape, &settings, "test")
            .await
            .unwrap();
    }
    let reconciler = Reconciler::new(pool.provisioner.clone(), config());
    tick_until_idle(&reconciler, &pool, 2, 80).await;
    // A few more ticks: each shape stays at its own target, neither takes the other's.
    for _ in 0..3 {
        reconciler.tick(None).await;
    }
    for shape in ["openclaw", "hermes"] {
        let c = counts(&pool, shape).await;
        assert_eq!(c.total(), 2, "{shape}: {c:?}");
        assert_eq!(c.idle, 2, "{shape}: {c:?}");
    }
    // Each agent runs its shape's image with its shape's RUNTIME_TYPE, on the simulator.
    let snapshot = pool.sim.snapshot();
    for agent in pool.store.live_agents().await.unwrap() {
        let repository = match agent.shape.as_str() {
            "openclaw" => "ghcr.io/xmtplabs/convos-agent:",
            "hermes" => "ghcr.io/xmtplabs/convos-agent-hermes:",
            other => panic!("an agent of an unknown shape {other}"),
        };
        assert!(
            agent.image.as_deref().unwrap().starts_with(repository),
            "{agent:?}"
        );
        let service = agent.service_id.as_ref().unwrap();
        let deployment = snapshot.deployments_of(service)[0];
        assert_eq!(deployment.variables["RUNTIME_TYPE"], agent.shape);
        assert!(deployment.image.as_deref().unwrap().starts_with(repository));
    }

    // runtime "hermes" gets a Hermes agent.
    let hermes = pool
        .provisioner
        .claim(&claim(Some("hermes")), None)
        .await
        .unwrap();
    let agent = pool
        .store
        .agent(&pool_store::AgentId::parse(&hermes.instance_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.shape, "hermes");
    // No runtime gets the default shape (the first configured, OpenClaw).
    let default = pool.provisioner.claim(&claim(None), None).await.unwrap();
    let agent = pool
        .store
        .agent(&pool_store::AgentId::parse(&default.instance_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.shape, "openclaw");
    // An unknown runtime is a 400 naming the field and the runtime; nothing changes.
    let before = pool.store.counts_by_shape().await.unwrap();
    let refused = pool
        .provisioner
        .claim(&claim(Some("claude")), None)
        .await
        .unwrap_err();
    match &refused {
        ProvisionError::InvalidRequest { field, message } => {
            assert_eq!(*field, "runtime");
            assert!(message.contains("\"claude\""), "{message}");
        }
        other => panic!("expected a 400 naming runtime, got {other:?}"),
    }
    assert_eq!(pool.store.counts_by_shape().await.unwrap(), before);

    // Counts per shape: one claimed and one idle of each.
    for shape in ["openclaw", "hermes"] {
        let c = counts(&pool, shape).await;
        assert_eq!((c.claimed, c.idle), (1, 1), "{shape}: {c:?}");
    }
    // Emptying one shape leaves the other's claims alone: Hermes has no idle agent left after
    // one more claim, and its next claim is refused (503) while OpenClaw still serves.
    pool.provisioner
        .claim(&claim(Some("hermes")), None)
        .await
        .unwrap();
    assert!(matches!(
        pool.provisioner.claim(&claim(Some("hermes")), None).await,
        Err(ProvisionError::PoolEmpty)
    ));
    let openclaw = pool
        .provisioner
        .claim(&claim(Some("openclaw")), None)
        .await
        .unwrap();
    assert!(!openclaw.instance_id.is_empty());
    // The refusal is Hermes' demand, not OpenClaw's.
    let hermes_demand = pool.store.claim_counts(Some("hermes"), 5).await.unwrap();
    let openclaw_demand = pool.store.claim_counts(Some("openclaw"), 5).await.unwrap();
    assert_eq!(
        hermes_demand.per_minute.iter().sum::<u32>(),
        3,
        "two served, one refused"
    );
    assert_eq!(openclaw_demand.per_minute.iter().sum::<u32>(), 2, "two served");
}

/// What an operator does in Railway's dashboard: sets the agent's `RUNTIME_TYPE` variable,
/// which redeploys its service (`variableCollectionUpsert` without `skipDeploys`); the new
/// deployment's pool server reports that runtime (pool-server/index.ts:59, 359).
async fn set_runtime_type(pool: &TestPool, id: &pool_store::AgentId, runtime: &str) {
    let agent = pool.store.agent(id).await.unwrap().unwrap();
    let variables = [("RUNTIME_TYPE".to_string(), runtime.to_string())].into();
    pool.railway
        .upsert_variables(
            &railway_api::ProjectId::new(agent.project_id.as_deref().unwrap()),
            &railway_api::EnvironmentId::new(agent.environment_id.as_deref().unwrap()),
            &railway_api::ServiceId::new(agent.service_id.as_deref().unwrap()),
            &variables,
            false,
        )
        .await
        .unwrap();
}

/// The runtime mismatch events of an agent.
async fn mismatches(pool: &TestPool, id: &pool_store::AgentId) -> Vec<String> {
    pool.store
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "runtime_mismatch")
        .map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn an_agent_reporting_another_runtime_is_never_handed_out_and_is_replaced() {
    let pool = TestPool::two_shapes(unthrottled()).await;
    let mut settings = pool.store.shape_settings("openclaw").await.unwrap().settings;
    settings.min_idle = 1;
    pool.store
        .update_shape_settings("openclaw", &settings, "test")
        .await
        .unwrap();
    let reconciler = Reconciler::new(pool.provisioner.clone(), config());
    for _ in 0..80 {
        reconciler.tick(None).await;
        if counts(&pool, "openclaw").await.idle >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = pool.store.live_agents().await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    let wrong = first[0].id.clone();
    assert_eq!(
        first[0].runtime_name.as_deref(),
        Some("openclaw"),
        "the simulator reports the agent's RUNTIME_TYPE"
    );

    // Its RUNTIME_TYPE becomes hermes: once it reports it, it is torn down, never claimed.
    set_runtime_type(&pool, &wrong, "hermes").await;
    for _ in 0..80 {
        let report = reconciler.tick(None).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        if !mismatches(&pool, &wrong).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        pool.store.agent(&wrong).await.unwrap().unwrap().status,
        pool_store::AgentStatus::Idle,
        "out of the pool once it reported hermes"
    );
    let mut served = Vec::new();
    for _ in 0..80 {
        if let Ok(claimed) = pool.provisioner.claim(&claim(Some("openclaw")), None).await {
            served.push(claimed.instance_id);
            break;
        }
        let report = reconciler.tick(None).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served.len(), 1, "a replacement is claimed in the end");
    assert_ne!(
        served[0],
        wrong.as_str(),
        "the agent reporting hermes is never handed out for openclaw"
    );
    let replacement = pool
        .store
        .agent(&pool_store::AgentId::parse(&served[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replacement.shape, "openclaw");
    assert_eq!(replacement.runtime_name.as_deref(), Some("openclaw"));

    let events = mismatches(&pool, &wrong).await;
    assert_eq!(
        events.len(),
        1,
        "one event per change of what it reports: {events:?}"
    );
    assert!(
        events[0].contains("\"hermes\"") && events[0].contains("\"openclaw\""),
        "the event names both runtimes: {}",
        events[0]
    );
    let gone = pool.store.agent(&wrong).await.unwrap().unwrap();
    assert!(
        matches!(
            gone.status,
            pool_store::AgentStatus::Deleting | pool_store::AgentStatus::Deleted
        ),
        "{:?}",
        gone.status
    );
    let timeline = pool.store.events(&wrong).await.unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e.to_status.as_deref() == Some("deleting") && e.reason.contains("runtime")),
        "the teardown says why: {timeline:?}"
    );

    // A claimed agent that starts reporting another runtime stays with its user: an event.
    let claimed = pool_store::AgentId::parse(&served[0]).unwrap();
    set_runtime_type(&pool, &claimed, "hermes").await;
    for _ in 0..80 {
        reconciler.tick(None).await;
        if !mismatches(&pool, &claimed).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = mismatches(&pool, &claimed).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        pool.store.agent(&claimed).await.unwrap().unwrap().status,
        pool_store::AgentStatus::Claimed
    );
}

#[tokio::test]
async fn the_claim_never_takes_an_idle_agent_whose_last_report_names_another_runtime() {
    let pool = TestPool::two_shapes(unthrottled()).await;
    let ids = pool.idle_agents(1).await;
    let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();
    assert_eq!(agent.shape, "openclaw");
    // As the tick records it, before it acts on it.
    pool.store
        .record_seen(&[pool_store::SeenAgent {
            id: ids[0].clone(),
            deployment_status: None,
            health: None,
            runtime: Some((None, Some("hermes".into()))),
        }])
        .await
        .unwrap();
    assert!(matches!(
        pool.provisioner.claim(&claim(None), None).await,
        Err(ProvisionError::PoolEmpty)
    ));
    assert_eq!(
        pool.store.agent(&ids[0]).await.unwrap().unwrap().status,
        pool_store::AgentStatus::Idle
    );
    // Reporting its own runtime again, it serves.
    pool.store
        .record_seen(&[pool_store::SeenAgent {
            id: ids[0].clone(),
            deployment_status: None,
            health: None,
            runtime: Some((None, Some("openclaw".into()))),
        }])
        .await
        .unwrap();
    let served = pool.provisioner.claim(&claim(None), None).await.unwrap();
    assert_eq!(served.instance_id, ids[0].as_str());
}

/// Fair creation slots (issue 22): with two slots for the whole pool, a shape short of six
/// does not take both from a shape short of two. First come first served, OpenClaw (sized
/// first) would hold every slot until it had six, and Hermes would start nothing before.
#[tokio::test]
async fn a_big_shortfall_of_one_shape_leaves_creation_slots_to_another_and_both_fill() {
    let pool = TestPool::configured(unthrottled(), None, |config| {
        config.shapes = pool_provisioner::testing::two_shapes(&config.default_shape().image.tag);
        config.create_concurrency = 2;
    })
    .await;
    for (shape, min_idle) in [("openclaw", 6), ("hermes", 2)] {
        let mut settings = pool.store.shape_settings(shape).await.unwrap().settings;
        settings.min_idle = min_idle;
        pool.store
            .update_shape_settings(shape, &settings, "test")
            .await
            .unwrap();
    }
    let reconciler = Reconciler::new(pool.provisioner.clone(), config());
    let report = reconciler.tick(None).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.creations, 2, "both slots used");
    let (openclaw, hermes) = (counts(&pool, "openclaw").await, counts(&pool, "hermes").await);
    assert_eq!((openclaw.creating, hermes.creating), (1, 1), "one slot each");
    // Hermes is full while OpenClaw is still short: slots went to it before OpenClaw's later ones.
    let mut openclaw_when_hermes_full = None;
    for _ in 0..200 {
        let report = reconciler.tick(None).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let (openclaw, hermes) = (counts(&pool, "openclaw").await, counts(&pool, "hermes").await);
        assert!(
            openclaw.creating + hermes.creating <= 2,
            "never more than the slots: {openclaw:?} {hermes:?}"
        );
        if hermes.total() >= 2 && openclaw_when_hermes_full.is_none() {
            openclaw_when_hermes_full = Some(openclaw.total());
        }
        if openclaw.idle == 6 && hermes.idle == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (openclaw, hermes) = (counts(&pool, "openclaw").await, counts(&pool, "hermes").await);
    assert_eq!(
        (openclaw.idle, hermes.idle),
        (6, 2),
        "both filled: {openclaw:?} {hermes:?}"
    );
    let when = openclaw_when_hermes_full.unwrap();
    assert!(
        when < 6,
        "Hermes had its two while OpenClaw had {when} of its six"
    );
    println!(
        "two slots, OpenClaw short of 6 and Hermes of 2: the first tick started one of each; Hermes had its 2 when OpenClaw had {when}; both filled"
    );
}
