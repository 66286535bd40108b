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
use pool_store::{MigrateOptions, PoolSettings, SecretsKey, SecretsKeys, StoreConfig};
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
    /// The claim and metrics keys, and the server's limits.
    pub security: pool_http::SecurityConfig,
    /// `RAILWAY_WEBHOOK_SECRET`: the path secret of `POST /webhooks/railway/{secret}`.
    pub webhook_secret: Option<SecretString>,
}

/// Variables passed to every agent unchanged.
pub const PASS_THROUGH: [&str; 4] = [
    "BANKR_API_KEY",
    "TELNYX_API_KEY",
    "TELNYX_PHONE_NUMBER",
    "TELNYX_MESSAGING_PROFILE_ID",
];

/// The environments where agents' secrets are always sealed: without `POOL_SECRETS_KEY` the
/// service refuses to start there, and `POOL_ALLOW_PLAINTEXT_SECRETS` is refused.
pub const SEALED_ENVIRONMENTS: [&str; 2] = ["staging", "production"];

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

/// The keys agents' secrets are sealed with at rest:
/// - `POOL_SECRETS_KEY`: 32 random bytes as base64 (`openssl rand -base64 32`) or 64 hex digits;
///   new values are sealed under it. Required in staging and production.
/// - `POOL_SECRETS_KEY_PREVIOUS`: during a rotation, the old key; it only opens values the
///   start-up pass has not sealed anew yet.
/// - `POOL_ALLOW_PLAINTEXT_SECRETS=true`: elsewhere, and only when asked for, no key and
///   secrets stored as they are. Forgetting the key never silently means plaintext; and no key
///   is ever generated, since a restart would then lose every agent's secrets.
///
/// A problem names its variable, never its value.
fn secrets_keys(r: &mut Reader<'_>, environment_name: &str) -> SecretsKeys {
    let parse = |r: &mut Reader<'_>, name: &str| -> Option<SecretsKey> {
        let text = r.secret(name)?;
        match SecretsKey::parse(secrecy::ExposeSecret::expose_secret(&text)) {
            Ok(key) => Some(key),
            Err(e) => {
                r.problems.push(format!("{name} {e}"));
                None
            }
        }
    };
    let current = parse(r, "POOL_SECRETS_KEY");
    let previous = parse(r, "POOL_SECRETS_KEY_PREVIOUS");
    let allow_plaintext = r.flag("POOL_ALLOW_PLAINTEXT_SECRETS", false);
    let sealed_environment = SEALED_ENVIRONMENTS.contains(&environment_name);
    if sealed_environment && allow_plaintext {
        r.problems.push(format!(
            "POOL_ALLOW_PLAINTEXT_SECRETS cannot be used in {environment_name}: agents' secrets are always encrypted there (set POOL_SECRETS_KEY)"
        ));
    }
    if let Some(current) = current {
        return SecretsKeys::new(current, previous);
    }
    let key_given = r.env.get("POOL_SECRETS_KEY").is_some(); // malformed: reported above
    let previous_given = r.env.get("POOL_SECRETS_KEY_PREVIOUS").is_some();
    if !key_given {
        if previous_given {
            r.problems.push(
                "POOL_SECRETS_KEY_PREVIOUS is set without POOL_SECRETS_KEY: during a rotation POOL_SECRETS_KEY holds the new key and POOL_SECRETS_KEY_PREVIOUS the old one".into(),
            );
        } else if sealed_environment {
            r.problems.push(
                "POOL_SECRETS_KEY is required in staging and production: 32 random bytes as base64 (openssl rand -base64 32), the key agents' secrets are encrypted with at rest".into(),
            );
        } else if !allow_plaintext {
            r.problems.push(
                "POOL_SECRETS_KEY is required: 32 random bytes as base64 (openssl rand -base64 32); outside staging and production, POOL_ALLOW_PLAINTEXT_SECRETS=true stores agents' secrets unencrypted instead".into(),
            );
        }
    }
    if allow_plaintext && !sealed_environment {
        SecretsKeys::plaintext()
    } else {
        SecretsKeys::default()
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
        let secrets = secrets_keys(&mut r, &environment_name);
        // Plain http for Railway, the agents, OpenRouter and AgentMail: only for the simulator.
        let allow_insecure_urls = r.flag("POOL_ALLOW_INSECURE_URLS", false);
        let railway_url = r.url("RAILWAY_API_URL", DEFAULT_ENDPOINT);
        if !allow_insecure_urls && !railway_url.starts_with("https://") {
            r.problems.push(format!(
                "RAILWAY_API_URL must be an https URL, got {railway_url:?} (POOL_ALLOW_INSECURE_URLS=true allows it, for a local simulator only)"
            ));
        }
        let mut railway = ClientConfig::new(railway_url, tokens);
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
        provisioner.agent_domain_suffix = r
            .optional("AGENT_DOMAIN_SUFFIX")
            .unwrap_or_else(|| pool_provisioner::DEFAULT_AGENT_DOMAIN_SUFFIX.into());
        provisioner.allow_insecure_urls = allow_insecure_urls;
        provisioner.idempotency_ttl = r.millis("POOL_IDEMPOTENCY_TTL_MS", 24 * 3600 * 1000);
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
        // Extra trust for the agents (and the resource APIs) besides the public roots: a
        // private CA, or the simulator's self-signed agents in the bench. Never a way to turn
        // verification off.
        if let Some(path) = r.optional("POOL_AGENT_CA_FILE") {
            match std::fs::read(&path) {
                Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
                    provisioner.agent_roots = railway_api::https::ExtraRoots { pem };
                }
                Ok(_) => r.problems.push(format!(
                    "POOL_AGENT_CA_FILE {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                )),
                Err(e) => r
                    .problems
                    .push(format!("POOL_AGENT_CA_FILE: cannot read {path}: {e}")),
            }
        }
        // Zero is allowed: close each connection to an agent after its answer.
        provisioner.agent_keep_alive = Duration::from_millis(r.parse(
            "POOL_AGENT_KEEP_ALIVE_MS",
            90_000,
            "a whole number of milliseconds",
        ));
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
            retention: pool_store::Retention {
                events: r.millis("POOL_EVENT_RETENTION_MS", 90 * 24 * 3600 * 1000),
                archived_agents: r.millis("POOL_ARCHIVE_RETENTION_MS", 30 * 24 * 3600 * 1000),
                ..pool_store::Retention::default()
            },
            ..ReconcilerConfig::default()
        };
        if reconciler.retention.events < pool_store::MIN_EVENT_RETENTION {
            r.problems.push(format!(
                "POOL_EVENT_RETENTION_MS must be at least {} (8 days: the demand forecast reads last week's claims)",
                pool_store::MIN_EVENT_RETENTION.as_millis()
            ));
        }
        if reconciler.retention.archived_agents < pool_store::MIN_ARCHIVE_RETENTION {
            r.problems.push(format!(
                "POOL_ARCHIVE_RETENTION_MS must be at least {} (a day)",
                pool_store::MIN_ARCHIVE_RETENTION.as_millis()
            ));
        }
        if reconciler.health_concurrency == 0 {
            r.problems
                .push("POOL_HEALTH_CONCURRENCY must be at least 1".into());
        }

        // Agent URLs (the template and the domain suffix), OpenRouter's and AgentMail's.
        if let Err(problems) = provisioner.check_urls() {
            r.problems.extend(problems);
        }

        let console = pool_http::console::ConsoleConfig {
            admin_password: r.secret("POOL_ADMIN_PASSWORD"),
            secure_cookies: !r.flag("POOL_CONSOLE_INSECURE_COOKIES", false),
            session_ttl: r.millis("POOL_CONSOLE_SESSION_TTL_MS", 12 * 3600 * 1000),
            idle_timeout: r.millis("POOL_CONSOLE_IDLE_TIMEOUT_MS", 30 * 60 * 1000),
            ..pool_http::console::ConsoleConfig::default()
        };
        let max_ttl = pool_http::console::MAX_SESSION_TTL;
        if console.session_ttl > max_ttl {
            r.problems.push(format!(
                "POOL_CONSOLE_SESSION_TTL_MS must be at most {} (24 h)",
                max_ttl.as_millis()
            ));
        }
        if console.idle_timeout > console.session_ttl {
            r.problems.push(
                "POOL_CONSOLE_IDLE_TIMEOUT_MS must not be longer than POOL_CONSOLE_SESSION_TTL_MS".into(),
            );
        }

        let claim_keys = match r.secret("POOL_CLAIM_KEYS") {
            None => Vec::new(),
            Some(text) => {
                match pool_http::parse_claim_keys(secrecy::ExposeSecret::expose_secret(&text), &admin_key) {
                    Ok(keys) => keys,
                    Err(problems) => {
                        r.problems.extend(
                            problems
                                .into_iter()
                                .map(|p| format!("POOL_CLAIM_KEYS (name=key,name=key): {p}")),
                        );
                        Vec::new()
                    }
                }
            }
        };
        let metrics_key = r.secret("POOL_METRICS_KEY");
        if let Some(key) = &metrics_key {
            let key = secrecy::ExposeSecret::expose_secret(key);
            if key.len() < 16 {
                r.problems
                    .push("POOL_METRICS_KEY must be at least 16 characters".into());
            } else if key == admin_key {
                r.problems
                    .push("POOL_METRICS_KEY must not be POOL_API_KEY: give the scraper a key that can only read metrics".into());
            }
        }
        let security = pool_http::SecurityConfig {
            claim_keys,
            metrics_key,
            metrics_refresh: r.millis("POOL_METRICS_REFRESH_MS", 5_000),
            max_in_flight: r.parse("POOL_MAX_IN_FLIGHT", 512, "a whole number"),
            header_read_timeout: r.millis("POOL_HEADER_READ_TIMEOUT_MS", 10_000),
            request_timeout: r.millis("POOL_REQUEST_TIMEOUT_MS", 60_000),
            trusted_proxy_hops: r.parse("POOL_TRUSTED_PROXY_HOPS", 0, "a whole number of proxies"),
        };
        if security.max_in_flight == 0 {
            r.problems.push("POOL_MAX_IN_FLIGHT must be at least 1".into());
        }
        if console
            .admin_password
            .as_ref()
            .is_some_and(|p| secrecy::ExposeSecret::expose_secret(p).len() < 12)
        {
            r.problems
                .push("POOL_ADMIN_PASSWORD must be at least 12 characters".into());
        }

        // It travels in a URL Railway stores and may show: long and URL-safe.
        let webhook_secret = r.secret("RAILWAY_WEBHOOK_SECRET");
        if let Some(secret) = &webhook_secret {
            let secret = secrecy::ExposeSecret::expose_secret(secret);
            if secret.len() < 24
                || !secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
            {
                r.problems.push(
                    "RAILWAY_WEBHOOK_SECRET must be at least 24 characters of letters, digits, -, _, . or ~ (it is a URL path segment)"
                        .into(),
                );
            }
        }

        if !r.problems.is_empty() {
            return Err(r.problems);
        }
        Ok(Self {
            listen: SocketAddr::from(([0, 0, 0, 0], port)),
            admin_key: SecretString::from(admin_key),
            store: StoreConfig {
                secrets,
                ..StoreConfig::new(database_url)
            },
            run_migrations,
            migrate: MigrateOptions {
                legacy_project_id: pool_project_id,
            },
            railway,
            provisioner,
            reconciler,
            settings,
            console,
            webhook_secret,
            security,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 zero bytes: a well-formed key for these tests only.
    const SECRETS_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    const MINIMAL: [(&str, &str); 6] = [
        ("POOL_API_KEY", "a-long-enough-admin-key"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/pool"),
        ("RAILWAY_API_TOKEN", "token"),
        ("RAILWAY_WORKSPACE_ID", "ws"),
        ("RAILWAY_ENVIRONMENT_NAME", "staging"),
        ("POOL_SECRETS_KEY", SECRETS_KEY),
    ];

    /// MINIMAL without some variables and with others added or replaced.
    fn minimal_with(without: &[&str], with: &[(&'static str, &'static str)]) -> Env {
        let mut pairs: Vec<(&str, &str)> = MINIMAL
            .iter()
            .copied()
            .filter(|(k, _)| !without.contains(k) && !with.iter().any(|(w, _)| w == k))
            .collect();
        pairs.extend_from_slice(with);
        Env::from_pairs(&pairs)
    }

    #[test]
    fn staging_and_production_refuse_to_start_without_a_secrets_key() {
        for environment in SEALED_ENVIRONMENTS {
            let problems = Config::from_env(&minimal_with(
                &["POOL_SECRETS_KEY"],
                &[("RAILWAY_ENVIRONMENT_NAME", environment)],
            ))
            .unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("POOL_SECRETS_KEY is required in staging and production")),
                "{environment}: {problems:#?}"
            );
            let problems = Config::from_env(&minimal_with(
                &["POOL_SECRETS_KEY"],
                &[
                    ("RAILWAY_ENVIRONMENT_NAME", environment),
                    ("POOL_ALLOW_PLAINTEXT_SECRETS", "true"),
                ],
            ))
            .unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("POOL_ALLOW_PLAINTEXT_SECRETS cannot be used")),
                "no way around it in {environment}: {problems:#?}"
            );
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("POOL_SECRETS_KEY is required"))
            );
        }
        let config = Config::from_env(&Env::from_pairs(&MINIMAL)).unwrap();
        assert!(config.store.secrets.seals());
    }

    #[test]
    fn a_malformed_secrets_key_is_named_and_never_printed() {
        for bad in [
            "c2hvcnQga2V5",                       // base64, 9 bytes
            "not base64 at all, not hex either!", // neither
            "0123456789abcdef0123456789abcdef",   // 32 hex digits: 16 bytes
        ] {
            for variable in ["POOL_SECRETS_KEY", "POOL_SECRETS_KEY_PREVIOUS"] {
                let env = Env::from_pairs(
                    &MINIMAL
                        .iter()
                        .copied()
                        .filter(|(k, _)| *k != variable)
                        .chain([(variable, bad)])
                        .collect::<Vec<_>>(),
                );
                let problems = Config::from_env(&env).unwrap_err();
                assert_eq!(problems.len(), 1, "{problems:#?}");
                assert!(
                    problems[0].starts_with(&format!("{variable} must be 32 random bytes")),
                    "{problems:#?}"
                );
                assert!(
                    !problems[0].contains(bad),
                    "the value is never printed: {problems:#?}"
                );
            }
        }
    }

    #[test]
    fn plaintext_secrets_need_an_explicit_opt_in_outside_staging_and_production() {
        let dev = [
            ("RAILWAY_ENVIRONMENT_NAME", "pr-7"),
            ("AGENT_IMAGE_TAG", "sha-abc"),
        ];
        let problems = Config::from_env(&minimal_with(&["POOL_SECRETS_KEY"], &dev)).unwrap_err();
        assert!(
            problems[0].starts_with("POOL_SECRETS_KEY is required")
                && problems[0].contains("POOL_ALLOW_PLAINTEXT_SECRETS=true"),
            "{problems:#?}"
        );
        let config = Config::from_env(&minimal_with(
            &["POOL_SECRETS_KEY"],
            &[dev[0], dev[1], ("POOL_ALLOW_PLAINTEXT_SECRETS", "true")],
        ))
        .unwrap();
        assert!(config.store.secrets.is_plaintext());
        let config = Config::from_env(&minimal_with(&[], &dev)).unwrap();
        assert!(config.store.secrets.seals(), "a key is used wherever it is given");
    }

    #[test]
    fn a_rotation_takes_the_new_key_and_the_previous_one() {
        const OLD: &str = "0101010101010101010101010101010101010101010101010101010101010101";
        let config = Config::from_env(&minimal_with(&[], &[("POOL_SECRETS_KEY_PREVIOUS", OLD)])).unwrap();
        let keys = &config.store.secrets;
        assert_eq!(
            keys.current_id(),
            Some(SecretsKey::parse(SECRETS_KEY).unwrap().id())
        );
        assert_eq!(keys.previous_id(), Some(SecretsKey::parse(OLD).unwrap().id()));
        let problems = Config::from_env(&minimal_with(
            &["POOL_SECRETS_KEY"],
            &[("POOL_SECRETS_KEY_PREVIOUS", OLD)],
        ))
        .unwrap_err();
        assert!(
            problems[0].starts_with("POOL_SECRETS_KEY_PREVIOUS is set without POOL_SECRETS_KEY"),
            "{problems:#?}"
        );
    }

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
    fn an_agent_ca_file_is_read_and_a_bad_one_is_named() {
        let config = Config::from_env(&Env::from_pairs(&MINIMAL)).unwrap();
        assert!(
            config.provisioner.agent_roots.pem.is_empty(),
            "public roots only by default"
        );

        let dir = std::env::temp_dir().join(format!("pool-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let not_pem = dir.join("ca.txt");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let with = |path: &std::path::Path| {
            let mut pairs = MINIMAL.to_vec();
            let path = path.display().to_string();
            pairs.push(("POOL_AGENT_CA_FILE", path.as_str()));
            Config::from_env(&Env::from_pairs(&pairs))
        };
        let config = with(&good).unwrap();
        assert!(!config.provisioner.agent_roots.pem.is_empty());
        let problems = with(&not_pem).unwrap_err();
        assert!(
            problems[0].starts_with("POOL_AGENT_CA_FILE") && problems[0].contains("no PEM certificate"),
            "{problems:?}"
        );
        let problems = with(&dir.join("missing.pem")).unwrap_err();
        assert!(
            problems[0].starts_with("POOL_AGENT_CA_FILE: cannot read"),
            "{problems:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
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
    #[test]
    fn claim_keys_are_read_and_a_bad_list_is_named_without_its_keys() {
        let config = Config::from_env(&minimal_with(
            &[],
            &[(
                "POOL_CLAIM_KEYS",
                "app=app-claim-key-0123456789abcdef, bot=bot-claim-key-0123456789abcdef",
            )],
        ))
        .unwrap();
        let names: Vec<&str> = config
            .security
            .claim_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, ["app", "bot"]);
        assert!(
            !format!("{config:?}").contains("app-claim-key"),
            "keys never print"
        );
        for list in [
            "app=short-secret-value",
            "app=app-claim-key-0123456789abcdef,app=app-claim-key-0123456789abcdeX",
            "app-claim-key-0123456789abcdef",
            "app=a-long-enough-admin-key",
        ] {
            let problems = Config::from_env(&minimal_with(&[], &[("POOL_CLAIM_KEYS", list)])).unwrap_err();
            assert!(
                problems.iter().all(|p| p.starts_with("POOL_CLAIM_KEYS")),
                "{list}: {problems:#?}"
            );
            assert!(
                problems
                    .iter()
                    .all(|p| !p.contains("secret-value") && !p.contains("claim-key-0123")),
                "a key printed: {problems:#?}"
            );
        }
    }

    #[test]
    fn the_servers_limits_and_the_consoles_sessions_have_defaults_and_bounds() {
        let config = Config::from_env(&minimal_with(&[], &[])).unwrap();
        let security = &config.security;
        assert_eq!(security.header_read_timeout, Duration::from_secs(10));
        assert_eq!(security.request_timeout, Duration::from_secs(60));
        assert_eq!(security.max_in_flight, 512);
        assert_eq!(security.metrics_refresh, Duration::from_secs(5));
        assert_eq!(security.trusted_proxy_hops, 0);
        assert!(security.metrics_key.is_none() && security.claim_keys.is_empty());
        assert_eq!(config.console.session_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(config.console.idle_timeout, Duration::from_secs(30 * 60));
        assert_eq!(config.provisioner.idempotency_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(config.provisioner.agent_domain_suffix, ".up.railway.app");
        assert!(!config.provisioner.allow_insecure_urls);

        let problems = Config::from_env(&minimal_with(
            &[],
            &[
                ("POOL_CONSOLE_SESSION_TTL_MS", "90000000"),
                ("POOL_MAX_IN_FLIGHT", "0"),
                ("POOL_METRICS_KEY", "short"),
                ("POOL_IDEMPOTENCY_TTL_MS", "0"),
            ],
        ))
        .unwrap_err();
        for expected in [
            "POOL_CONSOLE_SESSION_TTL_MS must be at most 86400000",
            "POOL_MAX_IN_FLIGHT must be at least 1",
            "POOL_METRICS_KEY must be at least 16",
            "POOL_IDEMPOTENCY_TTL_MS must be more than 0",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} in {problems:#?}"
            );
        }
        let problems = Config::from_env(&minimal_with(
            &[],
            &[
                ("POOL_CONSOLE_SESSION_TTL_MS", "3600000"),
                ("POOL_CONSOLE_IDLE_TIMEOUT_MS", "7200000"),
                ("POOL_METRICS_KEY", "a-long-enough-admin-key"),
            ],
        ))
        .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("POOL_CONSOLE_IDLE_TIMEOUT_MS"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("POOL_METRICS_KEY must not be POOL_API_KEY"))
        );
    }

    #[test]
    fn plain_http_urls_are_refused_without_pool_allow_insecure_urls() {
        let plain: [(&str, &str); 6] = [
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
