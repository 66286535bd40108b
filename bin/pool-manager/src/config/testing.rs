//! What the configuration tests share: a minimal valid environment and variations of it.

use super::Env;

/// 32 zero bytes: a well-formed key for these tests only.
pub const SECRETS_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// The fewest variables a valid configuration needs.
pub const MINIMAL: [(&str, &str); 7] = [
    ("POOL_API_KEY", "a-long-enough-admin-key"),
    (
        "DATABASE_URL",
        "postgres://postgres@db.example/pool?sslmode=verify-full",
    ),
    ("POOL_MAX_TOTAL", "50"),
    ("RAILWAY_API_TOKEN", "token"),
    ("RAILWAY_WORKSPACE_ID", "ws"),
    ("RAILWAY_ENVIRONMENT_NAME", "staging"),
    ("POOL_SECRETS_KEY", SECRETS_KEY),
];

/// MINIMAL without some variables and with others added or replaced.
pub fn minimal_with(without: &[&str], with: &[(&'static str, &'static str)]) -> Env {
    let mut pairs: Vec<(&str, &str)> = MINIMAL
        .iter()
        .copied()
        .filter(|(k, _)| !without.contains(k) && !with.iter().any(|(w, _)| w == k))
        .collect();
    pairs.extend_from_slice(with);
    Env::from_pairs(&pairs)
}
