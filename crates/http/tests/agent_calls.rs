//! The agents' own calls to the pool (issue 19), on the real server over real sockets,
//! against a real PostgreSQL and the simulator over real HTTP: a self-destruct tears the
//! calling agent down with an event naming it and asks for a tick; self-info tells an agent
//! about itself; a pending join is completed into `claimed` or failed back to idle; a wrong
//! `{instanceId, gatewayToken}` pair is 403 and changes nothing (one agent's token never acts on
//! another); the calls are rate-limited per agent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pool_http::console::ConsoleConfig;
use pool_http::{AppState, DetachedControl, SecurityConfig, ServiceInfo};
use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_provisioner::{ClaimInput, ProvisionStatus};
use pool_store::{AgentId, AgentStatus};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "agent-calls-admin-key-0123456789";

struct Server {
    addr: SocketAddr,
    control: Arc<DetachedControl>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(provisioner: pool_provisioner::Provisioner) -> Server {
    let control = Arc::new(DetachedControl::default());
    let state = AppState {
        provisioner,
        control: control.clone(),
        admin_key: SecretString::from(ADMIN),
        info: ServiceInfo {
            version: "test".into(),
        },
        console: ConsoleConfig::default(),
        webhook_secret: None,
        security: SecurityConfig::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pool_http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        control,
        _stop: stop,
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `POST path` with `body` on a new connection, as the runtime's `fetch` sends it.
async fn post(addr: SocketAddr, path: &str, body: &str) -> Answer {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: pool\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {raw:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn token(pool: &TestPool, id: &AgentId) -> String {
    let agent = pool.store.agent(id).await.unwrap().unwrap();
    agent.secrets.unwrap().gateway_token.expose_secret().to_string()
}

fn credentials(id: &AgentId, token: &str) -> String {
    json!({"instanceId": id, "gatewayToken": token}).to_string()
}

async fn status(pool: &TestPool, id: &AgentId) -> AgentStatus {
    pool.store.agent(id).await.unwrap().unwrap().status
}

async fn wait_for_deleted(pool: &TestPool, id: &AgentId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status(pool, id).await != AgentStatus::Deleted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent {id} was never torn down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Must show: a self-destruct, with the body the runtime's pool server sends
/// (`pool-server/index.ts:474-479`), tears that agent down, with an event whose actor names
/// it, asks for a tick (the refill), leaves the other agent alone, and leaks nothing; a
/// repeat is answered without change.
#[tokio::test]
async fn a_self_destruct_tears_the_calling_agent_down_with_an_event_naming_it() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    let server = serve(pool.provisioner.clone()).await;
    let token = token(&pool, &ids[0]).await;

    let a = post(
        server.addr,
        "/api/pool/self-destruct",
        &credentials(&ids[0], &token),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json(),
        json!({"ok": true, "instanceId": ids[0], "alreadyDeleting": false})
    );
    assert_eq!(server.control.ticks_asked(), 1, "the pool refills");
    wait_for_deleted(&pool, &ids[0]).await;
    assert_eq!(status(&pool, &ids[1]).await, AgentStatus::Idle);

    let events = pool.store.events(&ids[0]).await.unwrap();
    let event = events
        .iter()
        .find(|e| e.to_status.as_deref() == Some("deleting"))
        .expect("a teardown event");
    assert_eq!(event.actor.as_deref(), Some(format!("agent:{}", ids[0]).as_str()));
    assert_eq!(event.from_status.as_deref(), Some("idle"));
    assert!(event.reason.contains("self-destruct"), "{}", event.reason);
    pool.assert_nothing_leaked().await;

    // Torn down: its credentials no longer open anything.
    let again = post(
        server.addr,
        "/api/pool/self-destruct",
        &credentials(&ids[0], &token),
    )
    .await;
    assert_eq!(again.status, 403, "{}", again.body);
}

/// Must show: a wrong `{instanceId, gatewayToken}` pair is 403 and changes nothing — another
/// agent's token, an unknown id, a malformed id; missing fields and bad JSON are 400 naming the
/// problem. No agent moves and no event is written.
#[tokio::test]
async fn a_wrong_pair_is_refused_and_changes_nothing() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    let server = serve(pool.provisioner.clone()).await;
    let token_b = token(&pool, &ids[1]).await;
    let events_before = [
        pool.store.events(&ids[0]).await.unwrap().len(),
        pool.store.events(&ids[1]).await.unwrap().len(),
    ];
    let unknown = AgentId::parse("00000000-0000-4000-8000-000000000000").unwrap();
    for path in [
        "/api/pool/self-destruct",
        "/api/pool/self-info",
        "/api/pool/pending-acceptance/complete",
        "/api/pool/pending-acceptance/fail",
    ] {
        for (body, want) in [
            (credentials(&ids[0], &token_b), 403),
            (credentials(&unknown, &token_b), 403),
            (
                json!({"instanceId": "../x\u{0}", "gatewayToken": token_b}).to_string(),
                403,
            ),
            (credentials(&ids[0], &format!("{token_b}x")), 403),
            (json!({"instanceId": ids[0]}).to_string(), 400),
            (json!({"gatewayToken": token_b}).to_string(), 400),
            (json!({"instanceId": ids[0], "gatewayToken": ""}).to_string(), 400),
            ("{not json".to_string(), 400),
            (json!({"instanceId": 7, "gatewayToken": token_b}).to_string(), 400),
        ] {
            let a = post(server.addr, path, &body).await;
            assert_eq!(a.status, want, "{path} {body}: {}", a.body);
            let message = a.json()["error"].as_str().unwrap_or_default().to_string();
            if want == 403 {
                assert_eq!(message, "Invalid instance ID or token", "{path} {body}");
            } else {
                assert!(!message.is_empty(), "{path} {body}: {}", a.body);
            }
            assert!(!a.body.contains(&token_b), "no token in an answer");
        }
    }
    for id in &ids {
        assert_eq!(status(&pool, id).await, AgentStatus::Idle);
    }
    assert_eq!(
        [
            pool.store.events(&ids[0]).await.unwrap().len(),
            pool.store.events(&ids[1]).await.unwrap().len(),
        ],
        events_before
    );
    assert_eq!(server.control.ticks_asked(), 0);
}

/// self-info answers the agent's id, the image it runs and the image new agents get, in the
/// Node pool's shape (`pool/src/index.ts:168-174`), read by the runtime's web tools
/// (`web-tools/index.ts:89-91`).
#[tokio::test]
async fn self_info_tells_an_agent_about_itself() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(1).await;
    let server = serve(pool.provisioner.clone()).await;
    let token = token(&pool, &ids[0]).await;
    // What the agent's /pool/health reported, so the answer has a version to carry.
    pool.store
        .record_runtime(&ids[0], Some("2026.4.11-test"), Some("openclaw"))
        .await
        .unwrap();
    let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();

    let a = post(server.addr, "/api/pool/self-info", &credentials(&ids[0], &token)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let info = a.json();
    assert_eq!(info["ok"], json!(true));
    assert_eq!(info["instanceId"], json!(ids[0]));
    assert_eq!(info["runtimeImage"], json!(agent.image));
    assert!(info["runtimeImage"].is_string(), "{info}");
    assert_eq!(
        info["latestImage"],
        json!(pool.provisioner.config().default_shape().image.to_string())
    );
    assert_eq!(info["runtimeVersion"], json!("2026.4.11-test"), "{info}");
    assert_eq!(status(&pool, &ids[0]).await, AgentStatus::Idle);
}

/// The calls are limited per agent (`POOL_AGENT_CALLS_PER_MINUTE`): past the limit, 429 with
/// `Retry-After`, and the agent is not torn down; another agent's calls are still answered.
#[tokio::test]
async fn the_calls_are_rate_limited_per_agent() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    let mut config = provisioner_config(&pool.sim, None);
    config.agent_calls_per_minute = 3;
    let server = serve(pool.provisioner(config)).await;
    let token_a = token(&pool, &ids[0]).await;
    let token_b = token(&pool, &ids[1]).await;

    // The window is a minute aligned to the epoch: the three calls and the fourth must fall in
    // one. Start early in a window (a minute has room for it many times over).
    loop {
        let second = chrono::Utc::now().timestamp() % 60;
        if second < 45 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for _ in 0..3 {
        let a = post(
            server.addr,
            "/api/pool/self-info",
            &credentials(&ids[0], &token_a),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let limited = post(
        server.addr,
        "/api/pool/self-destruct",
        &credentials(&ids[0], &token_a),
    )
    .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(
        limited.head.to_ascii_lowercase().contains("retry-after:"),
        "{}",
        limited.head
    );
    assert_eq!(status(&pool, &ids[0]).await, AgentStatus::Idle, "not torn down");

    let b = post(
        server.addr,
        "/api/pool/self-info",
        &credentials(&ids[1], &token_b),
    )
    .await;
    assert_eq!(b.status, 200, "another agent's calls are its own: {}", b.body);
}

/// An agent a claim is provisioning is not torn down by its own call (409): the claim decides.
#[tokio::test]
async fn a_self_destruct_during_a_claim_is_refused() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(1).await;
    let server = serve(pool.provisioner.clone()).await;
    let token = token(&pool, &ids[0]).await;
    let moved = pool
        .store
        .transition(&ids[0], AgentStatus::Idle, AgentStatus::Claiming, "test")
        .await
        .unwrap();
    assert!(moved.applied());

    let a = post(
        server.addr,
        "/api/pool/self-destruct",
        &credentials(&ids[0], &token),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(status(&pool, &ids[0]).await, AgentStatus::Claiming);
}

/// A join the simulator's agent answers as pending (its join URL contains `pending`): the
/// agent is handed out as `pending_acceptance`.
async fn pending_agent(pool: &TestPool, n: u32) -> AgentId {
    let join = ClaimInput {
        agent_name: "Ada".into(),
        instructions: "be helpful".into(),
        join_url: Some(format!("https://dev.convos.org/v2?i=pending-join-{n}")),
        ..ClaimInput::default()
    };
    let answer = pool.provisioner.claim(&join, None).await.unwrap();
    assert_eq!(answer.status, ProvisionStatus::PendingAcceptance);
    AgentId::parse(&answer.instance_id).unwrap()
}

/// Must show: `pending-acceptance/complete` makes the agent `claimed` with its conversation;
/// `.../fail` resets it back to idle (its runtime is clean); another agent's token acts on
/// neither; an agent that is not pending is 409 and does not move.
#[tokio::test]
async fn a_pending_join_is_completed_or_failed_by_the_agent_itself() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(3).await;
    let server = serve(pool.provisioner.clone()).await;
    let accepted = pending_agent(&pool, 1).await;
    let refused = pending_agent(&pool, 2).await;
    let token_accepted = token(&pool, &accepted).await;
    let token_refused = token(&pool, &refused).await;
    let complete = "/api/pool/pending-acceptance/complete";
    let fail = "/api/pool/pending-acceptance/fail";

    // No conversation: 400 naming it, nothing moves.
    let a = post(server.addr, complete, &credentials(&accepted, &token_accepted)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("conversationId"), "{}", a.body);
    // Another agent's token: 403 on both, nothing moves.
    let body = json!({"instanceId": accepted, "gatewayToken": token_refused, "conversationId": "conv-x"});
    assert_eq!(post(server.addr, complete, &body.to_string()).await.status, 403);
    assert_eq!(
        post(server.addr, fail, &credentials(&accepted, &token_refused))
            .await
            .status,
        403
    );
    assert_eq!(status(&pool, &accepted).await, AgentStatus::PendingAcceptance);

    let body =
        json!({"instanceId": accepted, "gatewayToken": token_accepted, "conversationId": "conv-accepted"});
    let a = post(server.addr, complete, &body.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json(),
        json!({"ok": true, "instanceId": accepted, "conversationId": "conv-accepted"})
    );
    let agent = pool.store.agent(&accepted).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Claimed);
    assert_eq!(agent.conversation_id.as_deref(), Some("conv-accepted"));
    // Not pending any more: both are 409 and it stays claimed.
    assert_eq!(post(server.addr, complete, &body.to_string()).await.status, 409);
    assert_eq!(
        post(server.addr, fail, &credentials(&accepted, &token_accepted))
            .await
            .status,
        409
    );
    assert_eq!(status(&pool, &accepted).await, AgentStatus::Claimed);

    // As Hermes reports a failed join: `conversationId: null` and an error.
    let body = json!({"instanceId": refused, "gatewayToken": token_refused, "conversationId": null, "error": "declined"});
    let f = post(server.addr, fail, &body.to_string()).await;
    assert_eq!(f.status, 200, "{}", f.body);
    assert_eq!(
        f.json(),
        json!({"ok": true, "instanceId": refused, "outcome": "idle"})
    );
    let agent = pool.store.agent(&refused).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Idle);
    assert_eq!(agent.join_url, None, "the claim's fields are cleared");
    assert!(server.control.ticks_asked() >= 2);
    pool.assert_nothing_leaked().await;
}

/// A protected agent (`PROTECTED_INSTANCES`) refuses its own self-destruct (409) and stays.
#[tokio::test]
async fn a_protected_agent_refuses_self_destruct() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(1).await;
    let mut config = provisioner_config(&pool.sim, None);
    config.protected_instances = vec![ids[0].to_string()];
    let server = serve(pool.provisioner(config)).await;
    let token = token(&pool, &ids[0]).await;

    let a = post(
        server.addr,
        "/api/pool/self-destruct",
        &credentials(&ids[0], &token),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("protected"), "{}", a.body);
    assert_eq!(status(&pool, &ids[0]).await, AgentStatus::Idle);
    assert_eq!(server.control.ticks_asked(), 0);
}
