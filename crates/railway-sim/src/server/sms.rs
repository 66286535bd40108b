//! Fake Telnyx (`/telnyx/v2`): numbers for sale and bought, messaging profiles, messages and
//! their detail records — the calls the Node pool makes at the pinned commit (spec §4.2:
//! `pool/src/services/providers/telnyx.ts:16-156`, `pool/src/routes/serviceProxy.ts:390-472`,
//! `runtime/convos-platform/skills/services/scripts/handlers/sms.mjs:108-229`).
//!
//! As on Telnyx, a message id is global to the account — any of its numbers' messages can be
//! read by id with the account's key — which is why the pool checks whose a message is. A
//! text to one of the account's numbers is received (an inbound message and a detail record).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Value, json};

use super::{Sim, check_bearer, resource_fault};
use crate::world::World;

/// A number the account owns.
#[derive(Debug, Clone)]
pub(crate) struct OwnedNumber {
    pub messaging_profile_id: Option<String>,
}

/// A message, outbound or inbound.
#[derive(Debug, Clone)]
pub(crate) struct SmsMessage {
    pub id: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub direction: &'static str,
    pub at: DateTime<Utc>,
}

impl SmsMessage {
    fn json(&self) -> Value {
        let at = self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        json!({"data": {
            "id": self.id,
            "record_type": "message",
            "direction": self.direction,
            "from": {"phone_number": self.from},
            "to": [{"phone_number": self.to, "status": if self.direction == "inbound" { "delivered" } else { "queued" }}],
            "text": self.text,
            "status": if self.direction == "inbound" { "delivered" } else { "queued" },
            "created_at": at,
            "received_at": if self.direction == "inbound" { Some(at.clone()) } else { None },
            "sent_at": if self.direction == "outbound" { Some(at) } else { None },
        }})
    }
}

/// Telnyx's side of the world.
#[derive(Debug, Default)]
pub(crate) struct TelnyxWorld {
    pub owned: BTreeMap<String, OwnedNumber>,
    pub profiles: Vec<String>,
    pub messages: BTreeMap<String, SmsMessage>,
    next_number: u32,
}

pub(crate) fn routes() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/telnyx/v2/available_phone_numbers", get(available))
        .route("/telnyx/v2/number_orders", post(order))
        .route("/telnyx/v2/phone_numbers", get(list_numbers))
        .route(
            "/telnyx/v2/phone_numbers/{number}/messaging",
            patch(assign_profile),
        )
        .route(
            "/telnyx/v2/messaging_profiles",
            get(list_profiles).post(create_profile),
        )
        .route("/telnyx/v2/messages", post(send))
        .route("/telnyx/v2/messages/{id}", get(get_message))
        .route("/telnyx/v2/detail_records", get(detail_records))
}

fn error(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"title": title, "detail": detail}]})),
    )
        .into_response()
}

fn authorized<'a>(
    sim: &'a Sim,
    headers: &HeaderMap,
) -> Result<std::sync::MutexGuard<'a, World>, Box<Response>> {
    let mut w = sim.world();
    w.counters.telnyx_requests += 1;
    check_bearer(headers, &w.config.telnyx_api_key)?;
    Ok(w)
}

fn uuid() -> String {
    let n: u128 = rand::rng().random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

type Pairs = Query<Vec<(String, String)>>;

/// A text from `from` to `to`: an inbound message when `to` is the account's.
pub(crate) fn deliver(w: &mut World, from: &str, to: &str, text: &str) -> String {
    let id = uuid();
    w.telnyx.messages.insert(
        id.clone(),
        SmsMessage {
            id: id.clone(),
            from: from.to_string(),
            to: to.to_string(),
            text: text.to_string(),
            direction: "inbound",
            at: Utc::now(),
        },
    );
    id
}

async fn available(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let start = w.telnyx.next_number;
    w.telnyx.next_number += 20;
    let data: Vec<Value> = (start..start + 20)
        .map(|n| format!("+1555{:07}", n))
        .filter(|n| !w.telnyx.owned.contains_key(n))
        .map(|n| json!({"phone_number": n, "features": [{"name": "sms"}]}))
        .collect();
    Json(json!({"data": data})).into_response()
}

async fn order(State(sim): State<Sim>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some(fault) = resource_fault(&mut w, "telnyx.order") {
        return fault;
    }
    let Some(number) = body
        .pointer("/phone_numbers/0/phone_number")
        .and_then(Value::as_str)
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "phone_numbers is required",
        );
    };
    if w.telnyx.owned.contains_key(number) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unavailable",
            "the number is not available",
        );
    }
    let profile = body
        .get("messaging_profile_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    w.telnyx.owned.insert(
        number.to_string(),
        OwnedNumber {
            messaging_profile_id: profile,
        },
    );
    Json(json!({"data": {"id": uuid(), "status": "success", "phone_numbers": [{"phone_number": number, "status": "success"}]}}))
        .into_response()
}

async fn list_numbers(State(sim): State<Sim>, headers: HeaderMap, Query(pairs): Pairs) -> Response {
    let w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let only = param(&pairs, "filter[phone_number]");
    let data: Vec<Value> = w
        .telnyx
        .owned
        .iter()
        .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
        .map(|(n, o)| json!({"phone_number": n, "status": "active", "messaging_profile_id": o.messaging_profile_id}))
        .collect();
    Json(json!({"data": data})).into_response()
}

async fn assign_profile(
    State(sim): State<Sim>,
    Path(number): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let profile = body
        .get("messaging_profile_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    match w.telnyx.owned.get_mut(&number) {
        Some(owned) => {
            owned.messaging_profile_id = profile.clone();
            Json(json!({"data": {"phone_number": number, "messaging_profile_id": profile}})).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found", "no such phone number"),
    }
}

async fn list_profiles(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let data: Vec<Value> = w
        .telnyx
        .profiles
        .iter()
        .map(|id| json!({"id": id, "name": "convos-sms"}))
        .collect();
    Json(json!({"data": data})).into_response()
}

async fn create_profile(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let id = uuid();
    w.telnyx.profiles.push(id.clone());
    Json(json!({"data": {"id": id, "name": "convos-sms"}})).into_response()
}

/// `POST /messages`: `from` must be one of the account's numbers, on the profile named.
async fn send(State(sim): State<Sim>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some(fault) = resource_fault(&mut w, "telnyx.send") {
        return fault;
    }
    let text = |f: &str| {
        body.get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (from, to, message) = (text("from"), text("to"), text("text"));
    let Some(owned) = w.telnyx.owned.get(&from) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid source number",
            "from is not a number of this account",
        );
    };
    if owned.messaging_profile_id.as_deref() != body.get("messaging_profile_id").and_then(Value::as_str) {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid messaging profile",
            "from is not on this messaging profile",
        );
    }
    if !to.starts_with('+') {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid destination",
            "to must be an E.164 number",
        );
    }
    let id = uuid();
    let sent = SmsMessage {
        id: id.clone(),
        from: from.clone(),
        to: to.clone(),
        text: message.clone(),
        direction: "outbound",
        at: Utc::now(),
    };
    let answer = sent.json();
    w.telnyx.messages.insert(id, sent);
    if w.telnyx.owned.contains_key(&to) {
        deliver(&mut w, &from, &to, &message);
    }
    Json(answer).into_response()
}

async fn get_message(State(sim): State<Sim>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    match w.telnyx.messages.get(&id) {
        Some(m) => Json(m.json()).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found", "no such message"),
    }
}

/// `GET /detail_records`: message records filtered by direction, called number (`cld`) and
/// time (`sent_at` bounds), newest first (`handlers/sms.mjs:146-190`).
async fn detail_records(State(sim): State<Sim>, headers: HeaderMap, Query(pairs): Pairs) -> Response {
    let w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let time = |key: &str| {
        param(&pairs, key)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let (gte, lte) = (time("filter[sent_at][gte]"), time("filter[sent_at][lte]"));
    let direction = param(&pairs, "filter[direction]");
    let cld = param(&pairs, "filter[cld]");
    let size = param(&pairs, "page[size]")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(20);
    let mut records: Vec<&SmsMessage> = w
        .telnyx
        .messages
        .values()
        .filter(|m| direction.is_none_or(|d| d == m.direction))
        .filter(|m| cld.is_none_or(|c| c == m.to))
        .filter(|m| gte.is_none_or(|t| m.at >= t) && lte.is_none_or(|t| m.at <= t))
        .collect();
    records.sort_by_key(|m| std::cmp::Reverse(m.at));
    let total = records.len();
    let data: Vec<Value> = records
        .iter()
        .take(size)
        .map(|m| json!({"id": m.id, "record_type": "message", "direction": m.direction, "cli": m.from, "cld": m.to, "sent_at": m.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}))
        .collect();
    Json(json!({"data": data, "meta": {"total_results": total}})).into_response()
}
