//! Runtime settings and claims that wait, through the real binary: what an operator and a
//! calling service see over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_e2e::{ADMIN_KEY, ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_provisioner::outbound::{OutboundAnswer, OutboundClient};
use pool_store::testing::TestDatabase;
use railway_sim::SimConfig;
use serde_json::{Value, json};

fn body(answer: &OutboundAnswer) -> Value {
    serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&answer.body)))
}

async fn start(min_idle: u32) -> (railway_sim::SimHandle, TestDatabase, ManagerProcess) {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let db = TestDatabase::empty().await;
    let mut env = sim_environment(&sim, db.url(), free_port().unwrap());
    env.insert("POOL_MIN_IDLE".into(), min_idle.to_string());
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    (sim, db, manager)
}

async fn pool_events(db: &TestDatabase) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM pool_events", &[])
        .await
        .unwrap()
        .get(0)
}

async fn put_settings(manager: &ManagerProcess, change: Value) -> OutboundAnswer {
    manager
        .send(hyper::Method::PUT, "/api/pool/settings", true, Some(&change))
        .await
        .unwrap()
}

async fn claim(manager: &ManagerProcess, prefer: Option<&str>, name: &str) -> OutboundAnswer {
    let http = OutboundClient::new().unwrap();
    let headers: Vec<(&str, &str)> = prefer.map(|p| ("prefer", p)).into_iter().collect();
    http.send_with_headers(
        hyper::Method::POST,
        &format!("{}/api/pool/claim", manager.base_url),
        Some(ADMIN_KEY),
        &headers,
        Some(&json!({"agentName": name, "instructions": "hi"})),
        Duration::from_secs(90),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_min_idle_through_the_api_grows_the_pool_without_a_restart() {
    let (_sim, db, manager) = start(1).await;
    manager
        .wait_counts(Duration::from_secs(60), |c| c["idle"] == 1)
        .await
        .unwrap();
    let pid = manager.pid();

    // A bad value is a 400 naming the field, and nothing changes.
    let before = body(&manager.get("/api/pool/settings", true).await.unwrap());
    let events_before = pool_events(&db).await;
    for (change, field) in [
        (json!({"minIdle": 3, "maxTotal": 2}), "maxTotal"),
        (json!({"minIdle": -1}), "minIdle"),
        (
            json!({"minIdle": 3, "idleSchedule": "mon-fri 25:00-26:00 UTC=4"}),
            "idleSchedule",
        ),
        (json!({"minIdle": 3, "maxIdleAgeMs": 5}), "maxIdleAgeMs"),
        (json!({"minIdel": 3}), "minIdel"),
        (json!({"parkedMin": 20, "parkedMax": 10}), "parkedMin"),
        (json!({"minIdle": 3, "parkAfterMs": -1}), "parkAfterMs"),
        (json!({"parkedMax": 10_001}), "parkedMax"),
    ] {
        let refused = put_settings(&manager, change.clone()).await;
        assert_eq!(refused.status, 400, "{change}");
        let text = String::from_utf8_lossy(&refused.body).to_string();
        assert!(text.contains(field), "{change}: the error names {field}: {text}");
    }
    assert_eq!(
        body(&manager.get("/api/pool/settings", true).await.unwrap()),
        before,
        "refused changes changed nothing"
    );
    let events_after = pool_events(&db).await;
    assert_eq!(events_before, events_after, "refused changes recorded nothing");

    // A good one takes effect on the running process.
    let changed = put_settings(&manager, json!({"minIdle": 3})).await;
    assert_eq!(changed.status, 200, "{}", String::from_utf8_lossy(&changed.body));
    let changed = body(&changed);
    assert_eq!(changed["before"]["minIdle"], 1);
    assert_eq!(changed["after"]["minIdle"], 3);
    manager
        .wait_counts(Duration::from_secs(90), |c| c["idle"] == 3)
        .await
        .unwrap();
    assert_eq!(manager.pid(), pid, "the same process, no restart");

    // The change is an event naming who made it, with the old and new values.
    let row = db
        .client()
        .await
        .query_one(
            "SELECT actor, detail::text FROM pool_events WHERE kind = 'settings_changed' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let actor: String = row.get(0);
    let detail: String = row.get(1);
    assert_eq!(actor, "admin key");
    assert!(detail.contains("minIdle"), "{detail}");

    // The parked tier's settings change the same way. The harness seeds parkedMax 0 (the tier
    // off), and parkedMin's default follows it down to 0.
    let changed = put_settings(
        &manager,
        json!({"parkedMin": 0, "parkedMax": 4, "parkAfterMs": 900000}),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", String::from_utf8_lossy(&changed.body));
    let changed = body(&changed);
    assert_eq!(changed["before"]["parkedMin"], 0, "seeded: POOL_PARKED_MAX=0");
    assert_eq!(changed["before"]["parkedMax"], 0, "seeded: POOL_PARKED_MAX=0");
    assert_eq!(changed["before"]["parkAfterMs"], 600_000, "the default");
    assert_eq!(changed["after"]["parkedMax"], 4);
    assert_eq!(changed["after"]["parkAfterMs"], 900_000);

    // The status explains the target.
    let status = body(&manager.get("/api/pool/status", true).await.unwrap());
    assert!(status["target"].as_u64().unwrap() >= 3, "{status}");
    assert!(
        status["targetReason"].as_str().unwrap().contains("floor 3"),
        "{}",
        status["targetReason"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_an_empty_pool_answers_503_at_once_or_waits_for_an_agent_when_asked() {
    let (_sim, _db, manager) = start(0).await;

    // Without the header: 503 with Retry-After, nothing created for it to wait for.
    let refused = claim(&manager, None, "Ada").await;
    assert_eq!(refused.status, 503, "{}", String::from_utf8_lossy(&refused.body));
    assert!(refused.headers.contains_key("retry-after"));

    // A wait beyond the maximum, or not a number, is a 400 naming the header.
    for bad in ["wait=301", "wait=-1", "wait=soon"] {
        let answer = claim(&manager, Some(bad), "Ada").await;
        assert_eq!(answer.status, 400, "{bad}");
        assert!(String::from_utf8_lossy(&answer.body).contains("Prefer"), "{bad}");
    }

    // With `Prefer: wait=30`: the claim prompts a creation and is served once it is ready.
    let served = claim(&manager, Some("wait=30"), "Ada").await;
    assert_eq!(served.status, 200, "{}", String::from_utf8_lossy(&served.body));
    assert_eq!(
        served
            .headers
            .get("preference-applied")
            .and_then(|v| v.to_str().ok()),
        Some("wait=30")
    );
    assert!(
        body(&served)["inviteUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );

    // Its wait shows in the metrics.
    let metrics = manager.get("/metrics", false).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    let served_after_wait = text
        .lines()
        .find(|l| l.starts_with("pool_claim_wait_seconds_count"))
        .unwrap_or_else(|| panic!("no wait histogram in\n{text}"));
    assert!(served_after_wait.ends_with(" 1"), "{served_after_wait}");
}
