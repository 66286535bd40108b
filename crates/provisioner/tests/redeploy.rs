//! Redeploy: idle agents move to the current image a few at a time, never claimable mid-way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pool_provisioner::testing::{TestPool, provisioner_config};
use pool_store::AgentStatus;
use railway_sim::SimConfig;

#[tokio::test]
async fn redeploy_moves_idle_agents_to_the_new_image_a_batch_at_a_time() {
    let pool = TestPool::start(SimConfig::default()).await;
    let old = pool.provisioner(provisioner_config(&pool.sim, Some("sha-aaaaaaa")));
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(old.create_agent().await.unwrap());
    }
    for id in &ids {
        pool.make_idle(id).await;
    }
    let new = pool.provisioner(provisioner_config(&pool.sim, Some("sha-bbbbbbb")));
    let progress = new.request_redeploy(None).await.unwrap();
    assert_eq!(progress.requested, 4);
    assert_eq!(progress.image, "ghcr.io/xmtplabs/convos-agent:sha-bbbbbbb");
    // A quarter of 4 idle agents: one at a time; it is out of the pool until healthy.
    assert_eq!((progress.in_progress, progress.waiting), (1, 3));
    let moving: Vec<_> = pool
        .store
        .agents_with_status(AgentStatus::Starting)
        .await
        .unwrap();
    assert_eq!(moving.len(), 1);
    let agent = &moving[0];
    assert_eq!(
        agent.image.as_deref(),
        Some("ghcr.io/xmtplabs/convos-agent:sha-bbbbbbb")
    );
    let snapshot = pool.sim.snapshot();
    let deployments = snapshot.deployments_of(agent.service_id.as_deref().unwrap());
    assert_eq!(deployments.len(), 2);
    assert_eq!(
        deployments[0].image.as_deref(),
        Some("ghcr.io/xmtplabs/convos-agent:sha-aaaaaaa")
    );
    assert_eq!(
        deployments[1].image.as_deref(),
        Some("ghcr.io/xmtplabs/convos-agent:sha-bbbbbbb")
    );
    assert_eq!(Some(&deployments[1].id), agent.deployment_id.as_ref());

    // Nothing more until it is back: then the next one.
    assert_eq!(new.redeploy_step().await.unwrap(), 0);
    pool.make_idle(&agent.id).await;
    assert_eq!(new.redeploy_step().await.unwrap(), 1);
    let progress = new.redeploy_progress().await.unwrap();
    assert_eq!((progress.in_progress, progress.waiting), (1, 2));
}
