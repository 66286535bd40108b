//! The one place that reads the environment: every setting, validated, into typed configs.
//!
//! All problems are collected and reported together, each naming its variable, so an operator
//! fixes a deployment in one round. The variable names of the Node.js pool manager are kept.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use pool_provisioner::{AgentMailConfig, AgentVariables, OpenRouterConfig, ProvisionerConfig, select_image};
use pool_reconciler::ReconcilerConfig;
use pool_store::{MigrateOptions, PoolSettings, StoreConfig};
use railway_api::{
    BudgetConfig, ClientConfig, DEFAULT_ENDPOINT, ProjectId, RegistryCredentials, WorkspaceId,
};
use secrecy::SecretString;

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
}

/// Variables passed to every agent unchanged.
pub const PASS_THROUGH: [&str; 4] = [
    "BANKR_API_KEY",
    "TELNYX_API_KEY",
    "TELNYX_PHONE_NUMBER",
    "TELNYX_MESSAGING_PROFILE_ID",
];

/// A snapshot of the environment, so parsing is a pure function (and testable).
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    /// From pairs (tests).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// Collects problems while reading.
struct Reader<'a> {
    env: &'a Env,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn optional(&self, name: &str) -> Option<String> {
        self.env.get(name).map(str::to_string)
    }

    fn required(&mut self, name: &str, what: &str) -> String {
        match self.env.get(name) {
            Some(v) => v.to_string(),
            None => {
                self.problems.push(format!("{name} is required: {what}"));
                String::new()
            }
        }
    }

    fn secret(&self, name: &str) -> Option<SecretString> {
        self.env.get(name).map(|v| SecretString::from(v.to_string()))
    }

    fn parse<T: FromStr>(&mut self, name: &str, default: T, what: &str) -> T {
        match self.env.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                self.problems.push(format!("{name} must be {what}, got {v:?}"));
                default
            }),
        }
    }

    fn parse_optional<T: FromStr>(&mut self, name: &str, what: &str) -> Option<T> {
        let v = self.env.get(name)?;
        match v.parse() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                self.problems.push(format!("{name} must be {what}, got {v:?}"));
                None
            }
        }
    }

    fn millis(&mut self, name: &str, default_ms: u64) -> Duration {
        let ms: u64 = self.parse(name, default_ms, "a whole number of milliseconds");
        if ms == 0 {
            self.problems.push(format!("{name} must be more than 0"));
        }
        Duration::from_millis(ms)
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.env.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => default,
            Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                self.problems
                    .push(format!("{name} must be true or false, got {other:?}"));
                default
            }
        }
    }

    fn url(&mut self, name: &str, default: &str) -> String {
        let url = self
            .env
            .get(name)
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            self.problems
                .push(format!("{name} must be an http(s) URL, got {url:?}"));
        }
        url
    }
}

/// A settings problem in the words of the environment: the variable that seeds the field.
fn settings_problem(e: &pool_provisioner::ProvisionError) -> String {
    match e {
        pool_provisioner::ProvisionError::InvalidRequest { field, message } => {
            let variable = match *field {
                "minIdle" => "POOL_MIN_IDLE",
                "maxTotal" => "POOL_MAX_TOTAL",
                "idleSchedule" => "POOL_IDLE_SCHEDULE",
                "maxIdleAgeMs" => "POOL_MAX_IDLE_AGE_MS",
                "createFailureLimit" => "POOL_CREATE_FAILURE_LIMIT",
                other => other,
            };
            format!("{variable}: {message}")
        }
        other => other.to_string(),
    }
}

impl Config {
    /// Parses and validates every setting; on any problem, lists them all.
    pub fn from_env(env: &Env) -> Result<Self, Vec<String>> {
        let mut r = Reader {
            env,
            problems: Vec::new(),
        };

        let port: u16 = r.parse("PORT", 8080, "a port number");
        let admin_key = r.required("POOL_API_KEY", "the bearer key for the pool's API");
        if !admin_key.is_empty() && admin_key.len() < 16 {
            r.problems
                .push("POOL_API_KEY must be at least 16 characters".into());
        }
        let database_url = r.required("DATABASE_URL", "postgres://user:password@host:port/database");
        let run_migrations = r.flag("POOL_RUN_MIGRATIONS", true);
        let pool_project_id = r.optional("RAILWAY_PROJECT_ID");

        // Railway.
        let mut tokens: Vec<SecretString> = Vec::new();
        if let Some(list) = r.optional("RAILWAY_API_TOKENS") {
            tokens.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| SecretString::from(t.to_string())),
            );
        }
        if let Some(single) = r.secret("RAILWAY_API_TOKEN") {
            tokens.insert(0, single);
        }
        if tokens.is_empty() {
            r.problems.push(
                "RAILWAY_API_TOKEN (or RAILWAY_API_TOKENS, comma-separated) is required: a workspace token"
                    .into(),
            );
        }
        let workspace_id = match (r.optional("RAILWAY_WORKSPACE_ID"), r.optional("RAILWAY_TEAM_ID")) {
            (Some(w), _) | (None, Some(w)) => w,
            (None, None) => {
                r.problems.push("RAILWAY_WORKSPACE_ID (or RAILWAY_TEAM_ID) is required: the workspace agents' projects are created in".into());
                String::new()
            }
        };
        let environment_name = r.required(
            "RAILWAY_ENVIRONMENT_NAME",
            "the pool's Railway environment (staging or production)",
        );
        let mut railway = ClientConfig::new(r.url("RAILWAY_API_URL", DEFAULT_ENDPOINT), tokens);
        railway.request_timeout = r.millis("RAILWAY_REQUEST_TIMEOUT_MS", 30_000);
        railway.project_create_cooldown = r.millis("RAILWAY_PROJECT_CREATE_COOLDOWN_MS", 31_000);
        railway.budget = BudgetConfig {
            requests_per_second: r.parse("RAILWAY_REQUESTS_PER_SECOND", 50, "a whole number"),
            requests_per_hour: r.parse("RAILWAY_REQUESTS_PER_HOUR", 10_000, "a whole number"),
            max_in_flight: r.parse("RAILWAY_MAX_IN_FLIGHT", 32, "a whole number"),
            ..BudgetConfig::default()
        };

        // The image.
        let repository = r
            .optional("AGENT_IMAGE")
            .unwrap_or_else(|| pool_provisioner::image::DEFAULT_AGENT_IMAGE.into());
        let tag = r.optional("AGENT_IMAGE_TAG");
        let image = match select_image(&repository, tag.as_deref(), &environment_name) {
            Ok(image) => Some(image),
            Err(e) if !environment_name.is_empty() => {
                r.problems.push(e.to_string());
                None
            }
            Err(_) => None,
        };
        let registry = r.secret("GHCR_TOKEN").map(|password| RegistryCredentials {
            username: r.optional("GHCR_USERNAME").unwrap_or_else(|| "xmtplabs".into()),
            password,
        });

        let mut provisioner = ProvisionerConfig::new(
            WorkspaceId::new(workspace_id),
            environment_name.clone(),
            image.unwrap_or(pool_provisioner::ImageRef {
                repository,
                tag: String::new(),
            }),
        );
        provisioner.pool_project_id = pool_project_id.as_deref().map(ProjectId::new);
        provisioner.registry = registry;
        provisioner.name_prefix = r
            .optional("AGENT_NAME_PREFIX")
            .unwrap_or_else(|| "convos-agent-".into());
        if let Err(e) = pool_provisioner::Naming::new(&provisioner.name_prefix, "p", "e") {
            r.problems.push(format!("AGENT_NAME_PREFIX: {e}"));
        }
        provisioner.agent_url_template = r
            .optional("AGENT_URL_TEMPLATE")
            .unwrap_or_else(|| "https://{domain}".into());
        if !provisioner.agent_url_template.contains("{domain}") {
            r.problems.push("AGENT_URL_TEMPLATE must contain {domain}".into());
        }
        provisioner.vcpus = r.parse_optional("AGENT_VCPUS", "a number of vCPUs");
        provisioner.memory_gb = r.parse_optional("AGENT_MEMORY_GB", "a number of GB");
        provisioner.agent_variables = AgentVariables {
            primary_model: r.optional("OPENCLAW_PRIMARY_MODEL"),
            xmtp_env: r.optional("XMTP_ENV").unwrap_or_else(|| "dev".into()),
            pool_url: r.optional("POOL_URL"),
            pass_through: PASS_THROUGH
                .iter()
                .filter_map(|name| Some((name.to_string(), r.secret(name)?)))
                .collect(),
        };
        provisioner.openrouter =
            r.secret("OPENROUTER_MANAGEMENT_KEY")
                .map(|management_key| OpenRouterConfig {
                    base_url: String::new(),
                    management_key,
                    key_limit: 20.0,
                    limit_reset: "monthly".into(),
                });
        if let Some(openrouter) = provisioner.openrouter.as_mut() {
            openrouter.base_url = r.url("OPENROUTER_API_URL", "https://openrouter.ai/api/v1");
            openrouter.key_limit = r.parse("OPENROUTER_KEY_LIMIT", 20.0, "a number of credits");
            openrouter.limit_reset = r
                .optional("OPENROUTER_KEY_LIMIT_RESET")
                .unwrap_or_else(|| "monthly".into());
        }
        provisioner.agentmail = r.secret("AGENTMAIL_API_KEY").map(|api_key| AgentMailConfig {
            base_url: String::new(),
            api_key,
            domain: None,
        });
        if let Some(agentmail) = provisioner.agentmail.as_mut() {
            agentmail.base_url = r.url("AGENTMAIL_API_URL", "https://api.agentmail.to/v0");
            agentmail.domain = r.optional("AGENTMAIL_DOMAIN");
        }
        provisioner.health_timeout = r.millis("POOL_HEALTH_TIMEOUT_MS", 5_000);
        provisioner.provision_timeout = r.millis("POOL_PROVISION_TIMEOUT_MS", 360_000);
        provisioner.create_concurrency = r.parse("POOL_CREATE_CONCURRENCY", 8, "a whole number");
        if provisioner.create_concurrency == 0 {
            r.problems
                .push("POOL_CREATE_CONCURRENCY must be at least 1".into());
        }
        provisioner.brake_probe_interval = r.millis("POOL_CREATE_PROBE_INTERVAL_MS", 300_000);
        provisioner.start_command = match r.optional("AGENT_START_COMMAND") {
            Some(command) if command == "-" => None,
            Some(command) => Some(command),
            None => Some(pool_provisioner::DEFAULT_START_COMMAND.into()),
        };
        provisioner.redeploy_fraction = r.parse("POOL_REDEPLOY_FRACTION", 0.25, "a fraction between 0 and 1");
        if !(0.0..=1.0).contains(&provisioner.redeploy_fraction) {
            r.problems
                .push("POOL_REDEPLOY_FRACTION must be between 0 and 1".into());
        }

        let settings = PoolSettings {
            min_idle: r.parse("POOL_MIN_IDLE", 1, "a whole number"),
            max_total: r.parse_optional("POOL_MAX_TOTAL", "a whole number"),
            paused: false,
            idle_schedule: r.optional("POOL_IDLE_SCHEDULE"),
            max_idle_age: r
                .parse_optional::<u64>("POOL_MAX_IDLE_AGE_MS", "a whole number of milliseconds")
                .map(Duration::from_millis),
            create_failure_limit: r.parse("POOL_CREATE_FAILURE_LIMIT", 5, "a whole number"),
        };
        if let Err(e) = pool_provisioner::validate_settings(&settings) {
            r.problems.push(settings_problem(&e));
        }
        let reconciler = ReconcilerConfig {
            health_concurrency: r.parse("POOL_HEALTH_CONCURRENCY", 64, "a whole number"),
            tick_interval: r.millis("TICK_INTERVAL_MS", 30_000),
            stuck_timeout: r.millis("POOL_STUCK_TIMEOUT_MS", 900_000),
            full_sweep_interval: r.millis("POOL_FULL_SWEEP_INTERVAL_MS", 600_000),
            orphan_sweep_interval: r.millis("POOL_ORPHAN_SWEEP_INTERVAL_MS", 1_800_000),
            orphan_grace: r.millis("POOL_ORPHAN_GRACE_MS", 600_000),
            ..ReconcilerConfig::default()
        };
        if reconciler.health_concurrency == 0 {
            r.problems
                .push("POOL_HEALTH_CONCURRENCY must be at least 1".into());
        }

        let console = pool_http::console::ConsoleConfig {
            admin_password: r.secret("POOL_ADMIN_PASSWORD"),
            secure_cookies: !r.flag("POOL_CONSOLE_INSECURE_COOKIES", false),
            session_ttl: r.millis("POOL_CONSOLE_SESSION_TTL_MS", 12 * 3600 * 1000),
        };
        if console
            .admin_password
            .as_ref()
            .is_some_and(|p| secrecy::ExposeSecret::expose_secret(p).len() < 12)
        {
            r.problems
                .push("POOL_ADMIN_PASSWORD must be at least 12 characters".into());
        }

        if !r.problems.is_empty() {
            return Err(r.problems);
        }
        Ok(Self {
            listen: SocketAddr::from(([0, 0, 0, 0], port)),
            admin_key: SecretString::from(admin_key),
            store: StoreConfig::new(database_url),
            run_migrations,
            migrate: MigrateOptions {
                legacy_project_id: pool_project_id,
            },
            railway,
            provisioner,
            reconciler,
            settings,
            console,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: [(&str, &str); 5] = [
        ("POOL_API_KEY", "a-long-enough-admin-key"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/pool"),
        ("RAILWAY_API_TOKEN", "token"),
        ("RAILWAY_WORKSPACE_ID", "ws"),
        ("RAILWAY_ENVIRONMENT_NAME", "staging"),
    ];

    #[test]
    fn the_minimal_configuration_gets_the_documented_defaults() {
        let config = Config::from_env(&Env::from_pairs(&MINIMAL)).unwrap();
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(
            config.provisioner.image.to_string(),
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
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} missing from {problems:#?}"
            );
        }
    }

    #[test]
    fn the_team_id_and_a_token_list_are_accepted() {
        let mut pairs: Vec<(&str, &str)> = MINIMAL
            .iter()
            .copied()
            .filter(|(k, _)| *k != "RAILWAY_WORKSPACE_ID")
            .collect();
        pairs.push(("RAILWAY_TEAM_ID", "team"));
        pairs.push(("RAILWAY_API_TOKENS", "b, c"));
        pairs.push(("AGENT_IMAGE_TAG", "sha-abc"));
        pairs.push(("RAILWAY_ENVIRONMENT_NAME", "pr-7"));
        let config = Config::from_env(&Env::from_pairs(&pairs)).unwrap();
        assert_eq!(config.provisioner.workspace_id.as_str(), "team");
        assert_eq!(config.railway.tokens.len(), 3);
        assert_eq!(config.provisioner.image.tag, "sha-abc");
    }
}
