//! The service proxy: agents reach their own email and SMS through the pool, which alone holds
//! the organisation's AgentMail and Telnyx keys. As the Node pool at the runtime's pinned
//! commit does it (`pool/src/routes/serviceProxy.ts`), with its flaws fixed:
//!
//! - which inbox or number is an agent's is a store fact ([`pool_store::ServiceKind`]); the
//!   agent never names one, and an id it sends is always one path segment
//!   ([`crate::resources::path_segment`]), so it cannot reach another inbox or resource;
//! - an inbox or a number is made on the agent's first use, under a per-agent lease (one
//!   provisioning at a time on every replica), its row written before the call that costs
//!   money, and removed — with what was made — when the provisioning fails;
//! - a recycled phone number's earlier messages are not its new owner's: reads are bounded by
//!   the time it was assigned, and a message whose owner cannot be told is refused;
//! - every provider call has a timeout; a provider's failure is a 502 in the pool's words,
//!   never the provider's body; per-agent rate limits (calls, sends, provisionings).
//!
//! `email.rs` and `sms.rs` hold the calls of each service.

mod email;
mod sms;

use std::time::Duration;

use bytes::Bytes;
use pool_store::{Agent, AgentId, AgentStatus, RateDecision, ServiceKind, ServiceStart};
use secrecy::ExposeSecret;
use serde_json::Value;

pub use email::EmailCall;
pub use sms::SmsCall;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};
use crate::outbound::OutboundAnswer;
use crate::resources::ResourceError;

/// A provider's answer passed on to the agent as it came (a 2xx with a JSON body).
#[derive(Debug, Clone)]
pub struct Passthrough {
    /// The provider's status.
    pub status: u16,
    /// Its body (JSON).
    pub body: Bytes,
}

/// The services an agent has: `GET /api/proxy/info` (`serviceProxy.ts:219-222`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServiceInfo {
    /// Its inbox (an e-mail address), if it has one.
    pub email: Option<String>,
    /// Its phone number (E.164), if it has one.
    pub phone: Option<String>,
}

/// What a provisioning answered: the resource, and whether it was made now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProvisioned {
    /// The inbox id or phone number.
    pub resource: String,
    /// `false` when the agent had it already.
    pub provisioned: bool,
}

/// How long a provisioning holds its row (longer than a provider's slowest answer).
const PROVISION_LEASE: Duration = Duration::from_secs(120);
/// How long a provisioning that finds another one running waits for it.
const BUSY_WAIT: Duration = Duration::from_secs(10);
/// Longest message of a provider passed on to an agent.
const MAX_UPSTREAM_MESSAGE: usize = 300;

/// What a proxy call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// A read.
    Call,
    /// A message sent (costs money per message).
    Send,
    /// A provisioning or unprovisioning (may buy an inbox or a number).
    Provision,
}

fn label(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Email => "Email",
        ServiceKind::Sms => "SMS",
    }
}

impl Provisioner {
    /// The services an agent has.
    pub async fn agent_service_info(&self, agent: &AgentId) -> Result<ServiceInfo> {
        let mut info = ServiceInfo::default();
        for service in self.inner.store.agent_services(agent).await? {
            if !service.is_active() {
                continue;
            }
            match service.kind {
                ServiceKind::Email => info.email = service.resource_id,
                ServiceKind::Sms => info.phone = service.resource_id,
            }
        }
        Ok(info)
    }

    /// `GET /api/proxy/info` for `agent` (counted against its calls).
    pub async fn proxy_info(&self, agent: &Agent) -> Result<ServiceInfo> {
        self.admit(agent, Charge::Call).await?;
        self.agent_service_info(&agent.id).await
    }

    /// Checks that `agent` may use the proxy now and counts the call against its limits
    /// (shared by every replica): every call counts against the per-minute limit, sends and
    /// provisionings against their hourly ones too. An agent being torn down may not.
    pub(crate) async fn admit(&self, agent: &Agent, charge: Charge) -> Result<()> {
        if matches!(agent.status, AgentStatus::Deleting | AgentStatus::Deleted) {
            return Err(ProvisionError::Conflict {
                agent: agent.id.clone(),
                status: agent.status,
                message: "it is being torn down".into(),
            });
        }
        self.charge(agent, Charge::Call).await?;
        if charge != Charge::Call {
            self.charge(agent, charge).await?;
        }
        Ok(())
    }

    /// Counts one call of `charge`'s kind against its limit.
    async fn charge(&self, agent: &Agent, charge: Charge) -> Result<()> {
        let limits = &self.inner.config.proxy;
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        let checks = match charge {
            Charge::Call => [("proxy calls", "calls", minute, limits.requests_per_minute)],
            Charge::Send => [("messages sent", "sends", hour, limits.sends_per_hour)],
            Charge::Provision => [("provisionings", "provisions", hour, limits.provisions_per_hour)],
        };
        for (what, key, window, limit) in checks {
            let key = format!("proxy:{key}:{}", agent.id);
            if let RateDecision::Limited { retry_after } =
                self.inner.store.hit_rate_limit(&key, window, limit).await?
            {
                tracing::warn!(agent = %agent.id, limit = what, "proxy rate limit reached");
                return Err(ProvisionError::RateLimited {
                    what: format!(
                        "{what} of this agent (at most {limit} per {} s)",
                        window.as_secs()
                    ),
                    retry_after,
                });
            }
        }
        Ok(())
    }

    /// Gives `agent` an inbox (`Email`) or a phone number (`Sms`) if it has none
    /// (`POST /api/proxy/{email,sms}/provision`, `serviceProxy.ts:91-147`).
    pub async fn provision_service(&self, agent: &Agent, kind: ServiceKind) -> Result<ServiceProvisioned> {
        let store = &self.inner.store;
        if let Some(existing) = store.active_service(&agent.id, kind).await?
            && let Some(resource) = existing.resource_id
        {
            return Ok(ServiceProvisioned {
                resource,
                provisioned: false,
            });
        }
        self.service_configured(kind)?;
        self.admit(agent, Charge::Call).await?;
        let waited = tokio::time::Instant::now();
        loop {
            match store.begin_service(&agent.id, kind, PROVISION_LEASE).await? {
                ServiceStart::Began => break,
                ServiceStart::Existing(existing) => {
                    return Ok(ServiceProvisioned {
                        resource: existing.resource_id.unwrap_or_default(),
                        provisioned: false,
                    });
                }
                ServiceStart::AgentGone => {
                    return Err(ProvisionError::Conflict {
                        agent: agent.id.clone(),
                        status: AgentStatus::Deleting,
                        message: "it is being torn down".into(),
                    });
                }
                ServiceStart::Busy if waited.elapsed() < BUSY_WAIT => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                ServiceStart::Busy => return Err(ProvisionError::ServiceBusy(label(kind))),
            }
        }
        // Only a provisioning that will make something counts against the hourly limit (those
        // that found one running, or done, made nothing).
        if let Err(e) = self.charge(agent, Charge::Provision).await {
            store.abandon_service(&agent.id, kind).await?;
            return Err(e);
        }
        let made = match kind {
            ServiceKind::Email => self.make_inbox(agent).await,
            ServiceKind::Sms => self.take_number(agent).await,
        };
        let resource = match made {
            Ok(resource) => resource,
            Err(e) => {
                store.abandon_service(&agent.id, kind).await?;
                tracing::warn!(agent = %agent.id, service = kind.as_str(), error = %e, "provisioning failed; nothing kept");
                return Err(match e {
                    ProvisionError::Resource(r) => failed(kind, &r),
                    other => other,
                });
            }
        };
        if !store.activate_service(&agent.id, kind, &resource).await? {
            // Its teardown released the row meanwhile: what was made goes too.
            self.release_resource(agent, kind, &resource).await?;
            return Err(ProvisionError::Conflict {
                agent: agent.id.clone(),
                status: AgentStatus::Deleting,
                message: "it was torn down while its service was provisioned".into(),
            });
        }
        tracing::info!(agent = %agent.id, service = kind.as_str(), "service provisioned");
        self.tell_agent(agent, kind, &resource);
        Ok(ServiceProvisioned {
            resource,
            provisioned: true,
        })
    }

    /// Takes `agent`'s inbox or number away (`POST /api/proxy/{email,sms}/unprovision`,
    /// `serviceProxy.ts:153-198`): the inbox is deleted, the number goes back to the pool's
    /// stock. `None` when it had none. The row goes only once the provider confirmed.
    pub async fn unprovision_service(&self, agent: &Agent, kind: ServiceKind) -> Result<Option<String>> {
        let Some(resource) = self
            .inner
            .store
            .active_service(&agent.id, kind)
            .await?
            .and_then(|s| s.resource_id)
        else {
            return Ok(None);
        };
        self.admit(agent, Charge::Provision).await?;
        self.release_resource(agent, kind, &resource)
            .await
            .map_err(|e| match e {
                ProvisionError::Resource(r) => failed(kind, &r),
                other => other,
            })?;
        self.inner.store.forget_service(&agent.id, kind).await?;
        tracing::info!(agent = %agent.id, service = kind.as_str(), "service unprovisioned");
        self.tell_agent(agent, kind, "");
        Ok(Some(resource))
    }

    /// Releases everything the proxy gave an agent (its teardown): active inboxes are
    /// deleted, one left mid-provisioning is found by its `client_id`, numbers go back to the
    /// stock (one mid-order is kept only if the account owns it).
    pub(crate) async fn release_services(&self, agent: &Agent) -> Result<()> {
        let store = &self.inner.store;
        for service in store.agent_services(&agent.id).await? {
            match (service.kind, &service.resource_id) {
                (kind, Some(resource)) => self.release_resource(agent, kind, resource).await?,
                (ServiceKind::Email, None) => {
                    if let Some(agentmail) = &self.inner.agentmail {
                        for (inbox, client_id) in agentmail.list_inboxes().await? {
                            if client_id.as_deref() == Some(agent.id.as_str()) {
                                agentmail.delete_inbox(&inbox).await?;
                            }
                        }
                    }
                }
                (ServiceKind::Sms, None) => {}
            }
            store.forget_service(&agent.id, service.kind).await?;
        }
        for number in store.numbers_of(&agent.id).await? {
            self.settle_number(&number.phone_number, &number.status).await?;
        }
        Ok(())
    }

    fn service_configured(&self, kind: ServiceKind) -> Result<()> {
        let configured = match kind {
            ServiceKind::Email => self.inner.agentmail.is_some(),
            ServiceKind::Sms => self.inner.telnyx.is_some(),
        };
        if configured {
            Ok(())
        } else {
            Err(ProvisionError::ServiceNotConfigured(match kind {
                ServiceKind::Email => "Email service not configured on pool",
                ServiceKind::Sms => "SMS service not configured on pool",
            }))
        }
    }

    /// The agent's active resource of `kind`, or Node's 404 (checked before the 503 of a
    /// service that is not configured, `serviceProxy.ts:239-240`).
    pub(crate) async fn own_resource(
        &self,
        agent: &Agent,
        kind: ServiceKind,
        missing: &'static str,
    ) -> Result<String> {
        let resource = self
            .inner
            .store
            .active_service(&agent.id, kind)
            .await?
            .and_then(|s| s.resource_id)
            .ok_or(ProvisionError::ServiceNotProvisioned(missing))?;
        self.service_configured(kind)?;
        Ok(resource)
    }

    async fn release_resource(&self, agent: &Agent, kind: ServiceKind, resource: &str) -> Result<()> {
        match kind {
            ServiceKind::Email => {
                if let Some(agentmail) = &self.inner.agentmail {
                    agentmail.delete_inbox(resource).await?;
                }
            }
            ServiceKind::Sms => {
                let held = self.inner.store.numbers_of(&agent.id).await?;
                let status = held
                    .iter()
                    .find(|n| n.phone_number == resource)
                    .map_or("assigned", |n| n.status.as_str());
                self.settle_number(resource, status).await?;
            }
        }
        Ok(())
    }

    /// After the agent's first use or its unprovisioning, the agent is told its address, as
    /// the Node pool does (`serviceProxy.ts:27-41`: `POST {agent}/convos/update-metadata`, its
    /// gateway token, 10 s, errors only logged). A task the provisioner owns.
    fn tell_agent(&self, agent: &Agent, kind: ServiceKind, resource: &str) {
        let (Some(url), Some(secrets)) = (self.agent_url(agent), agent.secrets.as_ref()) else {
            return;
        };
        let field = match kind {
            ServiceKind::Email => "email",
            ServiceKind::Sms => "phone",
        };
        let body = serde_json::json!({"metadata": {field: resource}});
        let token = secrets.gateway_token.expose_secret().to_string();
        let this = self.clone();
        let id = agent.id.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.inner.agents.update_metadata(&url, &token, &body).await {
                tracing::info!(agent = %id, error = %e, "the agent was not told its service address");
            }
        });
    }
}

/// A provider's failure in the pool's words (never its body, which might hold anything).
fn failed(kind: ServiceKind, e: &ResourceError) -> ProvisionError {
    ProvisionError::UpstreamFailed {
        service: label(kind),
        reason: if e.transient {
            "the provider did not answer, or failed; try again shortly".into()
        } else {
            "the provider refused the pool's request".into()
        },
    }
}

/// A provider's answer, for the agent: a 2xx passes as it came; a refusal the agent can act on
/// (400, 404, 409, 422) passes as that status with the provider's short message (scrubbed of
/// `secrets`); anything else (401/403: the pool's key; 429, 5xx) is a 502 in the pool's words.
pub(crate) fn pass_on(kind: ServiceKind, answer: OutboundAnswer, secrets: &[&str]) -> Result<Passthrough> {
    match answer.status {
        200..=299 => Ok(Passthrough {
            status: answer.status,
            body: if answer.body.is_empty() {
                Bytes::from_static(b"null")
            } else {
                answer.body
            },
        }),
        status @ (400 | 404 | 409 | 422) => Err(ProvisionError::UpstreamRefused {
            status,
            message: upstream_message(&answer.body, secrets)
                .unwrap_or_else(|| format!("the {} provider refused the request ({status})", label(kind))),
        }),
        status => Err(ProvisionError::UpstreamFailed {
            service: label(kind),
            reason: format!("the provider answered {status}"),
        }),
    }
}

/// A provider's error message: AgentMail's `message`/`error` (the runtime reads
/// `data.message || data.error`, `handlers/email.mjs:76`), Telnyx's `errors[0].detail|title`
/// (`handlers/sms.mjs:123-135`); one line, short, with every secret cut out.
fn upstream_message(body: &[u8], secrets: &[&str]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = [
        v.get("message"),
        v.get("error").filter(|e| e.is_string()),
        v.pointer("/error/message"),
        v.pointer("/errors/0/detail"),
        v.pointer("/errors/0/title"),
    ]
    .into_iter()
    .flatten()
    .find_map(Value::as_str)?;
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        text = text.replace(secret, "[redacted]");
    }
    Some(text.chars().take(MAX_UPSTREAM_MESSAGE).collect())
}

/// Checks an id an agent sends (a message or attachment id): at most 512 characters, no
/// control characters, not only dots. It is then always sent as one path segment.
pub(crate) fn checked_id<'a>(field: &'static str, id: &'a str) -> Result<&'a str> {
    let bad = |message: &str| ProvisionError::InvalidRequest {
        field,
        message: message.into(),
    };
    if id.is_empty() || id.len() > 512 {
        return Err(bad("must be 1 to 512 characters"));
    }
    if id.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    if id.chars().all(|c| c == '.') {
        return Err(bad("is not an id"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> OutboundAnswer {
        OutboundAnswer {
            status,
            headers: hyper::HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn provider_answers_pass_refusals_keep_a_scrubbed_message_and_failures_say_nothing() {
        let ok = pass_on(ServiceKind::Email, answer(200, r#"{"a":1}"#), &[]).unwrap();
        assert_eq!(&ok.body[..], br#"{"a":1}"#);
        let key = "am_secret_key_123456";
        match pass_on(
            ServiceKind::Email,
            answer(400, &format!(r#"{{"message":"bad to; key {key}"}}"#)),
            &[key],
        ) {
            Err(ProvisionError::UpstreamRefused { status: 400, message }) => {
                assert_eq!(message, "bad to; key [redacted]");
            }
            other => panic!("{other:?}"),
        }
        for status in [401, 403, 429, 500, 503] {
            match pass_on(
                ServiceKind::Sms,
                answer(status, &format!(r#"{{"message":"{key}"}}"#)),
                &[],
            ) {
                Err(e @ ProvisionError::UpstreamFailed { .. }) => assert!(!e.to_string().contains(key)),
                other => panic!("{status}: {other:?}"),
            }
        }
        match pass_on(
            ServiceKind::Sms,
            answer(
                422,
                r#"{"errors":[{"title":"Invalid","detail":"to is not a number"}]}"#,
            ),
            &[],
        ) {
            Err(ProvisionError::UpstreamRefused { status: 422, message }) => {
                assert_eq!(message, "to is not a number")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(checked_id("messageId", "<CAK@mail>").is_ok());
        for bad in ["", ".", "..", "a\nb"] {
            assert!(checked_id("messageId", bad).is_err(), "{bad:?}");
        }
        assert!(checked_id("messageId", &"x".repeat(513)).is_err());
    }
}
