//! Redeploy: move idle agents to the currently selected image, a few at a time.
//!
//! New image pushes do not touch running agents. An operator asks for a redeploy (all idle
//! agents, or named ones); the agents are marked, and each step takes a batch of them out of
//! the pool (`idle → starting`, so no claim can take one mid-redeploy), points their service
//! at the current image and deploys it. The tick returns them to `idle` once healthy. A batch
//! is at most a share of the idle agents, and never the last idle one: the pool never empties.
//!
//! A moving tag (`:staging`) is pulled anew only by `serviceInstanceDeploy(latestCommit:
//! true)` — what Railway's own CLI calls to "pull … latest image" (railwayapp/cli PR #865);
//! `deploymentRedeploy` "redeploys the existing build/image as-is". Pinning `sha-<commit>`
//! tags avoids the question altogether.

use std::time::Duration;

use pool_store::{Agent, AgentId, AgentStatus, CreationStep};
use railway_api::{DeploymentId, InstanceSettings};
use serde::Serialize;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};
use crate::saga::Placement;

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
    /// Named agents must all be redeployable ([`Agent::is_redeployable`]: idle and not legacy);
    /// otherwise nothing is marked and the first offender is named.
    pub async fn request_redeploy(&self, ids: Option<&[AgentId]>) -> Result<RedeployProgress> {
        if let Some(ids) = ids {
            let found = self.inner.store.agents_by_ids(ids).await?;
            for id in ids {
                match found.iter().find(|a| &a.id == id) {
                    None => return Err(ProvisionError::NotFound(id.clone())),
                    Some(a) if a.status == AgentStatus::Deleted => {
                        return Err(ProvisionError::NotFound(id.clone()));
                    }
                    Some(a) if !a.is_redeployable() => {
                        return Err(ProvisionError::Conflict {
                            agent: id.clone(),
                            status: a.status,
                            message: if a.legacy {
                                "legacy agents live in the shared project and are not redeployed".into()
                            } else {
                                "only idle agents are redeployed".into()
                            },
                        });
                    }
                    Some(_) => {}
                }
            }
        }
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
            image: self.inner.config.default_shape().image.to_string(),
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
        let mut sent = 0;
        for agent in store.redeploy_candidates(room).await? {
            if agent.environment_id.is_none() || agent.service_id.is_none() {
                continue;
            }
            // Each agent gets its own shape's image.
            let Ok(shape) = self.inner.config.shape(&agent.shape) else {
                continue;
            };
            let image = shape.image.to_string();
            if !store.hold_for_redeploy(&agent.id).await?.applied() {
                continue; // claimed meanwhile
            }
            match self.deploy_image(&agent, &image).await {
                Ok(deployment_id) => {
                    store
                        .record_redeployed(&agent.id, deployment_id.as_str(), &image)
                        .await?;
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

    /// Points the agent's service at `image` and makes exactly one new deployment of it that
    /// pulls the tag anew. Changing the image reference deploys by itself on the live API;
    /// otherwise (a moving tag) `serviceInstanceDeploy(latestCommit: true)` does. The one
    /// mechanism of redeploys, rollouts and their rollbacks.
    pub(crate) async fn deploy_image(&self, agent: &Agent, image: &str) -> Result<DeploymentId> {
        let at = Placement::of(agent, CreationStep::Instance)?;
        let railway = &self.inner.railway;
        let config = &self.inner.config;
        let before = agent.deployment_id.as_deref().map(DeploymentId::new);
        railway
            .update_service_instance(
                &at.environment,
                &at.service,
                &InstanceSettings {
                    image: Some(image.to_string()),
                    registry_credentials: config.registry.clone(),
                    start_command: config.shape(&agent.shape)?.start_command.clone(),
                    ..InstanceSettings::default()
                },
            )
            .await?;
        let changed_reference = agent.image.as_deref() != Some(image);
        if changed_reference {
            let started = std::time::Instant::now();
            loop {
                let latest = self.latest_deployment(&at).await?;
                if let Some(latest) = latest
                    && Some(&latest) != before.as_ref()
                {
                    return Ok(latest);
                }
                if started.elapsed() >= config.self_deploy_grace {
                    break;
                }
                tokio::time::sleep(config.self_deploy_grace.min(Duration::from_secs(1))).await;
            }
        }
        railway.deploy_latest_source(&at.environment, &at.service).await?;
        match self.latest_deployment(&at).await? {
            Some(latest) if Some(&latest) != before.as_ref() => Ok(latest),
            _ => Err(ProvisionError::Config(format!(
                "agent {}: Railway accepted the deploy but shows no new deployment",
                agent.id
            ))),
        }
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
