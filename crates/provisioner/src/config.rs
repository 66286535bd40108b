//! The provisioner's settings, parsed by the binary from the environment.

use std::time::Duration;

use railway_api::https::ExtraRoots;
use railway_api::{ProjectId, RegistryCredentials, WorkspaceId};

use crate::image::ImageRef;
use crate::resources::{AgentMailConfig, OpenRouterConfig, TelnyxConfig};
use crate::shape::{DEFAULT_SHAPE, Shape, Shapes};

/// The agent runtime's pool server: what the Node pool manager sets as every agent's start
/// command (xmtplabs/convos-managed-agent-runtime `pool/src/services/providers/railway.ts`).
pub const DEFAULT_START_COMMAND: &str = "node convos-platform/pool-server/dist/index.js";

/// The domain Railway gives a service (`serviceDomainCreate`): agents' domains end with it.
pub const DEFAULT_AGENT_DOMAIN_SUFFIX: &str = ".up.railway.app";

/// An outbound URL refused: not https, or not on an agent domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnsafeUrl(
    /// What is wrong, naming the variable to change.
    pub String,
);

/// Everything the provisioner needs.
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// Workspace agents' projects are created in.
    pub workspace_id: WorkspaceId,
    /// The pool's own Railway environment name (agents get an environment of the same name).
    pub environment_name: String,
    /// The pool manager's own project (`RAILWAY_PROJECT_ID`): legacy agents live there, and
    /// it is never deleted.
    pub pool_project_id: Option<ProjectId>,
    /// This pool's id: random, made once per database ([`pool_store::Store::pool_id`]). Every
    /// project's marker carries it; required.
    pub pool_id: Option<String>,
    /// Prefix of agent names.
    pub name_prefix: String,
    /// The runtimes this pool serves (each with its image, tag, limits and start command),
    /// and the one a claim without `runtime` gets.
    pub shapes: Shapes,
    /// Credentials to pull it (none for a public image).
    pub registry: Option<RegistryCredentials>,
    /// How an agent's base URL is formed from its domain: `{domain}` is replaced.
    pub agent_url_template: String,
    /// The suffix every agent's Railway domain must end with before any token is sent to it
    /// (`AGENT_DOMAIN_SUFFIX`, default [`DEFAULT_AGENT_DOMAIN_SUFFIX`]).
    pub agent_domain_suffix: String,
    /// Allows plain-`http` URLs for agents, OpenRouter and AgentMail, and an agent URL
    /// template whose host is not the agent's domain (`POOL_ALLOW_INSECURE_URLS`): only for
    /// the simulator, the tests and the demo.
    pub allow_insecure_urls: bool,
    /// How long a claim's idempotency key is kept (`POOL_IDEMPOTENCY_TTL_MS`); after that it
    /// is pruned and may be used again.
    pub idempotency_ttl: Duration,
    /// Agents the pool never claims, drains, recycles or kills (`PROTECTED_INSTANCES`, ids
    /// separated by commas, as the Node pool's `config.protectedInstances`); only an
    /// operator's kill with `?confirm=protected` removes one.
    pub protected_instances: Vec<String>,
    /// How long an agent may stay `pending_acceptance` before the reconciler tears it down
    /// (`POOL_PENDING_ACCEPTANCE_TIMEOUT_MS`, one hour).
    pub pending_acceptance_timeout: Duration,
    /// Live tickets of waiting claims one caller (key) may hold at once
    /// (`POOL_MAX_WAITING_CLAIMS_PER_KEY`); one more is refused with 429.
    pub max_waiting_per_claimant: u32,
    /// Refused claims of one caller counted as demand per minute
    /// (`POOL_REFUSALS_COUNTED_PER_KEY_PER_MINUTE`); the rest are refused all the same but not
    /// counted, so one caller cannot make the pool create at Railway's pace.
    pub refusals_counted_per_minute: u32,
    /// Certificates trusted for agents besides the public roots (a test's self-signed agents).
    pub agent_roots: ExtraRoots,
    /// How long a connection to an agent is kept open after a request
    /// (`POOL_AGENT_KEEP_ALIVE_MS`). Longer than the tick, every check after the first reuses
    /// its connection; zero closes each one after its answer, so the next check is a new
    /// connection and handshake. `cargo xtask bench tick` measures the trade: about 23–29 KiB
    /// of memory per kept connection against 0.3–0.65 ms of CPU per handshake.
    pub agent_keep_alive: Duration,
    /// Variables every agent gets besides its own secrets.
    pub agent_variables: AgentVariables,
    /// Per-agent OpenRouter keys, when configured.
    pub openrouter: Option<OpenRouterConfig>,
    /// AgentMail, when configured: an inbox per agent on first use, through the service proxy.
    pub agentmail: Option<AgentMailConfig>,
    /// Telnyx, when configured: a phone number per agent on first use, through the proxy.
    pub telnyx: Option<TelnyxConfig>,
    /// The service proxy's limits.
    pub proxy: ProxyLimits,
    /// The agents' own calls to the pool (`/api/pool/self-destruct`, `self-info`,
    /// `pending-acceptance/*`) allowed per agent per minute, all together
    /// (`POOL_AGENT_CALLS_PER_MINUTE`); one more is 429.
    pub agent_calls_per_minute: u32,
    /// Time allowed for `/pool/health`.
    pub health_timeout: Duration,
    /// Time allowed for `/pool/provision` (longer than the agent's own ~5 minute retries).
    pub provision_timeout: Duration,
    /// Creations in flight at once, across replicas (rows in `creating`).
    pub create_concurrency: usize,
    /// While the creation brake is engaged, one probe creation per this interval
    /// (`POOL_CREATE_PROBE_INTERVAL_MS`).
    pub brake_probe_interval: Duration,
    /// How long one creation step keeps retrying a throttle or a passing failure before the
    /// saga gives the creation up to recovery (never to compensation).
    pub step_retry_deadline: Duration,
    /// After the instance update, how long the saga waits for the deployment Railway may
    /// start by itself before it deploys.
    pub self_deploy_grace: Duration,
    /// Share of idle agents redeployed at a time.
    pub redeploy_fraction: f64,
    /// The image registry's base URL (`AGENT_REGISTRY_URL`); `None`: `https://<host of the
    /// image>`. Rollouts resolve tags to digests there.
    pub registry_url: Option<String>,
    /// How long an agent a rollout deployed has to become healthy before the rollout counts it
    /// as failed and rolls it back (`POOL_ROLLOUT_HEALTH_TIMEOUT_MS`).
    pub rollout_health_timeout: Duration,
    /// How long a creation holds its row before recovery may take it over. A running creation
    /// renews it every third of it, however long its steps wait (Railway's `projectCreate`
    /// pace), so a dead worker's creation is recovered this soon after its death.
    pub work_lease: Duration,
    /// Passing wake failures in a row after which a parked agent is torn down and replaced
    /// (`POOL_MAX_WAKE_FAILURES`, 1 to [`crate::MAX_MAX_WAKE_FAILURES`]).
    pub max_wake_failures: u32,
}

/// What the service proxy allows one agent, and how long it waits for a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyLimits {
    /// Calls per agent per minute, all routes together (`POOL_PROXY_REQUESTS_PER_MINUTE`).
    pub requests_per_minute: u32,
    /// Emails and text messages sent per agent per hour (`POOL_PROXY_SENDS_PER_HOUR`).
    pub sends_per_hour: u32,
    /// Provisionings and unprovisionings per agent per hour (`POOL_PROXY_PROVISIONS_PER_HOUR`):
    /// each may buy an inbox or a number.
    pub provisions_per_hour: u32,
    /// Time allowed for one call to AgentMail or Telnyx (`POOL_PROXY_UPSTREAM_TIMEOUT_MS`).
    pub upstream_timeout: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            requests_per_minute: 120,
            sends_per_hour: 60,
            provisions_per_hour: 6,
            upstream_timeout: Duration::from_secs(30),
        }
    }
}

/// The non-secret variables agents get (besides their own secrets).
#[derive(Clone, Default)]
pub struct AgentVariables {
    /// `OPENCLAW_PRIMARY_MODEL`.
    pub primary_model: Option<String>,
    /// `XMTP_ENV`.
    pub xmtp_env: String,
    /// `POOL_URL`: where the pool manager is reachable; agents reach the service proxy there.
    pub pool_url: Option<String>,
}

impl std::fmt::Debug for AgentVariables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentVariables")
            .field("primary_model", &self.primary_model)
            .field("xmtp_env", &self.xmtp_env)
            .field("pool_url", &self.pool_url)
            .finish()
    }
}

impl ProvisionerConfig {
    /// Settings with the defaults for everything but where and what to deploy: one shape,
    /// `openclaw`, running `image`.
    pub fn new(workspace_id: WorkspaceId, environment_name: impl Into<String>, image: ImageRef) -> Self {
        Self {
            workspace_id,
            environment_name: environment_name.into(),
            pool_project_id: None,
            pool_id: None,
            name_prefix: "convos-agent-".into(),
            shapes: Shapes::single(Shape::new(DEFAULT_SHAPE, image)),
            registry: None,
            agent_url_template: "https://{domain}".into(),
            agent_domain_suffix: DEFAULT_AGENT_DOMAIN_SUFFIX.into(),
            allow_insecure_urls: false,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            protected_instances: Vec::new(),
            pending_acceptance_timeout: Duration::from_secs(3600),
            max_waiting_per_claimant: 50,
            refusals_counted_per_minute: 5,
            agent_roots: ExtraRoots::default(),
            agent_keep_alive: Duration::from_secs(90),
            agent_variables: AgentVariables {
                xmtp_env: "dev".into(),
                ..AgentVariables::default()
            },
            openrouter: None,
            agentmail: None,
            telnyx: None,
            proxy: ProxyLimits::default(),
            agent_calls_per_minute: 30,
            health_timeout: Duration::from_secs(5),
            provision_timeout: Duration::from_secs(360),
            create_concurrency: 8,
            brake_probe_interval: Duration::from_secs(300),
            step_retry_deadline: Duration::from_secs(300),
            self_deploy_grace: Duration::from_secs(3),
            redeploy_fraction: 0.25,
            registry_url: None,
            rollout_health_timeout: Duration::from_secs(600),
            work_lease: Duration::from_secs(60),
            max_wake_failures: crate::DEFAULT_MAX_WAKE_FAILURES,
        }
    }

    /// The agent's base URL for a Railway domain, once the domain is known to be an agent
    /// domain: a host name ending with [`Self::agent_domain_suffix`], and the URL `https`.
    /// Refused otherwise, so no token is ever sent to a host Railway did not give the agent.
    /// With [`Self::allow_insecure_urls`] (the simulator) any host name or address will do,
    /// over plain http too.
    pub fn agent_url(&self, domain: &str) -> Result<String, UnsafeUrl> {
        let host = domain.to_ascii_lowercase();
        let suffix = self.agent_domain_suffix.to_ascii_lowercase();
        let is_host_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let on_agent_domain = host.ends_with(&suffix) && host.len() > suffix.len();
        if !is_host_name || !(on_agent_domain || self.allow_insecure_urls) {
            return Err(UnsafeUrl(format!(
                "the agent domain {:?} does not end with AGENT_DOMAIN_SUFFIX {:?}",
                domain.chars().take(80).collect::<String>(),
                self.agent_domain_suffix
            )));
        }
        let url = self.agent_url_template.replace("{domain}", domain);
        if !self.allow_insecure_urls && !url.starts_with("https://") {
            return Err(UnsafeUrl(format!("the agent URL {url} is not https")));
        }
        Ok(url)
    }

    /// Checks the outbound URLs the settings name: the agent URL template, OpenRouter's and
    /// AgentMail's base URLs must be `https` (the template's host exactly `{domain}`) unless
    /// [`Self::allow_insecure_urls`]; the domain suffix must start with a dot. Each problem
    /// names its variable.
    pub fn check_urls(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let hint = "(POOL_ALLOW_INSECURE_URLS=true allows it, for a local simulator only)";
        let template = &self.agent_url_template;
        if !template.contains("{domain}") {
            problems.push("AGENT_URL_TEMPLATE must contain {domain}".to_string());
        } else if !self.allow_insecure_urls {
            let host_is_domain = template.strip_prefix("https://{domain}").is_some_and(|rest| {
                let path = match rest.strip_prefix(':') {
                    Some(port) => port.trim_start_matches(|c: char| c.is_ascii_digit()),
                    None => rest,
                };
                path.is_empty() || path.starts_with('/')
            });
            if !host_is_domain {
                problems.push(format!(
                    "AGENT_URL_TEMPLATE must start with https://{{domain}} (got {template:?}) {hint}"
                ));
            }
        }
        let suffix = &self.agent_domain_suffix;
        let suffix_ok = suffix.len() > 1
            && suffix.starts_with('.')
            && suffix[1..]
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !suffix_ok {
            problems.push(format!(
                "AGENT_DOMAIN_SUFFIX must be a domain suffix starting with a dot, like {DEFAULT_AGENT_DOMAIN_SUFFIX:?}, got {suffix:?}"
            ));
        }
        let mut https = |name: &str, url: &str| {
            if !self.allow_insecure_urls && !url.starts_with("https://") {
                problems.push(format!("{name} must be an https URL, got {url:?} {hint}"));
            }
        };
        if let Some(openrouter) = &self.openrouter {
            https("OPENROUTER_API_URL", &openrouter.base_url);
        }
        if let Some(agentmail) = &self.agentmail {
            https("AGENTMAIL_API_URL", &agentmail.base_url);
        }
        if let Some(telnyx) = &self.telnyx {
            https("TELNYX_API_URL", &telnyx.base_url);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The shape a claim without `runtime` gets.
    pub fn default_shape(&self) -> &Shape {
        self.shapes.default_shape()
    }

    /// The shape of this name; an agent's shape that is no longer configured is refused
    /// ([`crate::ProvisionError::Config`]), as nothing says how to run it.
    pub fn shape(&self, name: &str) -> crate::Result<&Shape> {
        self.shapes.get(name).ok_or_else(|| {
            crate::ProvisionError::Config(format!(
                "the runtime {name:?} is not configured (POOL_RUNTIMES lists {})",
                self.shapes.names().join(", ")
            ))
        })
    }

    /// True in the production environment (join-URL rules differ).
    pub fn is_production(&self) -> bool {
        self.environment_name == "production"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(template: &str) -> ProvisionerConfig {
        let image = ImageRef {
            repository: "ghcr.io/xmtplabs/convos-agent".into(),
            tag: "staging".into(),
        };
        let mut config = ProvisionerConfig::new(WorkspaceId::new("ws"), "staging", image);
        config.agent_url_template = template.into();
        config
    }

    #[test]
    fn agent_urls_need_https_and_an_agent_domain_unless_insecure_urls_are_allowed() {
        let mut c = config("https://{domain}");
        assert_eq!(c.check_urls(), Ok(()));
        assert_eq!(
            c.agent_url("convos-agent-1.up.railway.app").as_deref(),
            Ok("https://convos-agent-1.up.railway.app")
        );
        for refused in [
            "evil.example",
            "up.railway.app",
            ".up.railway.app",
            "x.up.railway.app.evil.example",
            "x.up.railway.app/../evil",
            "x@evil.example#.up.railway.app",
            "",
        ] {
            assert!(c.agent_url(refused).is_err(), "{refused:?} must be refused");
        }
        for template in [
            "http://{domain}",
            "https://{domain}.evil.example",
            "https://evil.example/{domain}",
            "https://{domain}@evil.example",
        ] {
            c.agent_url_template = template.into();
            let problems = c.check_urls().unwrap_err();
            assert!(
                problems[0].starts_with("AGENT_URL_TEMPLATE"),
                "{template}: {problems:?}"
            );
        }
        c.agent_url_template = "https://{domain}/base".into();
        assert_eq!(c.check_urls(), Ok(()));

        c.agent_url_template = "https://{domain}:8443".into();
        assert_eq!(c.check_urls(), Ok(()));
        c.agent_url_template = "https://{domain}:8443.evil.example".into();
        assert!(c.check_urls().is_err());

        // The simulator: plain http on loopback, allowed only with the flag (then any host
        // name or address is an agent's, but still only a host).
        let mut c = config("http://127.0.0.1:9/agents/{domain}");
        assert!(c.check_urls().is_err());
        assert!(c.agent_url("a-b.up.railway.app").is_err(), "not https");
        c.allow_insecure_urls = true;
        assert_eq!(c.check_urls(), Ok(()));
        assert!(c.agent_url("a-b.up.railway.app").is_ok());
        assert!(c.agent_url("127.1.0.1").is_ok());
        assert!(c.agent_url("x/../y").is_err());
    }

    #[test]
    fn the_domain_suffix_must_start_with_a_dot() {
        let mut c = config("https://{domain}");
        for bad in ["", ".", "railway.app", ".up..railway.app", ".up railway.app"] {
            c.agent_domain_suffix = bad.into();
            let problems = c.check_urls().unwrap_err();
            assert!(
                problems[0].starts_with("AGENT_DOMAIN_SUFFIX"),
                "{bad:?}: {problems:?}"
            );
        }
        c.agent_domain_suffix = ".agents.example".into();
        assert_eq!(c.check_urls(), Ok(()));
        assert!(c.agent_url("a.agents.example").is_ok());
        assert!(c.agent_url("a.up.railway.app").is_err());
    }
}
