//! Fake AgentMail (`/agentmail/v0`): inboxes, and a message store per inbox, so mail sent
//! through the pool's service proxy arrives and can be read back. It plays the calls the Node
//! pool and the runtime make at the pinned commit (spec §4.1): inbox create/list/delete
//! (`pool/src/services/providers/agentmail.ts:13-133`), send, list, threads, one message,
//! labels and attachment links (`pool/src/routes/serviceProxy.ts:236-376`,
//! `runtime/convos-platform/skills/services/scripts/handlers/email.mjs:75-348`).
//!
//! A message is visible only in its own inbox: a message id of another inbox is "not found",
//! as on AgentMail, where every message route is under `/inboxes/{inbox_id}`. Mail between two
//! simulated inboxes is delivered (a copy with its own id in the recipient's inbox).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Sim, check_bearer, resource_fault};
use crate::world::{Inbox, World};

/// A message in one inbox.
#[derive(Debug, Clone)]
pub struct MailMessage {
    /// Its id: an RFC Message-ID, angle brackets and all (`SKILL.md:111`).
    pub message_id: String,
    /// Its thread.
    pub thread_id: String,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML.
    pub html: Option<String>,
    /// `received`/`sent`, `unread`, and whatever was added.
    pub labels: Vec<String>,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// Attachments: (attachment id, filename, content type).
    pub attachments: Vec<(String, String, String)>,
}

impl MailMessage {
    fn summary(&self) -> Value {
        json!({
            "message_id": self.message_id,
            "thread_id": self.thread_id,
            "from": self.from,
            "to": self.to,
            "subject": self.subject,
            "preview": self.text.chars().take(100).collect::<String>(),
            "labels": self.labels,
            "timestamp": self.timestamp.to_rfc3339(),
            "attachments": self.attachments.iter().map(|(id, name, _)| json!({"attachment_id": id, "filename": name})).collect::<Vec<_>>(),
        })
    }

    fn full(&self) -> Value {
        let mut v = self.summary();
        v["text"] = json!(self.text);
        v["html"] = json!(self.html);
        v["attachments"] = self
            .attachments
            .iter()
            .map(|(id, name, kind)| json!({"attachment_id": id, "filename": name, "content_type": kind}))
            .collect();
        v
    }
}

pub(crate) fn routes() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/agentmail/v0/inboxes", post(create_inbox).get(list_inboxes))
        .route("/agentmail/v0/inboxes/{id}", delete(delete_inbox))
        .route("/agentmail/v0/inboxes/{id}/messages/send", post(send))
        .route("/agentmail/v0/inboxes/{id}/messages", get(list_messages))
        .route("/agentmail/v0/inboxes/{id}/threads", get(list_threads))
        .route(
            "/agentmail/v0/inboxes/{id}/messages/{message}",
            get(get_message).patch(update_message),
        )
        .route(
            "/agentmail/v0/inboxes/{id}/messages/{message}/attachments/{attachment}",
            get(get_attachment),
        )
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"name": "NotFoundError", "message": format!("{what} not found")})),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"name": "ValidationError", "message": message})),
    )
        .into_response()
}

/// The world, after the bearer check; counts the request.
fn authorized<'a>(
    sim: &'a Sim,
    headers: &HeaderMap,
) -> Result<std::sync::MutexGuard<'a, World>, Box<Response>> {
    let mut w = sim.world();
    w.counters.agentmail_requests += 1;
    check_bearer(headers, &w.config.agentmail_api_key)?;
    Ok(w)
}

fn live_inbox<'a>(w: &'a mut World, id: &str) -> Result<&'a mut Inbox, Box<Response>> {
    w.inboxes
        .get_mut(id)
        .filter(|i| !i.deleted)
        .ok_or_else(|| Box::new(not_found("Inbox")))
}

fn new_message_id(w: &mut World) -> String {
    format!("<{}@sim.agentmail.to>", w.id("msg"))
}

/// Delivers a message from outside (or from another inbox) to `inbox`.
pub(crate) fn deliver(w: &mut World, inbox: &str, from: &str, subject: &str, text: &str) -> Option<String> {
    let message_id = new_message_id(w);
    let thread_id = w.id("thread");
    let inbox = w.inboxes.get_mut(inbox).filter(|i| !i.deleted)?;
    inbox.messages.push(MailMessage {
        message_id: message_id.clone(),
        thread_id,
        from: from.to_string(),
        to: vec![inbox.inbox_id.clone()],
        subject: subject.to_string(),
        text: text.to_string(),
        html: None,
        labels: vec!["received".into(), "unread".into()],
        timestamp: Utc::now(),
        attachments: Vec::new(),
    });
    Some(message_id)
}

async fn create_inbox(State(sim): State<Sim>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some(fault) = resource_fault(&mut w, "agentmail.createInbox") {
        return fault;
    }
    let username = body
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or("agent")
        .to_string();
    let domain = body
        .get("domain")
        .and_then(Value::as_str)
        .unwrap_or("agentmail.to")
        .to_string();
    let client_id = body.get("client_id").and_then(Value::as_str).map(str::to_string);
    // `client_id` makes creation idempotent, as on AgentMail.
    if let Some(existing) = w
        .inboxes
        .values()
        .find(|i| !i.deleted && client_id.is_some() && i.client_id == client_id)
    {
        return Json(json!({"inbox_id": existing.inbox_id, "client_id": existing.client_id})).into_response();
    }
    let inbox_id = format!("{username}@{domain}");
    if w.inboxes.get(&inbox_id).is_some_and(|i| !i.deleted) {
        return (
            StatusCode::CONFLICT,
            Json(json!({"name": "AlreadyExistsError", "message": "Inbox already exists"})),
        )
            .into_response();
    }
    w.inboxes.insert(
        inbox_id.clone(),
        Inbox {
            inbox_id: inbox_id.clone(),
            username,
            client_id: client_id.clone(),
            deleted: false,
            messages: Vec::new(),
        },
    );
    Json(json!({"inbox_id": inbox_id, "client_id": client_id})).into_response()
}

async fn list_inboxes(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let inboxes: Vec<Value> = w
        .inboxes
        .values()
        .filter(|i| !i.deleted)
        .map(|i| json!({"inbox_id": i.inbox_id, "client_id": i.client_id}))
        .collect();
    Json(json!({"count": inboxes.len(), "inboxes": inboxes})).into_response()
}

async fn delete_inbox(State(sim): State<Sim>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some(fault) = resource_fault(&mut w, "agentmail.deleteInbox") {
        return fault;
    }
    match live_inbox(&mut w, &id) {
        Ok(i) => {
            i.deleted = true;
            i.messages.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => *r,
    }
}

fn addresses(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// `POST /inboxes/{id}/messages/send`: kept in the sender's inbox (`sent`), delivered to every
/// recipient that is a simulated inbox (`received`, `unread`).
async fn send(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some(fault) = resource_fault(&mut w, "agentmail.send") {
        return fault;
    }
    let to = addresses(body.get("to"));
    if to.is_empty() || to.iter().any(|a| !a.contains('@')) {
        return invalid("to must be one or more e-mail addresses");
    }
    let message_id = new_message_id(&mut w);
    let thread_id = w.id("thread");
    let mut attachments = Vec::new();
    for a in body
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = a
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or("attachment")
            .to_string();
        let kind = a
            .get("content_type")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream")
            .to_string();
        attachments.push((w.id("att"), name, kind));
    }
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_string);
    let sent = MailMessage {
        message_id: message_id.clone(),
        thread_id: thread_id.clone(),
        from: id.clone(),
        to: to.clone(),
        subject: text("subject").unwrap_or_default(),
        text: text("text").unwrap_or_default(),
        html: text("html"),
        labels: vec!["sent".into()],
        timestamp: Utc::now(),
        attachments,
    };
    match live_inbox(&mut w, &id) {
        Ok(inbox) => inbox.messages.push(sent.clone()),
        Err(r) => return *r,
    }
    for recipient in &to {
        let copy_id = new_message_id(&mut w);
        if let Some(inbox) = w.inboxes.get_mut(recipient).filter(|i| !i.deleted) {
            inbox.messages.push(MailMessage {
                message_id: copy_id,
                labels: vec!["received".into(), "unread".into()],
                ..sent.clone()
            });
        }
    }
    Json(json!({"message_id": message_id, "thread_id": thread_id})).into_response()
}

/// Query keys as pairs, repeated keys kept (`labels=a&labels=b`).
type Pairs = Query<Vec<(String, String)>>;

fn labels_of(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "labels")
        .flat_map(|(_, v)| v.split(','))
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn matching<'a>(inbox: &'a Inbox, pairs: &[(String, String)]) -> Vec<&'a MailMessage> {
    let labels = labels_of(pairs);
    let limit = pairs
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(20);
    inbox
        .messages
        .iter()
        .rev()
        .filter(|m| labels.iter().all(|l| m.labels.contains(l)))
        .take(limit)
        .collect()
}

async fn list_messages(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(pairs): Pairs,
) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let inbox = match live_inbox(&mut w, &id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let messages: Vec<Value> = matching(inbox, &pairs).iter().map(|m| m.summary()).collect();
    Json(json!({"count": messages.len(), "messages": messages})).into_response()
}

async fn list_threads(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(pairs): Pairs,
) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let inbox = match live_inbox(&mut w, &id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    // `unreplied`: threads whose last message was received (`handlers/email.mjs:192-196`).
    let unreplied = labels_of(&pairs).iter().any(|l| l == "unreplied");
    let mut threads: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for m in inbox.messages.iter().rev() {
        if !seen.insert(m.thread_id.clone()) {
            continue;
        }
        if unreplied && !m.labels.iter().any(|l| l == "received") {
            continue;
        }
        threads.push(json!({"thread_id": m.thread_id, "subject": m.subject, "senders": [m.from], "labels": m.labels, "timestamp": m.timestamp.to_rfc3339()}));
    }
    Json(json!({"count": threads.len(), "threads": threads})).into_response()
}

async fn get_message(
    State(sim): State<Sim>,
    Path((id, message)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let inbox = match live_inbox(&mut w, &id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match inbox.messages.iter().find(|m| m.message_id == message) {
        Some(m) => Json(m.full()).into_response(),
        None => not_found("Message"),
    }
}

async fn update_message(
    State(sim): State<Sim>,
    Path((id, message)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let inbox = match live_inbox(&mut w, &id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let Some(m) = inbox.messages.iter_mut().find(|m| m.message_id == message) else {
        return not_found("Message");
    };
    for label in addresses(body.get("add_labels")) {
        if !m.labels.contains(&label) {
            m.labels.push(label);
        }
    }
    let remove = addresses(body.get("remove_labels"));
    m.labels.retain(|l| !remove.contains(l));
    Json(m.summary()).into_response()
}

async fn get_attachment(
    State(sim): State<Sim>,
    Path((id, message, attachment)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut w = match authorized(&sim, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let inbox = match live_inbox(&mut w, &id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let found = inbox
        .messages
        .iter()
        .find(|m| m.message_id == message)
        .and_then(|m| m.attachments.iter().find(|(a, _, _)| *a == attachment));
    match found {
        Some((a, name, kind)) => Json(json!({
            "attachment_id": a,
            "filename": name,
            "content_type": kind,
            "download_url": format!("https://files.sim.agentmail.to/{a}"),
            "expires_at": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        }))
        .into_response(),
        None => not_found("Attachment"),
    }
}
