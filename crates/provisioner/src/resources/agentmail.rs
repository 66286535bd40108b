//! AgentMail's API (`https://api.agentmail.to/v0`): inboxes, and the calls the service proxy
//! makes on an agent's behalf (spec: the Node pool's `pool/src/routes/serviceProxy.ts`).

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use std::time::Duration;

use super::{ResourceError, TIMEOUT, error, path_segment, refused, unanswered};
use crate::outbound::{OutboundAnswer, OutboundClient, excerpt};

/// AgentMail settings.
#[derive(Clone)]
pub struct AgentMailConfig {
    /// API base, e.g. `https://api.agentmail.to/v0`; paths are appended.
    pub base_url: String,
    /// API key (bearer). Never given to agents: they reach their inbox through the proxy.
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

    /// The organisation's key (to scrub it from anything an agent could see).
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
                &self.url(&format!("/inboxes/{}", path_segment(inbox_id))),
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

/// The calls the service proxy makes for an agent, on its own inbox only (the inbox id comes
/// from the store, never from the agent). Each returns AgentMail's answer as it came (status
/// and body), for the proxy to pass on or refuse; a call that got no answer is an error.
/// Paths and payloads as the Node pool sends them (`pool/src/routes/serviceProxy.ts:236-376`).
impl AgentMail {
    async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        self.http
            .send(
                method,
                &self.url(path),
                Some(self.config.api_key.expose_secret()),
                body,
                timeout,
            )
            .await
            .map_err(|e| unanswered("agentmail", e))
    }

    fn inbox_path(inbox: &str, rest: &str) -> String {
        format!("/inboxes/{}{rest}", path_segment(inbox))
    }

    /// `POST /inboxes/{inbox}/messages/send` (`serviceProxy.ts:243-247`).
    pub async fn send_message(
        &self,
        inbox: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        self.call(
            hyper::Method::POST,
            &Self::inbox_path(inbox, "/messages/send"),
            Some(body),
            timeout,
        )
        .await
    }

    /// `GET /inboxes/{inbox}/messages[?query]` (`serviceProxy.ts:338-341`); `query` is the
    /// agent's query string as it came.
    pub async fn list_messages(
        &self,
        inbox: &str,
        query: Option<&str>,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        let path = Self::inbox_path(inbox, &with_query("/messages", query));
        self.call(hyper::Method::GET, &path, None, timeout).await
    }

    /// `GET /inboxes/{inbox}/threads[?query]` (`serviceProxy.ts:362-365`).
    pub async fn list_threads(
        &self,
        inbox: &str,
        query: Option<&str>,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        let path = Self::inbox_path(inbox, &with_query("/threads", query));
        self.call(hyper::Method::GET, &path, None, timeout).await
    }

    /// `GET /inboxes/{inbox}/messages/{message}` (`serviceProxy.ts:268-271`).
    pub async fn get_message(
        &self,
        inbox: &str,
        message: &str,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        let path = Self::inbox_path(inbox, &format!("/messages/{}", path_segment(message)));
        self.call(hyper::Method::GET, &path, None, timeout).await
    }

    /// `PATCH /inboxes/{inbox}/messages/{message}` (labels; `serviceProxy.ts:318-322`).
    pub async fn update_message(
        &self,
        inbox: &str,
        message: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        let path = Self::inbox_path(inbox, &format!("/messages/{}", path_segment(message)));
        self.call(hyper::Method::PATCH, &path, Some(body), timeout).await
    }

    /// `GET /inboxes/{inbox}/messages/{message}/attachments/{attachment}`: its `download_url`
    /// and `expires_at` (`serviceProxy.ts:284-290`).
    pub async fn get_attachment(
        &self,
        inbox: &str,
        message: &str,
        attachment: &str,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        let path = Self::inbox_path(
            inbox,
            &format!(
                "/messages/{}/attachments/{}",
                path_segment(message),
                path_segment(attachment)
            ),
        );
        self.call(hyper::Method::GET, &path, None, timeout).await
    }
}

fn with_query(path: &str, query: Option<&str>) -> String {
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}
