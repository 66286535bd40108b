//! OpenRouter's key API: a key per agent, with a credit limit (the Node pool's
//! `pool/src/services/providers/openrouter.ts:4-27`).

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{ResourceError, TIMEOUT, error, refused, unanswered};
use crate::outbound::{OutboundClient, excerpt};

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
