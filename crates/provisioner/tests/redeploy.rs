//! Redeploy: idle agents move to the current image a few at a time, never claimable mid-way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_store::AgentStatus;

#[tokio::test]
async fn redeploy_moves_idle_agents_to_the_new_image_a_batch_at_a_time() {
    let pool = TestPool::start(unthrottled()).await;
    let old = pool.provisioner(provisioner_config(&pool.sim, Some("sha-aaaaaaa")));
    let ids: Vec<_> = old
        .start_creations(pool_provisioner::CreationDemand::Exactly(4))
        .await
        .unwrap()
        .finished()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
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

/// A moving tag: `:staging` gets a new digest; a redeploy must pull it (only
/// `serviceInstanceDeploy(latestCommit: true)` does on the live API), and make exactly one new
/// deployment.
#[tokio::test]
async fn a_redeploy_of_a_moving_tag_pulls_its_newest_digest_once() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    let image = "ghcr.io/xmtplabs/convos-agent:staging";
    let old_digest = pool.sim.image_digest(image);
    let new_digest = pool.sim.push_image(image);
    let progress = pool.provisioner.request_redeploy(Some(&ids[..1])).await.unwrap();
    assert_eq!(progress.in_progress, 1);
    let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();
    let snapshot = pool.sim.snapshot();
    let deployments = snapshot.deployments_of(agent.service_id.as_deref().unwrap());
    assert_eq!(deployments.len(), 2, "exactly one new deployment");
    assert_eq!(deployments[0].image_digest.as_deref(), Some(old_digest.as_str()));
    assert_eq!(
        deployments[1].image_digest.as_deref(),
        Some(new_digest.as_str()),
        "the moved tag was pulled anew"
    );
    assert_eq!(agent.deployment_id.as_deref(), Some(deployments[1].id.as_str()));
}

#[tokio::test]
async fn only_idle_agents_of_this_pool_may_be_named_for_a_redeploy() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    pool.db
        .client()
        .await
        .execute(
            "UPDATE agent_metadata SET legacy = true WHERE id = $1",
            &[&ids[1].as_str()],
        )
        .await
        .unwrap();
    let refused = pool.provisioner.request_redeploy(Some(&ids)).await.unwrap_err();
    assert!(
        matches!(&refused, pool_provisioner::ProvisionError::Conflict { agent, .. } if *agent == ids[1]),
        "{refused:?}"
    );
    assert_eq!(
        pool.store.redeploy_progress().await.unwrap(),
        (0, 0),
        "nothing marked"
    );
}
