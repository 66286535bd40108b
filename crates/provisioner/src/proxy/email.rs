//! The agent's email through the proxy: its own AgentMail inbox, made on first use
//! (`pool/src/routes/serviceProxy.ts:91-117,236-376`).

use std::time::Duration;

use pool_store::{Agent, ServiceKind};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::{Charge, Passthrough, checked_id, pass_on};
use crate::Provisioner;
use crate::error::{ProvisionError, Result};

/// An email call of an agent's, on its own inbox.
#[derive(Debug, Clone)]
pub enum EmailCall {
    /// `POST /api/proxy/email/send`: `{to, cc?, bcc?, reply_to?, subject?, text?, html?,
    /// labels?, attachments?}` (the runtime's fields, `handlers/email.mjs:123-168`).
    Send(Value),
    /// `GET /api/proxy/email/messages[?query]`: the agent's query string, forwarded as it came.
    ListMessages {
        /// The raw query string.
        query: Option<String>,
    },
    /// `GET /api/proxy/email/threads[?query]`.
    ListThreads {
        /// The raw query string.
        query: Option<String>,
    },
    /// `GET /api/proxy/email/messages/{id}`, with each attachment's download link.
    GetMessage {
        /// The message id (an RFC Message-ID, angle brackets and all).
        id: String,
    },
    /// `PATCH /api/proxy/email/messages/{id}`: `{add_labels?, remove_labels?}`.
    UpdateMessage {
        /// The message id.
        id: String,
        /// The labels to change.
        body: Value,
    },
}

/// The fields of a send AgentMail takes from an agent.
const SEND_FIELDS: [&str; 9] = [
    "to",
    "cc",
    "bcc",
    "reply_to",
    "subject",
    "text",
    "html",
    "labels",
    "attachments",
];
/// The fields of a message update.
const UPDATE_FIELDS: [&str; 2] = ["add_labels", "remove_labels"];
/// Attachments whose download link is looked up per message, at most.
const MAX_ATTACHMENT_LINKS: usize = 20;

const NO_INBOX: &str = "No inbox provisioned for this instance";

/// `body` as a JSON object holding only `allowed` fields: an unknown one is a 400 naming it.
pub(super) fn only_fields(body: Value, allowed: &[&str]) -> Result<Value> {
    let Value::Object(map) = body else {
        return Err(ProvisionError::InvalidRequest {
            field: "body",
            message: "must be a JSON object".into(),
        });
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ProvisionError::InvalidRequest {
            field: "body",
            message: format!(
                "unknown field {:?} (allowed: {})",
                unknown.chars().take(40).collect::<String>(),
                allowed.join(", ")
            ),
        });
    }
    Ok(Value::Object(map))
}

/// A query string an agent sends, forwarded as it came (the Node pool re-serialised it and
/// lost repeated keys, spec §0): at most 2 KiB of visible ASCII.
pub(super) fn checked_query(query: Option<String>) -> Result<Option<String>> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    if query.len() > 2048 || !query.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ProvisionError::InvalidRequest {
            field: "query",
            message: "must be at most 2048 visible ASCII characters".into(),
        });
    }
    Ok(Some(query))
}

impl Provisioner {
    /// Makes the agent's inbox: `client_id` is the agent's id, so a repeat returns the same
    /// inbox and the orphan sweep knows whose it is. Passing failures are tried again twice
    /// (Node: 3 attempts on 5xx/429, `pool/src/services/providers/agentmail.ts:33-38`).
    pub(super) async fn make_inbox(&self, agent: &Agent) -> Result<String> {
        let Some(agentmail) = &self.inner.agentmail else {
            return Err(ProvisionError::ServiceNotConfigured(
                "Email service not configured on pool",
            ));
        };
        let name = self.inner.naming.name(&agent.id);
        let display = agent.agent_name.as_deref().unwrap_or("Assistant");
        let mut attempt = 0;
        loop {
            match agentmail.create_inbox(&name, display, agent.id.as_str()).await {
                Ok(inbox) => return Ok(inbox),
                Err(e) if e.transient && attempt < 2 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One email call of `agent`'s, on its own inbox.
    pub async fn proxy_email(&self, agent: &Agent, call: EmailCall) -> Result<Passthrough> {
        let charge = match call {
            EmailCall::Send(_) => Charge::Send,
            _ => Charge::Call,
        };
        self.admit(agent, charge).await?;
        let inbox = self.own_resource(agent, ServiceKind::Email, NO_INBOX).await?;
        let Some(agentmail) = &self.inner.agentmail else {
            return Err(ProvisionError::ServiceNotConfigured(
                "Email service not configured",
            ));
        };
        let timeout = self.inner.config.proxy.upstream_timeout;
        let key = agentmail.api_key().expose_secret();
        let failed = |e: crate::resources::ResourceError| super::failed(ServiceKind::Email, &e);
        let answer = match call {
            EmailCall::Send(body) => {
                let body = only_fields(body, &SEND_FIELDS)?;
                agentmail.send_message(&inbox, &body, timeout).await
            }
            EmailCall::ListMessages { query } => {
                let query = checked_query(query)?;
                agentmail.list_messages(&inbox, query.as_deref(), timeout).await
            }
            EmailCall::ListThreads { query } => {
                let query = checked_query(query)?;
                agentmail.list_threads(&inbox, query.as_deref(), timeout).await
            }
            EmailCall::UpdateMessage { id, body } => {
                let id = checked_id("messageId", &id)?;
                let body = only_fields(body, &UPDATE_FIELDS)?;
                agentmail.update_message(&inbox, id, &body, timeout).await
            }
            EmailCall::GetMessage { id } => {
                let id = checked_id("messageId", &id)?;
                let answer = agentmail.get_message(&inbox, id, timeout).await.map_err(failed)?;
                let passed = pass_on(ServiceKind::Email, answer, &[key])?;
                return self.with_download_links(&inbox, id, passed).await;
            }
        }
        .map_err(failed)?;
        pass_on(ServiceKind::Email, answer, &[key])
    }

    /// Each attachment of a message gets its `download_url` and `expires_at`; one that cannot
    /// be looked up is left as it was (`serviceProxy.ts:280-297`).
    async fn with_download_links(
        &self,
        inbox: &str,
        message: &str,
        passed: Passthrough,
    ) -> Result<Passthrough> {
        let (Some(agentmail), Ok(mut parsed)) = (
            &self.inner.agentmail,
            serde_json::from_slice::<Value>(&passed.body),
        ) else {
            return Ok(passed);
        };
        let timeout = self.inner.config.proxy.upstream_timeout;
        let Some(attachments) = parsed.get_mut("attachments").and_then(Value::as_array_mut) else {
            return Ok(passed);
        };
        for attachment in attachments.iter_mut().take(MAX_ATTACHMENT_LINKS) {
            let Some(id) = attachment
                .get("attachment_id")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            let Ok(answer) = agentmail.get_attachment(inbox, message, &id, timeout).await else {
                continue;
            };
            if !(200..300).contains(&answer.status) {
                continue;
            }
            let Ok(link) = serde_json::from_slice::<Value>(&answer.body) else {
                continue;
            };
            for field in ["download_url", "expires_at"] {
                if let (Some(value), Some(object)) = (link.get(field), attachment.as_object_mut()) {
                    object.insert(field.to_string(), value.clone());
                }
            }
        }
        let body = serde_json::to_vec(&parsed).map_err(|e| ProvisionError::UpstreamFailed {
            service: "Email",
            reason: e.to_string(),
        })?;
        Ok(Passthrough {
            status: passed.status,
            body: body.into(),
        })
    }
}
