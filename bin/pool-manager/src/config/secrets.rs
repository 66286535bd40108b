//! The keys agents' secrets are sealed with at rest (`POOL_SECRETS_KEY`,
//! `POOL_SECRETS_KEY_PREVIOUS`, `POOL_ALLOW_PLAINTEXT_SECRETS`), which the store uses.

use pool_store::{SecretsKey, SecretsKeys};

use super::reader::Reader;

/// The environments where agents' secrets are always sealed: without `POOL_SECRETS_KEY` the
/// service refuses to start there, and `POOL_ALLOW_PLAINTEXT_SECRETS` is refused.
pub const SEALED_ENVIRONMENTS: [&str; 2] = ["staging", "production"];

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
pub(super) fn secrets_keys(r: &mut Reader<'_>, environment_name: &str) -> SecretsKeys {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{MINIMAL, SECRETS_KEY, minimal_with};
    use crate::config::{Config, Env};

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
}
