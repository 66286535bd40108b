//! The creation saga: one Railway project per agent, deployed exactly once.
//!
//! Order: external resources (OpenRouter key, AgentMail inbox) → project → environment →
//! service (no source, with registry credentials) → variables (skipDeploys) → limits → `/data`
//! volume → domain → image source, sleep off, restart policy → one deploy.
//!
//! The row exists before the first remote call, and each step's remote id is journaled the
//! moment it exists. A step whose outcome is unknown (a timeout, a crash between the remote
//! call and the journal) is *uncertain*: before doing it again, the saga looks the resource up
//! by name and adopts it, so nothing is created twice and nothing is lost. A step that fails
//! outright ends the saga; the caller compensates (tears down what exists).

use std::collections::BTreeMap;

use pool_store::{Agent, AgentId, AgentStatus, CreationStep};
use railway_api::{Delivery, InstanceSettings, NewProject, NewService, RailwayError, RestartPolicyType};
use secrecy::ExposeSecret;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};

/// The saga's failure: which step, and why.
#[derive(Debug)]
pub(crate) struct StepFailure {
    pub step: CreationStep,
    pub error: ProvisionError,
}

/// Port the agent's server listens on.
const AGENT_PORT: i32 = 8080;

impl Provisioner {
    /// Whether a step applies to this pool (resources are optional).
    pub(crate) fn step_applies(&self, step: CreationStep) -> bool {
        match step {
            CreationStep::OpenRouterKey => self.inner.openrouter.is_some(),
            CreationStep::AgentMailInbox => self.inner.agentmail.is_some(),
            _ => true,
        }
    }

    /// The first step not yet journaled (the one whose outcome a crash left unknown).
    pub(crate) fn first_open_step(&self, agent: &Agent) -> Option<CreationStep> {
        CreationStep::ALL
            .into_iter()
            .find(|s| self.step_applies(*s) && !agent.has_completed(*s))
    }

    /// Runs the remaining steps of an agent's creation. `uncertain`: a step whose outcome is
    /// unknown (look it up before doing it). Ends with the agent in `starting`.
    pub(crate) async fn run_saga(
        &self,
        id: &AgentId,
        mut uncertain: Option<CreationStep>,
    ) -> Result<(), StepFailure> {
        for step in CreationStep::ALL {
            if !self.step_applies(step) {
                continue;
            }
            let agent = self.load(id).await.map_err(|error| StepFailure { step, error })?;
            if agent.status != AgentStatus::Creating {
                return Err(StepFailure {
                    step,
                    error: ProvisionError::Conflict {
                        agent: id.clone(),
                        status: agent.status,
                        message: "creation stopped: the agent left `creating`".into(),
                    },
                });
            }
            if agent.has_completed(step) {
                continue;
            }
            let mut result = self.step(&agent, step, uncertain == Some(step)).await;
            // An answer that may have applied: look it up and try once more.
            if let Err(ProvisionError::Railway(e)) = &result
                && e.delivery() == Delivery::MayHaveApplied
            {
                tracing::info!(agent = %id, %step, error = %e, "step outcome unknown; looking it up and retrying");
                result = self.step(&agent, step, true).await;
            }
            result.map_err(|error| StepFailure { step, error })?;
            uncertain = None;
            self.inner
                .store
                .renew_work_lease(id, self.inner.config.work_lease)
                .await
                .map_err(|e| StepFailure {
                    step,
                    error: e.into(),
                })?;
        }
        let moved = self
            .inner
            .store
            .transition(id, AgentStatus::Creating, AgentStatus::Starting, "deployed")
            .await
            .map_err(|e| StepFailure {
                step: CreationStep::Deploy,
                error: e.into(),
            })?;
        if !moved.applied() {
            tracing::warn!(agent = %id, ?moved, "agent left `creating` while its deploy finished");
        }
        self.inner.store.release_work_lease(id).await.ok();
        Ok(())
    }

    /// Calls the test hook after a step's remote call (tests drop the saga there).
    async fn after_remote_call(&self, step: CreationStep) {
        if let Some(hook) = &self.inner.step_hook {
            hook(step).await;
        }
    }

    async fn step(&self, agent: &Agent, step: CreationStep, uncertain: bool) -> Result<()> {
        let store = &self.inner.store;
        let railway = &self.inner.railway;
        let name = self.inner.naming.name(&agent.id);
        let missing = |what: &str| ProvisionError::Step {
            step,
            message: format!("no {what} recorded before this step"),
        };
        match step {
            CreationStep::OpenRouterKey => {
                let Some(openrouter) = &self.inner.openrouter else {
                    return Ok(());
                };
                if uncertain {
                    // The secret of a key made before a crash cannot be read back: delete it
                    // and make a new one.
                    for (hash, key_name) in openrouter.list_keys().await? {
                        if key_name == name {
                            openrouter.delete_key(&hash).await?;
                        }
                    }
                }
                let key = openrouter.create_key(&name).await?;
                self.after_remote_call(step).await;
                store
                    .record_openrouter_key(&agent.id, &key.hash, &key.key)
                    .await?;
            }
            CreationStep::AgentMailInbox => {
                let Some(agentmail) = &self.inner.agentmail else {
                    return Ok(());
                };
                // `client_id` makes this idempotent: a repeat returns the same inbox.
                let inbox = agentmail.create_inbox(&name, &name, agent.id.as_str()).await?;
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, Some(&inbox)).await?;
            }
            CreationStep::Project => {
                let found = if uncertain {
                    self.find_project(&name).await?
                } else {
                    None
                };
                let (project_id, environments) = match found {
                    Some(project_id) => (project_id, None),
                    None => {
                        let project = self.create_project_when_allowed(agent, &name).await?;
                        (project.id, Some(project.environments))
                    }
                };
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, Some(&project_id)).await?;
                // The project came with its environment: no request needed for the next step.
                let wanted = &self.inner.config.environment_name;
                if let Some(env) = environments.into_iter().flatten().find(|e| &e.name == wanted) {
                    store
                        .record_step(&agent.id, CreationStep::Environment, Some(&env.id))
                        .await?;
                }
            }
            CreationStep::Environment => {
                let project_id = agent.project_id.as_deref().ok_or_else(|| missing("project"))?;
                let wanted = &self.inner.config.environment_name;
                let existing = railway.project_environments(project_id).await?;
                let env = match existing.into_iter().find(|e| &e.name == wanted) {
                    Some(env) => env,
                    None => railway.create_environment(project_id, wanted).await?,
                };
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, Some(&env.id)).await?;
            }
            CreationStep::Service => {
                let project_id = agent.project_id.as_deref().ok_or_else(|| missing("project"))?;
                let environment_id = agent
                    .environment_id
                    .as_deref()
                    .ok_or_else(|| missing("environment"))?;
                let found = if uncertain {
                    railway
                        .project_status(project_id)
                        .await?
                        .services
                        .into_iter()
                        .find(|s| s.service_name == name)
                        .map(|s| s.service_id)
                } else {
                    None
                };
                let service_id = match found {
                    Some(id) => id,
                    None => {
                        railway
                            .create_service(&NewService {
                                project_id: project_id.into(),
                                environment_id: environment_id.into(),
                                name: name.clone(),
                                registry_credentials: self.inner.config.registry.clone(),
                            })
                            .await?
                            .id
                    }
                };
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, Some(&service_id)).await?;
            }
            CreationStep::Variables => {
                let (project_id, environment_id, service_id) = self.placement(agent, step)?;
                let variables = self.agent_variables(agent);
                railway
                    .upsert_variables(project_id, environment_id, service_id, &variables, true)
                    .await?;
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, None).await?;
            }
            CreationStep::Limits => {
                let (_, environment_id, service_id) = self.placement(agent, step)?;
                let config = &self.inner.config;
                if config.vcpus.is_some() || config.memory_gb.is_some() {
                    railway
                        .update_limits(environment_id, service_id, config.vcpus, config.memory_gb)
                        .await?;
                    self.after_remote_call(step).await;
                }
                store.record_step(&agent.id, step, None).await?;
            }
            CreationStep::Volume => {
                let (project_id, environment_id, service_id) = self.placement(agent, step)?;
                let find = || async {
                    Ok::<_, RailwayError>(railway.project_volumes(project_id).await?.into_iter().find(|v| {
                        v.mounts
                            .iter()
                            .any(|m| m.service_id.as_deref() == Some(service_id) && m.mount_path == "/data")
                    }))
                };
                let found = if uncertain { find().await? } else { None };
                let volume_id = match found {
                    Some(v) => v.id,
                    None => match railway
                        .create_volume(project_id, environment_id, service_id, "/data")
                        .await
                    {
                        Ok(v) => v.id,
                        // "A service can only have one volume": an earlier attempt made it.
                        Err(e) if e.delivery() == Delivery::Refused => match find().await? {
                            Some(v) => v.id,
                            None => return Err(e.into()),
                        },
                        Err(e) => return Err(e.into()),
                    },
                };
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, Some(&volume_id)).await?;
            }
            CreationStep::Domain => {
                let (project_id, environment_id, service_id) = self.placement(agent, step)?;
                let found = if uncertain {
                    railway
                        .service_domains(project_id, environment_id, service_id)
                        .await?
                        .into_iter()
                        .next()
                } else {
                    None
                };
                let domain = match found {
                    Some(d) => d,
                    None => {
                        railway
                            .create_service_domain(environment_id, service_id, Some(AGENT_PORT))
                            .await?
                    }
                };
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, Some(&domain.domain)).await?;
            }
            CreationStep::Instance => {
                let (_, environment_id, service_id) = self.placement(agent, step)?;
                let image = agent
                    .image
                    .clone()
                    .unwrap_or_else(|| self.inner.config.image.to_string());
                railway
                    .update_service_instance(
                        service_id,
                        environment_id,
                        &InstanceSettings {
                            image: Some(image),
                            registry_credentials: self.inner.config.registry.clone(),
                            sleep_application: Some(false),
                            restart_policy: Some((RestartPolicyType::OnFailure, 10)),
                            healthcheck_path: None,
                            num_replicas: Some(1),
                        },
                    )
                    .await?;
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, None).await?;
            }
            CreationStep::Deploy => {
                let (project_id, environment_id, service_id) = self.placement(agent, step)?;
                let found = if uncertain {
                    railway
                        .project_status(project_id)
                        .await?
                        .services
                        .into_iter()
                        .find(|s| s.service_id == service_id)
                        .and_then(|s| s.latest_deployment)
                        .map(|d| d.id)
                } else {
                    None
                };
                let deployment_id = match found {
                    Some(id) => id,
                    None => railway.deploy_service(service_id, environment_id).await?,
                };
                self.after_remote_call(step).await;
                store.record_step(&agent.id, step, Some(&deployment_id)).await?;
            }
        }
        Ok(())
    }

    /// `projectCreate`, waiting out per-token throttles (every token resting) rather than
    /// failing: the agent's key and inbox already exist, and a failure would only delete them
    /// to make them again. Waits at most a few times, renewing the work lease.
    async fn create_project_when_allowed(
        &self,
        agent: &Agent,
        name: &str,
    ) -> Result<railway_api::CreatedProject> {
        let project = NewProject {
            name: name.to_string(),
            description: self.inner.naming.project_description(&agent.id),
            workspace_id: self.inner.config.workspace_id.clone(),
            default_environment_name: Some(self.inner.config.environment_name.clone()),
        };
        let mut waits = 0;
        loop {
            match self.inner.railway.create_project(&project).await {
                Err(RailwayError::Throttled { retry_after, .. }) if waits < 4 => {
                    waits += 1;
                    let wait = retry_after.clamp(
                        std::time::Duration::from_millis(100),
                        std::time::Duration::from_secs(60),
                    );
                    tracing::info!(agent = %agent.id, ?wait, "every token rests after a projectCreate throttle; waiting");
                    tokio::time::sleep(wait).await;
                    self.inner
                        .store
                        .renew_work_lease(&agent.id, self.inner.config.work_lease)
                        .await?;
                }
                other => return Ok(other?),
            }
        }
    }

    fn placement<'a>(&self, agent: &'a Agent, step: CreationStep) -> Result<(&'a str, &'a str, &'a str)> {
        match (&agent.project_id, &agent.environment_id, &agent.service_id) {
            (Some(p), Some(e), Some(s)) => Ok((p, e, s)),
            _ => Err(ProvisionError::Step {
                step,
                message: "project, environment and service must be recorded before this step".into(),
            }),
        }
    }

    /// A project of this pool with this name in the workspace (creation outcome unknown).
    pub(crate) async fn find_project(&self, name: &str) -> Result<Option<String>> {
        let projects = self
            .inner
            .railway
            .workspace_projects(&self.inner.config.workspace_id)
            .await?;
        Ok(projects
            .into_iter()
            .find(|p| p.name == name && self.inner.naming.is_marked(p.description.as_deref()))
            .map(|p| p.id))
    }

    /// Every variable the agent gets. Its own secrets; never the pool's admin key.
    fn agent_variables(&self, agent: &Agent) -> BTreeMap<String, String> {
        let config = &self.inner.config;
        let vars = &config.agent_variables;
        let mut out = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            out.insert(k.to_string(), v.to_string());
        };
        set("INSTANCE_ID", agent.id.as_str());
        set("PORT", "8080");
        set("OPENCLAW_STATE_DIR", "/data");
        set("CHROMIUM_PATH", "/usr/bin/chromium");
        set("XMTP_ENV", &vars.xmtp_env);
        if let Some(model) = &vars.primary_model {
            set("OPENCLAW_PRIMARY_MODEL", model);
        }
        if let Some(url) = &vars.pool_url {
            set("POOL_URL", url);
        }
        if let Some(secrets) = &agent.secrets {
            set("POOL_API_KEY", secrets.agent_api_token.expose_secret());
            set("OPENCLAW_GATEWAY_TOKEN", secrets.gateway_token.expose_secret());
            set("SETUP_PASSWORD", secrets.setup_password.expose_secret());
            set("PRIVATE_WALLET_KEY", secrets.wallet_private_key.expose_secret());
        }
        if let Some(key) = &agent.openrouter_api_key {
            set("OPENROUTER_API_KEY", key.expose_secret());
        }
        if let (Some(inbox), Some(agentmail)) = (&agent.agentmail_inbox_id, &self.inner.agentmail) {
            set("AGENTMAIL_INBOX_ID", inbox);
            set("AGENTMAIL_API_KEY", agentmail.api_key().expose_secret());
        }
        for (name, value) in &vars.pass_through {
            set(name, value.expose_secret());
        }
        out
    }
}
