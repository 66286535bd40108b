//! Rollouts on the simulator: every agent reaches the new digest, claimed ones in place and at
//! most `batch` down at once; an image that fails to boot stops at the canary and is rolled
//! back; a rollout resumes from its rows in a new process, upgrading no agent twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_provisioner::{ClaimInput, ProvisionError, Provisioner, RolloutRequest};
use pool_store::{AgentId, AgentStatus};

const REPOSITORY: &str = "ghcr.io/xmtplabs/convos-agent";

async fn pool() -> (TestPool, Provisioner) {
    let pool = TestPool::start(unthrottled()).await;
    let mut config = provisioner_config(&pool.sim, None);
    config.registry_url = Some(pool.sim.registry_url());
    config.rollout_health_timeout = Duration::from_secs(20);
    let provisioner = pool.provisioner(config);
    (pool, provisioner)
}

fn input(name: &str) -> ClaimInput {
    ClaimInput {
        agent_name: name.into(),
        instructions: "be helpful".into(),
        ..ClaimInput::default()
    }
}

fn request(image: &str, batch: i64) -> RolloutRequest {
    RolloutRequest {
        runtime: "openclaw".into(),
        image: Some(image.into()),
        include: vec!["idle".into(), "claimed".into()],
        batch,
        pause_ms: 100,
    }
}

/// `n` idle agents, `claimed` of them then claimed: (claimed ids, idle ids).
async fn agents(
    pool: &TestPool,
    provisioner: &Provisioner,
    n: usize,
    claimed: usize,
) -> (Vec<AgentId>, Vec<AgentId>) {
    pool.idle_agents(n).await;
    let mut taken = Vec::new();
    for i in 0..claimed {
        let answer = provisioner
            .claim(&input(&format!("user-{i}")), None)
            .await
            .unwrap();
        taken.push(AgentId::parse(&answer.instance_id).unwrap());
    }
    let idle = pool
        .store
        .agents_with_status(AgentStatus::Idle)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    (taken, idle)
}

/// Steps the rollout until it ends (a tick's work, by hand); its final state.
async fn run(provisioner: &Provisioner, id: i64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        provisioner.rollout_step().await.unwrap();
        let view = provisioner.rollout_view(id).await.unwrap();
        if view.rollout.state != "running" {
            return view.rollout.state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout never ended: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The service and volume of every agent.
async fn services(pool: &TestPool, ids: &[AgentId]) -> BTreeMap<AgentId, (String, String)> {
    let snapshot = pool.sim.snapshot();
    let mut out = BTreeMap::new();
    for id in ids {
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        let service = agent.service_id.clone().unwrap();
        let volume = snapshot
            .volumes
            .iter()
            .find(|v| v.service_id.as_deref() == Some(service.as_str()) && !v.deleted)
            .map(|v| v.id.clone())
            .unwrap();
        out.insert(id.clone(), (service, volume));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_over_six_claimed_and_three_idle_agents_moves_every_one_batch_by_batch() {
    let (pool, provisioner) = pool().await;
    let (claimed, idle) = agents(&pool, &provisioner, 9, 6).await;
    assert_eq!((claimed.len(), idle.len()), (6, 3));
    let pool = Arc::new(pool);
    let everyone: Vec<AgentId> = claimed.iter().chain(&idle).cloned().collect();
    let before = services(&pool, &everyone).await;
    let image = format!("{REPOSITORY}:sha-bbbbbbb");
    let digest = pool.sim.image_digest(&image);
    let batch = 2;

    // A watcher counts claimed agents whose newest deployment is not serving, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let most_down = Arc::new(AtomicUsize::new(0));
    let claimed_services: BTreeSet<String> = claimed.iter().map(|id| before[id].0.clone()).collect();
    let watcher = {
        let (pool, stop, most_down) = (pool.clone(), stop.clone(), most_down.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let snapshot = pool.sim.snapshot();
                let down = claimed_services
                    .iter()
                    .filter(|s| {
                        snapshot
                            .deployments_of(s)
                            .last()
                            .is_none_or(|d| d.status != "SUCCESS")
                    })
                    .count();
                most_down.fetch_max(down, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let started = provisioner
        .start_rollout(&request(&image, batch), Some("admin"))
        .await
        .unwrap();
    assert_eq!(
        started.rollout.target,
        format!("{REPOSITORY}@{digest}"),
        "the tag resolved once"
    );
    assert_eq!(started.agents.pending + started.agents.upgrading, 9);
    // A second rollout of the runtime while this one runs: refused, naming it.
    match provisioner.start_rollout(&request(&image, 1), None).await {
        Err(ProvisionError::RolloutRunning(running)) => assert_eq!(running.id, started.rollout.id),
        other => panic!("{other:?}"),
    }
    // Claims during the rollout are served (waiting for an idle agent when all are held).
    let claims = {
        let p = provisioner.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..2 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                answers.push(
                    p.claim_waiting(&input(&format!("late-{i}")), None, Duration::from_secs(30))
                        .await,
                );
            }
            answers
        })
    };
    assert_eq!(run(&provisioner, started.rollout.id).await, "succeeded");
    for answer in claims.await.unwrap() {
        answer.expect("no claim fails during the rollout");
    }
    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();

    let snapshot = pool.sim.snapshot();
    for id in &everyone {
        let (service, volume) = &before[id];
        let deployments = snapshot.deployments_of(service);
        assert_eq!(deployments.len(), 2, "{id}: upgraded exactly once");
        let last = deployments.last().unwrap();
        assert_eq!(
            last.image_digest.as_deref(),
            Some(digest.as_str()),
            "{id} on the new digest"
        );
        assert_eq!(
            last.volume_mounts,
            vec!["/data".to_string()],
            "{id} keeps its volume mounted"
        );
        assert!(
            snapshot.volumes.iter().any(|v| &v.id == volume && !v.deleted),
            "{id} keeps the very same volume"
        );
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        assert_eq!(agent.image.as_deref(), Some(started.rollout.target.as_str()));
    }
    for id in &claimed {
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        assert_eq!(agent.status, AgentStatus::Claimed, "{id} stays its user's");
    }
    let most_down = most_down.load(Ordering::Relaxed);
    assert!(most_down >= 1, "the watcher saw claimed agents redeploy");
    assert!(
        most_down <= batch as usize,
        "{most_down} claimed agents down at once"
    );
    let view = provisioner.rollout_view(started.rollout.id).await.unwrap();
    assert_eq!(view.agents.done, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_fails_to_boot_stops_at_the_canary_which_is_rolled_back() {
    let (pool, provisioner) = pool().await;
    let (claimed, idle) = agents(&pool, &provisioner, 4, 2).await;
    let everyone: Vec<AgentId> = claimed.iter().chain(&idle).cloned().collect();
    let before = services(&pool, &everyone).await;
    let old_digests: BTreeMap<AgentId, String> = {
        let snapshot = pool.sim.snapshot();
        everyone
            .iter()
            .map(|id| {
                let d = snapshot
                    .deployments_of(&before[id].0)
                    .last()
                    .unwrap()
                    .image_digest
                    .clone()
                    .unwrap();
                (id.clone(), d)
            })
            .collect()
    };
    let image = format!("{REPOSITORY}:sha-broken");
    let broken = pool.sim.push_unbootable_image(&image);

    let started = provisioner
        .start_rollout(&request(&image, 2), Some("admin"))
        .await
        .unwrap();
    assert_eq!(run(&provisioner, started.rollout.id).await, "failed");
    let view = provisioner.rollout_view(started.rollout.id).await.unwrap();
    let failure = view.rollout.failure.clone().unwrap();
    assert!(failure.contains("the canary failed"), "{failure}");
    assert_eq!((view.agents.rolled_back, view.agents.pending), (1, 3), "{view:?}");
    let rows = pool.store.rollout_agents(started.rollout.id).await.unwrap();
    let canary = rows.iter().find(|r| r.position == 0).unwrap().agent_id.clone();
    assert!(idle.contains(&canary), "an idle agent is the canary");

    // The canary is back on its old bytes, healthy and in the pool; nobody else was touched.
    let snapshot = pool.sim.snapshot();
    for id in &everyone {
        let deployments = snapshot.deployments_of(&before[id].0);
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        if *id == canary {
            assert_eq!(deployments.len(), 3, "original, broken, rollback");
            // The broken one (REMOVED now: the rollback replaced it).
            assert_eq!(deployments[1].image_digest.as_ref(), Some(&broken));
            assert_eq!(deployments[2].image_digest.as_ref(), Some(&old_digests[id]));
            assert_eq!(agent.status, AgentStatus::Idle);
            let url = provisioner.agent_url(&agent).unwrap();
            assert!(provisioner.agents().health(&url, "").await.is_ready());
            let events = pool.store.events(id).await.unwrap();
            assert!(
                events.iter().any(|e| e.reason.contains("rolled back")),
                "{events:?}"
            );
        } else {
            assert_eq!(deployments.len(), 1, "{id} untouched");
            let expected = if claimed.contains(id) {
                AgentStatus::Claimed
            } else {
                AgentStatus::Idle
            };
            assert_eq!(agent.status, expected);
        }
    }
    // Stopped, so another rollout may start.
    assert!(pool.store.running_rollout("openclaw").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_resumes_in_a_new_process_and_upgrades_each_agent_once() {
    let (pool, provisioner) = pool().await;
    let (claimed, idle) = agents(&pool, &provisioner, 5, 3).await;
    let everyone: Vec<AgentId> = claimed.iter().chain(&idle).cloned().collect();
    let before = services(&pool, &everyone).await;
    let image = format!("{REPOSITORY}:sha-ccccccc");
    let started = provisioner
        .start_rollout(&request(&image, 2), None)
        .await
        .unwrap();
    // Step until the canary is through and a batch is under way, then the process "dies".
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        provisioner.rollout_step().await.unwrap();
        let counts = provisioner.rollout_view(started.rollout.id).await.unwrap().agents;
        if counts.done >= 1 && counts.upgrading >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(provisioner);
    // A row written as upgrading whose deploy never went out (the process died between the
    // two): the new process sends it.
    let pending = pool
        .store
        .rollout_agents(started.rollout.id)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.state == "pending")
        .unwrap();
    pool.db
        .client()
        .await
        .execute(
            "UPDATE pool_rollout_agents SET state = 'upgrading' WHERE rollout_id = $1 AND agent_id = $2",
            &[&started.rollout.id, &pending.agent_id.as_str()],
        )
        .await
        .unwrap();

    let mut config = provisioner_config(&pool.sim, None);
    config.registry_url = Some(pool.sim.registry_url());
    let restarted = pool.provisioner(config);
    assert_eq!(run(&restarted, started.rollout.id).await, "succeeded");
    let digest = pool.sim.image_digest(&image);
    let snapshot = pool.sim.snapshot();
    for id in &everyone {
        let deployments = snapshot.deployments_of(&before[id].0);
        assert_eq!(deployments.len(), 2, "{id}: upgraded exactly once");
        assert_eq!(deployments[1].image_digest.as_deref(), Some(digest.as_str()));
    }
}

#[tokio::test]
async fn bad_rollouts_change_nothing() {
    let (pool, provisioner) = pool().await;
    pool.idle_agents(1).await;
    let mut bad = request(&format!("{REPOSITORY}:x"), 0);
    let refused = provisioner.start_rollout(&bad, None).await.unwrap_err();
    assert!(
        matches!(refused, ProvisionError::InvalidRequest { field: "batch", .. }),
        "{refused:?}"
    );
    bad.batch = 1;
    bad.image = Some("ghcr.io/someone-else/agent:x".into());
    let refused = provisioner.start_rollout(&bad, None).await.unwrap_err();
    assert!(
        matches!(refused, ProvisionError::InvalidRequest { field: "image", .. }),
        "{refused:?}"
    );
    bad.image = None;
    bad.runtime = "hermes".into();
    let refused = provisioner.start_rollout(&bad, None).await.unwrap_err();
    assert!(
        matches!(refused, ProvisionError::InvalidRequest { field: "runtime", .. }),
        "{refused:?}"
    );
    assert!(
        pool.store.latest_rollout().await.unwrap().is_none(),
        "nothing written"
    );
    assert_eq!(pool.sim.snapshot().deployments.len(), 1, "nothing deployed");
}
