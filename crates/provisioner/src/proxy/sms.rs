//! The agent's SMS through the proxy: its own Telnyx number, taken from the pool's stock or
//! bought on first use (`pool/src/routes/serviceProxy.ts:120-147,390-472`,
//! `pool/src/services/providers/telnyx.ts`).
//!
//! A released number goes back to the stock, so a number may have had other owners. What the
//! agent may read of it starts when it was assigned: record listings get
//! `filter[sent_at][gte]` no earlier than that, and a message is the agent's only when it was
//! sent from or to its number at or after that time — a message whose sender, recipients or
//! time cannot be read is refused (the Node pool let those through, spec §3.14).

use chrono::{DateTime, Utc};
use pool_store::{Agent, ServiceKind};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::email::only_fields;
use super::{Charge, Passthrough, pass_on};
use crate::Provisioner;
use crate::error::{ProvisionError, Result};
use crate::resources::{OrderOutcome, ResourceError};

/// An SMS call of an agent's, on its own number.
#[derive(Debug, Clone)]
pub enum SmsCall {
    /// `POST /api/proxy/sms/send`: `{to, text, media_urls?, subject?}`; `from` and the
    /// messaging profile are the pool's (`serviceProxy.ts:397-403`).
    Send(Value),
    /// `GET /api/proxy/sms/records[?query]`: the inbound records of its number.
    Records {
        /// The raw query string.
        query: Option<String>,
    },
    /// `GET /api/proxy/sms/messages/{id}`.
    Message {
        /// Telnyx's message id.
        id: String,
    },
}

const NO_NUMBER: &str = "No phone number provisioned";
const NOT_YOURS: &str = "no such message for this instance";
/// Numbers tried per provisioning when others buy them first.
const ORDER_ATTEMPTS: usize = 5;
/// The query keys of a record listing an agent may set (the runtime's,
/// `handlers/sms.mjs:146-151`); `filter[cld]` is always the agent's own number.
const RECORD_KEYS: [&str; 7] = [
    "filter[record_type]",
    "filter[direction]",
    "filter[sent_at][gte]",
    "filter[sent_at][lte]",
    "page[size]",
    "page[number]",
    "sort",
];

fn unreserved(text: &str) -> String {
    crate::resources::path_segment(text).replace('@', "%40")
}

fn decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| {
                    ProvisionError::InvalidRequest {
                        field: "query",
                        message: "malformed percent-encoding".into(),
                    }
                })?;
                out.push(byte);
                i += 2;
            }
            b'%' => {
                return Err(ProvisionError::InvalidRequest {
                    field: "query",
                    message: "malformed percent-encoding".into(),
                });
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ProvisionError::InvalidRequest {
        field: "query",
        message: "must be UTF-8".into(),
    })
}

/// The record listing's query: the agent's keys from [`RECORD_KEYS`] (another is a 400 naming
/// it), `filter[cld]` set to `own`, and `filter[sent_at][gte]` no earlier than `since`.
pub(crate) fn records_query(query: Option<&str>, own: &str, since: DateTime<Utc>) -> Result<String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut gte = since;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode(key)?, decode(value)?);
        if key == "filter[cld]" {
            continue;
        }
        if !RECORD_KEYS.contains(&key.as_str()) {
            return Err(ProvisionError::InvalidRequest {
                field: "query",
                message: format!(
                    "{:?} is not a record filter this proxy passes (allowed: {})",
                    key.chars().take(40).collect::<String>(),
                    RECORD_KEYS.join(", ")
                ),
            });
        }
        if key == "filter[sent_at][gte]" {
            let asked = DateTime::parse_from_rfc3339(&value).map_err(|_| ProvisionError::InvalidRequest {
                field: "query",
                message: "filter[sent_at][gte] must be an RFC 3339 time".into(),
            })?;
            gte = gte.max(asked.with_timezone(&Utc));
            continue;
        }
        pairs.push((key, value));
    }
    pairs.push(("filter[cld]".into(), own.to_string()));
    pairs.push((
        "filter[sent_at][gte]".into(),
        gte.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    ));
    Ok(pairs
        .iter()
        .map(|(k, v)| format!("{}={}", unreserved(k), unreserved(v)))
        .collect::<Vec<_>>()
        .join("&"))
}

/// Whether a Telnyx message (`{"data": {...}}`) is `own`'s since `since`: sent from it or to
/// it, at or after that time. Anything unreadable is not.
pub(crate) fn message_is_own(message: &Value, own: &str, since: DateTime<Utc>) -> bool {
    let Some(data) = message.get("data") else {
        return false;
    };
    let from = data.pointer("/from/phone_number").and_then(Value::as_str);
    let to: Vec<&str> = data
        .get("to")
        .and_then(Value::as_array)
        .map(|to| {
            to.iter()
                .filter_map(|t| t.get("phone_number")?.as_str())
                .collect()
        })
        .unwrap_or_default();
    let involved = from == Some(own) || to.contains(&own);
    let at = ["received_at", "sent_at", "created_at"]
        .iter()
        .find_map(|f| data.get(*f).and_then(Value::as_str))
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    involved && at.is_some_and(|at| at >= since)
}

impl Provisioner {
    /// Gives the agent a number: the oldest released one in stock, else one bought now — its
    /// row written before the order, removed when the order did not go through (an order
    /// whose answer was lost is looked up).
    pub(super) async fn take_number(&self, agent: &Agent) -> Result<String> {
        let store = &self.inner.store;
        let Some(telnyx) = &self.inner.telnyx else {
            return Err(ProvisionError::ServiceNotConfigured(
                "SMS service not configured on pool",
            ));
        };
        if let Some(number) = store.assign_available_number(&agent.id).await? {
            return Ok(number.phone_number);
        }
        let profile = telnyx.messaging_profile().await?;
        for number in telnyx.search_numbers().await?.into_iter().take(ORDER_ATTEMPTS) {
            if !store.record_number_order(&agent.id, &number, &profile).await? {
                continue;
            }
            match telnyx.order_number(&number, &profile).await {
                Ok(OrderOutcome::Ordered) => {}
                Ok(OrderOutcome::Taken) => {
                    store.forget_number(&number).await?;
                    continue;
                }
                Err(e) => match telnyx.owns_number(&number).await {
                    Ok(true) => {}
                    Ok(false) => {
                        store.forget_number(&number).await?;
                        return Err(e.into());
                    }
                    // Unknown: the row stays `ordering`; teardown settles it.
                    Err(_) => return Err(e.into()),
                },
            }
            if let Err(e) = telnyx.assign_profile(&number, &profile).await {
                // Ours all the same: into the stock, for the next one.
                store.number_ordered(&number).await?;
                store.release_number(&number).await?;
                return Err(e.into());
            }
            store.number_ordered(&number).await?;
            tracing::info!(agent = %agent.id, "bought a phone number");
            return Ok(number);
        }
        Err(ResourceError {
            service: "telnyx",
            message: "no number for sale could be ordered".into(),
            transient: true,
        }
        .into())
    }

    /// Puts a number an agent held back: an assigned one into the stock; one mid-order into
    /// the stock if the account owns it, else forgotten.
    pub(super) async fn settle_number(&self, number: &str, status: &str) -> Result<()> {
        let store = &self.inner.store;
        match status {
            "ordering" => {
                let owned = match &self.inner.telnyx {
                    Some(telnyx) => telnyx.owns_number(number).await?,
                    None => false,
                };
                if owned {
                    store.number_ordered(number).await?;
                    store.release_number(number).await?;
                } else {
                    store.forget_number(number).await?;
                }
            }
            "assigned" => store.release_number(number).await?,
            _ => {}
        }
        Ok(())
    }

    /// One SMS call of `agent`'s, on its own number.
    pub async fn proxy_sms(&self, agent: &Agent, call: SmsCall) -> Result<Passthrough> {
        let charge = match call {
            SmsCall::Send(_) => Charge::Send,
            _ => Charge::Call,
        };
        self.admit(agent, charge).await?;
        let own = self.own_resource(agent, ServiceKind::Sms, NO_NUMBER).await?;
        let Some(telnyx) = &self.inner.telnyx else {
            return Err(ProvisionError::ServiceNotConfigured("SMS service not configured"));
        };
        let store = &self.inner.store;
        let since = store
            .active_service(&agent.id, ServiceKind::Sms)
            .await?
            .and_then(|s| s.assigned_at)
            .ok_or(ProvisionError::ServiceNotProvisioned(NO_NUMBER))?;
        let timeout = self.inner.config.proxy.upstream_timeout;
        let key = telnyx.api_key().expose_secret();
        let failed = |e: ResourceError| super::failed(ServiceKind::Sms, &e);
        match call {
            SmsCall::Send(body) => {
                let mut body = only_fields(body, &["to", "text", "media_urls", "subject"])?;
                if !body.get("to").is_some_and(Value::is_string) {
                    return Err(ProvisionError::InvalidRequest {
                        field: "to",
                        message: "required: the recipient's number".into(),
                    });
                }
                let profile = match store
                    .numbers_of(&agent.id)
                    .await?
                    .into_iter()
                    .find(|n| n.phone_number == own)
                {
                    Some(n) => n.messaging_profile_id,
                    None => telnyx.messaging_profile().await?,
                };
                body["from"] = Value::String(own);
                body["messaging_profile_id"] = Value::String(profile);
                let answer = telnyx.send_message(&body, timeout).await.map_err(failed)?;
                pass_on(ServiceKind::Sms, answer, &[key])
            }
            SmsCall::Records { query } => {
                let query = records_query(query.as_deref(), &own, since)?;
                let answer = telnyx.detail_records(&query, timeout).await.map_err(failed)?;
                pass_on(ServiceKind::Sms, answer, &[key])
            }
            SmsCall::Message { id } => {
                // Telnyx's ids are UUIDs: anything else is no message of the agent's.
                if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                    return Err(ProvisionError::NotTheAgents(NOT_YOURS.into()));
                }
                let answer = telnyx.get_message(&id, timeout).await.map_err(failed)?;
                let passed = pass_on(ServiceKind::Sms, answer, &[key])?;
                let parsed: Value = serde_json::from_slice(&passed.body).unwrap_or(Value::Null);
                if !message_is_own(&parsed, &own, since) {
                    tracing::warn!(agent = %agent.id, "an agent asked for a message that is not its own");
                    return Err(ProvisionError::NotTheAgents(NOT_YOURS.into()));
                }
                Ok(passed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn records_are_always_filtered_to_the_own_number_since_it_was_assigned() {
        let since = at("2026-12-01T10:00:00Z");
        let q = records_query(
            Some("filter%5Brecord_type%5D=message&filter[direction]=inbound&page[size]=10&filter[cld]=%2B15550000000"),
            "+15551112222",
            since,
        )
        .unwrap_or_default();
        assert!(q.contains("filter%5Bcld%5D=%2B15551112222"), "{q}");
        assert!(!q.contains("15550000000"), "{q}");
        assert!(
            q.contains("filter%5Bsent_at%5D%5Bgte%5D=2026-12-01T10%3A00%3A00.000Z"),
            "{q}"
        );
        // An earlier bound is raised; a later one kept.
        let q =
            records_query(Some("filter[sent_at][gte]=2020-01-01T00:00:00Z"), "+1", since).unwrap_or_default();
        assert!(q.contains("2026-12-01T10"), "{q}");
        let q =
            records_query(Some("filter[sent_at][gte]=2027-01-01T00:00:00Z"), "+1", since).unwrap_or_default();
        assert!(q.contains("2027-01-01T00"), "{q}");
        for bad in [
            "filter[cli]=x",
            "filter[cld][neq]=x",
            "%zz=1",
            "filter[sent_at][gte]=yesterday",
        ] {
            assert!(records_query(Some(bad), "+1", since).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_message_is_the_agents_only_when_it_involves_its_number_since_it_was_assigned() {
        let since = at("2026-12-01T10:00:00Z");
        let own = "+15551112222";
        let msg = |from: &str, to: &str, time: &str| serde_json::json!({"data": {"from": {"phone_number": from}, "to": [{"phone_number": to}], "received_at": time}});
        assert!(message_is_own(
            &msg("+19998887777", own, "2026-12-01T10:00:01Z"),
            own,
            since
        ));
        assert!(message_is_own(
            &msg(own, "+19998887777", "2026-12-02T00:00:00Z"),
            own,
            since
        ));
        assert!(
            !message_is_own(&msg("+19998887777", own, "2026-12-01T09:59:59Z"), own, since),
            "the previous owner's"
        );
        assert!(
            !message_is_own(&msg("+1999", "+1888", "2026-12-02T00:00:00Z"), own, since),
            "another number's"
        );
        assert!(
            !message_is_own(
                &serde_json::json!({"data": {"to": [{"phone_number": own}]}}),
                own,
                since
            ),
            "no time: refused"
        );
        assert!(!message_is_own(&serde_json::json!({"data": {}}), own, since));
        assert!(!message_is_own(&serde_json::json!({"errors": []}), own, since));
    }
}
