//! The service proxy (issue 20), through the router, against a real PostgreSQL and the
//! simulator's AgentMail and Telnyx over real HTTP: email and SMS end to end with the agents'
//! own credentials, nothing of another agent's reachable, bad input refused before any
//! provider is called, a recycled number showing nothing of its past, one inbox however many
//! concurrent provisionings, teardown releasing everything, and no organisation key on any
//! agent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use pool_http::console::ConsoleConfig;
use pool_http::{AppState, DetachedControl, SecurityConfig, ServiceInfo};
use pool_provisioner::testing::{SIM_ORGANISATION_KEYS, TestPool, provisioner_config, unthrottled};
use pool_provisioner::{Provisioner, ProxyLimits};
use pool_store::AgentId;
use railway_sim::{Faults, OperationFaults};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "proxy-admin-key-0123456789";

fn app(provisioner: Provisioner, security: SecurityConfig) -> Router {
    pool_http::router(AppState {
        provisioner,
        control: Arc::new(DetachedControl::default()),
        admin_key: SecretString::from(ADMIN),
        info: ServiceInfo {
            version: "test".into(),
        },
        console: ConsoleConfig::default(),
        webhook_secret: None,
        security,
    })
}

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

async fn call(app: &Router, method: Method, path: &str, auth: &str, body: Option<String>) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if !auth.is_empty() {
        request = request.header("authorization", auth);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        text: String::from_utf8_lossy(&bytes).to_string(),
    }
}

/// An agent as the proxy knows it: its id and `Bearer <id>:<token>`.
struct AgentAuth {
    id: AgentId,
    auth: String,
}

async fn agents(pool: &TestPool, n: usize) -> Vec<AgentAuth> {
    let mut out = Vec::new();
    for id in pool.idle_agents(n).await {
        let agent = pool.store.agent(&id).await.unwrap().unwrap();
        let token = agent.secrets.unwrap().gateway_token.expose_secret().to_string();
        out.push(AgentAuth {
            auth: format!("Bearer {id}:{token}"),
            id,
        });
    }
    out
}

fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn upstream_requests(pool: &TestPool) -> (u64, u64) {
    let c = pool.sim.counters();
    (c.agentmail_requests, c.telnyx_requests)
}

/// Must show: email send and receive through the proxy, end to end against the simulator's
/// AgentMail, with the agents' own credentials; the agent is told its address; and no agent's
/// variables hold an organisation's key.
#[tokio::test]
async fn email_goes_from_one_agent_to_another_through_the_proxy() {
    let pool = TestPool::start(unthrottled()).await;
    let app = app(pool.provisioner.clone(), SecurityConfig::default());
    let [a, b]: [AgentAuth; 2] = agents(&pool, 2).await.try_into().ok().unwrap();
    let mut keys = SIM_ORGANISATION_KEYS.to_vec();
    keys.push(ADMIN);
    pool.assert_no_organisation_key_on_agents(&keys);

    let info = call(&app, Method::GET, "/api/proxy/info", &a.auth, None).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text);
    assert_eq!(
        info.json(),
        json!({"instanceId": a.id, "email": null, "phone": null})
    );
    let not_yet = call(
        &app,
        Method::POST,
        "/api/proxy/email/send",
        &a.auth,
        Some("{}".into()),
    )
    .await;
    assert_eq!(not_yet.status, StatusCode::NOT_FOUND);
    assert_eq!(not_yet.json()["error"], "No inbox provisioned for this instance");

    let mut inbox = BTreeMap::new();
    for agent in [&a, &b] {
        let made = call(
            &app,
            Method::POST,
            "/api/proxy/email/provision",
            &agent.auth,
            None,
        )
        .await;
        assert_eq!(made.status, StatusCode::OK, "{}", made.text);
        assert_eq!(made.json()["provisioned"], true);
        let again = call(
            &app,
            Method::POST,
            "/api/proxy/email/provision",
            &agent.auth,
            None,
        )
        .await;
        assert_eq!(again.json()["provisioned"], false);
        assert_eq!(again.json()["email"], made.json()["email"]);
        inbox.insert(
            agent.id.clone(),
            made.json()["email"].as_str().unwrap().to_string(),
        );
    }
    let send = json!({"to": inbox[&b.id], "subject": "Hello", "text": "from a to b",
                      "attachments": [{"content": "aGk=", "filename": "hi.txt", "content_type": "text/plain"}]});
    let sent = call(
        &app,
        Method::POST,
        "/api/proxy/email/send",
        &a.auth,
        Some(send.to_string()),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);

    let unread = call(
        &app,
        Method::GET,
        "/api/proxy/email/messages?limit=20&labels=unread",
        &b.auth,
        None,
    )
    .await;
    assert_eq!(unread.status, StatusCode::OK, "{}", unread.text);
    let messages = unread.json()["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["from"], inbox[&a.id]);
    let id = messages[0]["message_id"].as_str().unwrap().to_string();
    assert!(id.starts_with('<') && id.contains('@'), "an RFC Message-ID: {id}");

    let path = format!("/api/proxy/email/messages/{}", encode(&id));
    let read = call(&app, Method::GET, &path, &b.auth, None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.json()["text"], "from a to b");
    assert!(
        read.json()["attachments"][0]["download_url"].as_str().is_some(),
        "attachment links are added: {}",
        read.text
    );
    let labels = json!({"add_labels": ["read"], "remove_labels": ["unread"]});
    let marked = call(&app, Method::PATCH, &path, &b.auth, Some(labels.to_string())).await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text);
    let unread = call(
        &app,
        Method::GET,
        "/api/proxy/email/messages?labels=unread",
        &b.auth,
        None,
    )
    .await;
    assert_eq!(unread.json()["count"], 0);
    let threads = call(
        &app,
        Method::GET,
        "/api/proxy/email/threads?labels=unreplied",
        &b.auth,
        None,
    )
    .await;
    assert_eq!(threads.json()["count"], 1, "{}", threads.text);
    let sent_box = call(
        &app,
        Method::GET,
        "/api/proxy/email/messages?labels=sent",
        &a.auth,
        None,
    )
    .await;
    assert_eq!(sent_box.json()["count"], 1, "{}", sent_box.text);

    // The agent was told its address (Node's update-metadata), in a task: poll for it.
    let domain = pool.store.agent(&a.id).await.unwrap().unwrap().domain.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pool
        .sim
        .agent_metadata(&domain)
        .get("email")
        .and_then(Value::as_str)
        != Some(inbox[&a.id].as_str())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent was never told its address"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = call(
        &app,
        Method::GET,
        &format!("/api/proxy/services/status?instanceId={}", a.id),
        &format!("Bearer {ADMIN}"),
        None,
    )
    .await;
    assert_eq!(status.json()["email"], inbox[&a.id]);
    let refused = call(
        &app,
        Method::GET,
        "/api/proxy/services/status?instanceId=x",
        &a.auth,
        None,
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "admin only");
    pool.assert_nothing_leaked().await;
}

/// Must show: an agent's proxy call with another agent's message id gets 403 or 404 — by id,
/// by a path that tries to climb into another inbox, and for SMS by a message of another
/// number.
#[tokio::test]
async fn another_agents_message_ids_are_not_found() {
    let pool = TestPool::start(unthrottled()).await;
    let app = app(pool.provisioner.clone(), SecurityConfig::default());
    let [a, b]: [AgentAuth; 2] = agents(&pool, 2).await.try_into().ok().unwrap();
    let mut inbox = BTreeMap::new();
    for agent in [&a, &b] {
        let made = call(
            &app,
            Method::POST,
            "/api/proxy/email/provision",
            &agent.auth,
            None,
        )
        .await;
        inbox.insert(
            agent.id.clone(),
            made.json()["email"].as_str().unwrap().to_string(),
        );
        let phone = call(&app, Method::POST, "/api/proxy/sms/provision", &agent.auth, None).await;
        assert_eq!(phone.status, StatusCode::OK, "{}", phone.text);
    }
    let secret = pool
        .sim
        .deliver_email(&inbox[&b.id], "bank@example.com", "code", "123456")
        .unwrap();
    for path in [
        format!("/api/proxy/email/messages/{}", encode(&secret)),
        format!(
            "/api/proxy/email/messages/{}",
            encode(&format!("../../{}/messages/{secret}", inbox[&b.id]))
        ),
        format!(
            "/api/proxy/email/messages/{}",
            encode(&format!("../{}", inbox[&b.id]))
        ),
    ] {
        let read = call(&app, Method::GET, &path, &a.auth, None).await;
        assert!(
            matches!(read.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
            "{path}: {} {}",
            read.status,
            read.text
        );
        assert!(!read.text.contains("123456"), "{}", read.text);
        let relabel = call(
            &app,
            Method::PATCH,
            &path,
            &a.auth,
            Some(r#"{"add_labels":["x"]}"#.into()),
        )
        .await;
        assert!(matches!(
            relabel.status,
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN
        ));
    }
    for dots in ["..", "%2E%2E"] {
        let read = call(
            &app,
            Method::GET,
            &format!("/api/proxy/email/messages/{dots}"),
            &a.auth,
            None,
        )
        .await;
        assert!(read.status.is_client_error(), "{dots}: {}", read.status);
    }
    let own = call(
        &app,
        Method::GET,
        &format!("/api/proxy/email/messages/{}", encode(&secret)),
        &b.auth,
        None,
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "its owner reads it: {}", own.text);

    // SMS: message ids are the account's, not the number's; the proxy refuses another's.
    let b_phone = call(&app, Method::GET, "/api/proxy/info", &b.auth, None)
        .await
        .json()["phone"]
        .as_str()
        .unwrap()
        .to_string();
    let text = pool
        .sim
        .deliver_sms("+14155550100", &b_phone, "your code is 654321");
    for id in [
        text.clone(),
        "../phone_numbers".into(),
        "..%2Fphone_numbers".into(),
    ] {
        let read = call(
            &app,
            Method::GET,
            &format!("/api/proxy/sms/messages/{}", encode(&id)),
            &a.auth,
            None,
        )
        .await;
        assert!(
            matches!(read.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
            "{id}: {}",
            read.status
        );
        assert!(!read.text.contains("654321"));
    }
    let own = call(
        &app,
        Method::GET,
        &format!("/api/proxy/sms/messages/{text}"),
        &b.auth,
        None,
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.json()["data"]["text"], "your code is 654321");
}

/// Bad input: a malformed Bearer is 401, an unknown instance or a wrong token 403, an
/// oversized body 413 — and none of them reaches a provider.
#[tokio::test]
async fn bad_credentials_and_oversized_bodies_never_reach_a_provider() {
    let pool = TestPool::start(unthrottled()).await;
    let security = SecurityConfig {
        proxy_max_body: 4096,
        ..SecurityConfig::default()
    };
    let app = app(pool.provisioner.clone(), security);
    let [a]: [AgentAuth; 1] = agents(&pool, 1).await.try_into().ok().unwrap();
    call(&app, Method::POST, "/api/proxy/email/provision", &a.auth, None).await;
    let before = upstream_requests(&pool);
    let body = json!({"to": "x@example.com", "text": "hi"}).to_string();
    let (id, token) = a.auth.trim_start_matches("Bearer ").split_once(':').unwrap();
    for (auth, status, error) in [
        ("", StatusCode::UNAUTHORIZED, "Missing instance credentials"),
        ("Bearer", StatusCode::UNAUTHORIZED, "Missing instance credentials"),
        (
            &format!("Bearer {id}") as &str,
            StatusCode::UNAUTHORIZED,
            "Missing instance credentials",
        ),
        (
            &format!("Basic {id}:{token}"),
            StatusCode::UNAUTHORIZED,
            "Missing instance credentials",
        ),
        (
            &format!("Bearer nosuchagent1:{token}"),
            StatusCode::FORBIDDEN,
            "Invalid instance ID or token",
        ),
        (
            &format!("Bearer {id}:{token}x"),
            StatusCode::FORBIDDEN,
            "Invalid instance ID or token",
        ),
        (
            &format!("Bearer {ADMIN}"),
            StatusCode::UNAUTHORIZED,
            "Missing instance credentials",
        ),
    ] {
        for (method, path) in [
            (Method::POST, "/api/proxy/email/send"),
            (Method::GET, "/api/proxy/email/messages"),
            (Method::GET, "/api/proxy/sms/records"),
            (Method::POST, "/api/proxy/sms/provision"),
        ] {
            if auth.ends_with(ADMIN) && path.ends_with("/provision") {
                // The admin key may provision (with an instanceId): not a bad credential there.
                continue;
            }
            let answer = call(&app, method.clone(), path, auth, Some(body.clone())).await;
            assert_eq!(answer.status, status, "{auth:?} {path}: {}", answer.text);
            assert_eq!(answer.json()["error"], error, "{auth:?} {path}");
        }
    }
    let oversized = json!({"to": "x@example.com", "text": "x".repeat(5000)}).to_string();
    let answer = call(
        &app,
        Method::POST,
        "/api/proxy/email/send",
        &a.auth,
        Some(oversized),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.text);
    for bad in [
        "[1]",
        "{not json",
        r#"{"to":"x@example.com","from":"ceo@example.com"}"#,
    ] {
        let answer = call(
            &app,
            Method::POST,
            "/api/proxy/email/send",
            &a.auth,
            Some(bad.into()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}: {}", answer.text);
    }
    let bad_query = call(
        &app,
        Method::GET,
        "/api/proxy/sms/records?filter[cli]=%2B1",
        &a.auth,
        None,
    )
    .await;
    assert!(bad_query.status.is_client_error());
    assert_eq!(upstream_requests(&pool), before, "no provider was called");
}

/// A provider's failure is a 502 in the pool's words, never its body; per-agent limits are
/// 429; a provisioning that fails keeps nothing.
#[tokio::test]
async fn provider_failures_are_502_without_their_body_and_limits_are_429() {
    let pool = TestPool::start(unthrottled()).await;
    let mut config = provisioner_config(&pool.sim, None);
    config.proxy = ProxyLimits {
        requests_per_minute: 6,
        ..ProxyLimits::default()
    };
    let app = app(pool.provisioner(config), SecurityConfig::default());
    let [a]: [AgentAuth; 1] = agents(&pool, 1).await.try_into().ok().unwrap();
    let fail = |op: &str| Faults {
        operations: [(
            op.to_string(),
            OperationFaults {
                server_error: 1.0,
                ..OperationFaults::default()
            },
        )]
        .into(),
        ..Faults::default()
    };
    pool.sim.set_faults(fail("agentmail.createInbox"));
    let failed = call(&app, Method::POST, "/api/proxy/email/provision", &a.auth, None).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.text);
    assert!(
        failed.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("Email proxy failed")
    );
    assert!(
        pool.store.agent_services(&a.id).await.unwrap().is_empty(),
        "no row kept"
    );
    pool.sim.set_faults(fail("agentmail.send"));
    call(&app, Method::POST, "/api/proxy/email/provision", &a.auth, None).await;
    let send = json!({"to": "x@example.com", "text": "hi"}).to_string();
    let failed = call(&app, Method::POST, "/api/proxy/email/send", &a.auth, Some(send)).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.text);
    assert!(!failed.text.contains("injected"), "{}", failed.text);
    pool.sim.set_faults(Faults::default());
    let mut limited = None;
    for _ in 0..6 {
        let answer = call(&app, Method::GET, "/api/proxy/info", &a.auth, None).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the per-minute limit answers 429");
    assert!(
        limited.json()["error"]
            .as_str()
            .unwrap()
            .contains("proxy calls of this agent")
    );
}

/// Phone numbers are reused (they cost money monthly), and a reused number shows its new owner
/// nothing from before it was assigned: neither in the records nor by message id.
#[tokio::test]
async fn a_recycled_number_shows_its_new_owner_nothing_of_its_past() {
    let pool = TestPool::start(unthrottled()).await;
    let app = app(pool.provisioner.clone(), SecurityConfig::default());
    let [a, b]: [AgentAuth; 2] = agents(&pool, 2).await.try_into().ok().unwrap();
    let got = call(&app, Method::POST, "/api/proxy/sms/provision", &a.auth, None).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    let number = got.json()["phone"].as_str().unwrap().to_string();
    let old = pool.sim.deliver_sms("+14155550100", &number, "old secret 111");
    let records = call(
        &app,
        Method::GET,
        "/api/proxy/sms/records?filter[direction]=inbound&page[size]=10",
        &a.auth,
        None,
    )
    .await;
    assert_eq!(
        records.json()["data"].as_array().unwrap().len(),
        1,
        "{}",
        records.text
    );
    let sent = call(
        &app,
        Method::POST,
        "/api/proxy/sms/send",
        &a.auth,
        Some(json!({"to": "+14155550100", "text": "hi"}).to_string()),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    assert_eq!(
        sent.json()["data"]["from"]["phone_number"],
        number.as_str(),
        "from is the pool's"
    );

    let released = call(&app, Method::POST, "/api/proxy/sms/unprovision", &a.auth, None).await;
    assert_eq!(released.json(), json!({"phone": number, "unprovisioned": true}));
    // Records are kept to the millisecond: the new owner's time starts after the old text.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let reused = call(&app, Method::POST, "/api/proxy/sms/provision", &b.auth, None).await;
    assert_eq!(
        reused.json()["phone"],
        number.as_str(),
        "the number was reused: {}",
        reused.text
    );
    assert_eq!(pool.sim.owned_numbers().len(), 1, "no second number bought");

    let records = call(
        &app,
        Method::GET,
        "/api/proxy/sms/records?filter[direction]=inbound",
        &b.auth,
        None,
    )
    .await;
    assert_eq!(
        records.json()["data"].as_array().unwrap().len(),
        0,
        "{}",
        records.text
    );
    let asked_early = call(
        &app,
        Method::GET,
        "/api/proxy/sms/records?filter[sent_at][gte]=2000-01-01T00:00:00Z",
        &b.auth,
        None,
    )
    .await;
    assert_eq!(
        asked_early.json()["data"].as_array().unwrap().len(),
        0,
        "{}",
        asked_early.text
    );
    let read_old = call(
        &app,
        Method::GET,
        &format!("/api/proxy/sms/messages/{old}"),
        &b.auth,
        None,
    )
    .await;
    assert_eq!(read_old.status, StatusCode::NOT_FOUND, "{}", read_old.text);
    let new = pool.sim.deliver_sms("+14155550100", &number, "new 222");
    let records = call(
        &app,
        Method::GET,
        "/api/proxy/sms/records?filter[direction]=inbound",
        &b.auth,
        None,
    )
    .await;
    let data = records.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1, "{data:?}");
    assert_eq!(data[0]["id"], new.as_str());
}

/// One inbox however many provisionings run at once (the per-agent lease); the admin key
/// provisions with `{instanceId}`; teardown releases inbox and number, and nothing leaks.
#[tokio::test]
async fn concurrent_provisionings_make_one_inbox_and_teardown_releases_everything() {
    let pool = TestPool::start(unthrottled()).await;
    let app = app(pool.provisioner.clone(), SecurityConfig::default());
    let [a]: [AgentAuth; 1] = agents(&pool, 1).await.try_into().ok().unwrap();
    let calls = (0..6).map(|_| {
        let app = app.clone();
        let auth = a.auth.clone();
        tokio::spawn(async move { call(&app, Method::POST, "/api/proxy/email/provision", &auth, None).await })
    });
    let mut emails = Vec::new();
    for task in calls.collect::<Vec<_>>() {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        emails.push(answer.json()["email"].as_str().unwrap().to_string());
    }
    emails.dedup();
    assert_eq!(emails.len(), 1, "{emails:?}");
    let live = pool.sim.snapshot().inboxes.iter().filter(|i| !i.deleted).count();
    assert_eq!(live, 1);

    let admin = format!("Bearer {ADMIN}");
    let no_id = call(
        &app,
        Method::POST,
        "/api/proxy/sms/provision",
        &admin,
        Some("{}".into()),
    )
    .await;
    assert_eq!(no_id.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        no_id.json()["error"],
        "instanceId required in body when using admin auth"
    );
    let by_admin = call(
        &app,
        Method::POST,
        "/api/proxy/sms/provision",
        &admin,
        Some(json!({"instanceId": a.id}).to_string()),
    )
    .await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.text);
    let unknown = call(
        &app,
        Method::POST,
        "/api/proxy/sms/provision",
        &admin,
        Some(r#"{"instanceId":"nosuchagent1"}"#.into()),
    )
    .await;
    assert_eq!(
        unknown.status,
        StatusCode::NOT_FOUND,
        "no provider call for a stranger"
    );

    pool.provisioner.kill(&a.id, "test").await.unwrap();
    assert!(
        pool.sim.snapshot().inboxes.iter().all(|i| i.deleted),
        "the inbox went"
    );
    let numbers = pool.store.phone_numbers().await.unwrap();
    assert_eq!(numbers.len(), 1);
    assert_eq!(numbers[0].status, "available", "the number is back in stock");
    let after = call(&app, Method::GET, "/api/proxy/info", &a.auth, None).await;
    assert_eq!(
        after.status,
        StatusCode::FORBIDDEN,
        "a torn-down agent's token stops working"
    );
    pool.assert_nothing_leaked().await;
}
