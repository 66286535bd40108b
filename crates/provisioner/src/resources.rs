//! External resources each agent gets: a per-agent OpenRouter key and an AgentMail inbox.
//!
//! Both cost money, so both are created only after the agent's row exists, saved at once, and
//! found again by name (keys) or `client_id` (inboxes) when a crash left one unsaved.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::outbound::{OutboundClient, OutboundFailure, excerpt};

/// Why a resource call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service}: {message}")]
pub struct ResourceError {
    /// `openrouter` or `agentmail`.
    pub service: &'static str,
    /// What went wrong.
    pub message: String,
    /// A passing failure (no answer, 5xx, 429): worth trying again.
    pub transient: bool,
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn error(service: &'static str, message: impl Into<String>) -> ResourceError {
    ResourceError {
        service,
        message: message.into(),
        transient: false,
    }
}

/// No answer (or a malformed request): transient unless the request itself was wrong.
fn unanswered(service: &'static str, failure: OutboundFailure) -> ResourceError {
    ResourceError {
        service,
        transient: !matches!(failure, OutboundFailure::Invalid(_)),
        message: failure.to_string(),
    }
}

/// An error status: 5xx and 429 pass, the rest are refusals.
fn refused(service: &'static str, status: u16, message: String) -> ResourceError {
    ResourceError {
        service,
        message,
        transient: status >= 500 || status == 429,
    }
}

/// OpenRouter settings.
#[derive(Clone)]
pub struct OpenRouterConfig {
    /// API base, e.g. `https://openrouter.ai/api/v1`; paths are appended.
    pub base_url: String,
    /// Management key (bearer).
    pub management_key: SecretString,
    /// Credit limit per key.
    pub key_limit: f64,
    /// `limit_reset` (e.g. `monthly`).
    pub limit_reset: String,
}

impl std::fmt::Debug for OpenRouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRouterConfig")
            .field("base_url", &self.base_url)
            .field("key_limit", &self.key_limit)
            .finish_non_exhaustive()
    }
}

/// A key just created.
pub struct CreatedKey {
    /// Its hash (the id to delete it by).
    pub hash: String,
    /// The secret the agent uses.
    pub key: SecretString,
}

/// OpenRouter's key API.
#[derive(Debug, Clone)]
pub struct OpenRouter {
    config: OpenRouterConfig,
    http: OutboundClient,
}

impl OpenRouter {
    /// A client.
    pub fn new(config: OpenRouterConfig, http: OutboundClient) -> Self {
        Self { config, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// `POST /keys`.
    pub async fn create_key(&self, name: &str) -> Result<CreatedKey, ResourceError> {
        let body =
            json!({"name": name, "limit": self.config.key_limit, "limit_reset": self.config.limit_reset});
        let answer = self
            .http
            .send(
                hyper::Method::POST,
                &self.url("/keys"),
                Some(self.config.management_key.expose_secret()),
                Some(&body),
                TIMEOUT,
            )
            .await
            .map_err(|e| unanswered("openrouter", e))?;
        if !(200..300).contains(&answer.status) {
            return Err(refused(
                "openrouter",
                answer.status,
                format!("create key: {} {}", answer.status, excerpt(&answer.body)),
            ));
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| error("openrouter", format!("create key: {e}")))?;
        let hash = v.pointer("/data/hash").and_then(Value::as_str);
        let key = v.get("key").and_then(Value::as_str);
        match (hash, key) {
            (Some(hash), Some(key)) => Ok(CreatedKey {
                hash: hash.to_string(),
                key: SecretString::from(key.to_string()),
            }),
            _ => Err(error("openrouter", "create key: answer without key or data.hash")),
        }
    }

    /// `DELETE /keys/{hash}`; a key that is already gone counts as deleted.
    pub async fn delete_key(&self, hash: &str) -> Result<(), ResourceError> {
        let answer = self
            .http
            .send(
                hyper::Method::DELETE,
                &self.url(&format!("/keys/{hash}")),
                Some(self.config.management_key.expose_secret()),
                None,
                TIMEOUT,
            )
            .await
            .map_err(|e| unanswered("openrouter", e))?;
        match answer.status {
            200..=299 | 404 => Ok(()),
            s => Err(refused(
                "openrouter",
                s,
                format!("delete key: {s} {}", excerpt(&answer.body)),
            )),
        }
    }

    /// `GET /keys`: (hash, name) of every key.
    pub async fn list_keys(&self) -> Result<Vec<(String, String)>, ResourceError> {
        let answer = self
            .http
            .send(
                hyper::Method::GET,
                &self.url("/keys"),
                Some(self.config.management_key.expose_secret()),
                None,
                TIMEOUT,
            )
            .await
            .map_err(|e| unanswered("openrouter", e))?;
        if answer.status != 200 {
            return Err(refused(
                "openrouter",
                answer.status,
                format!("list keys: {} {}", answer.status, excerpt(&answer.body)),
            ));
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| error("openrouter", format!("list keys: {e}")))?;
        Ok(v.get("data")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| {
                        Some((
                            k.get("hash")?.as_str()?.to_string(),
                            k.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// AgentMail settings.
#[derive(Clone)]
pub struct AgentMailConfig {
    /// API base, e.g. `https://api.agentmail.to/v0`; paths are appended.
    pub base_url: String,
    /// API key (bearer; also given to agents as `AGENTMAIL_API_KEY`).
    pub api_key: SecretString,
    /// Domain for inboxes (`AGENTMAIL_DOMAIN`), when not the default.
    pub domain: Option<String>,
}

impl std::fmt::Debug for AgentMailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMailConfig")
            .field("base_url", &self.base_url)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// AgentMail's inbox API.
#[derive(Debug, Clone)]
pub struct AgentMail {
    config: AgentMailConfig,
    http: OutboundClient,
}

impl AgentMail {
    /// A client.
    pub fn new(config: AgentMailConfig, http: OutboundClient) -> Self {
        Self { config, http }
    }

    /// The key agents get.
    pub fn api_key(&self) -> &SecretString {
        &self.config.api_key
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// `POST /inboxes`. `client_id` makes it idempotent: a repeat returns the same inbox.
    pub async fn create_inbox(
        &self,
        username: &str,
        display_name: &str,
        client_id: &str,
    ) -> Result<String, ResourceError> {
        let mut body = json!({"username": username, "display_name": display_name, "client_id": client_id});
        if let Some(domain) = &self.config.domain {
            body["domain"] = Value::String(domain.clone());
        }
        let answer = self
            .http
            .send(
                hyper::Method::POST,
                &self.url("/inboxes"),
                Some(self.config.api_key.expose_secret()),
                Some(&body),
                TIMEOUT,
            )
            .await
            .map_err(|e| unanswered("agentmail", e))?;
        if !(200..300).contains(&answer.status) {
            return Err(refused(
                "agentmail",
                answer.status,
                format!("create inbox: {} {}", answer.status, excerpt(&answer.body)),
            ));
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| error("agentmail", format!("create inbox: {e}")))?;
        v.get("inbox_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| error("agentmail", "create inbox: answer without inbox_id"))
    }

    /// `DELETE /inboxes/{id}`; an inbox already gone counts as deleted.
    pub async fn delete_inbox(&self, inbox_id: &str) -> Result<(), ResourceError> {
        let answer = self
            .http
            .send(
                hyper::Method::DELETE,
                &self.url(&format!("/inboxes/{inbox_id}")),
                Some(self.config.api_key.expose_secret()),
                None,
                TIMEOUT,
            )
            .await
            .map_err(|e| unanswered("agentmail", e))?;
        match answer.status {
            200..=299 | 404 => Ok(()),
            s => Err(refused(
                "agentmail",
                s,
                format!("delete inbox: {s} {}", excerpt(&answer.body)),
            )),
        }
    }

    /// `GET /inboxes`: (inbox id, client id) of every inbox.
    pub async fn list_inboxes(&self) -> Result<Vec<(String, Option<String>)>, ResourceError> {
        let answer = self
            .http
            .send(
                hyper::Method::GET,
                &self.url("/inboxes"),
                Some(self.config.api_key.expose_secret()),
                None,
                TIMEOUT,
            )
            .await
            .map_err(|e| unanswered("agentmail", e))?;
        if answer.status != 200 {
            return Err(refused(
                "agentmail",
                answer.status,
                format!("list inboxes: {} {}", answer.status, excerpt(&answer.body)),
            ));
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| error("agentmail", format!("list inboxes: {e}")))?;
        Ok(v.get("inboxes")
            .and_then(Value::as_array)
            .map(|inboxes| {
                inboxes
                    .iter()
                    .filter_map(|i| {
                        Some((
                            i.get("inbox_id")?.as_str()?.to_string(),
                            i.get("client_id").and_then(Value::as_str).map(str::to_string),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
