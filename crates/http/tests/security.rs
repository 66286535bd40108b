//! Clients and keys (issue 15): claim keys that may only claim, idempotency keys that are the
//! caller's own, the console's sign-in limit and sessions, the server against slow and
//! greedy clients, `/readyz` and `/metrics`, and agent URLs. Real PostgreSQL, the simulator
//! over real HTTP, and — for the connection limits — the real server on a socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use pool_http::console::ConsoleConfig;
use pool_http::{AppState, ClaimKey, DetachedControl, SecurityConfig, ServiceInfo};
use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_provisioner::{Provisioner, ProvisionerConfig};
use secrecy::SecretString;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const ADMIN: &str = "security-admin-key-0123456789";
const APP_KEY: &str = "app-claim-key-0123456789abcdef";
const BOT_KEY: &str = "bot-claim-key-0123456789abcdef";
const METRICS_KEY: &str = "metrics-key-0123456789";
const CLAIM: &str = r#"{"agentName":"Ada","instructions":"be kind"}"#;

fn claim_keys() -> Vec<ClaimKey> {
    [("app", APP_KEY), ("bot", BOT_KEY)]
        .into_iter()
        .map(|(name, key)| ClaimKey {
            name: name.into(),
            key: SecretString::from(key),
        })
        .collect()
}

fn state(
    provisioner: Provisioner,
    admin: &str,
    console: ConsoleConfig,
    security: SecurityConfig,
) -> AppState {
    AppState {
        provisioner,
        control: Arc::new(DetachedControl::default()),
        admin_key: SecretString::from(admin.to_string()),
        info: ServiceInfo {
            version: "test".into(),
        },
        console,
        webhook_secret: None,
        security,
    }
}

/// The router with the admin key and the console's defaults.
fn app(provisioner: Provisioner, security: SecurityConfig) -> axum::Router {
    pool_http::router(state(provisioner, ADMIN, ConsoleConfig::default(), security))
}

fn security() -> SecurityConfig {
    SecurityConfig {
        claim_keys: claim_keys(),
        ..SecurityConfig::default()
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_string()
    }
}

/// One request through the router, as if from `peer`.
async fn call(
    app: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    call_from(app, None, method, path, headers, body).await
}

async fn call_from(
    app: &Router,
    peer: Option<&str>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut request = request
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    if let Some(peer) = peer {
        let addr: SocketAddr = format!("{peer}:50000").parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).to_string(),
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn claim(app: &Router, key: &str, idempotency_key: Option<&str>, body: &str) -> Answer {
    let auth = bearer(key);
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(k) = idempotency_key {
        headers.push(("idempotency-key", k));
    }
    call(app, Method::POST, "/api/pool/claim", &headers, Some(body)).await
}

/// Must show: a claim key can claim and gets 403 everywhere else; the claim's event names the
/// key (never shows it); the admin key keeps everything; a claim key cannot sign in.
#[tokio::test]
async fn a_claim_key_claims_and_is_refused_everywhere_else_and_its_name_is_on_the_event() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    let app = app(pool.provisioner.clone(), security());
    let auth = bearer(APP_KEY);
    for (route, _) in pool_http::routes::routes() {
        if route.access != pool_http::route_table::Access::Admin {
            continue;
        }
        let path = route.path.replace("{id}", ids[0].as_str());
        let a = call(
            &app,
            route.method.parse().unwrap(),
            &path,
            &[("authorization", &auth), ("content-type", "application/json")],
            Some(r#"{"count":1}"#),
        )
        .await;
        assert_eq!(
            a.status,
            StatusCode::FORBIDDEN,
            "{} {path}: {}",
            route.method,
            a.text
        );
        assert_eq!(a.error(), "this key may only claim (POST /api/pool/claim)");
    }
    assert_eq!(pool.store.counts().await.unwrap().idle, 2, "nothing was changed");

    let claimed = claim(&app, APP_KEY, None, CLAIM).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.text);
    let agent = claimed.json()["instanceId"].as_str().unwrap().to_string();
    let by_admin = claim(&app, ADMIN, None, CLAIM).await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.text);

    // The admin key reads the timeline: the claim's event names the key, never shows it.
    let detail = call(
        &app,
        Method::GET,
        &format!("/api/pool/agents/{agent}"),
        &[("authorization", &bearer(ADMIN))],
        None,
    )
    .await;
    assert_eq!(detail.status, StatusCode::OK);
    let events = detail.json()["events"].as_array().unwrap().clone();
    let claiming = events
        .iter()
        .find(|e| e["toStatus"] == "claiming")
        .expect("a claiming event");
    assert_eq!(claiming["actor"], "app");
    let client = pool.db.client().await;
    let actors: Vec<(String, Option<String>)> = client
        .query(
            "SELECT agent_id, actor FROM agent_events WHERE to_status = 'claiming' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        actors.iter().map(|(_, a)| a.as_deref()).collect::<Vec<_>>(),
        [Some("app"), Some("admin")]
    );
    let everything: String = client
        .query("SELECT row_to_json(e)::text FROM agent_events e", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    assert!(!everything.contains(APP_KEY) && !everything.contains(ADMIN));

    // A claim key is no console key.
    let login = call(
        &app,
        Method::POST,
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(&format!("key={APP_KEY}")),
    )
    .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
    // A key that is no key is 401, as before.
    let wrong = claim(&app, &APP_KEY[..APP_KEY.len() - 1], None, CLAIM).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

/// Must show: idempotency keys are the caller's own; the same key with a different body is
/// 422 and changes nothing; keys expire after the TTL, are pruned, and may be used again.
#[tokio::test]
async fn idempotency_keys_are_the_callers_own_a_different_body_is_422_and_keys_expire() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(3).await;
    let mut config = provisioner_config(&pool.sim, None);
    config.idempotency_ttl = Duration::from_secs(2);
    let app = app(pool.provisioner(config), security());

    let first = claim(&app, ADMIN, Some("order-1"), CLAIM).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let from_app = claim(&app, APP_KEY, Some("order-1"), CLAIM).await;
    assert_eq!(from_app.status, StatusCode::OK, "{}", from_app.text);
    assert_ne!(
        first.json()["instanceId"],
        from_app.json()["instanceId"],
        "the same key from two callers is two claims"
    );
    let repeat = claim(&app, ADMIN, Some("order-1"), CLAIM).await;
    assert_eq!(repeat.json(), first.json(), "a true repeat gets the first answer");
    // Spacing and key order are no difference.
    let reordered = claim(
        &app,
        ADMIN,
        Some("order-1"),
        r#"{ "instructions": "be kind", "agentName": "Ada" }"#,
    )
    .await;
    assert_eq!(reordered.json(), first.json());

    let different = claim(
        &app,
        ADMIN,
        Some("order-1"),
        r#"{"agentName":"Bob","instructions":"be kind"}"#,
    )
    .await;
    assert_eq!(
        different.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        different.text
    );
    assert!(
        different.error().contains("Idempotency-Key"),
        "{}",
        different.text
    );
    let counts = pool.store.counts().await.unwrap();
    assert_eq!((counts.claimed, counts.idle), (2, 1), "the 422 changed nothing");

    // What is kept: the hash of the request, never the request.
    let client = pool.db.client().await;
    let rows: Vec<(String, String, String)> = client
        .query(
            "SELECT scope, key, request_hash FROM claim_idempotency_keys ORDER BY scope",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0.as_str(), rows[1].0.as_str()), ("admin", "app"));
    assert_eq!(rows[0].2.len(), 64);
    assert_eq!(
        rows[0].2,
        pool_provisioner::request_fingerprint(
            &pool_provisioner::ClaimInput {
                agent_name: "Ada".into(),
                instructions: "be kind".into(),
                ..pool_provisioner::ClaimInput::default()
            }
            .check(false)
            .unwrap()
        )
    );

    // After the TTL the key is free again: the new body is a new claim, and the expired
    // records are pruned.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let reused = claim(
        &app,
        ADMIN,
        Some("order-1"),
        r#"{"agentName":"Bob","instructions":"be kind"}"#,
    )
    .await;
    assert_eq!(reused.status, StatusCode::OK, "{}", reused.text);
    assert_ne!(reused.json()["instanceId"], first.json()["instanceId"]);
    let left: i64 = client
        .query_one("SELECT count(*) FROM claim_idempotency_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "the expired keys were pruned; the new one is kept");
}

async fn sign_in_from(app: &Router, peer: &str, key: &str) -> Answer {
    call_from(
        app,
        Some(peer),
        Method::POST,
        "/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "pool.example"),
        ],
        Some(&format!("key={key}")),
    )
    .await
}

fn session_cookie(answer: &Answer) -> String {
    answer
        .headers
        .get(header::SET_COOKIE)
        .unwrap_or_else(|| panic!("no cookie: {} {}", answer.status, answer.text))
        .to_str()
        .unwrap()
        .to_string()
}

fn token_of(cookie: &str) -> String {
    cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap()
}

async fn page(app: &Router, cookie_name: &str, token: &str, path: &str) -> Answer {
    call(
        app,
        Method::GET,
        path,
        &[
            ("cookie", &format!("{cookie_name}={token}")),
            ("host", "pool.example"),
        ],
        None,
    )
    .await
}

/// Must show: the 11th wrong sign-in from one address within a minute is refused (429,
/// `Retry-After`) without checking the password — the right key is refused too; another
/// address still signs in.
#[tokio::test]
async fn the_eleventh_sign_in_from_one_address_within_a_minute_is_refused_even_with_the_right_key() {
    let pool = TestPool::start(unthrottled()).await;
    // Two replicas on one database: the limit is theirs together (issue 20: it was per replica).
    let replicas = [
        app(pool.provisioner.clone(), SecurityConfig::default()),
        app(pool.provisioner.clone(), SecurityConfig::default()),
    ];
    for attempt in 1..=10 {
        let wrong = sign_in_from(&replicas[attempt % 2], "192.0.2.10", &format!("guess-{attempt}")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let app = &replicas[1];
    let eleventh = sign_in_from(app, "192.0.2.10", ADMIN).await;
    assert_eq!(
        eleventh.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        eleventh.text
    );
    let retry: u64 = eleventh.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&retry), "Retry-After {retry}");
    assert!(eleventh.headers.get(header::SET_COOKIE).is_none(), "no session");
    assert!(eleventh.text.contains("Too many failed sign-ins"));
    let sessions: i64 = pool
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM console_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 0);

    let elsewhere = sign_in_from(&replicas[0], "198.51.100.20", ADMIN).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::SEE_OTHER,
        "another address is not locked out"
    );
}

/// Must show: a session is stored only as a hash, and rotating `POOL_API_KEY` ends it; HSTS
/// and the `__Host-` cookie over HTTPS.
#[tokio::test]
async fn sessions_are_stored_hashed_and_end_when_the_admin_key_is_rotated() {
    let pool = TestPool::start(unthrottled()).await;
    let before = app(pool.provisioner.clone(), SecurityConfig::default());
    let signed_in = sign_in_from(&before, "192.0.2.1", ADMIN).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let cookie = session_cookie(&signed_in);
    assert!(cookie.starts_with("__Host-pool_session="), "{cookie}");
    for flag in ["Secure", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(
        signed_in.headers[header::STRICT_TRANSPORT_SECURITY],
        "max-age=31536000"
    );
    let token = token_of(&cookie);
    let fleet = page(&before, "__Host-pool_session", &token, "/").await;
    assert_eq!(fleet.status, StatusCode::OK);
    assert!(fleet.headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
    let api = call(&before, Method::GET, "/healthz", &[], None).await;
    assert!(
        api.headers.contains_key(header::STRICT_TRANSPORT_SECURITY),
        "on the API too"
    );
    // The old cookie name is not read any more.
    let old_name = page(&before, "pool_session", &token, "/").await;
    assert_eq!(old_name.headers[header::LOCATION], "/login");

    let stored: Vec<String> = pool
        .db
        .client()
        .await
        .query("SELECT token_hash FROM console_sessions", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token, "never the token itself");
    assert!(stored[0].len() == 64 && stored[0].chars().all(|c| c.is_ascii_hexdigit()));

    // The same database, a new admin key: the session is gone.
    let after = pool_http::router(state(
        pool.provisioner.clone(),
        "security-admin-key-rotated-9876",
        ConsoleConfig::default(),
        SecurityConfig::default(),
    ));
    let refused = page(&after, "__Host-pool_session", &token, "/").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert_eq!(refused.headers[header::LOCATION], "/login");
    let data = page(&after, "__Host-pool_session", &token, "/console/fleet.json").await;
    assert_eq!(data.status, StatusCode::UNAUTHORIZED);

    // On plain HTTP (POOL_CONSOLE_INSECURE_COOKIES): no HSTS, no prefix, no Secure.
    let local = pool_http::router(state(
        pool.provisioner.clone(),
        ADMIN,
        ConsoleConfig {
            secure_cookies: false,
            ..ConsoleConfig::default()
        },
        SecurityConfig::default(),
    ));
    let signed_in = sign_in_from(&local, "192.0.2.1", ADMIN).await;
    let cookie = session_cookie(&signed_in);
    assert!(
        cookie.starts_with("pool_session=") && !cookie.contains("Secure"),
        "{cookie}"
    );
    assert!(!signed_in.headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
}

/// A session unused for the idle timeout ends; one in use lives on (up to its lifetime).
#[tokio::test]
async fn an_idle_session_ends_and_an_active_one_does_not() {
    let pool = TestPool::start(unthrottled()).await;
    let app = pool_http::router(state(
        pool.provisioner.clone(),
        ADMIN,
        ConsoleConfig {
            idle_timeout: Duration::from_millis(1500),
            ..ConsoleConfig::default()
        },
        SecurityConfig::default(),
    ));
    let token = token_of(&session_cookie(&sign_in_from(&app, "192.0.2.1", ADMIN).await));
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let active = page(&app, "__Host-pool_session", &token, "/").await;
        assert_eq!(active.status, StatusCode::OK, "in use: {}", active.text);
    }
    // The page's background refresh (every 2 s) is no sign of an operator: it does not keep
    // the session alive.
    let polled_until = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < polled_until {
        let poll = page(&app, "__Host-pool_session", &token, "/console/fleet.json").await;
        assert!(poll.status == StatusCode::OK || poll.status == StatusCode::UNAUTHORIZED);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let data = page(&app, "__Host-pool_session", &token, "/console/fleet.json").await;
    assert_eq!(data.status, StatusCode::UNAUTHORIZED, "idle too long");
    let idle = page(&app, "__Host-pool_session", &token, "/").await;
    assert_eq!(idle.headers[header::LOCATION], "/login", "idle too long");
}

/// A server on a free port; `stop` ends it. Its address and the task serving it.
async fn serve(
    state: AppState,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(pool_http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

/// Sends `request` on a new connection and reads until the server closes it.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).to_string()
}

/// Must show: a client that sends one header byte every 5 s is cut off after the header
/// timeout (the bytes it trickles do not restart it); the server goes on serving others.
#[tokio::test]
async fn a_client_that_trickles_its_headers_one_byte_every_five_seconds_is_cut_off() {
    let pool = TestPool::start(unthrottled()).await;
    let (addr, stop, task) = serve(state(
        pool.provisioner.clone(),
        ADMIN,
        ConsoleConfig::default(),
        SecurityConfig {
            header_read_timeout: Duration::from_secs(6),
            ..SecurityConfig::default()
        },
    ))
    .await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut sent = 0;
    let mut answer = Vec::new();
    let cut_off = loop {
        // One byte, then five seconds of waiting for the server to say something.
        if slow.write_all(&request[sent..=sent]).await.is_err() {
            break started.elapsed();
        }
        sent += 1;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                let _ = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut answer)).await;
                break started.elapsed();
            }
        }
        assert!(sent < request.len(), "the whole request went through");
    };
    assert!(sent >= 2, "two bytes were sent, five seconds apart");
    assert!(
        cut_off >= Duration::from_millis(5900) && cut_off < Duration::from_secs(9),
        "cut off after {cut_off:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty(), "closed without an answer: {answer:?}");

    let fine = raw(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    assert!(fine.contains("strict-transport-security"), "{fine}");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// Returns once a claim is waiting in the queue (it is in flight, holding its request).
async fn until_a_claim_waits(pool: &TestPool) {
    let client = pool.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: i64 = client
            .query_one("SELECT count(*) FROM claim_queue", &[])
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no claim joined the queue");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Shutdown stops accepting and lets the request in flight (a claim waiting for an agent)
/// finish before `serve` returns.
#[tokio::test]
async fn shutdown_lets_the_claim_in_flight_finish() {
    let pool = TestPool::start(unthrottled()).await;
    let (addr, stop, task) = serve(state(
        pool.provisioner.clone(),
        ADMIN,
        ConsoleConfig::default(),
        SecurityConfig::default(),
    ))
    .await;
    let request = format!(
        "POST /api/pool/claim HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nPrefer: wait=1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{CLAIM}",
        CLAIM.len()
    );
    let in_flight = tokio::spawn(async move { raw(addr, &request).await });
    until_a_claim_waits(&pool).await;
    stop.send(()).unwrap();
    let answer = in_flight.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "the waiting claim was answered: {answer}"
    );
    assert!(answer.contains("No idle instances"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns once the claim is answered")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// Beyond the cap of requests in flight, a request is shed at once: 503 with `Retry-After`.
#[tokio::test]
async fn beyond_the_requests_in_flight_cap_a_request_is_shed_at_once() {
    let pool = TestPool::start(unthrottled()).await;
    let app = app(
        pool.provisioner.clone(),
        SecurityConfig {
            max_in_flight: 1,
            ..SecurityConfig::default()
        },
    );
    // A claim that waits for an agent holds the one place.
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            call(
                &app,
                Method::POST,
                "/api/pool/claim",
                &[
                    ("authorization", &bearer(ADMIN)),
                    ("prefer", "wait=2"),
                    ("content-type", "application/json"),
                ],
                Some(CLAIM),
            )
            .await
        })
    };
    until_a_claim_waits(&pool).await;
    let started = Instant::now();
    let shed = call(
        &app,
        Method::GET,
        "/api/pool/counts",
        &[("authorization", &bearer(ADMIN))],
        None,
    )
    .await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE, "{}", shed.text);
    assert_eq!(shed.headers[header::RETRY_AFTER], "1");
    assert!(started.elapsed() < Duration::from_millis(500), "at once");
    assert!(shed.error().contains("limit of requests in flight"));
    let health = call(&app, Method::GET, "/healthz", &[], None).await;
    assert_eq!(health.status, StatusCode::OK, "/healthz is never shed");

    let waited = waiting.await.unwrap();
    assert_eq!(
        waited.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "pool empty after the wait"
    );
    let after = call(
        &app,
        Method::GET,
        "/api/pool/counts",
        &[("authorization", &bearer(ADMIN))],
        None,
    )
    .await;
    assert_eq!(after.status, StatusCode::OK, "the place is free again");
}

/// Every route has a timeout; the claim's outlasts the longest wait plus provisioning.
#[tokio::test]
async fn every_route_has_a_timeout_and_the_claims_outlasts_its_wait_and_provisioning() {
    let pool = TestPool::start(unthrottled()).await;
    let provision = pool.provisioner.config().provision_timeout;
    let state = state(
        pool.provisioner.clone(),
        ADMIN,
        ConsoleConfig::default(),
        SecurityConfig {
            request_timeout: Duration::from_millis(1),
            ..SecurityConfig::default()
        },
    );
    assert!(
        pool_http::route_timeout(&state, "/api/pool/claim") > pool_provisioner::MAX_CLAIM_WAIT + provision
    );
    assert!(pool_http::route_timeout(&state, "/console/launch") > provision);
    for path in [
        "/api/pool/status",
        "/",
        "/login",
        "/metrics",
        "/api/pool/settings",
    ] {
        assert_eq!(pool_http::route_timeout(&state, path), Duration::from_millis(1));
    }
    // A route that takes longer than its time is cut off with a JSON 503.
    let app = pool_http::router(state);
    let slow = call(
        &app,
        Method::GET,
        "/api/pool/status",
        &[("authorization", &bearer(ADMIN))],
        None,
    )
    .await;
    assert_eq!(slow.status, StatusCode::SERVICE_UNAVAILABLE, "{}", slow.text);
    assert!(slow.error().contains("took longer than"), "{}", slow.text);
}

/// `/readyz` answers in plain words: no database error text, no versions; the details go to
/// the log.
#[tokio::test]
async fn readyz_never_echoes_database_errors() {
    let pool = TestPool::start(unthrottled()).await;
    let app = app(pool.provisioner.clone(), SecurityConfig::default());
    let client = pool.db.client().await;
    client
        .batch_execute("DELETE FROM refinery_schema_history WHERE version = (SELECT max(version) FROM refinery_schema_history)")
        .await
        .unwrap();
    let behind = call(&app, Method::GET, "/readyz", &[], None).await;
    assert_eq!(behind.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(behind.error(), "not ready: the database schema is behind");

    client
        .batch_execute("ALTER TABLE refinery_schema_history RENAME COLUMN applied_on TO renamed_column")
        .await
        .unwrap();
    let broken = call(&app, Method::GET, "/readyz", &[], None).await;
    assert_eq!(broken.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(broken.error(), "not ready: the database is unavailable");
    for internal in ["applied_on", "column", "refinery", "does not exist", "postgres"] {
        assert!(!broken.text.contains(internal), "{internal:?} in {}", broken.text);
    }
}

/// Idle agents of every runtime, as `/metrics` says.
fn idle_gauge(text: &str) -> i64 {
    let gauges: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pool_agents{status=\"idle\",runtime=\""))
        .map(|l| l.split("\"} ").nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(!gauges.is_empty(), "no idle gauge in {text}");
    gauges.iter().sum()
}

/// `/metrics` is behind `POOL_METRICS_KEY` when it is set (the admin key works too; a claim
/// key does not), and serves the counts it holds rather than asking the database per scrape.
#[tokio::test]
async fn metrics_are_behind_the_metrics_key_and_served_from_counts_held() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(2).await;
    let refresh = Duration::from_secs(3);
    let app = app(
        pool.provisioner.clone(),
        SecurityConfig {
            metrics_key: Some(SecretString::from(METRICS_KEY)),
            metrics_refresh: refresh,
            ..security()
        },
    );
    let scrape = |key: Option<&'static str>| {
        let app = app.clone();
        async move {
            let auth = key.map(bearer);
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
            call(&app, Method::GET, "/metrics", &headers, None).await
        }
    };
    for key in [None, Some(APP_KEY), Some("metrics-key-012345678")] {
        let refused = scrape(key).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{key:?}");
    }
    let first = scrape(Some(METRICS_KEY)).await;
    let read_at = Instant::now();
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(idle_gauge(&first.text), 2);
    assert_eq!(scrape(Some(ADMIN)).await.status, StatusCode::OK);

    // One agent is claimed; within the refresh interval the scrape serves the counts held.
    assert_eq!(claim(&app, ADMIN, None, CLAIM).await.status, StatusCode::OK);
    assert_eq!(pool.store.counts().await.unwrap().idle, 1);
    let held = scrape(Some(METRICS_KEY)).await;
    assert!(read_at.elapsed() < refresh, "the test was too slow to tell");
    assert_eq!(idle_gauge(&held.text), 2, "served from the counts held");
    // Once they are older, a scrape starts a read in the background; later ones see it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if idle_gauge(&scrape(Some(METRICS_KEY)).await.text) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the counts were never refreshed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Must show: agent URLs must be https on an agent domain unless `POOL_ALLOW_INSECURE_URLS`;
/// a claim never sends a token to a host that is not an agent domain (the agent is
/// quarantined instead).
#[tokio::test]
async fn an_insecure_agent_url_is_refused_and_no_token_goes_to_a_foreign_domain() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(1).await;

    // The simulator's plain-http URLs without the flag: refused at construction.
    let mut plain = provisioner_config(&pool.sim, None);
    plain.allow_insecure_urls = false;
    let refused = Provisioner::new(
        plain,
        pool.store.clone(),
        pool.railway.clone(),
        pool.deleter.clone(),
    )
    .unwrap_err()
    .to_string();
    for variable in ["AGENT_URL_TEMPLATE", "OPENROUTER_API_URL", "AGENTMAIL_API_URL"] {
        assert!(refused.contains(variable), "{variable} in {refused}");
    }

    // https, but agent domains elsewhere than where Railway put this agent.
    let mut strict: ProvisionerConfig = provisioner_config(&pool.sim, None);
    strict.allow_insecure_urls = false;
    strict.agent_url_template = "https://{domain}".into();
    strict.agent_domain_suffix = ".agents.invalid".into();
    strict.openrouter = None;
    strict.agentmail = None;
    strict.telnyx = None;
    let app = app(pool.provisioner(strict), SecurityConfig::default());
    let provisions = pool.sim.counters().provisions;
    let answer = claim(&app, ADMIN, None, CLAIM).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text);
    assert!(answer.error().contains("AGENT_DOMAIN_SUFFIX"), "{}", answer.text);
    assert_eq!(
        pool.sim.counters().provisions,
        provisions,
        "nothing reached the agent"
    );
    let counts = pool.store.counts().await.unwrap();
    assert_eq!((counts.idle, counts.claimed), (0, 0), "the agent is quarantined");
}
