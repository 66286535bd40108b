//! Telnyx's API (`https://api.telnyx.com/v2`): buying a phone number for an agent, and the
//! calls the service proxy makes with it. As the Node pool uses it at the runtime's pinned
//! commit (`pool/src/services/providers/telnyx.ts`, `pool/src/routes/serviceProxy.ts:380-472`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{ResourceError, TIMEOUT, error, path_segment, refused, unanswered};
use crate::outbound::{OutboundAnswer, OutboundClient, excerpt};

/// Telnyx settings.
#[derive(Clone)]
pub struct TelnyxConfig {
    /// API base, e.g. `https://api.telnyx.com/v2`; paths are appended.
    pub base_url: String,
    /// API key (bearer; `TELNYX_API_KEY`). Never given to agents.
    pub api_key: SecretString,
    /// The messaging profile numbers send through (`TELNYX_MESSAGING_PROFILE_ID`); without it
    /// the first listed one is used, or `convos-sms` is made (`telnyx.ts:106-136`).
    pub messaging_profile_id: Option<String>,
    /// Where numbers are bought (`filter[country_code]`, `telnyx.ts:18-33`).
    pub country_code: String,
}

impl std::fmt::Debug for TelnyxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelnyxConfig")
            .field("base_url", &self.base_url)
            .field("messaging_profile_id", &self.messaging_profile_id)
            .field("country_code", &self.country_code)
            .finish_non_exhaustive()
    }
}

/// What a number order came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// The number is ours.
    Ordered,
    /// Someone else got it first (409/422: search again, `telnyx.ts:47-65`).
    Taken,
}

/// Telnyx's API.
#[derive(Debug)]
pub struct Telnyx {
    config: TelnyxConfig,
    http: OutboundClient,
    profile: Mutex<Option<String>>,
}

fn data(v: &Value) -> Option<&Value> {
    v.get("data")
}

impl Telnyx {
    /// A client.
    pub fn new(config: TelnyxConfig, http: OutboundClient) -> Self {
        Self {
            profile: Mutex::new(config.messaging_profile_id.clone()),
            config,
            http,
        }
    }

    /// The organisation's key (to scrub it from anything an agent could see).
    pub fn api_key(&self) -> &SecretString {
        &self.config.api_key
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

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
            .map_err(|e| unanswered("telnyx", e))
    }

    async fn json(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, ResourceError> {
        let answer = self.call(method, path, body, TIMEOUT).await?;
        if !(200..300).contains(&answer.status) {
            return Err(refused(
                "telnyx",
                answer.status,
                format!("{what}: {} {}", answer.status, excerpt(&answer.body)),
            ));
        }
        serde_json::from_slice(&answer.body).map_err(|e| error("telnyx", format!("{what}: {e}")))
    }

    /// The messaging profile numbers send through: the configured one, else the first listed
    /// (`GET /messaging_profiles?page[size]=1`), else a new `convos-sms` (`telnyx.ts:106-136`).
    pub async fn messaging_profile(&self) -> Result<String, ResourceError> {
        let mut known = self.profile.lock().await;
        if let Some(id) = known.as_ref() {
            return Ok(id.clone());
        }
        let listed = self
            .json(
                hyper::Method::GET,
                "/messaging_profiles?page%5Bsize%5D=1",
                None,
                "list messaging profiles",
            )
            .await?;
        let id = match data(&listed)
            .and_then(|d| d.get(0))
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
        {
            Some(id) => id.to_string(),
            None => {
                let made = self
                    .json(
                        hyper::Method::POST,
                        "/messaging_profiles",
                        Some(&json!({"name": "convos-sms"})),
                        "create a messaging profile",
                    )
                    .await?;
                data(&made)
                    .and_then(|d| d.get("id"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| error("telnyx", "create a messaging profile: answer without data.id"))?
                    .to_string()
            }
        };
        *known = Some(id.clone());
        Ok(id)
    }

    /// Numbers for sale that can send SMS (`GET /available_phone_numbers`, `telnyx.ts:18-33`).
    pub async fn search_numbers(&self) -> Result<Vec<String>, ResourceError> {
        let path = format!(
            "/available_phone_numbers?filter%5Bcountry_code%5D={}&filter%5Bfeatures%5D%5B%5D=sms&filter%5Blimit%5D=20",
            path_segment(&self.config.country_code)
        );
        let found = self
            .json(hyper::Method::GET, &path, None, "search numbers")
            .await?;
        Ok(data(&found)
            .and_then(Value::as_array)
            .map(|numbers| {
                numbers
                    .iter()
                    .filter_map(|n| n.get("phone_number")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `POST /number_orders` for one number on `profile` (`telnyx.ts:47-65`).
    pub async fn order_number(&self, number: &str, profile: &str) -> Result<OrderOutcome, ResourceError> {
        let body = json!({"phone_numbers": [{"phone_number": number}], "messaging_profile_id": profile});
        let answer = self
            .call(hyper::Method::POST, "/number_orders", Some(&body), TIMEOUT)
            .await?;
        match answer.status {
            200..=299 => Ok(OrderOutcome::Ordered),
            409 | 422 => Ok(OrderOutcome::Taken),
            s => Err(refused(
                "telnyx",
                s,
                format!("order a number: {s} {}", excerpt(&answer.body)),
            )),
        }
    }

    /// Whether the account owns `number` (`GET /phone_numbers?filter[phone_number]=…`): the
    /// look after an order whose answer was lost.
    pub async fn owns_number(&self, number: &str) -> Result<bool, ResourceError> {
        let path = format!("/phone_numbers?filter%5Bphone_number%5D={}", path_segment(number));
        let found = self
            .json(hyper::Method::GET, &path, None, "look a number up")
            .await?;
        Ok(data(&found).and_then(Value::as_array).is_some_and(|d| {
            d.iter()
                .any(|n| n.get("phone_number").and_then(Value::as_str) == Some(number))
        }))
    }

    /// `PATCH /phone_numbers/{number}/messaging` onto `profile`; a fresh number answers 404
    /// for a moment, so that is tried again a few times (`telnyx.ts:139-156`).
    pub async fn assign_profile(&self, number: &str, profile: &str) -> Result<(), ResourceError> {
        let path = format!("/phone_numbers/{}/messaging", path_segment(number));
        let body = json!({"messaging_profile_id": profile});
        for attempt in 0..5 {
            let answer = self
                .call(hyper::Method::PATCH, &path, Some(&body), TIMEOUT)
                .await?;
            match answer.status {
                200..=299 => return Ok(()),
                404 if attempt < 4 => tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await,
                s => {
                    return Err(refused(
                        "telnyx",
                        s,
                        format!("assign the messaging profile: {s} {}", excerpt(&answer.body)),
                    ));
                }
            }
        }
        Err(error(
            "telnyx",
            "assign the messaging profile: the number never appeared",
        ))
    }

    /// `POST /messages` (`serviceProxy.ts:397-403`): the answer as it came.
    pub async fn send_message(
        &self,
        body: &Value,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        self.call(hyper::Method::POST, "/messages", Some(body), timeout)
            .await
    }

    /// `GET /messages/{id}` (`serviceProxy.ts:450-452`): the answer as it came.
    pub async fn get_message(&self, id: &str, timeout: Duration) -> Result<OutboundAnswer, ResourceError> {
        let path = format!("/messages/{}", path_segment(id));
        self.call(hyper::Method::GET, &path, None, timeout).await
    }

    /// `GET /detail_records?{query}` (`serviceProxy.ts:424-429`): `query` already carries the
    /// forced filters.
    pub async fn detail_records(
        &self,
        query: &str,
        timeout: Duration,
    ) -> Result<OutboundAnswer, ResourceError> {
        self.call(
            hyper::Method::GET,
            &format!("/detail_records?{query}"),
            None,
            timeout,
        )
        .await
    }
}
