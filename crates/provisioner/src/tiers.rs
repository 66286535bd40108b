//! Parking and waking: the parked tier's two short sagas, journaled in the store
//! (`pool_store`'s `tiers.rs`) so that a crash between any two steps is resumed by the next
//! worker and no parked agent is lost or woken twice.
//!
//! - **Park** (`idle → parking → parked`): `deploymentRemove` on the agent's running
//!   deployment, what `railway down` sends (railwayapp/cli `src/commands/down.rs:59-100`). Its
//!   project, service, variables, volume and domain stay; it costs no compute.
//! - **Wake** (`parked → waking → starting`): one deploy of the image new agents get, pinned by
//!   digest (resolved at the registry, as rollouts do), so parked stock is upgraded by waking it.
//!   When the digest differs from the one the agent ran, `serviceInstanceUpdate` sets it and
//!   Railway deploys by itself (hogsend 1f2ba05f, see `railway-api`); otherwise
//!   `serviceInstanceDeployV2`. Never both: before any deploy the service's latest deployment is
//!   read, and one newer than the removed deployment is the wake's. A removed deployment is
//!   never redeployed: Railway refuses it (`canRedeploy`, railwayapp/cli
//!   `src/commands/redeploy.rs:65-69`). From `starting` the agent is judged as a new one: SUCCESS,
//!   then a healthy `/pool/health`.
//! - A wake Railway refuses for a reason that will not pass (the service is gone, the image
//!   cannot be deployed) is an event with the reason and a teardown; a passing failure puts the
//!   agent back in `parked`, and after `max_wake_failures` in a row (`POOL_MAX_WAKE_FAILURES`,
//!   default [`DEFAULT_MAX_WAKE_FAILURES`]) it is torn down (the
//!   pool replaces it).

use std::time::Duration;

use pool_store::{Agent, AgentId, AgentStatus, CreationStep, TierStep};
use railway_api::{DeploymentId, ErrorKind, InstanceSettings};

use crate::saga::Placement;
use crate::{ProvisionError, Provisioner, Result};

/// How long a park or wake holds its agent before another worker may resume it. Both only
/// make one or two Railway calls (the wait for SUCCESS is the tick's), so a minute is ample.
pub const TIER_LEASE: Duration = Duration::from_secs(60);

/// Passing wake failures in a row after which the agent is torn down and replaced, unless
/// configured otherwise (`ProvisionerConfig::max_wake_failures`, `POOL_MAX_WAKE_FAILURES`).
pub const DEFAULT_MAX_WAKE_FAILURES: u32 = 3;

/// The largest wake failure limit accepted: beyond it a parked agent whose wakes keep failing
/// would be retried for hours instead of replaced.
pub const MAX_MAX_WAKE_FAILURES: u32 = 100;

/// What a wake did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeOutcome {
    /// One deployment was started; the agent is `starting`.
    Deploying(DeploymentId),
    /// The agent was not parked (or another worker holds it): nothing was done.
    NotParked,
    /// A passing failure: back in `parked`, to be woken again.
    Retry {
        /// Failures in a row so far.
        failures: i32,
        /// Why.
        error: String,
    },
    /// Refused for good, or too many failures: the agent is being torn down.
    TornDown {
        /// Why.
        reason: String,
    },
}

impl Provisioner {
    /// Parks an idle agent: `deploymentRemove` of its deployment, journaled. `false`: it was not
    /// idle (a claim took it first, or it is legacy, quarantined or held for a redeploy).
    pub async fn park(&self, id: &AgentId) -> Result<bool> {
        if !self.inner.store.begin_park(id, TIER_LEASE).await?.applied() {
            return Ok(false);
        }
        self.run_park(id).await?;
        Ok(true)
    }

    /// Wakes a parked agent with one deploy (see the module). `reason` goes on its event.
    pub async fn wake(&self, id: &AgentId, reason: &str) -> Result<WakeOutcome> {
        if !self.begin_wake(id, reason).await? {
            return Ok(WakeOutcome::NotParked);
        }
        self.run_wake(id).await
    }

    /// A wake's first step (`parked → waking`, under a work lease); `false`: not parked.
    async fn begin_wake(&self, id: &AgentId, reason: &str) -> Result<bool> {
        Ok(self
            .inner
            .store
            .begin_wake(id, TIER_LEASE, reason)
            .await?
            .applied())
    }

    /// [`Self::park`] with its first step (`idle → parking`) taken now and the removal in a
    /// task the provisioner owns: what the tick calls, so its counts see the park at once.
    /// `false`: the agent was not idle.
    pub async fn start_park(&self, id: &AgentId) -> Result<bool> {
        if !self.inner.store.begin_park(id, TIER_LEASE).await?.applied() {
            return Ok(false);
        }
        let this = self.clone();
        let id = id.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.run_park(&id).await {
                tracing::warn!(agent = %id, error = %e, "parking failed; the tick resumes it when its lease runs out");
            }
        });
        Ok(true)
    }

    /// [`Self::wake`] with its first step (`parked → waking`) taken now and the deploy in a
    /// task the provisioner owns. `false`: the agent was not parked (another wake took it).
    pub async fn start_wake(&self, id: &AgentId, reason: &str) -> Result<bool> {
        if !self.begin_wake(id, reason).await? {
            return Ok(false);
        }
        let this = self.clone();
        let id = id.clone();
        self.inner.tasks.spawn(async move {
            match this.run_wake(&id).await {
                Ok(outcome) => tracing::debug!(agent = %id, ?outcome, "wake"),
                Err(e) => {
                    tracing::warn!(agent = %id, error = %e, "waking failed; the tick resumes it when its lease runs out");
                }
            }
        });
        Ok(true)
    }

    /// Wakes up to `count` parked agents of `shape`, parked longest first; how many were.
    pub async fn wake_parked(&self, shape: &str, count: usize, reason: &str) -> Result<usize> {
        if count == 0 {
            return Ok(0);
        }
        // A few spare candidates: another worker may wake some of them first.
        let (_, candidates) = self
            .inner
            .store
            .parked_oldest(shape, None, count.saturating_mul(2).saturating_add(2))
            .await?;
        let mut woken = 0;
        for id in candidates {
            if woken == count {
                break;
            }
            if self.start_wake(&id, reason).await? {
                woken += 1;
            }
        }
        Ok(woken)
    }

    /// A claim is waiting for an agent of `shape` and none was idle: when fewer agents are on
    /// their way to idle soon (`starting`, `waking`) than claims wait, one parked agent is
    /// woken for it. Creations in flight are not counted: a creation takes minutes, a wake one
    /// deploy. Failures are logged (the sizing pass the claim prompted wakes too).
    pub(crate) async fn wake_for_waiting_claim(&self, shape: &str) {
        let store = &self.inner.store;
        let counts = match store.counts_by_shape().await {
            Ok(mut counts) => counts.remove(shape).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "could not count agents for a waiting claim's wake");
                return;
            }
        };
        if counts.parked == 0 || counts.idle > 0 {
            return;
        }
        let waiting = match store.waiting_claims_of(shape).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not count waiting claims for a wake");
                return;
            }
        };
        if waiting <= counts.starting + counts.waking {
            return;
        }
        match self
            .wake_parked(shape, 1, "woken for a waiting claim (the warm tier is empty)")
            .await
        {
            Ok(1) => tracing::info!(shape, waiting, "woke a parked agent for a waiting claim"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not wake a parked agent for a waiting claim"),
        }
    }

    /// Resumes a park or wake whose worker is gone (its lease ran out): the reconciler calls
    /// this for agents left in `parking` or `waking`. `false`: nothing to resume.
    pub async fn resume_tier_motion(&self, id: &AgentId) -> Result<bool> {
        let Some(agent) = self.inner.store.agent(id).await? else {
            return Ok(false);
        };
        if !self
            .inner
            .store
            .resume_tier_motion(id, agent.status, TIER_LEASE)
            .await?
        {
            return Ok(false);
        }
        match agent.status {
            AgentStatus::Parking => self.run_park(id).await.map(|_| true),
            AgentStatus::Waking => self.run_wake(id).await.map(|_| true),
            _ => Ok(false),
        }
    }

    /// [`Self::resume_tier_motion`] in a task the provisioner owns.
    pub fn start_tier_recovery(&self, id: AgentId) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.resume_tier_motion(&id).await {
                tracing::warn!(agent = %id, error = %e, "resuming a park or wake failed; the next tick retries");
            }
        });
    }

    async fn run_park(&self, id: &AgentId) -> Result<()> {
        let store = &self.inner.store;
        let agent = self.load(id).await?;
        let at = Placement::of(&agent, CreationStep::Deploy)?;
        // The deployment to remove: the one Railway shows latest (the pool's own record may
        // lag a deploy Railway made by itself), else the one the pool started.
        let latest = self.latest_deployment(&at).await?;
        let Some(deployment) = latest.or_else(|| agent.deployment_id.as_deref().map(DeploymentId::new))
        else {
            return Err(ProvisionError::Config(format!(
                "agent {id}: no deployment to park"
            )));
        };
        if !store
            .note_tier_step(id, AgentStatus::Parking, TierStep::Remove)
            .await?
        {
            return Ok(());
        }
        // Removing a removed deployment changes nothing, so a resumed park simply asks again.
        self.inner.railway.remove_deployment(&deployment).await?;
        store.finish_park(id, deployment.as_str()).await?;
        tracing::info!(agent = %id, deployment = %deployment, "parked");
        Ok(())
    }

    async fn run_wake(&self, id: &AgentId) -> Result<WakeOutcome> {
        let agent = self.load(id).await?;
        match self.wake_deploy(&agent).await {
            Ok((deployment, image)) => {
                self.inner
                    .store
                    .finish_wake(id, deployment.as_str(), &image)
                    .await?;
                tracing::info!(agent = %id, deployment = %deployment, "woken");
                Ok(WakeOutcome::Deploying(deployment))
            }
            Err(e) => self.wake_failed(&agent, e).await,
        }
    }

    /// The wake's one deploy, looked up first when a deploy may already have been sent.
    async fn wake_deploy(&self, agent: &Agent) -> Result<(DeploymentId, String)> {
        let store = &self.inner.store;
        let railway = &self.inner.railway;
        let config = &self.inner.config;
        let at = Placement::of(agent, CreationStep::Deploy)?;
        let parked = agent.deployment_id.as_deref().map(DeploymentId::new);
        let latest = self.latest_deployment(&at).await?;
        // The image new agents of its shape get: parked stock is upgraded by waking it.
        let shape = config.shape(&agent.shape)?;
        let target = self.inner.registry.resolve(&shape.image.to_string()).await;
        if let Some(latest) = latest.filter(|l| Some(l) != parked.as_ref()) {
            // A deploy was sent before a crash (or Railway made one by itself): it is the
            // wake's, of the image the wake set (or the agent's own, which it kept).
            let image = target.ok().or_else(|| agent.image.clone()).unwrap_or_default();
            return Ok((latest, image));
        }
        let target = target?;
        if !store
            .note_tier_step(&agent.id, AgentStatus::Waking, TierStep::Deploy)
            .await?
        {
            return Err(ProvisionError::Config(format!(
                "agent {}: no longer waking",
                agent.id
            )));
        }
        if agent.image.as_deref() != Some(target.as_str()) {
            railway
                .update_service_instance(
                    &at.environment,
                    &at.service,
                    &InstanceSettings {
                        image: Some(target.clone()),
                        registry_credentials: config.registry.clone(),
                        start_command: shape.start_command.clone(),
                        ..InstanceSettings::default()
                    },
                )
                .await?;
            // The image change deploys by itself on the live API: look for it before deploying.
            let started = std::time::Instant::now();
            loop {
                if let Some(latest) = self.latest_deployment(&at).await?
                    && Some(&latest) != parked.as_ref()
                {
                    return Ok((latest, target));
                }
                if started.elapsed() >= config.self_deploy_grace {
                    break;
                }
                tokio::time::sleep(config.self_deploy_grace.min(Duration::from_millis(500))).await;
            }
        }
        Ok((
            railway.deploy_service(&at.environment, &at.service).await?,
            target,
        ))
    }

    /// A failed wake: torn down when it will not pass or has failed too often, else parked
    /// again to be retried.
    async fn wake_failed(&self, agent: &Agent, e: ProvisionError) -> Result<WakeOutcome> {
        let store = &self.inner.store;
        let lasting = match &e {
            ProvisionError::Railway(r) => {
                matches!(
                    r.kind(),
                    ErrorKind::NotFound | ErrorKind::Invalid | ErrorKind::Unauthorized
                )
            }
            ProvisionError::Config(_) => true,
            _ => false,
        };
        let error = e.to_string();
        if lasting {
            let reason = format!("wake refused for good: {error}");
            return self
                .tear_down_after_wake(agent, AgentStatus::Waking, reason)
                .await;
        }
        let Some(failures) = store.wake_failed(&agent.id, &error).await? else {
            return Ok(WakeOutcome::NotParked);
        };
        if i64::from(failures) >= i64::from(self.inner.config.max_wake_failures) {
            let reason = format!("{failures} wakes failed in a row, last: {error}");
            return self
                .tear_down_after_wake(agent, AgentStatus::Parked, reason)
                .await;
        }
        tracing::warn!(agent = %agent.id, failures, error = %error, "wake failed; it will be retried");
        Ok(WakeOutcome::Retry { failures, error })
    }

    async fn tear_down_after_wake(
        &self,
        agent: &Agent,
        from: AgentStatus,
        reason: String,
    ) -> Result<WakeOutcome> {
        tracing::warn!(agent = %agent.id, reason = %reason, "tearing a parked agent down");
        if self
            .inner
            .store
            .begin_teardown(&agent.id, from, &reason, false)
            .await?
            .applied()
        {
            self.start_teardown(agent.id.clone());
        }
        Ok(WakeOutcome::TornDown { reason })
    }
}
