//! Bad input, generated: random JSON, wrong types, huge strings, unicode and missing auth on
//! the claim and admin endpoints never panic, never answer 5xx for the caller's own mistake
//! and never change anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use pool_provisioner::testing::{TestPool, unthrottled};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;

use common::KEY;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        // PostgreSQL refuses a NUL in text; schemathesis found it as a 500 on rollout/cancel.
        "\\PC{0,8}".prop_map(|s| Value::String(format!("{s}\u{0}{s}"))),
        (0usize..3).prop_map(|n| Value::String("é漢🦀\u{202e}".repeat(n * 30_000))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("agentName".to_string()),
                    Just("instructions".to_string()),
                    Just("joinUrl".to_string()),
                    Just("count".to_string()),
                    Just("instanceIds".to_string()),
                    Just("runtime".to_string()),
                    "\\PC{0,10}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..200),
        Just(b"{\"agentName\": \"Ada\", \"instructions\": ".to_vec()),
    ]
}

fn endpoint() -> impl Strategy<Value = (Method, &'static str)> {
    prop_oneof![
        Just((Method::POST, "/api/pool/claim")),
        Just((Method::POST, "/api/pool/replenish")),
        Just((Method::POST, "/api/pool/drain")),
        Just((Method::POST, "/api/pool/redeploy")),
        Just((Method::POST, "/api/pool/rollout")),
        Just((Method::POST, "/api/pool/rollout/cancel")),
        Just((Method::DELETE, "/api/pool/instances/%E2%80%AEx")),
        Just((Method::DELETE, "/api/pool/crashed/nosuchagent0")),
        Just((Method::GET, "/api/pool/agents/..%2F..%2Fetc")),
    ]
}

#[test]
fn generated_bad_requests_never_panic_never_5xx_and_change_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pool, app) = runtime.block_on(async {
        let pool = TestPool::start(unthrottled()).await;
        pool.idle_agents(1).await;
        let app = common::app(&pool);
        (pool, app)
    });
    let mut config = ProptestConfig::with_cases(150);
    config.failure_persistence = None;
    proptest!(config, |((method, path) in endpoint(), body in body(), auth in prop_oneof![Just(None), Just(Some(KEY)), Just(Some("nope"))])| {
        let before = runtime.block_on(pool.store.counts()).unwrap();
        let requests_before = pool.sim.counters().requests_total;
        let (status, text) = runtime.block_on(async {
            let mut request = Request::builder().method(method.clone()).uri(path);
            if let Some(key) = auth {
                request = request.header("authorization", format!("Bearer {key}"));
            }
            let response = app.clone().oneshot(request.body(Body::from(body.clone())).unwrap()).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).to_string())
        });
        // Never a 5xx for a caller's mistake (503 is "pool empty", documented).
        prop_assert!(!status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE, "{method} {path} -> {status}: {text}");
        if auth != Some(KEY) {
            prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        if status.is_client_error() {
            let error: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(error["error"].is_string());
            // A rejected request changes nothing and reaches nothing.
            prop_assert_eq!(runtime.block_on(pool.store.counts()).unwrap(), before);
            prop_assert_eq!(pool.sim.counters().requests_total, requests_before);
        }
    });
}
