//! A faithful stand-in for Railway, for tests, benchmarks and the local demo.
//!
//! `railway-sim` serves, over real HTTP on one loopback port:
//! - Railway's GraphQL API (`/graphql/v2`) on a real GraphQL engine with Railway's type and
//!   field names, with Railway's semantics (projects with environments, services, volumes,
//!   domains, deployments that move QUEUED → BUILDING → DEPLOYING → SUCCESS and capture what
//!   existed when they were made; soft-deleted projects; private images that need registry
//!   credentials) and limits (latency, per-token requests/s and /h with 429 + `Retry-After`,
//!   the edge limit for requests without a query string, the per-token `projectCreate`
//!   throttle, injected failures per operation);
//! - fake agents behind every domain (`/agents/{domain}/pool/health`, `/pool/provision`),
//!   checking each agent's own bearer token;
//! - fake OpenRouter (`/openrouter/api/v1/keys`) and AgentMail (`/agentmail/v0/inboxes`);
//! - an inspection and control API (`/_sim/…`).
//!
//! Architecture invariant: never linked into the production binary.

mod config;
mod graphql;
mod limits;
mod server;
mod world;

use axum::serve::ListenerExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use config::{AgentBehaviour, DeployTimings, Faults, Limits, OperationFaults, RateLimitStorm, SimConfig};
pub use world::{Counters, Fate};

use crate::server::Sim;
use crate::world::World;

/// The simulator's GraphQL schema as SDL (checked against Railway's by `xtask schema check`).
pub fn schema_sdl() -> String {
    graphql::build_schema(Arc::new(Mutex::new(World::default()))).sdl()
}

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Sim,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Starts a simulator on `127.0.0.1` with an OS-chosen port.
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
    start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a simulator on `addr`.
pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let world = Arc::new(Mutex::new(World::new(config)));
    let sim = Sim {
        schema: graphql::build_schema(world.clone()),
        world,
        limiter: Arc::default(),
        control: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = server::router(sim.clone());
    tokio::spawn(async move {
        let serve = axum::serve(
            listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            app,
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok(SimHandle {
        addr,
        sim,
        shutdown: Some(tx),
    })
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl SimHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Railway's endpoint, without a query string (clients must add one).
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql/v2", self.base_url())
    }

    /// The agent URL template (`AGENT_URL_TEMPLATE`) that reaches the fake agents.
    pub fn agent_url_template(&self) -> String {
        format!("{}/agents/{{domain}}", self.base_url())
    }

    /// The fake OpenRouter API base (`OPENROUTER_API_URL`).
    pub fn openrouter_url(&self) -> String {
        format!("{}/openrouter/api/v1", self.base_url())
    }

    /// The fake AgentMail API base (`AGENTMAIL_API_URL`).
    pub fn agentmail_url(&self) -> String {
        format!("{}/agentmail/v0", self.base_url())
    }

    /// The world as it is now.
    pub fn snapshot(&self) -> SimSnapshot {
        SimSnapshot::of(&self.sim.world(), Instant::now())
    }

    /// Request counters.
    pub fn counters(&self) -> Counters {
        self.sim.world().counters.clone()
    }

    /// Replaces the injected faults (a storm starts now).
    pub fn set_faults(&self, faults: Faults) {
        apply_faults(&self.sim, faults);
    }

    /// Replaces how agents of new deployments behave.
    pub fn set_agent_behaviour(&self, agents: AgentBehaviour) {
        self.sim.world().config.agents = agents;
    }

    /// Changes the limits.
    pub fn set_limits(&self, limits: Limits) {
        self.sim.world().config.limits = limits;
    }

    /// Every GraphQL request answers 503 while on.
    pub fn set_outage(&self, enabled: bool) {
        self.sim.control.lock().unwrap_or_else(|p| p.into_inner()).outage = enabled;
    }

    /// Crashes the live deployment of a service. `false` when it has none.
    pub fn crash_service(&self, service_id: &str) -> bool {
        crash(&self.sim, service_id)
    }

    /// Puts `count` agent-like projects into the world directly (no requests): one project
    /// each, with an environment named `environment`, one service running `image` with a
    /// domain, deployed. For tests and benchmarks that need a large fleet quickly.
    pub fn seed_projects(&self, count: usize, environment: &str, image: &str) -> Vec<SeededProject> {
        self.seed_agent_projects(count, environment, image, |_| BTreeMap::new())
    }

    /// [`Self::seed_projects`] with variables for each (e.g. the agent's `POOL_API_KEY`, so its
    /// fake agent answers health checks), set before the deploy.
    pub fn seed_agent_projects(
        &self,
        count: usize,
        environment: &str,
        image: &str,
        variables: impl Fn(usize) -> BTreeMap<String, String>,
    ) -> Vec<SeededProject> {
        let mut w = self.sim.world();
        let token = w.config.tokens.keys().next().cloned().unwrap_or_default();
        let workspace = w.config.tokens.get(&token).and_then(|ws| ws.first().cloned());
        let interval = std::mem::replace(&mut w.config.limits.project_create_interval, Duration::ZERO);
        let now = Instant::now();
        let mut seeded = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("seed-{i:06}");
            let Ok(project_id) = w.create_project(
                &token,
                Some(name.clone()),
                Some("seeded".into()),
                workspace.clone(),
                Some(environment.into()),
                now,
            ) else {
                continue;
            };
            let environment_id = w.projects[&project_id].environments[0].0.clone();
            let Ok(service_id) = w.create_service(
                &token,
                &project_id,
                Some(environment_id.clone()),
                Some(name),
                true,
                None,
                now,
            ) else {
                continue;
            };
            let domain = w
                .create_domain(&token, &environment_id, &service_id)
                .map(|(_, d)| d)
                .unwrap_or_default();
            // Configured first, then deployed once, as the pool does.
            let vars = variables(i);
            let configured = w
                .upsert_variables(
                    &token,
                    &project_id,
                    &environment_id,
                    Some(service_id.clone()),
                    vars,
                    false,
                    true,
                    now,
                )
                .and_then(|()| {
                    w.update_instance(
                        &token,
                        &service_id,
                        Some(environment_id.clone()),
                        Some(image.into()),
                        true,
                        Some(false),
                        None,
                        None,
                    )
                })
                .and_then(|()| w.deploy(&service_id, &environment_id, now));
            if configured.is_err() {
                continue;
            }
            seeded.push(SeededProject {
                project_id,
                environment_id,
                service_id,
                domain,
            });
        }
        w.config.limits.project_create_interval = interval;
        w.last_project_create.remove(&token);
        seeded
    }

    /// Creates a project directly (as a person would in Railway's dashboard): for tests of
    /// what the pool must leave alone.
    pub fn create_foreign_project(&self, name: &str, description: Option<&str>) -> String {
        let mut w = self.sim.world();
        let token = w.config.tokens.keys().next().cloned().unwrap_or_default();
        let workspace = w.config.tokens.get(&token).and_then(|ws| ws.first().cloned());
        let interval = std::mem::replace(&mut w.config.limits.project_create_interval, Duration::ZERO);
        let id = w.create_project(
            &token,
            Some(name.into()),
            description.map(str::to_string),
            workspace,
            None,
            Instant::now(),
        );
        w.config.limits.project_create_interval = interval;
        w.last_project_create.remove(&token);
        id.unwrap_or_default()
    }
}

pub(crate) fn apply_faults(sim: &Sim, faults: Faults) {
    {
        let mut control = sim.control.lock().unwrap_or_else(|p| p.into_inner());
        control.storm_until = faults.storm.as_ref().map(|s| Instant::now() + s.duration);
        control.storm_html = faults.storm.as_ref().is_some_and(|s| s.html);
        control.storm_retry_after = faults.storm.as_ref().map_or(1, |s| s.retry_after_secs);
    }
    sim.world().config.faults = faults;
}

pub(crate) fn crash(sim: &Sim, service_id: &str) -> bool {
    let mut w = sim.world();
    let latest = w
        .services
        .get(service_id)
        .filter(|s| !s.deleted)
        .and_then(|s| s.instances.values().find_map(|i| i.latest_deployment.clone()));
    match latest.and_then(|d| w.deployments.get_mut(&d)) {
        Some(d) if !d.removed => {
            d.crashed_at = Some(Instant::now());
            true
        }
        _ => false,
    }
}

/// A project put in place by [`SimHandle::seed_projects`].
#[derive(Debug, Clone)]
pub struct SeededProject {
    /// Project.
    pub project_id: String,
    /// Its environment.
    pub environment_id: String,
    /// Its service.
    pub service_id: String,
    /// The service's domain.
    pub domain: String,
}

/// Everything the simulator knows, for assertions and the chaos run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimSnapshot {
    /// Every project ever created.
    pub projects: Vec<ProjectView>,
    /// Every service.
    pub services: Vec<ServiceView>,
    /// Every deployment, with what it captured.
    pub deployments: Vec<DeploymentView>,
    /// Every volume.
    pub volumes: Vec<VolumeView>,
    /// Every OpenRouter key (by hash).
    pub keys: Vec<ResourceView>,
    /// Every AgentMail inbox.
    pub inboxes: Vec<ResourceView>,
    /// Live resources by kind.
    pub live: BTreeMap<String, usize>,
    /// Request counters.
    pub counters: Counters,
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Deleted.
    pub deleted: bool,
    /// Environment names.
    pub environments: Vec<String>,
}

/// A service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
    /// Registry credentials given.
    pub has_registry_credentials: bool,
    /// Image source (first environment).
    pub image: Option<String>,
    /// Serverless sleep.
    pub sleep_application: Option<bool>,
    /// CPU limit.
    pub vcpus: Option<f64>,
    /// Memory limit.
    pub memory_gb: Option<f64>,
    /// Restart policy.
    pub restart_policy: Option<String>,
    /// Current variables.
    pub variables: BTreeMap<String, String>,
}

/// A deployment and what it captured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentView {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: String,
    /// Environment.
    pub environment_id: String,
    /// Status now.
    pub status: String,
    /// Image.
    pub image: Option<String>,
    /// Variables at creation.
    pub variables: BTreeMap<String, String>,
    /// Volume mounts at creation.
    pub volume_mounts: Vec<String>,
    /// Domains at creation.
    pub domains: Vec<String>,
    /// Times its agent was provisioned.
    pub provisions: u32,
    /// Time its agent took to answer the provision, in microseconds.
    pub provision_micros: Option<u64>,
    /// Its drawn fate.
    pub fate: Fate,
}

/// A volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeView {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Service.
    pub service_id: Option<String>,
    /// Mount path.
    pub mount_path: String,
    /// Deleted.
    pub deleted: bool,
}

/// An OpenRouter key or AgentMail inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceView {
    /// Hash or inbox id.
    pub id: String,
    /// Key name or inbox user name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
}

impl SimSnapshot {
    pub(crate) fn of(w: &World, now: Instant) -> Self {
        Self {
            projects: w
                .projects
                .values()
                .map(|p| ProjectView {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    description: p.description.clone(),
                    created_at: p.created_at,
                    deleted: p.deleted_at.is_some(),
                    environments: p.environments.iter().map(|(_, n)| n.clone()).collect(),
                })
                .collect(),
            services: w
                .services
                .values()
                .map(|s| {
                    let instance = s.instances.values().next().cloned().unwrap_or_default();
                    ServiceView {
                        id: s.id.clone(),
                        project_id: s.project_id.clone(),
                        name: s.name.clone(),
                        deleted: s.deleted,
                        has_registry_credentials: s.has_registry_credentials
                            || instance.has_registry_credentials,
                        image: instance.image,
                        sleep_application: instance.sleep_application,
                        vcpus: instance.vcpus,
                        memory_gb: instance.memory_gb,
                        restart_policy: instance.restart_policy,
                        variables: instance.variables,
                    }
                })
                .collect(),
            deployments: w
                .deployments
                .values()
                .map(|d| DeploymentView {
                    id: d.id.clone(),
                    project_id: d.project_id.clone(),
                    service_id: d.service_id.clone(),
                    environment_id: d.environment_id.clone(),
                    status: serde_json::to_value(w.status(d, now))
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    image: d.image.clone(),
                    variables: d.variables.clone(),
                    volume_mounts: d.volume_mounts.clone(),
                    domains: d.domains.clone(),
                    provisions: d.provisions,
                    provision_micros: d.provision_micros,
                    fate: d.fate,
                })
                .collect(),
            volumes: w
                .volumes
                .values()
                .map(|v| VolumeView {
                    id: v.id.clone(),
                    project_id: v.project_id.clone(),
                    service_id: v.service_id.clone(),
                    mount_path: v.mount_path.clone(),
                    deleted: v.deleted,
                })
                .collect(),
            keys: w
                .keys
                .values()
                .map(|k| ResourceView {
                    id: k.hash.clone(),
                    name: k.name.clone(),
                    deleted: k.deleted,
                })
                .collect(),
            inboxes: w
                .inboxes
                .values()
                .map(|i| ResourceView {
                    id: i.inbox_id.clone(),
                    name: i.username.clone(),
                    deleted: i.deleted,
                })
                .collect(),
            live: server::live_counts(w)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            counters: w.counters.clone(),
        }
    }

    /// Deployments of one service, oldest first.
    pub fn deployments_of(&self, service_id: &str) -> Vec<&DeploymentView> {
        self.deployments
            .iter()
            .filter(|d| d.service_id == service_id)
            .collect()
    }

    /// Projects not deleted.
    pub fn live_projects(&self) -> Vec<&ProjectView> {
        self.projects.iter().filter(|p| !p.deleted).collect()
    }
}
