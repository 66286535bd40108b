//! One function per creation step: look up what an uncertain attempt may have made, make what
//! is missing, journal it.

use std::collections::BTreeMap;
use std::time::Duration;

use pool_store::{Agent, CreationStep};
use railway_api::{
    EnvironmentId, ErrorKind, InstanceSettings, NewProject, NewService, ProjectId, RestartPolicyType,
    ServiceId,
};
use secrecy::ExposeSecret;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};

/// Port the agent's pool server listens on.
const AGENT_PORT: i32 = 8080;

/// Where an agent's service lives, once the saga has made it.
pub(crate) struct Placement {
    pub project: ProjectId,
    pub environment: EnvironmentId,
    pub service: ServiceId,
}

impl Placement {
    pub(crate) fn of(agent: &Agent, step: CreationStep) -> Result<Self> {
        match (&agent.project_id, &agent.environment_id, &agent.service_id) {
            (Some(p), Some(e), Some(s)) => Ok(Self {
                project: ProjectId::new(p.as_str()),
                environment: EnvironmentId::new(e.as_str()),
                service: ServiceId::new(s.as_str()),
            }),
            _ => Err(ProvisionError::Config(format!(
                "step {step}: project, environment and service must be recorded before it"
            ))),
        }
    }
}

fn recorded_project(agent: &Agent) -> Result<ProjectId> {
    agent
        .project_id
        .as_deref()
        .map(ProjectId::new)
        .ok_or_else(|| ProvisionError::Config("no project recorded before this step".into()))
}

impl Provisioner {
    pub(super) async fn project_step(&self, agent: &Agent, uncertain: bool) -> Result<()> {
        let store = &self.inner.store;
        let name = self.inner.naming.name(&agent.id);
        let found = if uncertain {
            self.find_project(&name).await?
        } else {
            None
        };
        let (project_id, environments) = match found {
            Some(project_id) => (project_id, None),
            None => {
                let project = self
                    .inner
                    .railway
                    .create_project(&NewProject {
                        name: name.clone(),
                        description: self.inner.naming.project_description(&agent.id),
                        workspace_id: self.inner.config.workspace_id.clone(),
                        default_environment_name: Some(self.inner.config.environment_name.clone()),
                    })
                    .await?;
                (project.id, Some(project.environments))
            }
        };
        self.after_remote_call(CreationStep::Project).await;
        store
            .record_step(&agent.id, CreationStep::Project, Some(project_id.as_str()))
            .await?;
        // The project came with its environment: no request needed for the next step.
        let wanted = &self.inner.config.environment_name;
        if let Some(env) = environments.into_iter().flatten().find(|e| &e.name == wanted) {
            store
                .record_step(&agent.id, CreationStep::Environment, Some(env.id.as_str()))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn environment_step(&self, agent: &Agent) -> Result<()> {
        let railway = &self.inner.railway;
        let project = recorded_project(agent)?;
        let wanted = &self.inner.config.environment_name;
        let existing = railway.project_environments(&project).await?;
        let env = match existing.into_iter().find(|e| &e.name == wanted) {
            Some(env) => env,
            None => railway.create_environment(&project, wanted).await?,
        };
        self.after_remote_call(CreationStep::Environment).await;
        self.inner
            .store
            .record_step(&agent.id, CreationStep::Environment, Some(env.id.as_str()))
            .await?;
        Ok(())
    }

    pub(super) async fn openrouter_key_step(&self, agent: &Agent, uncertain: bool) -> Result<()> {
        let Some(openrouter) = &self.inner.openrouter else {
            return Ok(());
        };
        let name = self.inner.naming.name(&agent.id);
        if uncertain {
            // The secret of a key made before a crash cannot be read back: delete it and make
            // a new one.
            for (hash, key_name) in openrouter.list_keys().await? {
                if key_name == name {
                    openrouter.delete_key(&hash).await?;
                }
            }
        }
        let key = openrouter.create_key(&name).await?;
        self.after_remote_call(CreationStep::OpenRouterKey).await;
        self.inner
            .store
            .record_openrouter_key(&agent.id, &key.hash, &key.key)
            .await?;
        Ok(())
    }

    pub(super) async fn service_step(&self, agent: &Agent, uncertain: bool) -> Result<()> {
        let railway = &self.inner.railway;
        let name = self.inner.naming.name(&agent.id);
        let project = recorded_project(agent)?;
        let environment = agent
            .environment_id
            .as_deref()
            .map(EnvironmentId::new)
            .ok_or_else(|| ProvisionError::Config("no environment recorded before the service".into()))?;
        let find = || async {
            Ok::<_, ProvisionError>(
                railway
                    .project_status(&project)
                    .await?
                    .services
                    .into_iter()
                    .find(|s| s.service_name == name)
                    .map(|s| s.service_id),
            )
        };
        let found = if uncertain { find().await? } else { None };
        let service_id = match found {
            Some(id) => id,
            None => match railway
                .create_service(&NewService {
                    project_id: project.clone(),
                    environment_id: environment,
                    name: name.clone(),
                    registry_credentials: self.inner.config.registry.clone(),
                })
                .await
            {
                Ok(service) => service.id,
                // "A service named … already exists": an earlier attempt made it.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => find().await?.ok_or(e)?,
                Err(e) => return Err(e.into()),
            },
        };
        self.after_remote_call(CreationStep::Service).await;
        self.inner
            .store
            .record_step(&agent.id, CreationStep::Service, Some(service_id.as_str()))
            .await?;
        Ok(())
    }

    pub(super) async fn variables_step(&self, agent: &Agent) -> Result<()> {
        let at = Placement::of(agent, CreationStep::Variables)?;
        self.check_secrets_for_variables(agent)?;
        let variables = self.agent_variables(agent);
        self.inner
            .railway
            .upsert_variables(&at.project, &at.environment, &at.service, &variables, true)
            .await?;
        self.after_remote_call(CreationStep::Variables).await;
        self.inner
            .store
            .record_step(&agent.id, CreationStep::Variables, None)
            .await?;
        Ok(())
    }

    pub(super) async fn limits_step(&self, agent: &Agent) -> Result<()> {
        let at = Placement::of(agent, CreationStep::Limits)?;
        // The shape's limits: each runtime has its own size.
        let shape = self.inner.config.shape(&agent.shape)?;
        if shape.vcpus.is_some() || shape.memory_gb.is_some() {
            self.inner
                .railway
                .update_limits(&at.environment, &at.service, shape.vcpus, shape.memory_gb)
                .await?;
            self.after_remote_call(CreationStep::Limits).await;
        }
        self.inner
            .store
            .record_step(&agent.id, CreationStep::Limits, None)
            .await?;
        Ok(())
    }

    pub(super) async fn volume_step(&self, agent: &Agent, uncertain: bool) -> Result<()> {
        let railway = &self.inner.railway;
        let at = Placement::of(agent, CreationStep::Volume)?;
        let find = || async {
            Ok::<_, ProvisionError>(railway.project_volumes(&at.project).await?.into_iter().find(|v| {
                v.mounts
                    .iter()
                    .any(|m| m.service_id.as_ref() == Some(&at.service) && m.mount_path == "/data")
            }))
        };
        let found = if uncertain { find().await? } else { None };
        let volume_id = match found {
            Some(v) => v.id,
            None => match railway
                .create_volume(&at.project, &at.environment, &at.service, "/data")
                .await
            {
                Ok(v) => v.id,
                // "A service can only have one volume": an earlier attempt made it.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => find().await?.ok_or(e)?.id,
                Err(e) => return Err(e.into()),
            },
        };
        self.after_remote_call(CreationStep::Volume).await;
        self.inner
            .store
            .record_step(&agent.id, CreationStep::Volume, Some(volume_id.as_str()))
            .await?;
        Ok(())
    }

    pub(super) async fn domain_step(&self, agent: &Agent, uncertain: bool) -> Result<()> {
        let railway = &self.inner.railway;
        let at = Placement::of(agent, CreationStep::Domain)?;
        let found = if uncertain {
            railway
                .service_domains(&at.project, &at.environment, &at.service)
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
                    .create_service_domain(&at.environment, &at.service, Some(AGENT_PORT))
                    .await?
            }
        };
        self.after_remote_call(CreationStep::Domain).await;
        self.inner
            .store
            .record_step(&agent.id, CreationStep::Domain, Some(&domain.domain))
            .await?;
        Ok(())
    }

    pub(super) async fn instance_step(&self, agent: &Agent) -> Result<()> {
        let at = Placement::of(agent, CreationStep::Instance)?;
        let config = &self.inner.config;
        let shape = config.shape(&agent.shape)?;
        let image = agent.image.clone().unwrap_or_else(|| shape.image.to_string());
        // Setting the image deploys by itself on the live API; the deploy step looks for that
        // deployment before it deploys, so there is exactly one either way.
        self.inner
            .railway
            .update_service_instance(
                &at.environment,
                &at.service,
                &InstanceSettings {
                    image: Some(image),
                    registry_credentials: config.registry.clone(),
                    sleep_application: Some(false),
                    restart_policy: Some((RestartPolicyType::OnFailure, 10)),
                    healthcheck_path: None,
                    num_replicas: Some(1),
                    start_command: shape.start_command.clone(),
                },
            )
            .await?;
        self.after_remote_call(CreationStep::Instance).await;
        self.inner
            .store
            .record_step(&agent.id, CreationStep::Instance, None)
            .await?;
        Ok(())
    }

    /// Exactly one deployment: `serviceInstanceUpdate` starts one by itself when it changes
    /// the source image (hogsend 1f2ba05f, verified against live deployment records), but not
    /// always, and not at once. So the saga looks for a deployment — now, and for a short
    /// grace after the update — and deploys only when none has started.
    pub(super) async fn deploy_step(&self, agent: &Agent) -> Result<()> {
        let at = Placement::of(agent, CreationStep::Deploy)?;
        let grace = self.inner.config.self_deploy_grace;
        let started = std::time::Instant::now();
        let deployment_id = loop {
            if let Some(id) = self.latest_deployment(&at).await? {
                break id;
            }
            if started.elapsed() >= grace {
                break self
                    .inner
                    .railway
                    .deploy_service(&at.environment, &at.service)
                    .await?;
            }
            tokio::time::sleep(grace.min(Duration::from_secs(1))).await;
        };
        self.after_remote_call(CreationStep::Deploy).await;
        self.inner
            .store
            .record_step(&agent.id, CreationStep::Deploy, Some(deployment_id.as_str()))
            .await?;
        Ok(())
    }

    /// The latest deployment of the agent's service, if it has one.
    pub(crate) async fn latest_deployment(
        &self,
        at: &Placement,
    ) -> Result<Option<railway_api::DeploymentId>> {
        Ok(self
            .inner
            .railway
            .project_status(&at.project)
            .await?
            .services
            .into_iter()
            .find(|s| s.service_id == at.service && s.environment_id == at.environment)
            .and_then(|s| s.latest_deployment)
            .map(|d| d.id))
    }

    /// A project of this pool with this name in the workspace (a creation whose outcome is
    /// unknown). Railway's listing can lag a fresh project by seconds, so an empty answer is
    /// asked again once after a moment.
    pub(crate) async fn find_project(&self, name: &str) -> Result<Option<ProjectId>> {
        for look in 0..2 {
            if look > 0 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let projects = self
                .inner
                .railway
                .workspace_projects(&self.inner.config.workspace_id)
                .await?;
            if let Some(found) = projects
                .into_iter()
                .find(|p| p.name == name && self.inner.naming.is_marked(p.description.as_deref()))
            {
                return Ok(Some(found.id));
            }
        }
        Ok(None)
    }

    /// The variables step sets the agent's secrets once and for all (its journal entry removes
    /// the setup secrets from the row): every one of them must be there and readable. A secret
    /// sealed under a key this replica lacks is a passing failure (a replica with the key, or
    /// a corrected configuration, resumes the creation); one that does not open fails the
    /// creation, which is compensated.
    fn check_secrets_for_variables(&self, agent: &Agent) -> Result<()> {
        if let Some(problem) = agent.unreadable_secrets.first() {
            return Err(pool_store::StoreError::Secret(problem.clone()).into());
        }
        let missing = if agent.secrets.is_none() {
            Some("its gateway token and API token are")
        } else if agent.setup_secrets.is_none() {
            Some("its setup password and wallet key are")
        } else if self.inner.openrouter.is_some() && agent.openrouter_api_key.is_none() {
            Some("its OpenRouter key is")
        } else {
            None
        };
        match missing {
            Some(what) => Err(ProvisionError::Config(format!(
                "agent {}: {what} not recorded before the variables step",
                agent.id
            ))),
            None => Ok(()),
        }
    }

    /// Every variable the agent gets: its own secrets, never an organisation's key. The Node
    /// pool at the runtime's pinned commit sends none either (`pool/src/services/providers/env.ts:4-13`,
    /// `pool/src/services/infra.ts:35-50`): email and SMS go through the service proxy with
    /// the agent's own `INSTANCE_ID` and `GATEWAY_TOKEN` (the runtime uses it whenever
    /// `POOL_URL`, `INSTANCE_ID` and `GATEWAY_TOKEN` are set,
    /// `runtime/convos-platform/skills/services/scripts/handlers/email.mjs:20-23`), and Bankr is
    /// gone from the runtime (`runtime/CHANGELOG.md:102`).
    pub(crate) fn agent_variables(&self, agent: &Agent) -> BTreeMap<String, String> {
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
        // The runtime follows the agent's shape, as the Node pool derives it from the image
        // (pool/src/services/providers/railway.ts:351).
        set("RUNTIME_TYPE", &agent.shape);
        set("XMTP_ENV", &vars.xmtp_env);
        if let Some(model) = &vars.primary_model {
            set("OPENCLAW_PRIMARY_MODEL", model);
        }
        if let Some(url) = &vars.pool_url {
            set("POOL_URL", url);
        }
        if let Some(secrets) = &agent.secrets {
            set("POOL_API_KEY", secrets.agent_api_token.expose_secret());
            // The runtime's pool server checks `GATEWAY_TOKEN` on `/pool/provision` and hands
            // it to OpenClaw as `OPENCLAW_GATEWAY_TOKEN`; older images read the latter.
            set("GATEWAY_TOKEN", secrets.gateway_token.expose_secret());
            set("OPENCLAW_GATEWAY_TOKEN", secrets.gateway_token.expose_secret());
        }
        if let Some(setup) = &agent.setup_secrets {
            set("SETUP_PASSWORD", setup.setup_password.expose_secret());
            set("PRIVATE_WALLET_KEY", setup.wallet_private_key.expose_secret());
        }
        if let Some(key) = &agent.openrouter_api_key {
            set("OPENROUTER_API_KEY", key.expose_secret());
        }
        out
    }
}
