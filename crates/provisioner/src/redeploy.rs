//! Redeploy: move idle agents to the currently selected image, a few at a time.
//!
//! New image pushes do not touch running agents. An operator asks for a redeploy (all idle
//! agents, or named ones); the agents are marked, and each step takes a batch of them out of
//! the pool (`idle → starting`, so no claim can take one mid-redeploy), points their service
//! at the current image and deploys it. The tick returns them to `idle` once healthy. A batch
//! is at most a share of the idle agents, and never the last idle one: the pool never empties.

use pool_store::{AgentId, AgentStatus};
use railway_api::InstanceSettings;
use serde::Serialize;

use crate::Provisioner;
use crate::error::Result;

/// Where a redeploy stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedeployProgress {
    /// Agents newly marked by this request.
    pub requested: u64,
    /// Idle agents still waiting for their turn.
    pub waiting: i64,
    /// Agents redeploying now (back to idle once healthy).
    pub in_progress: i64,
    /// The image they move to.
    pub image: String,
}

/// How many of `idle` agents may redeploy at once: a `fraction` of them, at least one, and
/// never the last idle agent.
pub fn redeploy_batch(idle: i64, fraction: f64) -> i64 {
    let share = (idle as f64 * fraction.clamp(0.0, 1.0)).floor() as i64;
    share.max(1).min(idle - 1).max(0)
}

impl Provisioner {
    /// Marks idle agents (all, or the named ones) for a redeploy, and starts the first batch.
    pub async fn request_redeploy(&self, ids: Option<&[AgentId]>) -> Result<RedeployProgress> {
        let requested = self.inner.store.request_redeploy(ids).await?;
        self.redeploy_step().await?;
        let mut progress = self.redeploy_progress().await?;
        progress.requested = requested;
        Ok(progress)
    }

    /// Where the redeploy stands.
    pub async fn redeploy_progress(&self) -> Result<RedeployProgress> {
        let (waiting, in_progress) = self.inner.store.redeploy_progress().await?;
        Ok(RedeployProgress {
            requested: 0,
            waiting,
            in_progress,
            image: self.inner.config.image.to_string(),
        })
    }

    /// Redeploys the next batch of marked idle agents. Returns how many were sent.
    pub async fn redeploy_step(&self) -> Result<usize> {
        let store = &self.inner.store;
        let counts = store.counts().await?;
        let (_, in_progress) = store.redeploy_progress().await?;
        let room = redeploy_batch(counts.idle, self.inner.config.redeploy_fraction) - in_progress;
        if room <= 0 {
            return Ok(0);
        }
        let image = self.inner.config.image.to_string();
        let mut sent = 0;
        for agent in store.redeploy_candidates(room).await? {
            let (Some(environment_id), Some(service_id)) = (&agent.environment_id, &agent.service_id) else {
                continue;
            };
            if !store.hold_for_redeploy(&agent.id).await?.applied() {
                continue; // claimed meanwhile
            }
            let railway = &self.inner.railway;
            let settings = InstanceSettings {
                image: Some(image.clone()),
                registry_credentials: self.inner.config.registry.clone(),
                ..InstanceSettings::default()
            };
            // A fresh deploy of the instance's source pulls the tag anew (a moving tag moves);
            // `deploymentRedeploy` would replay the old image.
            let deployed = match railway
                .update_service_instance(service_id, environment_id, &settings)
                .await
            {
                Ok(()) => railway.deploy_service(service_id, environment_id).await,
                Err(e) => Err(e),
            };
            match deployed {
                Ok(deployment_id) => {
                    store.record_redeployed(&agent.id, &deployment_id, &image).await?;
                    sent += 1;
                }
                Err(e) => {
                    // The agent still runs its old deployment: back to the pool, still marked,
                    // and a later step tries again.
                    store
                        .record_error(&agent.id, &format!("redeploy failed: {e}"))
                        .await?;
                    store
                        .transition(
                            &agent.id,
                            AgentStatus::Starting,
                            AgentStatus::Idle,
                            "redeploy failed; old image kept",
                        )
                        .await?;
                    tracing::warn!(agent = %agent.id, error = %e, "redeploy failed");
                }
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_never_takes_the_last_idle_agent() {
        assert_eq!(redeploy_batch(0, 0.25), 0);
        assert_eq!(redeploy_batch(1, 0.25), 0);
        assert_eq!(redeploy_batch(2, 0.25), 1);
        assert_eq!(redeploy_batch(8, 0.25), 2);
        assert_eq!(redeploy_batch(100, 0.25), 25);
        assert_eq!(redeploy_batch(4, 1.0), 3);
    }
}
