//! A faithful stand-in for Railway, for tests, benchmarks and the local demo.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let sim = railway_sim::start(railway_sim::SimConfig::quick()).await?;
//! // A fleet put in place without a request, for tests that need one quickly.
//! let seeded = sim.seed_projects(2, "staging", "nginx:1.27");
//! assert_eq!(sim.snapshot().live_projects().len(), 2);
//! // A client talks to it as to Railway: token `sim-token`, workspace `ws-sim`.
//! println!("GraphQL at {}; agent {} answers under {}", sim.graphql_url(), seeded[0].domain, sim.agent_url_template());
//! # Ok(()) }
//! ```
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
//!   checking each agent's own bearer token — and, on request, each at a host of its own over
//!   HTTP and HTTPS ([`SimHandle::serve_agent_hosts`]);
//! - fake OpenRouter (`/openrouter/api/v1/keys`), AgentMail (`/agentmail/v0/inboxes…`, with a
//!   message store per inbox) and Telnyx (`/telnyx/v2/…`: numbers, messages, detail records) —
//!   what the pool's service proxy calls;
//! - an inspection and control API (`/_sim/…`).
//!
//! Architecture invariant: never linked into the production binary.

mod agent_hosts;
mod config;
mod external_agents;
mod graphql;
mod limits;
mod quirks;
mod self_destruct;
mod server;
mod snapshot;
mod webhooks;
mod world;

use axum::serve::ListenerExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

pub use agent_hosts::{AgentHostStats, AgentHosts};
pub use config::{
    AgentBehaviour, DeployTimings, Faults, Limits, OperationFaults, RateLimitStorm, SimConfig, WakeTimings,
};
pub use external_agents::ExternalAgent;
pub use quirks::{DeployRateLimit, ProjectThrottleScope, Quirks};
pub use snapshot::{DeploymentView, ProjectView, ResourceView, ServiceView, SimSnapshot, VolumeView};
pub use world::{AgentRuntime, Counters, DeployCause, Fate, ProvisionFault};

use crate::server::Sim;
use crate::world::{InstanceUpdate, World};

/// The command that starts the agent runtime's pool server (`/pool/health`,
/// `/pool/provision`). The image's own `CMD` (`pnpm start`) starts OpenClaw without it, so
/// whoever deploys the image sets this start command, as the Node pool manager does
/// (xmtplabs/convos-managed-agent-runtime `pool/src/services/providers/railway.ts`). The fake
/// agents answer only when it is set.
pub const AGENT_START_COMMAND: &str = "node convos-platform/pool-server/dist/index.js";

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
    let webhook_url = config.webhook_url.clone();
    let world = Arc::new(Mutex::new(World::new(config)));
    let sim = Sim {
        schema: graphql::build_schema(world.clone()),
        world: world.clone(),
        limiter: Arc::default(),
        control: Arc::default(),
        webhooks: Arc::default(),
        external: Arc::default(),
    };
    sim.set_webhook_url(webhook_url);
    webhooks::start(world, sim.webhooks.clone());
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
        self.set_external_agent(None);
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

    /// Serves the fake agents again, each at a loopback address of its own, over plain HTTP
    /// and HTTPS (a certificate chain made now): one host per agent, as on Railway. See
    /// [`AgentHosts`].
    pub async fn serve_agent_hosts(&self) -> std::io::Result<AgentHosts> {
        AgentHosts::start(self.sim.clone()).await
    }

    /// The fake OpenRouter API base (`OPENROUTER_API_URL`).
    pub fn openrouter_url(&self) -> String {
        format!("{}/openrouter/api/v1", self.base_url())
    }

    /// The fake AgentMail API base (`AGENTMAIL_API_URL`).
    pub fn agentmail_url(&self) -> String {
        format!("{}/agentmail/v0", self.base_url())
    }

    /// The fake Telnyx API base (`TELNYX_API_URL`).
    pub fn telnyx_url(&self) -> String {
        format!("{}/telnyx/v2", self.base_url())
    }

    /// The image registry's base URL (GHCR's `/token` and `/v2/…`): the pool's
    /// `AGENT_REGISTRY_URL` in tests.
    pub fn registry_url(&self) -> String {
        format!("{}/ghcr", self.base_url())
    }

    /// An email from outside arrives in `inbox` (as AgentMail receives one): its message id.
    /// `None` when there is no such live inbox.
    pub fn deliver_email(&self, inbox: &str, from: &str, subject: &str, text: &str) -> Option<String> {
        server::mail::deliver(&mut self.sim.world(), inbox, from, subject, text)
    }

    /// A text from outside arrives at `to` (one of the account's numbers, or not): its message
    /// id and detail record, as Telnyx keeps them.
    pub fn deliver_sms(&self, from: &str, to: &str, text: &str) -> String {
        server::sms::deliver(&mut self.sim.world(), from, to, text)
    }

    /// Phone numbers the account owns.
    pub fn owned_numbers(&self) -> Vec<String> {
        self.sim.world().telnyx.owned.keys().cloned().collect()
    }

    /// What the pool told the agent behind `domain` through `/convos/update-metadata`.
    pub fn agent_metadata(&self, domain: &str) -> serde_json::Map<String, serde_json::Value> {
        self.deployment_behind(domain, |d| d.metadata.clone())
            .unwrap_or_default()
    }

    /// `read` of the current deployment of the agent behind `domain`, if there is one.
    fn deployment_behind<T>(&self, domain: &str, read: impl FnOnce(&world::Deployment) -> T) -> Option<T> {
        let w = self.sim.world();
        w.domains
            .get(domain)
            .and_then(|d| w.services.get(&d.service_id))
            .and_then(|s| s.instances.values().find_map(|i| i.latest_deployment.clone()))
            .and_then(|id| w.deployments.get(&id))
            .map(read)
    }

    /// The next `/pool/provision` to any agent answers with `fault` (faults queue up, first in
    /// first out), whatever the agent's fate.
    pub fn fault_next_provision(&self, fault: ProvisionFault) {
        self.sim.world().provision_faults.push_back(fault);
    }

    /// What the runtime of the agent behind `domain` holds, and the provision requests it got
    /// (its current deployment's).
    pub fn agent_runtime(&self, domain: &str) -> Option<AgentRuntime> {
        self.deployment_behind(domain, |d| d.runtime.clone())
    }

    /// The runtime behind `domain` asks its pool server to self-destruct (the conversation
    /// exploded, or the agent was removed): the pool server calls
    /// `${POOL_URL}/api/pool/self-destruct` with the deployment's `INSTANCE_ID` and
    /// `GATEWAY_TOKEN` (`runtime/convos-platform/pool-server/index.ts:456-501`). The pool
    /// manager's status, or why nothing was sent or answered.
    pub async fn agent_self_destruct(&self, domain: &str) -> Result<u16, String> {
        let Some(variables) = self.deployment_behind(domain, |d| d.variables.clone()) else {
            return Err(format!("no agent is served at {domain}"));
        };
        self_destruct::call(&variables).await
    }

    /// The world as it is now.
    pub fn snapshot(&self) -> SimSnapshot {
        SimSnapshot::of(&self.sim.world(), Instant::now())
    }

    /// Compute used so far, in deployment-seconds: every deployment from `SUCCESS` until it
    /// was removed, stopped or crashed (a parked agent costs nothing here).
    pub fn compute_seconds(&self) -> f64 {
        self.sim.world().compute_seconds(Instant::now())
    }

    /// Deployments running now (`SUCCESS`, not stopped), of live services.
    pub fn running_deployments(&self) -> usize {
        let w = self.sim.world();
        let now = Instant::now();
        w.deployments
            .values()
            .filter(|d| d.stopped_at.is_none() && w.status(d, now) == world::Status::Success)
            .count()
    }

    /// A file on a volume (`None`: no such volume or file).
    pub fn volume_file(&self, volume_id: &str, name: &str) -> Option<String> {
        self.sim.world().volumes.get(volume_id)?.files.get(name).cloned()
    }

    /// Replaces the wake distribution (later wakes draw from it).
    pub fn set_wake_timings(&self, wake: WakeTimings) {
        self.sim.world().config.wake = wake;
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

    /// Changes which of Railway's undocumented behaviours are on.
    pub fn set_quirks(&self, quirks: Quirks) {
        self.sim.world().config.quirks = quirks;
    }

    /// The quirks in force.
    pub fn quirks(&self) -> Quirks {
        self.sim.world().config.quirks.clone()
    }

    /// Pushes a new image under `reference` (e.g. `ghcr.io/xmtplabs/convos-agent:staging`): a
    /// moving tag moves. Returns the new digest.
    pub fn push_image(&self, reference: &str) -> String {
        self.sim.world().push_image(reference)
    }

    /// Pushes a new image under `reference` that fails to boot (every deployment of it ends
    /// `FAILED`): for rollbacks. Returns its digest.
    pub fn push_unbootable_image(&self, reference: &str) -> String {
        self.sim.world().push_unbootable_image(reference)
    }

    /// The digest `reference` has in the registry now.
    pub fn image_digest(&self, reference: &str) -> String {
        self.sim.world().digest_of(reference)
    }

    /// The restart policy brings a crashed service's deployment back. `false` when it has
    /// none.
    pub fn recover_service(&self, service_id: &str) -> bool {
        let mut w = self.sim.world();
        let latest = w.latest_deployment_of(service_id);
        match latest.and_then(|d| w.deployments.get_mut(&d)) {
            Some(d) if !d.removed && d.crashed_at.is_some() => {
                d.crashed_at = None;
                d.fate = Fate::Healthy;
                true
            }
            _ => false,
        }
    }

    /// Posts Railway's deploy events (`Deployment.deployed`, `.crashed`, …) for every
    /// deployment change from now on to `url`, as a Railway webhook does; `None` stops them.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.sim.set_webhook_url(url);
    }

    /// Deploy events delivered (answered 2xx) and given up on after every retry.
    pub fn webhook_deliveries(&self) -> (u64, u64) {
        let hooks = self.sim.webhooks.lock().unwrap_or_else(|p| p.into_inner());
        (hooks.delivered, hooks.dropped)
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
        // Seeding is not a client: none of Railway's quirks apply to it.
        let quirks = std::mem::replace(&mut w.config.quirks, Quirks::none());
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
                .create_domain(&token, &environment_id, &service_id, now)
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
                        InstanceUpdate {
                            image: Some(image.into()),
                            registry_credentials: true,
                            sleep_application: Some(false),
                            start_command: Some(AGENT_START_COMMAND.into()),
                            ..InstanceUpdate::default()
                        },
                        now,
                    )
                })
                .and_then(|()| w.deploy(&service_id, &environment_id, now, DeployCause::Deploy));
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
        w.config.quirks = quirks;
        w.last_project_create.clear();
        seeded
    }

    /// Creates a project directly (as a person would in Railway's dashboard): for tests of
    /// what the pool must leave alone.
    pub fn create_foreign_project(&self, name: &str, description: Option<&str>) -> String {
        let mut w = self.sim.world();
        let token = w.config.tokens.keys().next().cloned().unwrap_or_default();
        let workspace = w.config.tokens.get(&token).and_then(|ws| ws.first().cloned());
        let quirks = std::mem::replace(&mut w.config.quirks, Quirks::none());
        let id = w.create_project(
            &token,
            Some(name.into()),
            description.map(str::to_string),
            workspace,
            None,
            Instant::now(),
        );
        w.config.quirks = quirks;
        w.last_project_create.clear();
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
    let latest = w.latest_deployment_of(service_id);
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
