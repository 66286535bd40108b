//! Test support: a pool under test — a simulator, a fresh database and a provisioner wired to
//! both — for this crate's tests and those of the crates above it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::{AgentMailConfig, OpenRouterConfig, Provisioner, ProvisionerConfig, StepHook, select_image};
use pool_store::testing::TestDatabase;
use pool_store::{AgentId, AgentStatus, Store};
use railway_api::{ClientConfig, RailwayClient, RegistryCredentials};
use railway_sim::{SimConfig, SimHandle};
use secrecy::{ExposeSecret, SecretString};

pub const WORKSPACE: &str = "ws-sim";
pub const ENVIRONMENT: &str = "staging";

pub struct TestPool {
    pub sim: SimHandle,
    pub db: TestDatabase,
    pub store: Store,
    pub railway: RailwayClient,
    pub provisioner: Provisioner,
}

pub fn railway_client(sim: &SimHandle) -> RailwayClient {
    let mut config = ClientConfig::new(sim.graphql_url(), vec![SecretString::from("sim-token")]);
    config.request_timeout = Duration::from_secs(2);
    config.retry_min_delay = Duration::from_millis(5);
    config.retry_max_delay = Duration::from_millis(50);
    config.budget.requests_per_second = 1000;
    RailwayClient::new(config).unwrap()
}

pub fn provisioner_config(sim: &SimHandle, tag: Option<&str>) -> ProvisionerConfig {
    let image = select_image("ghcr.io/xmtplabs/convos-agent", tag, ENVIRONMENT).unwrap();
    let mut config = ProvisionerConfig::new(WORKSPACE, ENVIRONMENT, image);
    config.pool_project_id = Some("pool-own-project".into());
    config.registry = Some(RegistryCredentials {
        username: "xmtplabs".into(),
        password: SecretString::from("ghp_test_token"),
    });
    config.agent_url_template = sim.agent_url_template();
    config.vcpus = Some(1.0);
    config.memory_gb = Some(2.0);
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
    config.provision_timeout = Duration::from_secs(3);
    config.health_timeout = Duration::from_secs(2);
    config
}

impl TestPool {
    pub async fn start(sim_config: SimConfig) -> Self {
        Self::with_hook(sim_config, None).await
    }

    pub async fn with_hook(sim_config: SimConfig, hook: Option<StepHook>) -> Self {
        let sim = railway_sim::start(sim_config).await.unwrap();
        let db = TestDatabase::migrated().await;
        let store = db.store().await;
        let railway = railway_client(&sim);
        let provisioner = Provisioner::with_step_hook(
            provisioner_config(&sim, None),
            store.clone(),
            railway.clone(),
            hook,
        )
        .unwrap();
        Self {
            sim,
            db,
            store,
            railway,
            provisioner,
        }
    }

    /// Another provisioner on the same simulator and database (a restarted replica).
    pub fn provisioner(&self, config: ProvisionerConfig) -> Provisioner {
        Provisioner::new(config, self.store.clone(), self.railway.clone()).unwrap()
    }

    /// Polls until the agent's health check says ready, then moves it to idle (the tick's
    /// job, done by hand here).
    pub async fn make_idle(&self, id: &AgentId) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let agent = self.store.agent(id).await.unwrap().unwrap();
            let url = self.provisioner.agent_url(&agent).unwrap();
            let token = agent
                .secrets
                .as_ref()
                .unwrap()
                .agent_api_token
                .expose_secret()
                .to_string();
            if self.provisioner.agents().health(&url, &token).await.is_ready() {
                let moved = self
                    .store
                    .transition(id, AgentStatus::Starting, AgentStatus::Idle, "healthy")
                    .await
                    .unwrap();
                assert!(moved.applied(), "{moved:?}");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent {id} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn idle_agents(&self, n: usize) -> Vec<AgentId> {
        let creations: Vec<_> = (0..n)
            .map(|_| {
                let p = self.provisioner.clone();
                tokio::spawn(async move { p.create_agent().await.unwrap() })
            })
            .collect();
        let mut ids = Vec::new();
        for c in creations {
            ids.push(c.await.unwrap());
        }
        for id in &ids {
            self.make_idle(id).await;
        }
        ids
    }

    /// Every live project, key and inbox in the simulator belongs to a live agent row, and
    /// every archived agent's resources are gone.
    pub async fn assert_nothing_leaked(&self) {
        let snapshot = self.sim.snapshot();
        let live = self.store.live_agents().await.unwrap();
        let live_projects: BTreeSet<String> = snapshot.live_projects().iter().map(|p| p.id.clone()).collect();
        let owned_projects: BTreeSet<String> = live.iter().filter_map(|a| a.project_id.clone()).collect();
        assert_eq!(
            live_projects, owned_projects,
            "live projects are exactly those of live agents"
        );
        let live_keys: BTreeSet<String> = snapshot
            .keys
            .iter()
            .filter(|k| !k.deleted)
            .map(|k| k.id.clone())
            .collect();
        let owned_keys: BTreeSet<String> = live
            .iter()
            .filter_map(|a| a.openrouter_key_hash.clone())
            .collect();
        assert_eq!(
            live_keys, owned_keys,
            "live keys are exactly those of live agents"
        );
        let live_inboxes: BTreeSet<String> = snapshot
            .inboxes
            .iter()
            .filter(|i| !i.deleted)
            .map(|i| i.id.clone())
            .collect();
        let owned_inboxes: BTreeSet<String> =
            live.iter().filter_map(|a| a.agentmail_inbox_id.clone()).collect();
        assert_eq!(
            live_inboxes, owned_inboxes,
            "live inboxes are exactly those of live agents"
        );
    }
}
