//! Rollouts: a new image for every agent of a runtime — idle ones and claimed ones, in place —
//! one canary first, then `batch` at a time, each behind a health gate; a failure stops the
//! rollout and rolls the failed agents back to what they ran before.
//!
//! - **Once**: the tag is resolved to a digest at the start ([`crate::registry`]), so every
//!   agent gets the same bytes, however the tag moves meanwhile.
//! - **The gate**: an agent counts as upgraded once its new deployment is `SUCCESS`, its
//!   `/pool/health` says ready, and it stays so for `pauseMs` without a break. A dead deployment,
//!   or no health within `POOL_ROLLOUT_HEALTH_TIMEOUT_MS`, fails it.
//! - **Claimed agents** are redeployed in place ([`Provisioner::deploy_image`]: the service's
//!   image changes, one deployment; its volume, variables and domain stay, so its conversation
//!   does), at most `batch` at a time. An agent whose claim is in flight (`claiming`) waits for
//!   a later step. Idle agents are taken out of the pool first (`idle → starting`), so no claim
//!   can take one mid-upgrade; they return once through the gate.
//! - **Rows**: each agent's row moves `pending → upgrading → done` (or `rolling_back →
//!   rolled_back`), written before the Railway call, so a rollout resumes after a restart and
//!   upgrades no agent twice: an `upgrading` row without a deployment whose service has a new
//!   deployment since the rollout began adopts it instead of deploying again.
//! - The reconciler calls [`Provisioner::rollout_step`] once a tick and leaves the status of
//!   agents a rollout holds to it.

use chrono::Utc;
use pool_store::{
    Agent, AgentStatus, EventKind, NewRollout, Rollout, RolloutAgent, RolloutCounts, RolloutMember,
};
use railway_api::{DeploymentId, DeploymentStatus};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};
use crate::saga::Placement;

mod request;

pub use request::{
    MAX_ROLLOUT_BATCH, MAX_ROLLOUT_PAUSE_MS, RolloutIncludes, RolloutRequest, validate_rollout,
};

/// A rollout and where its agents stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    /// The rollout.
    #[serde(flatten)]
    pub rollout: Rollout,
    /// Its agents by state.
    pub agents: RolloutCounts,
}

/// The health pause of an agent's own upgrade: ten seconds ready before it counts.
pub const SELF_UPGRADE_PAUSE_MS: i64 = 10_000;

/// How an agent behind the gate looks now.
enum Gate {
    Healthy,
    NotYet,
    Dead(String),
}

impl Provisioner {
    /// Starts a rollout: validates it, resolves the image to a digest once, and writes the
    /// rollout and its agents (canary first). The first step runs at once.
    pub async fn start_rollout(&self, request: &RolloutRequest, actor: Option<&str>) -> Result<RolloutView> {
        self.start_rollout_of(request, actor, None).await
    }

    /// The agent's own `POST /api/pool/self-upgrade`: a rollout of that one agent to the image
    /// new agents get — resolved, deployed, gated and rolled back as every rollout is (it is
    /// its own canary; the health pause is [`SELF_UPGRADE_PAUSE_MS`]). A rollout of the runtime
    /// running already answers 409: it reaches this agent too.
    pub async fn self_upgrade(&self, agent: &Agent) -> Result<RolloutView> {
        let request = RolloutRequest {
            runtime: agent.shape.clone(),
            image: None,
            include: vec!["idle".into(), "claimed".into()],
            batch: 1,
            pause_ms: SELF_UPGRADE_PAUSE_MS,
        };
        let actor = format!("agent:{}", agent.id);
        self.start_rollout_of(&request, Some(&actor), Some(&agent.id))
            .await
    }

    async fn start_rollout_of(
        &self,
        request: &RolloutRequest,
        actor: Option<&str>,
        only: Option<&pool_store::AgentId>,
    ) -> Result<RolloutView> {
        // A rollout moves the agents of one shape (runtime) to an image of its repository.
        let shape = self.rollout_shape(&request.runtime)?;
        let includes = validate_rollout(request, &shape.name, &shape.image.repository)?;
        let store = &self.inner.store;
        if let Some(running) = store.running_rollout(&request.runtime).await? {
            return Err(ProvisionError::RolloutRunning(Box::new(running)));
        }
        let image = request.image.clone().unwrap_or_else(|| shape.image.to_string());
        let target = self.inner.registry.resolve(&image).await?;
        let mut agents: Vec<Agent> = store
            .live_agents()
            .await?
            .into_iter()
            .filter(|a| only.is_none_or(|id| *id == a.id))
            .filter(|a| a.shape == shape.name)
            .filter(|a| !a.legacy && a.service_id.is_some() && a.environment_id.is_some())
            .filter(|a| a.image.as_deref() != Some(target.as_str()))
            .filter(|a| match a.status {
                AgentStatus::Idle => includes.idle,
                AgentStatus::Claimed | AgentStatus::Claiming => includes.claimed,
                _ => false,
            })
            .collect();
        // The canary is an idle agent when there is one: no user waits on it.
        agents.sort_by_key(|a| (a.status != AgentStatus::Idle, a.created_at));
        let members: Vec<RolloutMember> = agents
            .iter()
            .map(|a| RolloutMember {
                agent: a.id.clone(),
                previous_image: a.image.clone(),
                previous_deployment_id: a.deployment_id.clone(),
            })
            .collect();
        let new = NewRollout {
            runtime: request.runtime.clone(),
            image,
            target,
            include_idle: includes.idle,
            include_claimed: includes.claimed,
            batch: request.batch as i32,
            pause_ms: request.pause_ms,
            actor: actor.map(str::to_string),
        };
        let rollout = match store.start_rollout(&new, &members).await? {
            Ok(rollout) => rollout,
            Err(running) => return Err(ProvisionError::RolloutRunning(Box::new(running))),
        };
        tracing::info!(rollout = rollout.id, target = %rollout.target, agents = members.len(), "rollout started");
        self.step_one(&rollout).await?;
        self.rollout_view(rollout.id).await
    }

    /// A rollout and its counts.
    pub async fn rollout_view(&self, id: i64) -> Result<RolloutView> {
        let store = &self.inner.store;
        let rollout = store
            .rollout(id)
            .await?
            .ok_or_else(|| ProvisionError::Config(format!("rollout {id} vanished")))?;
        let agents = store.rollout_counts(id).await?;
        Ok(RolloutView { rollout, agents })
    }

    /// The newest rollout, running or not.
    pub async fn latest_rollout(&self) -> Result<Option<RolloutView>> {
        match self.inner.store.latest_rollout().await? {
            Some(r) => Ok(Some(self.rollout_view(r.id).await?)),
            None => Ok(None),
        }
    }

    /// The shape a rollout request names, or a 400 naming `runtime`.
    fn rollout_shape(&self, runtime: &str) -> Result<&crate::Shape> {
        let shapes = &self.inner.config.shapes;
        shapes.get(runtime).ok_or_else(|| ProvisionError::InvalidRequest {
            field: "runtime",
            message: format!(
                "unknown runtime {:?}; this pool serves {}",
                runtime.chars().take(64).collect::<String>(),
                shapes.names().join(", ")
            ),
        })
    }

    /// Stops the running rollout of `runtime`: no agent starts its upgrade after this; those
    /// mid-upgrade finish under the reconciler's usual rules. `None`: none was running.
    pub async fn cancel_rollout(&self, runtime: &str, actor: &str) -> Result<Option<RolloutView>> {
        // An unknown runtime is the caller's mistake (400), never a query: PostgreSQL refuses
        // text with a NUL in it, which fuzzing found as a 500.
        self.rollout_shape(runtime)?;
        let store = &self.inner.store;
        let Some(running) = store.running_rollout(runtime).await? else {
            return Ok(None);
        };
        store.finish_rollout(running.id, "cancelled", None, actor).await?;
        Ok(Some(self.rollout_view(running.id).await?))
    }

    /// Advances every running rollout by one step (the reconciler calls it once a tick).
    pub async fn rollout_step(&self) -> Result<()> {
        for rollout in self.inner.store.running_rollouts().await? {
            self.step_one(&rollout).await?;
        }
        Ok(())
    }

    async fn step_one(&self, rollout: &Rollout) -> Result<()> {
        let store = &self.inner.store;
        let rows = store.rollout_agents(rollout.id).await?;
        let pause = chrono::Duration::milliseconds(rollout.pause_ms);
        let timeout = chrono::Duration::from_std(self.inner.config.rollout_health_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let mut failed: Vec<(RolloutAgent, Agent, String)> = Vec::new();
        let mut active = 0usize;
        for row in rows
            .iter()
            .filter(|r| r.state == "upgrading" || r.state == "rolling_back")
        {
            let Some(agent) = self.live_member(rollout, row).await? else {
                continue;
            };
            if row.deployment_id.is_none() {
                // Written as upgrading, then the process died before the deploy was recorded.
                self.send_upgrade(rollout, row, &agent).await?;
                active += 1;
                continue;
            }
            let gate = self.gate(&agent).await;
            let rolling_back = row.state == "rolling_back";
            match gate {
                Gate::Healthy => {
                    let since = store
                        .record_rollout_health(rollout.id, &row.agent_id, true)
                        .await?;
                    if rolling_back || since.is_some_and(|s| now - s >= pause) {
                        let to = if rolling_back { "rolled_back" } else { "done" };
                        store
                            .move_rollout_agent(rollout.id, &row.agent_id, &row.state, to, None, None)
                            .await?;
                        self.release_to_pool(&agent).await?;
                        continue;
                    }
                }
                Gate::NotYet => {
                    store
                        .record_rollout_health(rollout.id, &row.agent_id, false)
                        .await?;
                    let late = row.deployed_at.is_some_and(|at| now - at >= timeout);
                    if late && rolling_back {
                        store
                            .move_rollout_agent(
                                rollout.id,
                                &row.agent_id,
                                "rolling_back",
                                "rolled_back",
                                None,
                                Some("not healthy after the rollback; left to the reconciler"),
                            )
                            .await?;
                        continue;
                    }
                    if late {
                        failed.push((
                            row.clone(),
                            agent,
                            format!("not healthy within {} s", timeout.num_seconds()),
                        ));
                        continue;
                    }
                }
                Gate::Dead(why) if !rolling_back => {
                    failed.push((row.clone(), agent, why));
                    continue;
                }
                Gate::Dead(why) => {
                    store
                        .move_rollout_agent(
                            rollout.id,
                            &row.agent_id,
                            "rolling_back",
                            "rolled_back",
                            None,
                            Some(&format!("the rollback's deployment died too: {why}")),
                        )
                        .await?;
                    continue;
                }
            }
            active += 1;
        }
        if !failed.is_empty() {
            let names: Vec<String> = failed
                .iter()
                .map(|(r, _, why)| format!("{} ({why})", r.agent_id))
                .collect();
            let position = if failed.iter().any(|(r, _, _)| r.position == 0) {
                "the canary"
            } else {
                "a batch"
            };
            let failure = format!(
                "{position} failed its health gate on {}: {}; rolled back to the previous image",
                rollout.target,
                names.join(", ")
            );
            tracing::warn!(rollout = rollout.id, %failure, "rollout failed");
            store.set_rollout_failure(rollout.id, &failure).await?;
            for (row, agent, why) in failed {
                self.roll_back(rollout, &row, &agent, &why).await?;
            }
            return Ok(());
        }
        if let Some(failure) = &rollout.failure {
            // Stopped: once the rollbacks are through, the rollout ends.
            if active == 0 {
                store
                    .finish_rollout(rollout.id, "failed", Some(failure), "pool")
                    .await?;
            }
            return Ok(());
        }
        let canary_done = rows
            .iter()
            .find(|r| r.position == 0)
            .is_none_or(|r| matches!(r.state.as_str(), "done" | "skipped"));
        let room = if canary_done { rollout.batch as usize } else { 1 };
        let mut room = room.saturating_sub(active);
        let mut pending = 0;
        for row in rows.iter().filter(|r| r.state == "pending") {
            pending += 1;
            if room == 0 || (!canary_done && row.position != 0) {
                continue;
            }
            if self.begin_upgrade(rollout, row).await? {
                room -= 1;
            }
        }
        let rows = store.rollout_agents(rollout.id).await?;
        if pending == 0
            && active == 0
            && rows
                .iter()
                .all(|r| matches!(r.state.as_str(), "done" | "skipped"))
        {
            store
                .finish_rollout(rollout.id, "succeeded", None, "pool")
                .await?;
            tracing::info!(rollout = rollout.id, "rollout succeeded");
        }
        Ok(())
    }

    /// The agent of a rollout's row, unless it is gone (then its row is `skipped`).
    async fn live_member(&self, rollout: &Rollout, row: &RolloutAgent) -> Result<Option<Agent>> {
        let store = &self.inner.store;
        let agent = store
            .agent(&row.agent_id)
            .await?
            .filter(|a| a.status != AgentStatus::Deleted && a.status != AgentStatus::Deleting);
        if agent.is_none() {
            store
                .move_rollout_agent(
                    rollout.id,
                    &row.agent_id,
                    &row.state,
                    "skipped",
                    None,
                    Some("agent gone"),
                )
                .await?;
        }
        Ok(agent)
    }

    /// Starts one pending agent's upgrade, if it may start now. `true` when it did.
    async fn begin_upgrade(&self, rollout: &Rollout, row: &RolloutAgent) -> Result<bool> {
        let store = &self.inner.store;
        let Some(agent) = self.live_member(rollout, row).await? else {
            return Ok(false);
        };
        match agent.status {
            AgentStatus::Idle if rollout.include_idle => {
                // Out of the pool first, so no claim takes it mid-upgrade.
                if !store.hold_for_redeploy(&agent.id).await?.applied() {
                    return Ok(false); // claimed meanwhile: a later step sees it again
                }
            }
            AgentStatus::Claimed if rollout.include_claimed => {}
            // A claim on it is in flight, or it is coming up: a later step.
            AgentStatus::Claiming | AgentStatus::Starting => return Ok(false),
            _ => {
                store
                    .move_rollout_agent(
                        rollout.id,
                        &row.agent_id,
                        "pending",
                        "skipped",
                        None,
                        Some(&format!(
                            "{} agents are not in this rollout",
                            agent.status.as_str()
                        )),
                    )
                    .await?;
                return Ok(false);
            }
        }
        // The row says upgrading before Railway hears of it: a restart resumes, never repeats.
        if !store
            .move_rollout_agent(rollout.id, &row.agent_id, "pending", "upgrading", None, None)
            .await?
        {
            return Ok(false);
        }
        self.send_upgrade(rollout, row, &agent).await?;
        Ok(true)
    }

    /// Deploys the rollout's digest to an agent whose row is `upgrading` — or adopts the
    /// deployment a previous process sent before it died.
    async fn send_upgrade(&self, rollout: &Rollout, row: &RolloutAgent, agent: &Agent) -> Result<()> {
        let store = &self.inner.store;
        let at = Placement::of(agent, pool_store::CreationStep::Instance)?;
        let latest = self.latest_deployment(&at).await?;
        // A deployment newer than the one the agent ran when the rollout began is this
        // rollout's (sent by a process that died before recording it): adopted, not repeated.
        let deployment = match latest {
            Some(latest) if row.previous_deployment_id.as_deref() != Some(latest.as_str()) => latest,
            _ => self.deploy_image(agent, &rollout.target).await?,
        };
        store
            .record_redeployed(&agent.id, deployment.as_str(), &rollout.target)
            .await?;
        store
            .move_rollout_agent(
                rollout.id,
                &row.agent_id,
                "upgrading",
                "upgrading",
                Some(deployment.as_str()),
                None,
            )
            .await?;
        Ok(())
    }

    /// Sends a failed agent back to what it ran before.
    async fn roll_back(&self, rollout: &Rollout, row: &RolloutAgent, agent: &Agent, why: &str) -> Result<()> {
        let store = &self.inner.store;
        let deployment = match (&row.previous_image, &row.previous_deployment_id) {
            // Pinned to a digest: exactly those bytes again.
            (Some(previous), _) if previous.contains('@') => Some(self.deploy_image(agent, previous).await?),
            // A tag, which may have moved since: the previous deployment again, as it was
            // ("redeploys the existing build/image as-is").
            (Some(_), Some(previous)) => Some(
                self.inner
                    .railway
                    .redeploy(&DeploymentId::new(previous.as_str()), false)
                    .await?
                    .id,
            ),
            (Some(previous), None) => Some(self.deploy_image(agent, previous).await?),
            (None, _) => None,
        };
        let note = format!(
            "rollout {}: {why} on {}; rolled back to {}",
            rollout.id,
            rollout.target,
            row.previous_image
                .as_deref()
                .unwrap_or("(unknown image: left as it is)")
        );
        store.append_event(&agent.id, EventKind::Note, &note).await?;
        if let (Some(deployment), Some(previous)) = (&deployment, &row.previous_image) {
            store
                .record_redeployed(&agent.id, deployment.as_str(), previous)
                .await?;
        }
        store
            .move_rollout_agent(
                rollout.id,
                &row.agent_id,
                "upgrading",
                "rolling_back",
                deployment.as_ref().map(DeploymentId::as_str),
                Some(why),
            )
            .await?;
        Ok(())
    }

    /// An idle agent a rollout held returns to the pool.
    async fn release_to_pool(&self, agent: &Agent) -> Result<()> {
        let store = &self.inner.store;
        let current = store.agent(&agent.id).await?;
        if current.is_some_and(|a| a.status == AgentStatus::Starting)
            && store
                .transition(
                    &agent.id,
                    AgentStatus::Starting,
                    AgentStatus::Idle,
                    "healthy on the rollout's image",
                )
                .await?
                .applied()
        {
            store.notify(pool_store::PoolSignal::AgentIdle).await?;
        }
        Ok(())
    }

    /// The gate's look at one agent: its deployment on Railway, then its health.
    async fn gate(&self, agent: &Agent) -> Gate {
        let Ok(at) = Placement::of(agent, pool_store::CreationStep::Instance) else {
            return Gate::Dead("no service".into());
        };
        let status = match self.inner.railway.project_status(&at.project).await {
            Ok(status) => status,
            Err(_) => return Gate::NotYet, // Railway unread: no verdict
        };
        let latest = status
            .services
            .into_iter()
            .find(|s| s.service_id == at.service && s.environment_id == at.environment)
            .and_then(|s| s.latest_deployment);
        match latest.map(|d| d.status) {
            Some(
                s @ (DeploymentStatus::Failed
                | DeploymentStatus::Crashed
                | DeploymentStatus::Removed
                | DeploymentStatus::Skipped),
            ) => return Gate::Dead(format!("deployment {s:?}")),
            Some(DeploymentStatus::Success) => {}
            _ => return Gate::NotYet,
        }
        let (Some(url), Some(secrets)) = (self.agent_url(agent), agent.secrets.as_ref()) else {
            return Gate::NotYet;
        };
        let token = secrets.agent_api_token.expose_secret().to_string();
        if self.inner.agents.health(&url, &token).await.is_ready() {
            Gate::Healthy
        } else {
            Gate::NotYet
        }
    }
}
