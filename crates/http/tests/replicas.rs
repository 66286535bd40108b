//! The replicas sharing the fleet (issue 23's shards), as the status, the metrics and the
//! console show them: real replicas on the test database (their lock connections, their
//! shards' advisory locks, a leader lock), never a view made up for the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use pool_http::{AppState, ServiceInfo};
use pool_provisioner::testing::{TestPool, unthrottled};
use pool_store::{LEADER_LOCK_KEY, LeaderLock, ReplicaShards};
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

const SHARDS: u32 = 16;

/// The router, answering as replica `this`.
fn app(pool: &TestPool, this: &str) -> Router {
    let control = std::sync::Arc::new(pool_http::DetachedControl::default());
    control.set_view(pool_http::ReconcilerView {
        replica: Some(this.to_string()),
        ..pool_http::ReconcilerView::default()
    });
    pool_http::router(AppState {
        provisioner: pool.provisioner.clone(),
        control,
        admin_key: SecretString::from(common::KEY),
        info: ServiceInfo {
            version: "test".into(),
        },
        console: pool_http::console::ConsoleConfig::default(),
        webhook_secret: None,
        security: pool_http::SecurityConfig::default(),
    })
}

/// A GET's text: with the admin key, or with a console session's cookie.
async fn text(app: &Router, path: &str, session: Option<&str>) -> String {
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, "pool.example");
    let request = match session {
        Some(token) => request.header(
            header::COOKIE,
            format!("{}={token}", pool_http::console::SECURE_SESSION_COOKIE),
        ),
        None => request.header(header::AUTHORIZATION, format!("Bearer {}", common::KEY)),
    };
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// Signs in to the console: the session's token.
async fn sign_in(app: &Router) -> String {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::HOST, "pool.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("key={}", common::KEY)))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, token)| token.to_string())
        .unwrap()
}

fn replica<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["replica"] == id)
        .unwrap_or_else(|| panic!("no replica {id} in {status}"))
}

#[tokio::test]
async fn the_replicas_their_shards_their_leases_and_the_leader_show_in_the_status_and_the_metrics() {
    let pool = TestPool::start(unthrottled()).await;
    let config = pool.db.config();
    let lease = Duration::from_secs(30);
    let app = app(&pool, "replica-a");

    // No replica yet: an empty list.
    let (status, answer) = common::call(&app, Method::GET, "/api/pool/status", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["replicas"], Value::Array(Vec::new()));
    assert_eq!(answer["replica"], "replica-a");

    // Two replicas split the shards; B leads.
    let a = ReplicaShards::join(&config, "replica-a", SHARDS, lease)
        .await
        .unwrap();
    let b = ReplicaShards::join(&config, "replica-b", SHARDS, lease)
        .await
        .unwrap();
    a.keep().await.unwrap();
    b.keep().await.unwrap();
    a.keep().await.unwrap();
    b.keep().await.unwrap();
    assert_eq!((a.owned().len(), b.owned().len()), (8, 8));
    let leader = LeaderLock::try_acquire_for(&config, LEADER_LOCK_KEY, "replica-b")
        .await
        .unwrap()
        .expect("nobody else leads");

    let (_, answer) = common::call(&app, Method::GET, "/api/pool/status", None).await;
    let (ra, rb) = (replica(&answer, "replica-a"), replica(&answer, "replica-b"));
    for (r, this, leads) in [(ra, true, false), (rb, false, true)] {
        assert_eq!(r["this"], this, "{r}");
        assert_eq!(r["leader"], leads, "{r}");
        assert_eq!(r["live"], true, "{r}");
        assert_eq!(r["shards"], 8, "{r}");
        assert_eq!(r["shardCount"], SHARDS, "{r}");
        let (age, left) = (
            r["leaseAgeMs"].as_u64().unwrap(),
            r["leaseLeftMs"].as_u64().unwrap(),
        );
        assert!(age < 30_000 && left > 0 && left <= 30_000, "{r}");
    }

    // The metrics (their first scrape reads the database).
    let metrics = text(&app, "/metrics", None).await;
    for line in [
        "pool_replicas_live 2",
        "pool_replica_shards{replica=\"replica-a\"} 8",
        "pool_replica_shards{replica=\"replica-b\"} 8",
        "pool_replica_leader{replica=\"replica-a\"} 0",
        "pool_replica_leader{replica=\"replica-b\"} 1",
        "pool_replica_lease_age_seconds{replica=\"replica-a\"} ",
    ] {
        assert!(metrics.contains(line), "no {line:?} in:\n{metrics}");
    }

    // The console lists them.
    let session = sign_in(&app).await;
    let page = text(&app, "/", Some(&session)).await;
    assert!(
        page.contains("replica-a · 8 of 16 shards · lease renewed") && page.contains("· this replica"),
        "{page}"
    );
    assert!(page.contains("replica-b · 8 of 16 shards"), "{page}");
    let fleet: Value =
        serde_json::from_str(&text(&app, "/console/fleet.json", Some(&session)).await).unwrap();
    let lines: Vec<&str> = fleet["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.len() == 2
            && lines
                .iter()
                .any(|l| l.starts_with("replica-b") && l.contains("· leader")),
        "{lines:?}"
    );

    // B dies (its connections close): it is no longer live, holds nothing, leads nothing.
    drop(leader);
    drop(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, answer) = common::call(&app, Method::GET, "/api/pool/status", None).await;
        let rb = replica(&answer, "replica-b");
        if rb["live"] == false {
            assert_eq!(
                (rb["shards"].as_u64(), rb["leader"].as_bool()),
                (Some(0), Some(false)),
                "{rb}"
            );
            assert_eq!(replica(&answer, "replica-a")["live"], true);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "B still live: {rb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
