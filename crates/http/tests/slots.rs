//! Slots for the right callers (issue 20), on the real server over real sockets: a waiting
//! claim whose client hangs up leaves no ticket; 600 clients trickling bodies do not stop
//! claims; secrets and sessions are checked before a body is read; claim keys are rate-limited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_http::console::ConsoleConfig;
use pool_http::{AppState, ClaimKey, DetachedControl, SecurityConfig, ServiceInfo};
use pool_provisioner::testing::{TestPool, unthrottled};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "slots-admin-key-0123456789";
const APP_KEY: &str = "app-claim-key-0123456789abcdef";
const WEBHOOK_SECRET: &str = "webhook-secret-0123456789abcdef";
const CLAIM: &str = r#"{"agentName":"Ada","instructions":"be kind"}"#;

fn state(pool: &TestPool, security: SecurityConfig) -> AppState {
    AppState {
        provisioner: pool.provisioner.clone(),
        control: Arc::new(DetachedControl::default()),
        admin_key: SecretString::from(ADMIN),
        info: ServiceInfo {
            version: "test".into(),
        },
        console: ConsoleConfig::default(),
        webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
        security: SecurityConfig {
            claim_keys: vec![ClaimKey {
                name: "app".into(),
                key: SecretString::from(APP_KEY),
            }],
            ..security
        },
    }
}

async fn serve(state: AppState) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pool_http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn claim_request(key: &str, prefer: Option<&str>) -> String {
    let prefer = prefer.map(|p| format!("Prefer: {p}\r\n")).unwrap_or_default();
    format!(
        "POST /api/pool/claim HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n{prefer}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{CLAIM}",
        CLAIM.len()
    )
}

/// Sends `request` on a new connection and reads the whole answer.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).to_string()
}

async fn tickets(pool: &TestPool) -> i64 {
    pool.store.queue_tickets().await.unwrap()
}

/// Must show: a claim with `Prefer: wait=60` whose client disconnects after 1 s leaves no
/// ticket, and the next claim is served at once.
#[tokio::test]
async fn a_waiting_claim_whose_client_hangs_up_leaves_no_ticket_and_the_next_claim_is_served_at_once() {
    let pool = TestPool::start(unthrottled()).await;
    let (addr, _stop) = serve(state(&pool, SecurityConfig::default())).await;
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(claim_request(ADMIN, Some("wait=60")).as_bytes())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tickets(&pool).await == 0 {
        assert!(Instant::now() < deadline, "the claim never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(client); // the client's own timeout: it hangs up
    let hung_up = Instant::now();
    while tickets(&pool).await > 0 {
        assert!(
            hung_up.elapsed() < Duration::from_secs(5),
            "the ticket stayed after the client hung up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let gone_after = hung_up.elapsed();

    let id = pool.create_one().await.unwrap();
    pool.make_idle(&id).await;
    let started = Instant::now();
    let answer = raw(addr, &claim_request(ADMIN, None)).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(id.as_str()));
    println!("ticket gone {gone_after:?} after the hang-up; next claim served in {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// One client trickling a body: it connects, sends `head`, then a byte of the body every
/// `every` until the server answers or closes. Returns the status it got (0: none) and when.
async fn trickle(addr: SocketAddr, head: String, every: Duration) -> (u16, Duration) {
    let started = Instant::now();
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, started.elapsed());
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return (0, started.elapsed());
    }
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n >= 12 => {
                let status = std::str::from_utf8(&buf[9..12]).ok().and_then(|s| s.parse().ok());
                return (status.unwrap_or(0), started.elapsed());
            }
            Ok(_) => return (0, started.elapsed()),
            Err(_) => {}
        }
        if stream.write_all(b"k").await.is_err() || started.elapsed() > Duration::from_secs(15) {
            return (0, started.elapsed());
        }
    }
}

/// Must show: 600 slow uploads do not stop claims from being served. 600 connections trickle
/// a byte of a body every 250 ms to the sign-in form and to the webhook (wrong secret), all at
/// once — more than the 512 requests in flight that used to be every caller's; meanwhile
/// claims with the admin key are served. The webhooks are refused before their body is read;
/// the sign-ins (a public route, whose form must be read) take slots of the public budget
/// only, and are cut off when the body-read deadline passes.
#[tokio::test]
async fn six_hundred_slow_uploads_do_not_stop_claims_from_being_served() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(5).await;
    let body_deadline = Duration::from_secs(3);
    let (addr, _stop) = serve(state(
        &pool,
        SecurityConfig {
            body_read_timeout: body_deadline,
            ..SecurityConfig::default()
        },
    ))
    .await;
    let head = |path: &str, auth: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n"
        )
    };
    let mut uploads = Vec::new();
    for i in 0..600 {
        let request = match i % 2 {
            0 => head("/login", ""),
            _ => head("/webhooks/railway/not-the-secret-0123456789", ""),
        };
        uploads.push(tokio::spawn(trickle(addr, request, Duration::from_millis(250))));
    }
    // Every upload is connected and trickling.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut served = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let answer = raw(addr, &claim_request(ADMIN, None)).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "a claim was refused: {answer}"
        );
        served.push(started.elapsed());
    }
    let mut statuses = std::collections::BTreeMap::<(usize, u16), usize>::new();
    let mut longest = Duration::ZERO;
    for (i, upload) in uploads.into_iter().enumerate() {
        let (status, took) = upload.await.unwrap();
        *statuses.entry((i % 2, status)).or_default() += 1;
        longest = longest.max(took);
    }
    println!(
        "claims served in {served:?} during 600 slow uploads; uploads (kind, status) → count: {statuses:?}; longest upload {longest:?}"
    );
    assert!(served.iter().all(|t| *t < Duration::from_secs(3)), "{served:?}");
    // The public routes share their budget: a wrong webhook secret is refused at once unread
    // (401), or shed at once while the sign-ins hold the public slots (503).
    let count = |kind: usize, allowed: &[u16]| -> usize {
        statuses
            .iter()
            .filter(|((k, status), _)| *k == kind && allowed.contains(status))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(count(1, &[401, 503]), 300, "{statuses:?}");
    // Sign-ins: cut off at the body deadline (408), or shed at once beyond the public budget.
    assert_eq!(count(0, &[408, 503]), 300, "{statuses:?}");
    assert!(count(0, &[408]) > 0, "{statuses:?}");
    assert!(longest < body_deadline + Duration::from_secs(3), "{longest:?}");
}

/// The console's signed-in forms check the session, and the webhook its secret, before a byte
/// of the body is read: a client that sends headers and no body is answered at once.
#[tokio::test]
async fn secrets_and_sessions_are_checked_before_the_body_is_read() {
    let pool = TestPool::start(unthrottled()).await;
    let (addr, _stop) = serve(state(&pool, SecurityConfig::default())).await;
    for (path, expected) in [
        ("/console/add", "HTTP/1.1 303"),
        ("/console/settings", "HTTP/1.1 303"),
        ("/webhooks/railway/wrong-secret-0123456789abcdef", "HTTP/1.1 401"),
        ("/api/pool/claim", "HTTP/1.1 401"),
        ("/api/proxy/email/send", "HTTP/1.1 401"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer without the body"))
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with(expected), "{path}: {answer}");
    }
}

/// A body that does not arrive within the body-read deadline is refused with 408.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_refused() {
    let pool = TestPool::start(unthrottled()).await;
    let (addr, _stop) = serve(state(
        &pool,
        SecurityConfig {
            body_read_timeout: Duration::from_secs(1),
            ..SecurityConfig::default()
        },
    ))
    .await;
    let head = format!(
        "POST /api/pool/replenish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{{"
    );
    let (status, took) = trickle(addr, head, Duration::from_millis(200)).await;
    assert_eq!(status, 408);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// Claim keys are rate-limited (every replica together); the admin key is not.
#[tokio::test]
async fn a_claim_key_is_rate_limited() {
    let pool = TestPool::start(unthrottled()).await;
    let security = SecurityConfig {
        claim_key_rate_per_minute: 2,
        ..SecurityConfig::default()
    };
    let (a, _stop_a) = serve(state(&pool, security.clone())).await;
    let (b, _stop_b) = serve(state(&pool, security)).await;
    let minute = || chrono::Utc::now().timestamp() / 60;
    let (mut statuses, mut first_minute) = (Vec::new(), minute());
    for _attempt in 0..3 {
        // Three claims within one minute (a minute boundary between them: again).
        statuses.clear();
        first_minute = minute();
        for addr in [a, b, a] {
            let answer = raw(addr, &claim_request(APP_KEY, None)).await;
            if answer.starts_with("HTTP/1.1 429") {
                assert!(answer.to_ascii_lowercase().contains("retry-after:"), "{answer}");
                assert!(answer.contains("at most 2 times a minute"), "{answer}");
            }
            statuses.push(answer[9..12].to_string());
        }
        if minute() == first_minute {
            break;
        }
    }
    assert_eq!(minute(), first_minute, "three minutes crossed a boundary each");
    assert_eq!(statuses, ["503", "503", "429"], "two replicas count together");
    let admin = raw(a, &claim_request(ADMIN, None)).await;
    assert!(
        admin.starts_with("HTTP/1.1 503"),
        "the admin key is not limited: {admin}"
    );
}
