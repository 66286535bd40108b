//! Test support: a pool under test — a simulator, a fresh database and a provisioner wired to
//! both — for this crate's tests and those of the crates above it, and the one leak check the
//! tests and the chaos run share.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::{
    AgentMailConfig, CreationDemand, OpenRouterConfig, Provisioner, ProvisionerConfig, StepHook,
    TelnyxConfig, select_image,
};
use pool_store::testing::TestDatabase;
use pool_store::{Agent, AgentId, AgentStatus, PoolSettings, Store};
use railway_api::{ClientConfig, ProjectDeleter, ProjectId, RailwayClient, RegistryCredentials, WorkspaceId};
use railway_sim::{SimConfig, SimHandle, SimSnapshot};
use secrecy::SecretString;

/// The simulator's workspace (the one its `sim-token` belongs to).
pub const WORKSPACE: &str = "ws-sim";
/// The Railway environment the pool under test creates its agents in.
pub const ENVIRONMENT: &str = "staging";

/// A pool under test: a simulator, a fresh database and a provisioner wired to both.
pub struct TestPool {
    /// The simulated Railway, agents, OpenRouter and AgentMail.
    pub sim: SimHandle,
    /// This pool's own database, dropped with it.
    pub db: TestDatabase,
    /// A store on `db`.
    pub store: Store,
    /// A client of `sim`.
    pub railway: RailwayClient,
    /// The capability to delete projects that goes with `railway`.
    pub deleter: ProjectDeleter,
    /// The provisioner under test.
    pub provisioner: Provisioner,
    /// The database's pool id (in every project's marker).
    pub pool_id: String,
}

/// A client configuration for the simulator, with short timeouts and retries.
pub fn client_config(sim: &SimHandle) -> ClientConfig {
    let mut config = ClientConfig::new(sim.graphql_url(), vec![SecretString::from("sim-token")]);
    config.request_timeout = Duration::from_secs(2);
    config.retry_min_delay = Duration::from_millis(5);
    config.retry_max_delay = Duration::from_millis(50);
    config.budget.requests_per_second = 1000;
    config
}

/// A client (and its deleter) pointed at the simulator, with short timeouts.
pub fn railway_client(sim: &SimHandle) -> (RailwayClient, ProjectDeleter) {
    RailwayClient::with_project_deleter(client_config(sim)).unwrap()
}

/// A provisioner configuration pointed at the simulator's agents, OpenRouter and AgentMail,
/// with short timeouts; `tag` picks the image tag as `select_image` does.
pub fn provisioner_config(sim: &SimHandle, tag: Option<&str>) -> ProvisionerConfig {
    let image = select_image("ghcr.io/xmtplabs/convos-agent", tag, ENVIRONMENT).unwrap();
    let mut config = ProvisionerConfig::new(WorkspaceId::new(WORKSPACE), ENVIRONMENT, image);
    config.pool_project_id = Some(ProjectId::new("pool-own-project"));
    config.registry = Some(RegistryCredentials {
        username: "xmtplabs".into(),
        password: SecretString::from("ghp_test_token"),
    });
    config.agent_url_template = sim.agent_url_template();
    // The simulator speaks plain http on loopback.
    config.allow_insecure_urls = true;
    for shape in config.shapes.iter_mut() {
        shape.vcpus = Some(1.0);
        shape.memory_gb = Some(2.0);
    }
    config.openrouter = Some(OpenRouterConfig {
        base_url: sim.openrouter_url(),
        management_key: SecretString::from("sim-openrouter-management-key"),
        key_limit: 20.0,
        limit_reset: "monthly".into(),
    });
    config.agentmail = Some(AgentMailConfig {
        base_url: sim.agentmail_url(),
        api_key: SecretString::from("sim-agentmail-key"),
        domain: None,
    });
    config.telnyx = Some(TelnyxConfig {
        base_url: sim.telnyx_url(),
        api_key: SecretString::from("sim-telnyx-key"),
        messaging_profile_id: None,
        country_code: "US".into(),
    });
    config.agent_variables.pool_url = Some("https://pool.example".into());
    config.provision_timeout = Duration::from_secs(3);
    config.health_timeout = Duration::from_secs(2);
    config.step_retry_deadline = Duration::from_secs(20);
    config.self_deploy_grace = Duration::from_millis(300);
    config.registry_url = Some(sim.registry_url());
    config
}

/// Two shapes as CI builds them ([`crate::image::RUNTIME_IMAGES`]: OpenClaw, the default, and
/// Hermes, each from its own repository), tagged `tag`.
pub fn two_shapes(tag: &str) -> crate::Shapes {
    let shapes = crate::image::RUNTIME_IMAGES
        .iter()
        .map(|runtime| {
            crate::Shape::new(
                runtime.name,
                crate::ImageRef {
                    repository: runtime.repository.into(),
                    tag: tag.into(),
                },
            )
        })
        .collect();
    crate::Shapes::new(shapes, None).unwrap()
}

/// Railway as it is ([`SimConfig::quick`]) but without the `projectCreate` throttle: for tests
/// that need many agents and are not about creation's pace.
pub fn unthrottled() -> SimConfig {
    let mut config = SimConfig::quick();
    config.quirks.project_create_interval = None;
    config
}

/// The runtime settings a test pool starts with: nothing kept warm, no cap, a brake at 5, no
/// parked tier (a test that wants one sets it).
pub fn test_settings() -> PoolSettings {
    PoolSettings {
        min_idle: 0,
        max_total: None,
        paused: false,
        idle_schedule: None,
        max_idle_age: None,
        create_failure_limit: 5,
        parked_min: 0,
        parked_max: 0,
        park_after: pool_sizing::DEFAULT_PARK_AFTER,
    }
}

impl TestPool {
    /// Changes the runtime settings (as an operator would).
    pub async fn set_settings(&self, change: impl FnOnce(&mut PoolSettings)) {
        let mut settings = self.store.settings().await.unwrap().settings;
        change(&mut settings);
        self.store.update_settings(&settings, "test").await.unwrap();
    }

    /// A pool on a simulator with Railway's behaviours on and its timings shortened
    /// ([`SimConfig::quick`]).
    pub async fn quick() -> Self {
        Self::start(SimConfig::quick()).await
    }

    /// A pool on a simulator configured by `sim_config`.
    pub async fn start(sim_config: SimConfig) -> Self {
        Self::with_hook(sim_config, None).await
    }

    /// [`Self::start`] with a provisioner that calls `hook` after each creation step.
    pub async fn with_hook(sim_config: SimConfig, hook: Option<StepHook>) -> Self {
        Self::configured(sim_config, hook, |_| {}).await
    }

    /// A pool of two shapes, `openclaw` (the default) and `hermes`, each from its own image
    /// repository ([`two_shapes`]), every shape's settings seeded with [`test_settings`].
    pub async fn two_shapes(sim_config: SimConfig) -> Self {
        Self::configured(sim_config, None, |config| {
            config.shapes = two_shapes(&config.default_shape().image.tag);
            for shape in config.shapes.iter_mut() {
                shape.vcpus = Some(1.0);
                shape.memory_gb = Some(2.0);
            }
        })
        .await
    }

    /// [`Self::with_hook`] with the provisioner's configuration changed by `configure`, every
    /// shape's settings seeded.
    pub async fn configured(
        sim_config: SimConfig,
        hook: Option<StepHook>,
        configure: impl FnOnce(&mut ProvisionerConfig),
    ) -> Self {
        let sim = railway_sim::start(sim_config).await.unwrap();
        let db = TestDatabase::migrated().await;
        let store = db.store().await;
        let (railway, deleter) = railway_client(&sim);
        let pool_id = store.pool_id().await.unwrap();
        let mut config = provisioner_config(&sim, None);
        configure(&mut config);
        for shape in config.shapes.iter() {
            store
                .seed_shape_settings(&shape.name, &test_settings())
                .await
                .unwrap();
        }
        config.pool_id = Some(pool_id.clone());
        let provisioner =
            Provisioner::with_step_hook(config, store.clone(), railway.clone(), deleter.clone(), hook)
                .unwrap();
        Self {
            sim,
            db,
            store,
            railway,
            deleter,
            provisioner,
            pool_id,
        }
    }

    /// Another provisioner on the same simulator and database (a restarted replica); the
    /// database's pool id unless `config` names one.
    pub fn provisioner(&self, mut config: ProvisionerConfig) -> Provisioner {
        config.pool_id.get_or_insert_with(|| self.pool_id.clone());
        Provisioner::new(
            config,
            self.store.clone(),
            self.railway.clone(),
            self.deleter.clone(),
        )
        .unwrap()
    }

    /// Creates `n` agents and waits for their sagas: the ids of those that reached
    /// `starting`, in order, and the failures.
    pub async fn create(&self, n: usize) -> Vec<crate::Result<AgentId>> {
        self.provisioner
            .start_creations(CreationDemand::Exactly(n))
            .await
            .unwrap()
            .finished()
            .await
    }

    /// Creates one agent and waits for its saga.
    pub async fn create_one(&self) -> crate::Result<AgentId> {
        self.create(1).await.pop().unwrap()
    }

    /// Polls until the agent's health check says ready, then moves it to idle (the tick's
    /// job, done by hand here).
    pub async fn make_idle(&self, id: &AgentId) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let agent = self.store.agent(id).await.unwrap().unwrap();
            let url = self.provisioner.agent_url(&agent).unwrap();
            if self.provisioner.agents().health(&url, "").await.is_ready() {
                let moved = self
                    .store
                    .transition(id, AgentStatus::Starting, AgentStatus::Idle, "healthy")
                    .await
                    .unwrap();
                assert!(moved.applied(), "{moved:?}");
                // As the tick does: claims that wait look again.
                self.store
                    .notify(pool_store::PoolSignal::AgentIdle)
                    .await
                    .unwrap();
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent {id} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates `n` agents and makes each idle: their ids, in order.
    pub async fn idle_agents(&self, n: usize) -> Vec<AgentId> {
        let ids: Vec<AgentId> = self.create(n).await.into_iter().map(|r| r.unwrap()).collect();
        for id in &ids {
            self.make_idle(id).await;
        }
        ids
    }

    /// Creates `n` agents of `shape` and makes each idle: their ids, in order.
    pub async fn idle_agents_of(&self, shape: &str, n: usize) -> Vec<AgentId> {
        let ids: Vec<AgentId> = self
            .provisioner
            .start_creations_of(shape, CreationDemand::Exactly(n))
            .await
            .unwrap()
            .finished()
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        for id in &ids {
            self.make_idle(id).await;
        }
        ids
    }

    /// Every live project, key and inbox in the simulator belongs to a live agent row, and
    /// every live row's resources exist.
    pub async fn assert_nothing_leaked(&self) {
        let live = self.store.live_agents().await.unwrap();
        let inboxes: std::collections::BTreeMap<AgentId, String> =
            self.store.recorded_inboxes().await.unwrap().into_iter().collect();
        let owned: Vec<OwnedResources> = live
            .iter()
            .map(|agent| {
                let mut owned = OwnedResources::of(agent);
                if owned.inbox.is_none() {
                    owned.inbox = inboxes.get(&agent.id).cloned();
                }
                owned
            })
            .collect();
        let report = check_leaks(&self.sim.snapshot(), &owned);
        assert!(report.is_clean(), "{report:#?}");
    }

    /// Every agent's variables in the simulator, after a fill: none may hold an organisation's
    /// key, by name or by value (issue 20: every agent carried AGENTMAIL_API_KEY, TELNYX_* and
    /// BANKR_API_KEY). `organisation_keys` are the values to look for (the pool's own keys).
    pub fn assert_no_organisation_key_on_agents(&self, organisation_keys: &[&str]) {
        let snapshot = self.sim.snapshot();
        let problems = organisation_keys_on_agents(&snapshot, organisation_keys);
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(
            snapshot.services.iter().any(|s| !s.variables.is_empty()),
            "no agent's variables to scan"
        );
    }
}

/// Names of variables that hold an organisation's key: none may reach an agent.
pub const ORGANISATION_KEY_VARIABLES: [&str; 8] = [
    "AGENTMAIL_API_KEY",
    "TELNYX_API_KEY",
    "TELNYX_PHONE_NUMBER",
    "TELNYX_MESSAGING_PROFILE_ID",
    "BANKR_API_KEY",
    "OPENROUTER_MANAGEMENT_KEY",
    "RAILWAY_API_TOKEN",
    "POOL_SECRETS_KEY",
];

/// The simulator's keys the pool under test holds for the organisation.
pub const SIM_ORGANISATION_KEYS: [&str; 5] = [
    "sim-agentmail-key",
    "sim-telnyx-key",
    "sim-openrouter-management-key",
    "sim-token",
    "ghp_test_token",
];

/// Every agent service's variables (the current ones and those each deployment captured)
/// that hold an organisation's key by name, or any of `values`: `service: VARIABLE` lines.
pub fn organisation_keys_on_agents(snapshot: &SimSnapshot, values: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let sets = snapshot
        .services
        .iter()
        .map(|s| (s.id.as_str(), &s.variables))
        .chain(
            snapshot
                .deployments
                .iter()
                .map(|d| (d.service_id.as_str(), &d.variables)),
        );
    for (service, variables) in sets {
        for (name, value) in variables {
            let by_name = ORGANISATION_KEY_VARIABLES.contains(&name.as_str());
            let by_value = values.iter().any(|v| !v.is_empty() && value.contains(v));
            if by_name || by_value {
                found.push(format!("{service}: {name}"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// What one agent row owns (for the leak check).
#[derive(Debug, Clone)]
pub struct OwnedResources {
    /// The row is mid-teardown: its resources may be gone already.
    pub deleting: bool,
    /// Its Railway project.
    pub project: Option<String>,
    /// Its OpenRouter key (hash).
    pub key: Option<String>,
    /// Its AgentMail inbox.
    pub inbox: Option<String>,
}

impl OwnedResources {
    /// What `agent`'s row records.
    pub fn of(agent: &Agent) -> Self {
        Self {
            deleting: agent.status == AgentStatus::Deleting,
            project: agent.project_id.clone(),
            key: agent.openrouter_key_hash.clone(),
            inbox: agent.agentmail_inbox_id.clone(),
        }
    }
}

/// Resources without a live row (leaks), and rows pointing at nothing.
#[derive(Debug, Clone, Default)]
pub struct LeakReport {
    /// Live projects in the simulator.
    pub live_projects: usize,
    /// Live OpenRouter keys.
    pub live_keys: usize,
    /// Live AgentMail inboxes.
    pub live_inboxes: usize,
    /// Live remote resources no live row owns.
    pub without_row: Vec<String>,
    /// Resources a live row (not mid-teardown) records that do not exist.
    pub dangling: Vec<String>,
}

impl LeakReport {
    /// No leak and nothing dangling.
    pub fn is_clean(&self) -> bool {
        self.without_row.is_empty() && self.dangling.is_empty()
    }
}

/// The leak check of the tests and the chaos run: `rows` are the live agent rows.
pub fn check_leaks(snapshot: &SimSnapshot, rows: &[OwnedResources]) -> LeakReport {
    let live_projects: BTreeSet<String> = snapshot.live_projects().iter().map(|p| p.id.clone()).collect();
    let live_keys: BTreeSet<String> = snapshot
        .keys
        .iter()
        .filter(|k| !k.deleted)
        .map(|k| k.id.clone())
        .collect();
    let live_inboxes: BTreeSet<String> = snapshot
        .inboxes
        .iter()
        .filter(|i| !i.deleted)
        .map(|i| i.id.clone())
        .collect();
    let owned = |pick: fn(&OwnedResources) -> Option<&String>, steady_only: bool| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| !(steady_only && r.deleting))
            .filter_map(pick)
            .filter(|s| !s.is_empty())
            .cloned()
            .collect()
    };
    let mut report = LeakReport {
        live_projects: live_projects.len(),
        live_keys: live_keys.len(),
        live_inboxes: live_inboxes.len(),
        ..LeakReport::default()
    };
    for (kind, live, pick) in [
        (
            "project",
            &live_projects,
            (|r: &OwnedResources| r.project.as_ref()) as fn(&OwnedResources) -> Option<&String>,
        ),
        ("key", &live_keys, |r| r.key.as_ref()),
        ("inbox", &live_inboxes, |r| r.inbox.as_ref()),
    ] {
        report.without_row.extend(
            live.difference(&owned(pick, false))
                .map(|id| format!("{kind} {id}")),
        );
        report.dangling.extend(
            owned(pick, true)
                .difference(live)
                .map(|id| format!("{kind} {id}")),
        );
    }
    report
}
