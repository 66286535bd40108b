//! Parking and waking on real PostgreSQL and the simulator over HTTP: one deployment per wake,
//! the same volume and domain, a crash between any two steps resumed with nothing lost and
//! nothing woken twice, failed wakes retried then torn down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_provisioner::{DEFAULT_MAX_WAKE_FAILURES, WakeOutcome};
use pool_store::{AgentId, AgentStatus, TierStep};
use railway_api::{DeploymentId, EnvironmentId, ServiceId};

async fn one_idle_agent(pool: &TestPool) -> AgentId {
    pool.idle_agents(1).await.remove(0)
}

/// Deployments of the agent's service in the simulator, oldest first: (id, status).
fn deployments(pool: &TestPool, service: &str) -> Vec<(String, String)> {
    let snapshot = pool.sim.snapshot();
    snapshot
        .deployments_of(service)
        .into_iter()
        .map(|d| (d.id.clone(), d.status.clone()))
        .collect()
}

/// The worker holding the agent "died": its lease runs out now.
async fn expire_lease(pool: &TestPool, id: &AgentId) {
    pool.db
        .client()
        .await
        .execute(
            "UPDATE agent_metadata SET worker_lease_until = now() - interval '1 second' WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .unwrap();
}

async fn status(pool: &TestPool, id: &AgentId) -> AgentStatus {
    pool.store.agent(id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn park_then_wake_gives_one_deployment_with_the_same_volume_and_domain() {
    let pool = TestPool::start(unthrottled()).await;
    let id = one_idle_agent(&pool).await;
    let before = pool.store.agent(&id).await.unwrap().unwrap();
    let service = before.service_id.clone().unwrap();
    assert_eq!(deployments(&pool, &service).len(), 1);

    assert!(pool.provisioner.park(&id).await.unwrap());
    let parked = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(parked.status, AgentStatus::Parked);
    assert!(parked.parked_at.is_some());
    assert_eq!(parked.deployment_status.as_deref(), Some("REMOVED"));
    assert_eq!(pool.sim.running_deployments(), 0, "a parked agent runs nothing");
    let url = pool.provisioner.agent_url(&parked).unwrap();
    assert!(!pool.provisioner.agents().health(&url, "").await.is_ready());
    // A parked agent is not idle: it cannot be parked twice.
    assert!(!pool.provisioner.park(&id).await.unwrap());

    let outcome = pool.provisioner.wake(&id, "test wake").await.unwrap();
    let WakeOutcome::Deploying(deployment) = outcome else {
        panic!("{outcome:?}");
    };
    let woken = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(woken.status, AgentStatus::Starting);
    assert_eq!(woken.deployment_id.as_deref(), Some(deployment.as_str()));
    assert!(
        woken.image.as_deref().unwrap().contains("@sha256:"),
        "{:?}",
        woken.image
    );
    let all = deployments(&pool, &service);
    assert_eq!(all.len(), 2, "exactly one deployment per wake: {all:?}");
    assert_eq!(woken.volume_id, before.volume_id);
    assert_eq!(woken.domain, before.domain);
    assert_eq!(woken.service_id, before.service_id);
    // Then it is judged as a new agent: SUCCESS and a healthy /pool/health.
    pool.make_idle(&id).await;
    assert_eq!(status(&pool, &id).await, AgentStatus::Idle);
    // A wake of an agent that is not parked does nothing.
    assert_eq!(
        pool.provisioner.wake(&id, "again").await.unwrap(),
        WakeOutcome::NotParked
    );
    assert_eq!(deployments(&pool, &service).len(), 2);
    pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn a_crash_at_each_step_of_a_park_is_resumed_and_loses_no_agent() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(3).await;
    // (1) crashed right after `idle → parking`, before anything was noted or sent;
    // (2) after noting the removal, before sending it;
    // (3) after Railway removed the deployment, before the outcome was written.
    for (i, id) in ids.iter().enumerate() {
        assert!(
            pool.store
                .begin_park(id, Duration::from_secs(60))
                .await
                .unwrap()
                .applied()
        );
        if i >= 1 {
            assert!(
                pool.store
                    .note_tier_step(id, AgentStatus::Parking, TierStep::Remove)
                    .await
                    .unwrap()
            );
        }
        if i == 2 {
            let agent = pool.store.agent(id).await.unwrap().unwrap();
            let deployment = DeploymentId::new(agent.deployment_id.unwrap());
            pool.railway.remove_deployment(&deployment).await.unwrap();
        }
        // Nobody resumes an agent whose worker may still live.
        assert!(!pool.provisioner.resume_tier_motion(id).await.unwrap());
        expire_lease(&pool, id).await;
        assert!(
            pool.provisioner.resume_tier_motion(id).await.unwrap(),
            "agent {i}"
        );
        assert_eq!(status(&pool, id).await, AgentStatus::Parked, "agent {i}");
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        assert_eq!(
            deployments(&pool, agent.service_id.as_deref().unwrap()).len(),
            1,
            "agent {i}"
        );
    }
    assert_eq!(
        pool.sim.running_deployments(),
        0,
        "no deployment left running unaccounted"
    );
    pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn a_crash_at_each_step_of_a_wake_is_resumed_with_exactly_one_deployment() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(3).await;
    for id in &ids {
        assert!(pool.provisioner.park(id).await.unwrap());
    }
    // (1) crashed right after `parked → waking`; (2) after noting the deploy, before sending
    // it; (3) after Railway took the deploy, before its id was written.
    for (i, id) in ids.iter().enumerate() {
        assert!(
            pool.store
                .begin_wake(id, Duration::from_secs(60), "test")
                .await
                .unwrap()
                .applied()
        );
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        if i >= 1 {
            assert!(
                pool.store
                    .note_tier_step(id, AgentStatus::Waking, TierStep::Deploy)
                    .await
                    .unwrap()
            );
        }
        if i == 2 {
            pool.railway
                .deploy_service(
                    &EnvironmentId::new(agent.environment_id.clone().unwrap()),
                    &ServiceId::new(agent.service_id.clone().unwrap()),
                )
                .await
                .unwrap();
        }
        expire_lease(&pool, id).await;
        assert!(
            pool.provisioner.resume_tier_motion(id).await.unwrap(),
            "agent {i}"
        );
        let woken = pool.store.agent(id).await.unwrap().unwrap();
        assert_eq!(woken.status, AgentStatus::Starting, "agent {i}");
        let all = deployments(&pool, woken.service_id.as_deref().unwrap());
        assert_eq!(
            all.len(),
            2,
            "agent {i}: one deployment per wake, never two: {all:?}"
        );
        assert_eq!(
            woken.deployment_id.as_deref(),
            Some(all[1].0.as_str()),
            "agent {i}"
        );
        pool.make_idle(id).await;
    }
    pool.assert_nothing_leaked().await;
}

/// Railway answers every deploy with a passing failure (503, nothing applied).
fn fail_every_deploy(pool: &TestPool) {
    let mut faults = railway_sim::Faults::default();
    for op in ["serviceInstanceDeployV2", "serviceInstanceUpdate"] {
        faults.operations.insert(
            op.into(),
            railway_sim::OperationFaults {
                server_error: 1.0,
                ..Default::default()
            },
        );
    }
    pool.sim.set_faults(faults);
}

#[tokio::test]
async fn the_wake_failure_limit_is_the_configured_one() {
    let pool = TestPool::start(unthrottled()).await;
    let id = one_idle_agent(&pool).await;
    assert!(pool.provisioner.park(&id).await.unwrap());
    // POOL_MAX_WAKE_FAILURES=1: the first failed wake tears the agent down.
    let mut config = provisioner_config(&pool.sim, None);
    config.max_wake_failures = 1;
    let provisioner = pool.provisioner(config);
    fail_every_deploy(&pool);
    let outcome = provisioner.wake(&id, "test").await.unwrap();
    assert!(matches!(outcome, WakeOutcome::TornDown { .. }), "{outcome:?}");
    assert_eq!(status(&pool, &id).await, AgentStatus::Deleting);
}

#[tokio::test]
async fn a_failing_wake_is_retried_then_the_agent_is_torn_down() {
    let pool = TestPool::start(unthrottled()).await;
    let id = one_idle_agent(&pool).await;
    assert!(pool.provisioner.park(&id).await.unwrap());
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    let service = agent.service_id.clone().unwrap();
    fail_every_deploy(&pool);
    for attempt in 1..DEFAULT_MAX_WAKE_FAILURES as i32 {
        let outcome = pool.provisioner.wake(&id, "test").await.unwrap();
        assert!(
            matches!(&outcome, WakeOutcome::Retry { failures, .. } if *failures == attempt),
            "{outcome:?}"
        );
        assert_eq!(status(&pool, &id).await, AgentStatus::Parked);
    }
    let outcome = pool.provisioner.wake(&id, "test").await.unwrap();
    assert!(matches!(outcome, WakeOutcome::TornDown { .. }), "{outcome:?}");
    assert_eq!(
        deployments(&pool, &service).len(),
        1,
        "no failed wake deployed anything"
    );
    let events = pool.store.events(&id).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == "wake_failed").count() as u32,
        DEFAULT_MAX_WAKE_FAILURES
    );
    pool.sim.set_faults(railway_sim::Faults::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status(&pool, &id).await != AgentStatus::Deleted {
        assert!(tokio::time::Instant::now() < deadline, "never torn down");
        pool.provisioner.retry_due_teardowns().await.ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn a_wake_of_a_deleted_service_is_refused_for_good_and_torn_down_at_once() {
    let pool = TestPool::start(unthrottled()).await;
    let id = one_idle_agent(&pool).await;
    assert!(pool.provisioner.park(&id).await.unwrap());
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    // Someone deleted the service on Railway while the agent was parked.
    pool.railway
        .delete_service(
            agent.environment_id.as_deref().map(EnvironmentId::new).as_ref(),
            &ServiceId::new(agent.service_id.clone().unwrap()),
        )
        .await
        .unwrap();
    let outcome = pool.provisioner.wake(&id, "test").await.unwrap();
    let WakeOutcome::TornDown { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("refused for good"), "{reason}");
    let events = pool.store.events(&id).await.unwrap();
    assert!(
        events.iter().any(|e| e.reason.contains("refused for good")),
        "{events:?}"
    );
    assert!(matches!(
        status(&pool, &id).await,
        AgentStatus::Deleting | AgentStatus::Deleted
    ));
}
