//! Railway: the API's tokens and endpoint, the workspace agents are created in, the pool's own
//! environment and project, the client's timeouts and request budget, and the secret of the
//! deploy events' webhook.

use railway_api::{BudgetConfig, ClientConfig, DEFAULT_ENDPOINT};
use secrecy::SecretString;

use super::reader::Reader;

/// Railway's variables, parsed.
pub(super) struct Railway {
    /// The client.
    pub client: ClientConfig,
    /// `RAILWAY_WORKSPACE_ID` (or `RAILWAY_TEAM_ID`).
    pub workspace_id: String,
    /// `RAILWAY_ENVIRONMENT_NAME`: the pool's environment, whose name agents' environments take.
    pub environment_name: String,
    /// `RAILWAY_PROJECT_ID`: the pool's own project.
    pub pool_project_id: Option<String>,
}

/// `allow_insecure_urls`: `POOL_ALLOW_INSECURE_URLS`, which lets `RAILWAY_API_URL` be plain http.
pub(super) fn read(r: &mut Reader<'_>, allow_insecure_urls: bool) -> Railway {
    let pool_project_id = r.optional("RAILWAY_PROJECT_ID");
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
    let railway_url = r.url("RAILWAY_API_URL", DEFAULT_ENDPOINT);
    if !allow_insecure_urls && !railway_url.starts_with("https://") {
        r.problems.push(format!(
            "RAILWAY_API_URL must be an https URL, got {railway_url:?} (POOL_ALLOW_INSECURE_URLS=true allows it, for a local simulator only)"
        ));
    }
    let mut client = ClientConfig::new(railway_url, tokens);
    client.request_timeout = r.millis("RAILWAY_REQUEST_TIMEOUT_MS", 30_000);
    client.project_create_cooldown = r.millis("RAILWAY_PROJECT_CREATE_COOLDOWN_MS", 31_000);
    client.budget = BudgetConfig {
        requests_per_second: r.parse("RAILWAY_REQUESTS_PER_SECOND", 50, "a whole number"),
        requests_per_hour: r.parse("RAILWAY_REQUESTS_PER_HOUR", 10_000, "a whole number"),
        max_in_flight: r.parse("RAILWAY_MAX_IN_FLIGHT", 32, "a whole number"),
        ..BudgetConfig::default()
    };
    Railway {
        client,
        workspace_id,
        environment_name,
        pool_project_id,
    }
}

/// `RAILWAY_WEBHOOK_SECRET`: the path secret of `POST /webhooks/railway/{secret}`.
pub(super) fn webhook_secret(r: &mut Reader<'_>) -> Option<SecretString> {
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
    webhook_secret
}

#[cfg(test)]
mod tests {
    use crate::config::testing::MINIMAL;
    use crate::config::{Config, Env};

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
        assert_eq!(config.provisioner.default_shape().image.tag, "sha-abc");
    }
}
