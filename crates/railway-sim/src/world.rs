//! The simulated Railway's state and its rules.
//!
//! Everything Railway would remember lives here: projects (soft-deleted, never forgotten),
//! environments, services with their per-environment instances, volumes, domains and
//! deployments. A deployment captures the image, variables, volume mounts and domains that
//! exist at the moment it is created, so "deployed before its variables were set" is
//! observable, and it moves through its states as time passes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::SimConfig;

/// A refusal, as Railway words it (returned as a GraphQL error with `extensions.code`).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The message.
    pub message: String,
    /// `extensions.code`.
    pub code: &'static str,
}

impl Refusal {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: "BAD_USER_INPUT",
        }
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self {
            message: format!("{what} not found"),
            code: "NOT_FOUND",
        }
    }

    pub(crate) fn not_authorized() -> Self {
        Self {
            message: "Not Authorized".into(),
            code: "UNAUTHORIZED",
        }
    }
}

/// What a deployment's agent will do, drawn when the deployment is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Deploys, becomes ready, provisions.
    Healthy,
    /// Fails while building.
    FailBuild,
    /// Crashes some time after succeeding.
    Crash,
    /// Succeeds, never becomes ready.
    NeverReady,
    /// `/pool/provision` never answers.
    ProvisionHang,
    /// `/pool/provision` answers 500.
    ProvisionFail,
}

/// A project.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Workspace.
    pub workspace_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Soft-deleted at.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Environments: (id, name).
    pub environments: Vec<(String, String)>,
}

/// A service's settings in one environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Instance {
    /// Image source.
    pub image: Option<String>,
    /// Variables.
    pub variables: BTreeMap<String, String>,
    /// CPU limit.
    pub vcpus: Option<f64>,
    /// Memory limit.
    pub memory_gb: Option<f64>,
    /// Serverless sleep.
    pub sleep_application: Option<bool>,
    /// Restart policy.
    pub restart_policy: Option<String>,
    /// Registry credentials set on the instance.
    pub has_registry_credentials: bool,
    /// Latest deployment.
    pub latest_deployment: Option<String>,
    /// Last request to its agent (sleep).
    #[serde(skip)]
    pub last_agent_request: Option<Instant>,
}

/// A service.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
    /// Registry credentials given at creation.
    pub has_registry_credentials: bool,
    /// Per environment.
    pub instances: BTreeMap<String, Instance>,
}

/// A volume.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: Option<String>,
    /// Environment.
    pub environment_id: String,
    /// Mount path.
    pub mount_path: String,
    /// Deleted.
    pub deleted: bool,
}

/// A public domain.
#[derive(Debug, Clone, Serialize)]
pub struct Domain {
    /// Id.
    pub id: String,
    /// Host name.
    pub domain: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: String,
    /// Environment.
    pub environment_id: String,
}

/// A deployment and what it captured.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: String,
    /// Environment.
    pub environment_id: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Created (simulator clock).
    #[serde(skip)]
    pub started: Instant,
    /// The image it runs.
    pub image: Option<String>,
    /// Variables at creation.
    pub variables: BTreeMap<String, String>,
    /// Volume mount paths at creation.
    pub volume_mounts: Vec<String>,
    /// Domains at creation.
    pub domains: Vec<String>,
    /// Whether it could pull its image.
    pub can_pull: bool,
    /// What its agent will do.
    pub fate: Fate,
    /// Replaced by a newer deployment, or its project deleted.
    pub removed: bool,
    /// Crashed on request (`crash_service`).
    #[serde(skip)]
    pub crashed_at: Option<Instant>,
    /// Successful provisions of its agent.
    pub provisions: u32,
    /// Time the agent took to answer its successful provision, in microseconds.
    pub provision_micros: Option<u64>,
}

/// A deployment's status, as Railway names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Status {
    Queued,
    Building,
    Deploying,
    Success,
    Failed,
    Crashed,
    Removed,
    Sleeping,
}

/// An OpenRouter key.
#[derive(Debug, Clone, Serialize)]
pub struct Key {
    /// Hash (its id).
    pub hash: String,
    /// Name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
}

/// An AgentMail inbox.
#[derive(Debug, Clone, Serialize)]
pub struct Inbox {
    /// Id (an address).
    pub inbox_id: String,
    /// User name.
    pub username: String,
    /// Idempotency key.
    pub client_id: Option<String>,
    /// Deleted.
    pub deleted: bool,
}

/// Request counts, for tests and benchmarks.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Counters {
    /// GraphQL requests by root operation.
    pub requests: BTreeMap<String, u64>,
    /// All GraphQL requests.
    pub requests_total: u64,
    /// 429s served (all causes).
    pub rate_limited: u64,
    /// Requests without a query string.
    pub without_query_string: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Health checks served.
    pub health_checks: u64,
    /// Provisions answered 200.
    pub provisions: u64,
    /// Highest number of requests one token sent in any one-second window.
    pub max_requests_in_one_second: usize,
}

/// The simulated world.
#[derive(Debug, Default)]
pub struct World {
    pub(crate) config: SimConfig,
    pub(crate) projects: BTreeMap<String, Project>,
    pub(crate) services: BTreeMap<String, Service>,
    pub(crate) volumes: BTreeMap<String, Volume>,
    pub(crate) domains: BTreeMap<String, Domain>,
    pub(crate) deployments: BTreeMap<String, Deployment>,
    pub(crate) keys: BTreeMap<String, Key>,
    pub(crate) inboxes: BTreeMap<String, Inbox>,
    pub(crate) counters: Counters,
    pub(crate) last_project_create: BTreeMap<String, Instant>,
    next_id: u64,
}

impl World {
    pub(crate) fn new(config: SimConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub(crate) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let salt: u32 = rand::rng().random();
        format!("{prefix}-{:06}-{salt:08x}", self.next_id)
    }

    /// The workspaces a token may act on (`None`: unknown token).
    pub(crate) fn token_workspaces(&self, token: &str) -> Option<&Vec<String>> {
        self.config.tokens.get(token)
    }

    fn live_project(&self, id: &str) -> Result<&Project, Refusal> {
        self.projects
            .get(id)
            .filter(|p| p.deleted_at.is_none())
            .ok_or_else(|| Refusal::not_found("Project"))
    }

    pub(crate) fn project_visible(&self, token: &str, id: &str) -> Result<&Project, Refusal> {
        let project = self.live_project(id)?;
        let workspaces = self.token_workspaces(token).ok_or_else(Refusal::not_authorized)?;
        match &project.workspace_id {
            Some(ws) if workspaces.contains(ws) => Ok(project),
            _ => Err(Refusal::not_authorized()),
        }
    }

    fn live_service(&self, id: &str) -> Result<&Service, Refusal> {
        let service = self
            .services
            .get(id)
            .filter(|s| !s.deleted)
            .ok_or_else(|| Refusal::not_found("Service"))?;
        self.live_project(&service.project_id)?;
        Ok(service)
    }

    fn check_token_for_service(&self, token: &str, service_id: &str) -> Result<(), Refusal> {
        let project_id = self.live_service(service_id)?.project_id.clone();
        self.project_visible(token, &project_id).map(|_| ())
    }

    fn check_environment(&self, project_id: &str, environment_id: &str) -> Result<(), Refusal> {
        if self
            .live_project(project_id)?
            .environments
            .iter()
            .any(|(id, _)| id == environment_id)
        {
            Ok(())
        } else {
            Err(Refusal::not_found("Environment"))
        }
    }

    // ---------------------------------------------------------------------------------------
    // Mutations

    pub(crate) fn create_project(
        &mut self,
        token: &str,
        name: Option<String>,
        description: Option<String>,
        workspace_id: Option<String>,
        default_environment_name: Option<String>,
        now: Instant,
    ) -> Result<String, Refusal> {
        let workspaces = self.token_workspaces(token).ok_or_else(Refusal::not_authorized)?;
        let workspace_id = match workspace_id {
            Some(ws) if workspaces.contains(&ws) => ws,
            Some(_) => return Err(Refusal::not_authorized()),
            None => return Err(Refusal::bad_input("workspaceId is required")),
        };
        let interval = self.config.limits.project_create_interval;
        if !interval.is_zero()
            && let Some(last) = self.last_project_create.get(token)
            && now.duration_since(*last) < interval
        {
            return Err(Refusal::bad_input("Only one project can be created per user"));
        }
        let name = name.unwrap_or_else(|| "untitled".into());
        if name.chars().count() > self.config.limits.max_project_name {
            return Err(Refusal::bad_input(format!(
                "Project name must be at most {} characters",
                self.config.limits.max_project_name
            )));
        }
        self.last_project_create.insert(token.to_string(), now);
        let id = self.id("prj");
        let env_id = self.id("env");
        let env_name = default_environment_name
            .filter(|_| self.config.honour_default_environment_name)
            .unwrap_or_else(|| "production".into());
        self.projects.insert(
            id.clone(),
            Project {
                id: id.clone(),
                name,
                description,
                workspace_id: Some(workspace_id),
                created_at: Utc::now(),
                deleted_at: None,
                environments: vec![(env_id, env_name)],
            },
        );
        Ok(id)
    }

    pub(crate) fn create_environment(
        &mut self,
        token: &str,
        project_id: &str,
        name: String,
    ) -> Result<(String, String), Refusal> {
        self.project_visible(token, project_id)?;
        if self
            .live_project(project_id)?
            .environments
            .iter()
            .any(|(_, n)| *n == name)
        {
            return Err(Refusal::bad_input(format!("Environment {name} already exists")));
        }
        let id = self.id("env");
        if let Some(p) = self.projects.get_mut(project_id) {
            p.environments.push((id.clone(), name.clone()));
        }
        Ok((id, name))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_service(
        &mut self,
        token: &str,
        project_id: &str,
        environment_id: Option<String>,
        name: Option<String>,
        has_registry_credentials: bool,
        image: Option<String>,
        now: Instant,
    ) -> Result<String, Refusal> {
        self.project_visible(token, project_id)?;
        let environments: Vec<String> = self
            .live_project(project_id)?
            .environments
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        if let Some(env) = &environment_id {
            self.check_environment(project_id, env)?;
        }
        let live_services = self
            .services
            .values()
            .filter(|s| s.project_id == project_id && !s.deleted)
            .count();
        if live_services >= 100 {
            return Err(Refusal::bad_input("Projects can have at most 100 services"));
        }
        let id = self.id("svc");
        let instances = environments
            .into_iter()
            .map(|env| {
                (
                    env,
                    Instance {
                        image: image.clone(),
                        ..Instance::default()
                    },
                )
            })
            .collect();
        self.services.insert(
            id.clone(),
            Service {
                id: id.clone(),
                project_id: project_id.to_string(),
                name: name.unwrap_or_else(|| id.clone()),
                deleted: false,
                has_registry_credentials,
                instances,
            },
        );
        // Railway deploys at once when a service is created with a source.
        if image.is_some() {
            let envs: Vec<String> = environment_id.into_iter().collect();
            for env in envs {
                self.deploy(&id, &env, now)?;
            }
        }
        Ok(id)
    }

    fn instance_mut(&mut self, service_id: &str, environment_id: &str) -> Result<&mut Instance, Refusal> {
        self.services
            .get_mut(service_id)
            .filter(|s| !s.deleted)
            .and_then(|s| s.instances.get_mut(environment_id))
            .ok_or_else(|| Refusal::not_found("ServiceInstance"))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn upsert_variables(
        &mut self,
        token: &str,
        project_id: &str,
        environment_id: &str,
        service_id: Option<String>,
        variables: BTreeMap<String, String>,
        replace: bool,
        skip_deploys: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.project_visible(token, project_id)?;
        self.check_environment(project_id, environment_id)?;
        let Some(service_id) = service_id else {
            return Err(Refusal::bad_input(
                "shared variables are not simulated; pass serviceId",
            ));
        };
        self.check_token_for_service(token, &service_id)?;
        let instance = self.instance_mut(&service_id, environment_id)?;
        if replace {
            instance.variables = variables;
        } else {
            instance.variables.extend(variables);
        }
        // Without skipDeploys Railway redeploys a service that has been deployed before.
        if !skip_deploys && instance.latest_deployment.is_some() {
            self.deploy(&service_id, environment_id, now)?;
        }
        Ok(())
    }

    pub(crate) fn update_limits(
        &mut self,
        token: &str,
        environment_id: &str,
        service_id: &str,
        vcpus: Option<f64>,
        memory_gb: Option<f64>,
    ) -> Result<(), Refusal> {
        self.check_token_for_service(token, service_id)?;
        let instance = self.instance_mut(service_id, environment_id)?;
        instance.vcpus = vcpus.or(instance.vcpus);
        instance.memory_gb = memory_gb.or(instance.memory_gb);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_instance(
        &mut self,
        token: &str,
        service_id: &str,
        environment_id: Option<String>,
        image: Option<String>,
        registry_credentials: bool,
        sleep_application: Option<bool>,
        restart_policy: Option<String>,
        num_replicas: Option<i32>,
    ) -> Result<(), Refusal> {
        self.check_token_for_service(token, service_id)?;
        if num_replicas.is_some_and(|n| n < 1) {
            return Err(Refusal::bad_input("numReplicas must be at least 1"));
        }
        let environments: Vec<String> = match environment_id {
            Some(env) => vec![env],
            None => self.live_service(service_id)?.instances.keys().cloned().collect(),
        };
        for env in environments {
            let instance = self.instance_mut(service_id, &env)?;
            if image.is_some() {
                instance.image = image.clone();
            }
            if registry_credentials {
                instance.has_registry_credentials = true;
            }
            if sleep_application.is_some() {
                instance.sleep_application = sleep_application;
            }
            if restart_policy.is_some() {
                instance.restart_policy = restart_policy.clone();
            }
        }
        Ok(())
    }

    pub(crate) fn create_volume(
        &mut self,
        token: &str,
        project_id: &str,
        environment_id: Option<String>,
        service_id: Option<String>,
        mount_path: String,
    ) -> Result<(String, String), Refusal> {
        self.project_visible(token, project_id)?;
        let environment_id = match environment_id {
            Some(env) => env,
            None => self.live_project(project_id)?.environments[0].0.clone(),
        };
        self.check_environment(project_id, &environment_id)?;
        if let Some(service) = &service_id {
            self.check_token_for_service(token, service)?;
            let taken = self.volumes.values().any(|v| {
                !v.deleted && v.service_id.as_deref() == Some(service) && v.environment_id == environment_id
            });
            if taken {
                return Err(Refusal::bad_input("A service can only have one volume"));
            }
        }
        let in_project = self
            .volumes
            .values()
            .filter(|v| !v.deleted && v.project_id == project_id)
            .count();
        if in_project >= self.config.limits.max_volumes_per_project {
            return Err(Refusal::bad_input("Project volume limit reached"));
        }
        let id = self.id("vol");
        let name = format!("volume-{}", &id[4..10]);
        self.volumes.insert(
            id.clone(),
            Volume {
                id: id.clone(),
                name: name.clone(),
                project_id: project_id.to_string(),
                service_id,
                environment_id,
                mount_path,
                deleted: false,
            },
        );
        Ok((id, name))
    }

    pub(crate) fn delete_volume(&mut self, token: &str, volume_id: &str) -> Result<(), Refusal> {
        let project_id = self
            .volumes
            .get(volume_id)
            .filter(|v| !v.deleted)
            .map(|v| v.project_id.clone())
            .ok_or_else(|| Refusal::not_found("Volume"))?;
        self.project_visible(token, &project_id)?;
        if let Some(v) = self.volumes.get_mut(volume_id) {
            v.deleted = true;
        }
        Ok(())
    }

    pub(crate) fn create_domain(
        &mut self,
        token: &str,
        environment_id: &str,
        service_id: &str,
    ) -> Result<(String, String), Refusal> {
        self.check_token_for_service(token, service_id)?;
        let project_id = self.live_service(service_id)?.project_id.clone();
        self.check_environment(&project_id, environment_id)?;
        let id = self.id("dom");
        let domain = format!(
            "{}-{}.up.railway.app",
            self.live_service(service_id)?.name,
            &id[4..10]
        );
        self.domains.insert(
            domain.clone(),
            Domain {
                id: id.clone(),
                domain: domain.clone(),
                project_id,
                service_id: service_id.to_string(),
                environment_id: environment_id.to_string(),
            },
        );
        Ok((id, domain))
    }

    pub(crate) fn service_domains(&self, service_id: &str, environment_id: &str) -> Vec<(String, String)> {
        self.domains
            .values()
            .filter(|d| d.service_id == service_id && d.environment_id == environment_id)
            .map(|d| (d.id.clone(), d.domain.clone()))
            .collect()
    }

    fn draw_fate(&self) -> Fate {
        let a = &self.config.agents;
        let mut rng = rand::rng();
        let x: f64 = rng.random();
        let mut edge = 0.0;
        for (p, fate) in [
            (a.fail, Fate::FailBuild),
            (a.crash, Fate::Crash),
            (a.never_ready, Fate::NeverReady),
            (a.provision_hang, Fate::ProvisionHang),
            (a.provision_fail, Fate::ProvisionFail),
        ] {
            edge += p;
            if x < edge {
                return fate;
            }
        }
        Fate::Healthy
    }

    /// Deploys the instance's current source, capturing everything in place now.
    pub(crate) fn deploy(
        &mut self,
        service_id: &str,
        environment_id: &str,
        now: Instant,
    ) -> Result<String, Refusal> {
        let service = self.live_service(service_id)?.clone();
        let instance = service
            .instances
            .get(environment_id)
            .ok_or_else(|| Refusal::not_found("ServiceInstance"))?
            .clone();
        let Some(image) = instance.image.clone() else {
            return Err(Refusal::bad_input("Service has no source to deploy"));
        };
        let private = self
            .config
            .private_image_prefixes
            .iter()
            .any(|p| image.starts_with(p));
        let can_pull = !private || service.has_registry_credentials || instance.has_registry_credentials;
        let volume_mounts = self
            .volumes
            .values()
            .filter(|v| {
                !v.deleted
                    && v.service_id.as_deref() == Some(service_id)
                    && v.environment_id == environment_id
            })
            .map(|v| v.mount_path.clone())
            .collect();
        let domains = self
            .service_domains(service_id, environment_id)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        if let Some(previous) = &instance.latest_deployment
            && let Some(d) = self.deployments.get_mut(previous)
        {
            d.removed = true;
        }
        let id = self.id("dep");
        let fate = self.draw_fate();
        self.deployments.insert(
            id.clone(),
            Deployment {
                id: id.clone(),
                project_id: service.project_id.clone(),
                service_id: service_id.to_string(),
                environment_id: environment_id.to_string(),
                created_at: Utc::now(),
                started: now,
                image: Some(image),
                variables: instance.variables.clone(),
                volume_mounts,
                domains,
                can_pull,
                fate,
                removed: false,
                crashed_at: None,
                provisions: 0,
                provision_micros: None,
            },
        );
        self.instance_mut(service_id, environment_id)?.latest_deployment = Some(id.clone());
        Ok(id)
    }

    pub(crate) fn deploy_checked(
        &mut self,
        token: &str,
        service_id: &str,
        environment_id: &str,
        now: Instant,
    ) -> Result<String, Refusal> {
        self.check_token_for_service(token, service_id)?;
        self.deploy(service_id, environment_id, now)
    }

    /// `deploymentRedeploy`: a new deployment of the same service. With
    /// `usePreviousImageTag`, the image the old deployment ran; otherwise the current source.
    pub(crate) fn redeploy(
        &mut self,
        token: &str,
        deployment_id: &str,
        use_previous_image: bool,
        now: Instant,
    ) -> Result<String, Refusal> {
        let old = self
            .deployments
            .get(deployment_id)
            .cloned()
            .ok_or_else(|| Refusal::not_found("Deployment"))?;
        self.check_token_for_service(token, &old.service_id)?;
        if use_previous_image {
            let current = self
                .instance_mut(&old.service_id, &old.environment_id)?
                .image
                .clone();
            self.instance_mut(&old.service_id, &old.environment_id)?.image = old.image.clone();
            let id = self.deploy(&old.service_id, &old.environment_id, now);
            self.instance_mut(&old.service_id, &old.environment_id)?.image = current;
            id
        } else {
            self.deploy(&old.service_id, &old.environment_id, now)
        }
    }

    pub(crate) fn delete_project(&mut self, token: &str, project_id: &str) -> Result<(), Refusal> {
        self.project_visible(token, project_id)?;
        if let Some(p) = self.projects.get_mut(project_id) {
            p.deleted_at = Some(Utc::now());
        }
        for s in self.services.values_mut().filter(|s| s.project_id == project_id) {
            s.deleted = true;
        }
        for v in self.volumes.values_mut().filter(|v| v.project_id == project_id) {
            v.deleted = true;
        }
        self.domains.retain(|_, d| d.project_id != project_id);
        for d in self
            .deployments
            .values_mut()
            .filter(|d| d.project_id == project_id)
        {
            d.removed = true;
        }
        Ok(())
    }

    pub(crate) fn delete_service(&mut self, token: &str, service_id: &str) -> Result<(), Refusal> {
        self.check_token_for_service(token, service_id)?;
        if let Some(s) = self.services.get_mut(service_id) {
            s.deleted = true;
        }
        self.domains.retain(|_, d| d.service_id != service_id);
        for d in self
            .deployments
            .values_mut()
            .filter(|d| d.service_id == service_id)
        {
            d.removed = true;
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Observation

    /// A deployment's status now.
    pub fn status(&self, deployment: &Deployment, now: Instant) -> Status {
        if deployment.removed {
            return Status::Removed;
        }
        if deployment.crashed_at.is_some() {
            return Status::Crashed;
        }
        let t = &self.config.deploy;
        let elapsed = now.saturating_duration_since(deployment.started);
        if elapsed < t.queued {
            return Status::Queued;
        }
        if elapsed < t.queued + t.building {
            return Status::Building;
        }
        if !deployment.can_pull || deployment.fate == Fate::FailBuild {
            return Status::Failed;
        }
        if elapsed < t.queued + t.building + t.deploying {
            return Status::Deploying;
        }
        let since_success = elapsed - (t.queued + t.building + t.deploying);
        if deployment.fate == Fate::Crash && since_success >= self.config.agents.crash_after {
            return Status::Crashed;
        }
        let instance = self
            .services
            .get(&deployment.service_id)
            .and_then(|s| s.instances.get(&deployment.environment_id));
        if let Some(instance) = instance
            && instance.sleep_application == Some(true)
        {
            let idle_since = instance
                .last_agent_request
                .unwrap_or(deployment.started)
                .max(deployment.started);
            if now.saturating_duration_since(idle_since) >= std::time::Duration::from_secs(600) {
                return Status::Sleeping;
            }
        }
        Status::Success
    }

    /// When the deployment reached `SUCCESS` (if it did).
    pub(crate) fn success_at(&self, deployment: &Deployment) -> Instant {
        let t = &self.config.deploy;
        deployment.started + t.queued + t.building + t.deploying
    }

    /// Live (not deleted) projects.
    pub fn live_projects(&self) -> impl Iterator<Item = &Project> {
        self.projects.values().filter(|p| p.deleted_at.is_none())
    }
}
