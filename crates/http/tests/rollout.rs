//! `POST /api/pool/rollout` and `/cancel` over the router: bad input is a 400 naming the field
//! and changes nothing, a second rollout is a 409 naming the running one, and the status and
//! the console show the rollout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::{app, call};
use pool_provisioner::testing::{TestPool, unthrottled};
use serde_json::json;

#[tokio::test]
async fn bad_rollouts_are_400s_naming_the_field_and_a_second_one_is_a_409_naming_the_first() {
    let pool = TestPool::start(unthrottled()).await;
    pool.idle_agents(2).await;
    let app = app(&pool);
    let deployments = pool.sim.snapshot().deployments.len();
    for (body, field) in [
        (json!({"runtime": "hermes", "batch": 1}), "runtime"),
        (json!({"runtime": "openclaw", "batch": 0}), "batch"),
        (
            json!({"runtime": "openclaw", "batch": 1, "pauseMs": -5}),
            "pauseMs",
        ),
        (
            json!({"runtime": "openclaw", "batch": 1, "include": ["everyone"]}),
            "include",
        ),
        (
            json!({"runtime": "openclaw", "batch": 1, "image": "ghcr.io/elsewhere/agent:1"}),
            "image",
        ),
    ] {
        let (status, answer) = call(&app, Method::POST, "/api/pool/rollout", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(&format!("{field}:")), "{body}: {error}");
    }
    assert!(
        pool.store.latest_rollout().await.unwrap().is_none(),
        "nothing written"
    );
    assert_eq!(
        pool.sim.snapshot().deployments.len(),
        deployments,
        "nothing deployed"
    );

    let (status, started) = call(
        &app,
        Method::POST,
        "/api/pool/rollout",
        Some(json!({"runtime": "openclaw", "image": "ghcr.io/xmtplabs/convos-agent:sha-1234567", "batch": 1, "pauseMs": 60000})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["state"], "running");
    let digest = pool.sim.image_digest("ghcr.io/xmtplabs/convos-agent:sha-1234567");
    assert_eq!(
        started["target"],
        format!("ghcr.io/xmtplabs/convos-agent@{digest}")
    );
    assert_eq!(
        started["agents"]["upgrading"], 1,
        "the canary went out: {started}"
    );

    let (status, refused) = call(
        &app,
        Method::POST,
        "/api/pool/rollout",
        Some(json!({"runtime": "openclaw", "batch": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("rollout {}", started["id"])) && error.contains("sha-1234567"),
        "{error}"
    );

    let (status, reply) = call(&app, Method::GET, "/api/pool/status", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["rollout"]["id"], started["id"]);
    assert_eq!(reply["rollout"]["state"], "running");

    let (status, cancelled) = call(
        &app,
        Method::POST,
        "/api/pool/rollout/cancel",
        Some(json!({"runtime": "openclaw"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["cancelled"]["state"], "cancelled");
    let (_, again) = call(
        &app,
        Method::POST,
        "/api/pool/rollout/cancel",
        Some(json!({"runtime": "openclaw"})),
    )
    .await;
    assert_eq!(again, json!({"cancelled": null}));

    // Cancelling a runtime the pool does not serve is the caller's mistake, even with a NUL in
    // it (which PostgreSQL refuses; schemathesis found it as a 500).
    for runtime in ["hermes", "open\u{0}claw"] {
        let (status, refused) = call(
            &app,
            Method::POST,
            "/api/pool/rollout/cancel",
            Some(json!({ "runtime": runtime })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{runtime:?}: {refused}");
        assert!(
            refused["error"].as_str().unwrap().contains("runtime"),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn an_agent_upgrades_itself_through_a_rollout_of_its_own_with_its_own_credentials() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    let app = app(&pool);
    let agent = pool.store.agent(&ids[0]).await.unwrap().unwrap();
    let token = {
        use secrecy::ExposeSecret;
        agent.secrets.unwrap().gateway_token.expose_secret().to_string()
    };
    // Another agent's token: 403, nothing started.
    let other = pool.store.agent(&ids[1]).await.unwrap().unwrap();
    let other_token = {
        use secrecy::ExposeSecret;
        other.secrets.unwrap().gateway_token.expose_secret().to_string()
    };
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/pool/self-upgrade",
        Some(json!({"instanceId": ids[0], "gatewayToken": other_token})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(pool.store.latest_rollout().await.unwrap().is_none());

    let new_image = pool.provisioner.config().default_shape().image.to_string();
    let digest = pool.sim.push_image(&new_image);
    let (status, answer) = call(
        &app,
        Method::POST,
        "/api/pool/self-upgrade",
        Some(json!({"instanceId": ids[0], "gatewayToken": token})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["instanceId"], ids[0].as_str());
    let repository = &pool.provisioner.config().default_shape().image.repository;
    assert_eq!(answer["image"], format!("{repository}@{digest}"));
    let id = answer["rollout"].as_i64().unwrap();
    let members = pool.store.rollout_agents(id).await.unwrap();
    assert_eq!(members.len(), 1, "this agent only");
    assert_eq!(members[0].agent_id, ids[0]);
    assert_eq!(members[0].state, "upgrading", "it is its own canary");
    let rollout = pool.store.rollout(id).await.unwrap().unwrap();
    assert_eq!(
        rollout.actor.as_deref(),
        Some(format!("agent:{}", ids[0]).as_str())
    );
}
