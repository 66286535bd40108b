//! The agents: their shapes (the runtimes, each with its image) and the registry's credentials, their names and URLs, the
//! variables they are given, their size, and how the pool talks to them (trust, keep-alive,
//! timeouts) and paces their creation, redeploys and rollouts.

use std::time::Duration;

use pool_provisioner::shape::{ShapeSources, parse_runtimes, shapes_from};
use pool_provisioner::{AgentVariables, DEFAULT_SHAPE, ProvisionerConfig, Shape, Shapes};
use railway_api::{ProjectId, RegistryCredentials, WorkspaceId};

use super::railway::Railway;
use super::reader::Reader;

/// The provisioner's config, without the external resources (`resources`), whose URLs are
/// checked with the agents' once they are in.
pub(super) fn read(r: &mut Reader<'_>, railway: &Railway, allow_insecure_urls: bool) -> ProvisionerConfig {
    let environment_name = &railway.environment_name;
    let shapes = read_shapes(r, environment_name);
    let registry = r.secret("GHCR_TOKEN").map(|password| RegistryCredentials {
        username: r.optional("GHCR_USERNAME").unwrap_or_else(|| "xmtplabs".into()),
        password,
    });

    let mut provisioner = ProvisionerConfig::new(
        WorkspaceId::new(railway.workspace_id.clone()),
        environment_name.clone(),
        shapes.default_shape().image.clone(),
    );
    provisioner.shapes = shapes;
    provisioner.pool_project_id = railway.pool_project_id.as_deref().map(ProjectId::new);
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
    provisioner.pending_acceptance_timeout = r.millis("POOL_PENDING_ACCEPTANCE_TIMEOUT_MS", 3600 * 1000);
    // The Node pool's `PROTECTED_INSTANCES` (pool/src/config.ts): agent ids, comma-separated.
    provisioner.protected_instances = r
        .optional("PROTECTED_INSTANCES")
        .map(|ids| {
            ids.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for id in &provisioner.protected_instances {
        if let Err(e) = pool_store::AgentId::parse(id) {
            r.problems.push(format!("PROTECTED_INSTANCES: {e}"));
        }
    }
    // Every shape's size, until shapes have sizes of their own.
    let vcpus = r.parse_optional("AGENT_VCPUS", "a number of vCPUs");
    let memory_gb = r.parse_optional("AGENT_MEMORY_GB", "a number of GB");
    for shape in provisioner.shapes.iter_mut() {
        shape.vcpus = vcpus;
        shape.memory_gb = memory_gb;
    }
    provisioner.agent_variables = AgentVariables {
        primary_model: r.optional("OPENCLAW_PRIMARY_MODEL"),
        xmtp_env: r.optional("XMTP_ENV").unwrap_or_else(|| "dev".into()),
        pool_url: r.optional("POOL_URL"),
    };
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
    // Both runtimes' images start the same pool server (the Node pool sets one start command
    // for every image, pool/src/services/providers/railway.ts:365, :510).
    let start_command = match r.optional("AGENT_START_COMMAND") {
        Some(command) if command == "-" => None,
        Some(command) => Some(command),
        None => Some(pool_provisioner::DEFAULT_START_COMMAND.into()),
    };
    for shape in provisioner.shapes.iter_mut() {
        shape.start_command = start_command.clone();
    }
    provisioner.redeploy_fraction = r.parse("POOL_REDEPLOY_FRACTION", 0.25, "a fraction between 0 and 1");
    if !(0.0..=1.0).contains(&provisioner.redeploy_fraction) {
        r.problems
            .push("POOL_REDEPLOY_FRACTION must be between 0 and 1".into());
    }
    // Rollouts: where a tag is resolved to its digest, and how long an upgraded agent has.
    provisioner.registry_url = r.optional("AGENT_REGISTRY_URL");
    if let Some(url) = &provisioner.registry_url
        && !url.starts_with("https://")
        && !(allow_insecure_urls && url.starts_with("http://"))
    {
        r.problems.push(format!(
            "AGENT_REGISTRY_URL {url:?} must be an https:// URL (http:// only with POOL_ALLOW_INSECURE_URLS)"
        ));
    }
    provisioner.rollout_health_timeout = r.millis("POOL_ROLLOUT_HEALTH_TIMEOUT_MS", 600_000);
    // Wakes of one parked agent that fail in a row before it is torn down and replaced.
    let max = pool_provisioner::MAX_MAX_WAKE_FAILURES;
    let what = format!("a whole number from 1 to {max}");
    provisioner.max_wake_failures = r.parse(
        "POOL_MAX_WAKE_FAILURES",
        pool_provisioner::DEFAULT_MAX_WAKE_FAILURES,
        &what,
    );
    if !(1..=max).contains(&provisioner.max_wake_failures) {
        r.problems.push(format!(
            "POOL_MAX_WAKE_FAILURES must be {what}, got {}",
            provisioner.max_wake_failures
        ));
    }
    provisioner
}

/// The shapes: `POOL_RUNTIMES` (else one `openclaw` shape from `AGENT_IMAGE`), each image
/// tagged by `AGENT_IMAGE_TAG` or the environment, `RAILWAY_RUNTIME_IMAGE` as the image of the
/// shape it names, `POOL_DEFAULT_RUNTIME` (the first shape unless named). A problem is named
/// by its variable; a missing environment is reported by the Railway module, not twice here.
fn read_shapes(r: &mut Reader<'_>, environment_name: &str) -> Shapes {
    let runtimes = match r.optional("POOL_RUNTIMES").map(|spec| parse_runtimes(&spec)) {
        Some(Ok(runtimes)) => Some(runtimes),
        Some(Err(e)) => {
            r.problems.push(e.to_string());
            None
        }
        None => None,
    };
    let agent_image = r.optional("AGENT_IMAGE");
    let agent_image_tag = r.optional("AGENT_IMAGE_TAG");
    let railway_runtime_image = r.optional("RAILWAY_RUNTIME_IMAGE");
    let default_runtime = r.optional("POOL_DEFAULT_RUNTIME");
    let sources = ShapeSources {
        runtimes,
        agent_image: agent_image.as_deref(),
        agent_image_tag: agent_image_tag.as_deref(),
        railway_runtime_image: railway_runtime_image.as_deref(),
        default_runtime: default_runtime.as_deref(),
    };
    match shapes_from(&sources, environment_name) {
        Ok(shapes) => shapes,
        Err(e) => {
            let missing_environment =
                environment_name.is_empty() && e.0.starts_with("RAILWAY_ENVIRONMENT_NAME");
            if !missing_environment {
                r.problems.push(e.to_string());
            }
            let repository =
                agent_image.unwrap_or_else(|| pool_provisioner::image::DEFAULT_AGENT_IMAGE.into());
            Shapes::single(Shape::new(
                DEFAULT_SHAPE,
                pool_provisioner::ImageRef {
                    repository,
                    tag: String::new(),
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{MINIMAL, minimal_with};
    use crate::config::{Config, Env};

    #[test]
    fn the_wake_failure_limit_is_read_and_a_bad_one_is_named() {
        let config = Config::from_env(&Env::from_pairs(&MINIMAL)).unwrap();
        assert_eq!(
            config.provisioner.max_wake_failures,
            pool_provisioner::DEFAULT_MAX_WAKE_FAILURES
        );
        let config = Config::from_env(&minimal_with(&[], &[("POOL_MAX_WAKE_FAILURES", "5")])).unwrap();
        assert_eq!(config.provisioner.max_wake_failures, 5);
        for bad in ["0", "101", "-1", "three", "2.5"] {
            let problems =
                Config::from_env(&minimal_with(&[], &[("POOL_MAX_WAKE_FAILURES", bad)])).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("POOL_MAX_WAKE_FAILURES must be a whole number from 1 to 100")),
                "{bad}: {problems:#?}"
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
}
