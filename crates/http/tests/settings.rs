//! The settings API and resume per runtime (issue 22), over the router on a pool of two shapes
//! (`openclaw`, the default, and `hermes`): each runtime's settings and brake change alone, a
//! request without `?runtime=` acts on the default runtime, and an unknown runtime is a 400
//! naming `runtime` that changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::{app, call};
use pool_provisioner::testing::{TestPool, unthrottled};
use serde_json::json;

#[tokio::test]
async fn each_runtime_has_its_own_settings_and_the_default_is_the_default_runtimes() {
    let pool = TestPool::two_shapes(unthrottled()).await;
    let app = app(&pool);

    let (status, plain) = call(&app, Method::GET, "/api/pool/settings", None).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    assert_eq!(plain["runtime"], "openclaw", "the default runtime: {plain}");
    assert_eq!(plain["runtimes"], json!(["openclaw", "hermes"]));
    assert_eq!(plain["defaultRuntime"], "openclaw");
    assert!(plain.get("shape").is_none(), "the API says runtime: {plain}");
    assert_eq!(plain["minIdle"], 0);

    let (status, changed) = call(
        &app,
        Method::PUT,
        "/api/pool/settings?runtime=hermes",
        Some(json!({"minIdle": 5, "paused": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["runtime"], "hermes");
    assert_eq!(changed["before"]["runtime"], "hermes");
    assert_eq!(changed["after"]["minIdle"], 5);
    assert_eq!(changed["after"]["paused"], true);

    let (_, hermes) = call(&app, Method::GET, "/api/pool/settings?runtime=hermes", None).await;
    assert_eq!(
        (&hermes["runtime"], &hermes["minIdle"], &hermes["paused"]),
        (&json!("hermes"), &json!(5), &json!(true))
    );
    assert_eq!(hermes["updatedBy"], "admin key");
    let (_, openclaw) = call(&app, Method::GET, "/api/pool/settings?runtime=openclaw", None).await;
    assert_eq!(
        (&openclaw["minIdle"], &openclaw["paused"]),
        (&json!(0), &json!(false)),
        "openclaw's untouched: {openclaw}"
    );

    // Without ?runtime=: the default runtime's, and hermes's stay as they are.
    let (status, changed) = call(
        &app,
        Method::PUT,
        "/api/pool/settings",
        Some(json!({"minIdle": 3})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["runtime"], "openclaw");
    assert_eq!(
        pool.store
            .shape_settings("openclaw")
            .await
            .unwrap()
            .settings
            .min_idle,
        3
    );
    let hermes = pool.store.shape_settings("hermes").await.unwrap().settings;
    assert_eq!((hermes.min_idle, hermes.paused), (5, true));

    // The audit log names the runtime of each change.
    let changes: Vec<_> = pool
        .store
        .pool_events(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "settings_changed")
        .map(|e| e.detail["runtime"].clone())
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.contains(&json!("hermes")) && changes.contains(&json!("openclaw")));
}

#[tokio::test]
async fn an_unknown_runtime_is_a_400_naming_runtime_and_changes_nothing() {
    let pool = TestPool::two_shapes(unthrottled()).await;
    let app = app(&pool);
    pool.store
        .record_creation_failure("hermes", "image pull failed", 1)
        .await
        .unwrap();
    let settings = |shape: &'static str| {
        let store = pool.store.clone();
        async move { store.shape_settings(shape).await.unwrap() }
    };
    let before = (settings("openclaw").await, settings("hermes").await);
    let events_before = pool.store.pool_events(100).await.unwrap().len();

    for (method, path, body) in [
        (Method::GET, "/api/pool/settings?runtime=claude", None),
        (
            Method::PUT,
            "/api/pool/settings?runtime=claude",
            Some(json!({"minIdle": 7, "paused": true})),
        ),
        (Method::POST, "/api/pool/resume?runtime=claude", None),
    ] {
        let (status, answer) = call(&app, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with("runtime:"), "{error}");
        assert!(
            error.contains("claude") && error.contains("openclaw, hermes"),
            "names what was asked and what is served: {error}"
        );
    }

    assert_eq!(
        (settings("openclaw").await, settings("hermes").await),
        before,
        "no settings changed"
    );
    assert!(
        pool.store.shape_brake("hermes").await.unwrap().engaged(),
        "hermes's brake still engaged"
    );
    assert_eq!(
        pool.store.pool_events(100).await.unwrap().len(),
        events_before,
        "nothing recorded"
    );
}

#[tokio::test]
async fn resume_releases_only_the_brake_of_the_runtime_it_names() {
    let pool = TestPool::two_shapes(unthrottled()).await;
    let app = app(&pool);
    let (_, engaged) = pool
        .store
        .record_creation_failure("hermes", "image pull failed", 1)
        .await
        .unwrap();
    assert!(engaged);

    let (_, hermes) = call(&app, Method::GET, "/api/pool/settings?runtime=hermes", None).await;
    assert!(hermes["brake"]["engagedAt"].is_string(), "{hermes}");
    assert_eq!(hermes["brake"]["lastFailure"], "image pull failed");
    let (_, openclaw) = call(&app, Method::GET, "/api/pool/settings", None).await;
    assert!(openclaw["brake"]["engagedAt"].is_null(), "{openclaw}");

    // The default runtime's brake was not engaged; hermes's stays.
    let (status, answer) = call(&app, Method::POST, "/api/pool/resume", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"runtime": "openclaw", "resumed": false}));
    assert!(pool.store.shape_brake("hermes").await.unwrap().engaged());

    let (status, answer) = call(&app, Method::POST, "/api/pool/resume?runtime=hermes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"runtime": "hermes", "resumed": true}));
    assert!(!pool.store.shape_brake("hermes").await.unwrap().engaged());
    let released = pool
        .store
        .pool_events(10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "brake_released")
        .expect("an event");
    assert_eq!(released.detail["runtime"], "hermes");
    assert_eq!(released.actor, "admin key");
}
