//! The one place that reads the environment: every setting, validated, into typed configs.
//!
//! One module per subject, each reading its own variables through the shared [`reader`]:
//! [`server`] (port, API keys, limits), [`database`], [`railway`], [`secrets`] (agents'
//! secrets at rest), [`agents`] (image, names, URLs, pacing), [`resources`] (OpenRouter,
//! AgentMail, Telnyx), [`limits`] (per-caller limits: the service proxy's, the claims'),
//! [`sizing`] (the settings seeded on the first start), [`reconciler`] (the tick),
//! [`console`] and [`deployment`] (what staging and production require). A new variable goes in the module of the subject it configures.
//!
//! All problems are collected and reported together, each naming its variable, so an operator
//! fixes a deployment in one round. The variable names of the Node.js pool manager are kept.

mod agents;
mod console;
mod database;
mod deployment;
mod limits;
mod railway;
mod reader;
mod reconciler;
mod resources;
mod secrets;
mod server;
mod sizing;
#[cfg(test)]
mod testing;

use std::net::SocketAddr;

use pool_provisioner::ProvisionerConfig;
use pool_reconciler::ReconcilerConfig;
use pool_store::{MigrateOptions, PoolSettings, StoreConfig};
use railway_api::ClientConfig;
use secrecy::SecretString;

pub use reader::Env;

/// Everything the service needs, parsed.
#[derive(Debug)]
pub struct Config {
    /// Where to listen (`PORT`).
    pub listen: SocketAddr,
    /// `POOL_API_KEY`.
    pub admin_key: SecretString,
    /// The database.
    pub store: StoreConfig,
    /// Run migrations at start-up (`POOL_RUN_MIGRATIONS`).
    pub run_migrations: bool,
    /// Options for the migration run.
    pub migrate: MigrateOptions,
    /// Take over the Node pool's agents at start-up (`POOL_ADOPT_NODE_SCHEMA`).
    pub adopt_node: bool,
    /// Railway client.
    pub railway: ClientConfig,
    /// Agents.
    pub provisioner: ProvisionerConfig,
    /// The tick.
    pub reconciler: ReconcilerConfig,
    /// The runtime settings the environment seeds on the first start.
    pub settings: PoolSettings,
    /// The operator console.
    pub console: pool_http::console::ConsoleConfig,
    /// The claim and metrics keys, and the server's limits.
    pub security: pool_http::SecurityConfig,
    /// `RAILWAY_WEBHOOK_SECRET`: the path secret of `POST /webhooks/railway/{secret}`.
    pub webhook_secret: Option<SecretString>,
}

impl Config {
    /// Parses and validates every setting; on any problem, lists them all.
    pub fn from_env(env: &Env) -> Result<Self, Vec<String>> {
        let mut r = reader::Reader::new(env);
        let server = server::read(&mut r);
        let database = database::read(&mut r);
        // Plain http for Railway, the agents, OpenRouter and AgentMail: only for the simulator.
        let allow_insecure_urls = r.flag("POOL_ALLOW_INSECURE_URLS", false);
        let railway = railway::read(&mut r, allow_insecure_urls);
        let secrets = secrets::secrets_keys(&mut r, &railway.environment_name);
        let mut provisioner = agents::read(&mut r, &railway, allow_insecure_urls);
        provisioner.openrouter = resources::openrouter(&mut r);
        provisioner.agentmail = resources::agentmail(&mut r);
        provisioner.telnyx = resources::telnyx(&mut r);
        limits::read(&mut r, &mut provisioner);
        // Agent URLs (the template and the domain suffix), OpenRouter's and AgentMail's.
        if let Err(problems) = provisioner.check_urls() {
            r.problems.extend(problems);
        }
        let settings = sizing::read(&mut r);
        let reconciler = reconciler::read(&mut r);
        let console = console::read(&mut r);
        let webhook_secret = railway::webhook_secret(&mut r);
        deployment::read(
            &mut r,
            &railway.environment_name,
            &database.url,
            &settings,
            &console,
            &server.security,
            &provisioner,
        );

        if !r.problems.is_empty() {
            return Err(r.problems);
        }
        Ok(Self {
            listen: server.listen,
            admin_key: server.admin_key,
            store: StoreConfig {
                secrets,
                schema: database.schema,
                default_shape: provisioner.default_shape().name.clone(),
                ..StoreConfig::new(database.url)
            },
            run_migrations: database.run_migrations,
            adopt_node: database.adopt_node,
            migrate: MigrateOptions {
                legacy_project_id: railway.pool_project_id,
            },
            railway: railway.client,
            provisioner,
            reconciler,
            settings,
            console,
            webhook_secret,
            security: server.security,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::testing::{MINIMAL, minimal_with};
    use super::*;

    #[test]
    fn the_minimal_configuration_gets_the_documented_defaults() {
        let config = Config::from_env(&Env::from_pairs(&MINIMAL)).unwrap();
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(
            config.provisioner.default_shape().image.to_string(),
            "ghcr.io/xmtplabs/convos-agent:staging"
        );
        assert_eq!(
            config.railway.endpoint_with_query(),
            "https://backboard.railway.com/graphql/v2?source=pool-manager"
        );
        assert_eq!(config.settings.min_idle, 1);
        assert_eq!(config.reconciler.tick_interval, Duration::from_secs(30));
        assert_eq!(config.provisioner.create_concurrency, 8);
        assert!(config.provisioner.openrouter.is_none());
        assert!(
            config.provisioner.registry.is_none(),
            "no GHCR_TOKEN: a public image"
        );
    }

    #[test]
    fn every_problem_is_listed_with_its_variable() {
        let problems = Config::from_env(&Env::from_pairs(&[
            ("PORT", "eighty"),
            ("POOL_MIN_IDLE", "-1"),
            ("RAILWAY_ENVIRONMENT_NAME", "pr-7"),
            ("POOL_RUN_MIGRATIONS", "maybe"),
            ("POOL_IDLE_SCHEDULE", "mon-fry 08:00-20:00 Europe/Berlin=20"),
            ("RAILWAY_WEBHOOK_SECRET", "short/secret"),
            ("POOL_EVENT_RETENTION_MS", "3600000"),
        ]))
        .unwrap_err();
        for expected in [
            "PORT must be a port number",
            "POOL_API_KEY is required",
            "DATABASE_URL is required",
            "RAILWAY_API_TOKEN (or RAILWAY_API_TOKENS",
            "RAILWAY_WORKSPACE_ID (or RAILWAY_TEAM_ID) is required",
            "POOL_MIN_IDLE must be a whole number",
            "POOL_IDLE_SCHEDULE: POOL_IDLE_SCHEDULE rule 1",
            "POOL_RUN_MIGRATIONS must be true or false",
            "set AGENT_IMAGE_TAG to pin a tag",
            "RAILWAY_WEBHOOK_SECRET must be at least 24 characters",
            "POOL_EVENT_RETENTION_MS must be at least",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} missing from {problems:#?}"
            );
        }
    }

    #[test]
    fn an_interval_out_of_range_refuses_to_start_naming_the_variable() {
        for (name, value) in [
            ("TICK_INTERVAL_MS", "7200000"),
            ("TICK_INTERVAL_MS", "10"),
            ("POOL_FULL_SWEEP_INTERVAL_MS", "100"),
            ("POOL_DOWN_BACKOFF_MAX_MS", "1000"),
            ("POOL_REPROBE_DELAY_MS", "600000"),
            ("POOL_SHARDS", "0"),
            ("POOL_SHARDS", "1025"),
            ("POOL_REPLICA_LEASE_MS", "10"),
        ] {
            let problems = Config::from_env(&minimal_with(&[], &[(name, value)])).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(name) && p.contains("must be between")),
                "{name}={value}: {problems:#?}"
            );
        }
        let problems = Config::from_env(&minimal_with(&[], &[("POOL_BREAKER_PERCENT", "0")])).unwrap_err();
        assert!(
            problems.iter().any(|p| p.starts_with("POOL_BREAKER_PERCENT")),
            "{problems:#?}"
        );
    }

    #[test]
    fn adopting_the_node_pools_agents_needs_a_schema_of_the_pools_own() {
        let config = Config::from_env(&Env::from_pairs(&MINIMAL)).unwrap();
        assert!(!config.adopt_node);
        assert_eq!(config.store.schema, "public");

        let problems =
            Config::from_env(&minimal_with(&[], &[("POOL_ADOPT_NODE_SCHEMA", "true")])).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("POOL_ADOPT_NODE_SCHEMA=true needs DATABASE_SCHEMA")),
            "{problems:#?}"
        );
        let problems =
            Config::from_env(&minimal_with(&[], &[("DATABASE_SCHEMA", "Agent Pool")])).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("DATABASE_SCHEMA \"Agent Pool\"")),
            "{problems:#?}"
        );

        let config = Config::from_env(&minimal_with(
            &[],
            &[
                ("POOL_ADOPT_NODE_SCHEMA", "true"),
                ("DATABASE_SCHEMA", "agent_pool"),
            ],
        ))
        .unwrap();
        assert!(config.adopt_node);
        assert_eq!(config.store.schema, "agent_pool");
    }

    #[test]
    fn plain_http_urls_are_refused_without_pool_allow_insecure_urls() {
        let plain: [(&str, &str); 7] = [
            ("POOL_URL", "http://127.0.0.1:8080"),
            ("RAILWAY_API_URL", "http://127.0.0.1:9/graphql/v2"),
            ("AGENT_URL_TEMPLATE", "http://127.0.0.1:9/agents/{domain}"),
            ("OPENROUTER_MANAGEMENT_KEY", "sim-openrouter-management-key"),
            ("OPENROUTER_API_URL", "http://127.0.0.1:9/openrouter/api/v1"),
            ("AGENTMAIL_API_KEY", "sim-agentmail-key"),
            ("AGENTMAIL_API_URL", "http://127.0.0.1:9/agentmail/v0"),
        ];
        let problems = Config::from_env(&minimal_with(&[], &plain)).unwrap_err();
        for variable in [
            "RAILWAY_API_URL",
            "AGENT_URL_TEMPLATE",
            "OPENROUTER_API_URL",
            "AGENTMAIL_API_URL",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(variable) && p.contains("POOL_ALLOW_INSECURE_URLS")),
                "{variable} in {problems:#?}"
            );
        }
        let mut allowed = plain.to_vec();
        allowed.push(("POOL_ALLOW_INSECURE_URLS", "true"));
        let config = Config::from_env(&minimal_with(&[], &allowed)).unwrap();
        assert!(config.provisioner.allow_insecure_urls);

        for (name, value) in [
            ("AGENT_URL_TEMPLATE", "https://evil.example/{domain}"),
            ("AGENT_URL_TEMPLATE", "https://agents.example"),
            ("AGENT_DOMAIN_SUFFIX", "railway.app"),
        ] {
            let problems = Config::from_env(&minimal_with(&[], &[(name, value)])).unwrap_err();
            assert!(
                problems.iter().any(|p| p.starts_with(name)),
                "{name}={value}: {problems:#?}"
            );
        }
    }
}
