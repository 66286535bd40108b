//! The HTTP server: where it listens (`PORT`), who may call it (the admin key `POOL_API_KEY`,
//! the claim keys, the metrics key) and its limits (four budgets of requests in flight, header
//! and body deadlines, timeouts, the service proxy's body cap, the claim keys' rate, proxies
//! trusted for the client's address).

use std::net::SocketAddr;

use pool_http::SecurityConfig;
use secrecy::SecretString;

use super::reader::Reader;

/// The server's variables, parsed.
pub(super) struct Server {
    /// `PORT`, on every interface.
    pub listen: SocketAddr,
    /// `POOL_API_KEY`.
    pub admin_key: SecretString,
    /// The claim and metrics keys, and the limits.
    pub security: SecurityConfig,
}

pub(super) fn read(r: &mut Reader<'_>) -> Server {
    let port: u16 = r.parse("PORT", 8080, "a port number");
    let admin_key = r.required("POOL_API_KEY", "the bearer key for the pool's API");
    if !admin_key.is_empty() && admin_key.len() < 16 {
        r.problems
            .push("POOL_API_KEY must be at least 16 characters".into());
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
    let security = SecurityConfig {
        claim_keys,
        metrics_key,
        metrics_refresh: r.millis("POOL_METRICS_REFRESH_MS", 5_000),
        max_in_flight: r.parse("POOL_MAX_IN_FLIGHT", 512, "a whole number"),
        max_in_flight_public: r.parse("POOL_MAX_IN_FLIGHT_PUBLIC", 128, "a whole number"),
        max_in_flight_console: r.parse("POOL_MAX_IN_FLIGHT_CONSOLE", 64, "a whole number"),
        max_in_flight_agents: r.parse("POOL_MAX_IN_FLIGHT_AGENTS", 64, "a whole number"),
        header_read_timeout: r.millis("POOL_HEADER_READ_TIMEOUT_MS", 10_000),
        body_read_timeout: r.millis("POOL_BODY_READ_TIMEOUT_MS", 10_000),
        request_timeout: r.millis("POOL_REQUEST_TIMEOUT_MS", 60_000),
        trusted_proxy_hops: r.parse("POOL_TRUSTED_PROXY_HOPS", 0, "a whole number of proxies"),
        proxy_max_body: r.parse("POOL_PROXY_MAX_BODY", 10 * 1024 * 1024, "a number of bytes"),
        claim_key_rate_per_minute: r.parse("POOL_CLAIM_KEY_RATE_PER_MINUTE", 60, "a whole number"),
    };
    // Four budgets of requests in flight (the claims keep the API's own), each at least one.
    for (variable, n) in [
        ("POOL_MAX_IN_FLIGHT", security.max_in_flight),
        ("POOL_MAX_IN_FLIGHT_PUBLIC", security.max_in_flight_public),
        ("POOL_MAX_IN_FLIGHT_CONSOLE", security.max_in_flight_console),
        ("POOL_MAX_IN_FLIGHT_AGENTS", security.max_in_flight_agents),
        (
            "POOL_CLAIM_KEY_RATE_PER_MINUTE",
            security.claim_key_rate_per_minute as usize,
        ),
    ] {
        if n == 0 {
            r.problems.push(format!("{variable} must be at least 1"));
        }
    }
    if security.proxy_max_body < pool_http::MAX_BODY {
        r.problems.push(format!(
            "POOL_PROXY_MAX_BODY must be at least {} bytes",
            pool_http::MAX_BODY
        ));
    }
    Server {
        listen: SocketAddr::from(([0, 0, 0, 0], port)),
        admin_key: SecretString::from(admin_key),
        security,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;
    use crate::config::testing::minimal_with;

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
}
