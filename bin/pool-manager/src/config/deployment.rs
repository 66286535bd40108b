//! What staging and production require, and what production refuses (issue 20): a spending
//! ceiling (`POOL_MAX_TOTAL`), a verified database connection (`sslmode=verify-full`, unless
//! `POOL_ALLOW_UNVERIFIED_DATABASE_TLS`), no plain-http shortcuts and the pool's own project in
//! production, and a console password that is no other key.

use pool_provisioner::ProvisionerConfig;
use pool_store::{PoolSettings, StoreConfig};

use super::reader::Reader;

/// Adds a problem for each rule the configuration breaks.
pub(super) fn read(
    r: &mut Reader<'_>,
    environment: &str,
    database_url: &str,
    settings: &PoolSettings,
    console: &pool_http::console::ConsoleConfig,
    security: &pool_http::SecurityConfig,
    provisioner: &ProvisionerConfig,
) {
    let sealed = super::secrets::SEALED_ENVIRONMENTS.contains(&environment);
    if sealed && settings.max_total.is_none() {
        r.problems.push(format!(
            "POOL_MAX_TOTAL is required in {environment}: the ceiling of live agents (what the pool may spend)"
        ));
    }
    let waived = r.flag("POOL_ALLOW_UNVERIFIED_DATABASE_TLS", false);
    if sealed && !database_url.is_empty() && !waived {
        let mode = StoreConfig::new(database_url.to_string()).ssl_mode();
        if !matches!(mode, Ok(pool_store::SslMode::VerifyFull)) {
            r.problems.push(format!(
                "DATABASE_URL must use sslmode=verify-full in {environment} (a connection that is not verified can be rewritten in transit); POOL_ALLOW_UNVERIFIED_DATABASE_TLS=true waives it, e.g. on Railway's private network"
            ));
        }
    }
    if environment == "production" {
        if provisioner.allow_insecure_urls {
            r.problems
                .push("POOL_ALLOW_INSECURE_URLS cannot be used in production".into());
        }
        if !console.secure_cookies {
            r.problems
                .push("POOL_CONSOLE_INSECURE_COOKIES cannot be used in production".into());
        }
        if provisioner.pool_project_id.is_none() {
            r.problems.push(
                "RAILWAY_PROJECT_ID is required in production: the pool's own project, which is never deleted (Railway sets it)".into(),
            );
        }
    }
    if let Some(password) = &console.admin_password {
        let password = secrecy::ExposeSecret::expose_secret(password);
        let taken = security
            .claim_keys
            .iter()
            .any(|k| secrecy::ExposeSecret::expose_secret(&k.key) == password)
            || security
                .metrics_key
                .as_ref()
                .is_some_and(|k| secrecy::ExposeSecret::expose_secret(k) == password);
        if taken {
            r.problems.push(
                "POOL_ADMIN_PASSWORD must differ from every claim key and POOL_METRICS_KEY: a key that may only claim must not sign in to the console".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::testing::minimal_with;

    /// Issue 20: what staging and production require, and what production refuses.
    #[test]
    fn staging_and_production_need_a_ceiling_and_a_verified_database_and_production_refuses_shortcuts() {
        for environment in crate::config::secrets::SEALED_ENVIRONMENTS {
            let env = |without: &[&str], with: &[(&'static str, &'static str)]| {
                let mut with = with.to_vec();
                with.push(("RAILWAY_ENVIRONMENT_NAME", environment));
                with.push(("RAILWAY_PROJECT_ID", "pool-project"));
                with.push(("AGENT_IMAGE_TAG", "sha-abc"));
                minimal_with(without, &with)
            };
            let problems = Config::from_env(&env(&["POOL_MAX_TOTAL"], &[])).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("POOL_MAX_TOTAL is required")),
                "{problems:#?}"
            );
            for url in [
                "postgres://u@db.example/pool",
                "postgres://u@db.example/pool?sslmode=require",
                "postgres://u@db.example/pool?sslmode=verify-ca",
            ] {
                let problems = Config::from_env(&env(&[], &[("DATABASE_URL", url)])).unwrap_err();
                assert!(
                    problems
                        .iter()
                        .any(|p| p.starts_with("DATABASE_URL must use sslmode=verify-full")),
                    "{url}: {problems:#?}"
                );
                assert!(
                    !problems.iter().any(|p| p.contains("u@db")),
                    "the URL is never printed"
                );
                Config::from_env(&env(
                    &[],
                    &[
                        ("DATABASE_URL", url),
                        ("POOL_ALLOW_UNVERIFIED_DATABASE_TLS", "true"),
                    ],
                ))
                .unwrap();
            }
        }
        let production = |with: &[(&'static str, &'static str)], without: &[&str]| {
            let mut with = with.to_vec();
            with.push(("RAILWAY_ENVIRONMENT_NAME", "production"));
            with.push(("AGENT_IMAGE_TAG", "sha-abc"));
            Config::from_env(&minimal_with(without, &with))
        };
        let problems = production(&[], &[]).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("RAILWAY_PROJECT_ID is required in production")),
            "{problems:#?}"
        );
        let problems = production(
            &[
                ("RAILWAY_PROJECT_ID", "p"),
                ("POOL_ALLOW_INSECURE_URLS", "true"),
                ("POOL_CONSOLE_INSECURE_COOKIES", "true"),
            ],
            &[],
        )
        .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("POOL_ALLOW_INSECURE_URLS cannot be used in production"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("POOL_CONSOLE_INSECURE_COOKIES cannot be used in production"))
        );
        production(&[("RAILWAY_PROJECT_ID", "p")], &[]).unwrap();
    }

    /// Issue 20: the console password may not be a claim key, the proxy's services need
    /// POOL_URL, and no organisation key is passed to agents any more.
    #[test]
    fn the_console_password_is_no_claim_key_and_the_proxy_needs_pool_url() {
        let key = "app-claim-key-0123456789abcdef";
        let problems = Config::from_env(&minimal_with(
            &[],
            &[
                ("POOL_CLAIM_KEYS", "app=app-claim-key-0123456789abcdef"),
                ("POOL_ADMIN_PASSWORD", key),
            ],
        ))
        .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("POOL_ADMIN_PASSWORD must differ")),
            "{problems:#?}"
        );
        assert!(!problems.iter().any(|p| p.contains(key)));
        let problems = Config::from_env(&minimal_with(&[], &[("TELNYX_API_KEY", "t")])).unwrap_err();
        assert!(
            problems.iter().any(|p| p.starts_with("POOL_URL is required")),
            "{problems:#?}"
        );
        let config = Config::from_env(&minimal_with(
            &[],
            &[
                ("TELNYX_API_KEY", "t"),
                ("BANKR_API_KEY", "b"),
                ("POOL_URL", "https://pool.example"),
            ],
        ))
        .unwrap();
        let telnyx = config.provisioner.telnyx.unwrap();
        assert_eq!(
            (telnyx.base_url.as_str(), telnyx.country_code.as_str()),
            ("https://api.telnyx.com/v2", "US")
        );
        assert_eq!(config.reconciler.orphan_sweep_max_deletes, 5);
        assert_eq!(config.security.claim_key_rate_per_minute, 60);
        assert_eq!(config.provisioner.max_waiting_per_claimant, 50);
    }
}
