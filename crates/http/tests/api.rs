//! Every route: success, auth failure, validation errors, unknown ids, the empty pool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use pool_http::{AppState, ServiceInfo};
use pool_provisioner::testing::{TestPool, unthrottled};
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "test-admin-key-0123456789";

struct Api {
    pool: TestPool,
    app: Router,
    control: std::sync::Arc<pool_http::DetachedControl>,
}

const WEBHOOK_SECRET: &str = "railway-webhook-secret-0123456789";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.text))
            .to_string()
    }
}

impl Api {
    async fn start() -> Self {
        Self::over(TestPool::start(unthrottled()).await)
    }

    /// The API over a pool of two runtimes, `openclaw` (the default) and `hermes`.
    async fn two_shapes() -> Self {
        Self::over(TestPool::two_shapes(unthrottled()).await)
    }

    fn over(pool: TestPool) -> Self {
        let control = std::sync::Arc::new(pool_http::DetachedControl::default());
        let app = pool_http::router(AppState {
            provisioner: pool.provisioner.clone(),
            control: control.clone(),
            admin_key: SecretString::from(KEY),
            info: ServiceInfo {
                version: "test".into(),
            },
            console: pool_http::console::ConsoleConfig::default(),
            webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
            security: pool_http::SecurityConfig::default(),
        });
        Self { pool, app, control }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = auth {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).to_string(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Some(KEY), None, &[]).await
    }

    async fn post(&self, path: &str, body: &str) -> Answer {
        self.call(Method::POST, path, Some(KEY), Some(body), &[]).await
    }

    /// A GET's status and JSON.
    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let a = self.get(path).await;
        (a.status, a.json())
    }

    /// A POST's status and JSON.
    async fn post_json(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let a = self.post(path, body).await;
        (a.status, a.json())
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, Some(KEY), None, &[]).await
    }
}

const CLAIM: &str = r#"{"agentName":"Ada","instructions":"be kind"}"#;

#[tokio::test]
async fn public_routes_answer_without_auth() {
    let api = Api::start().await;
    let a = api.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, json!({"ok": true})));
    let a = api.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = api.call(Method::GET, "/version", None, None, &[]).await;
    assert_eq!(a.json()["environment"], "staging");
    assert!(
        a.headers.contains_key("x-request-id"),
        "every answer carries a request id"
    );
    let a = api.call(Method::GET, "/metrics", None, None, &[]).await;
    assert!(
        a.text
            .contains("pool_agents{status=\"idle\",runtime=\"openclaw\"} 0"),
        "{}",
        a.text
    );
    assert!(a.text.contains("# TYPE pool_claim_duration_seconds histogram"));
}

#[tokio::test]
async fn every_api_route_refuses_a_missing_or_wrong_key() {
    let api = Api::start().await;
    for (method, path) in [
        (Method::GET, "/api/pool/counts"),
        (Method::GET, "/api/pool/status"),
        (Method::GET, "/api/pool/agents"),
        (Method::GET, "/api/pool/agents/abcdefabcdef"),
        (Method::POST, "/api/pool/claim"),
        (Method::POST, "/api/pool/replenish"),
        (Method::POST, "/api/pool/reconcile"),
        (Method::POST, "/api/pool/drain"),
        (Method::POST, "/api/pool/redeploy"),
        (Method::DELETE, "/api/pool/instances/abcdefabcdef"),
        (Method::DELETE, "/api/pool/crashed/abcdefabcdef"),
    ] {
        for key in [None, Some("wrong"), Some(&KEY[..KEY.len() - 1])] {
            let a = api.call(method.clone(), path, key, Some(CLAIM), &[]).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}");
            assert_eq!(a.error(), "Invalid or missing API key");
        }
    }
    assert_eq!(
        api.pool.sim.counters().requests_total,
        0,
        "nothing reached Railway"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let api = Api::start().await;
    let a = api.get("/api/pool/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(!a.error().is_empty());
    let a = api
        .call(Method::PUT, "/api/pool/claim", Some(KEY), None, &[])
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!a.error().is_empty());
}

#[tokio::test]
async fn claims_validate_every_field_and_answer_503_when_the_pool_is_empty() {
    let api = Api::start().await;
    for (body, expect) in [
        ("{", "malformed JSON"),
        ("[1,2]", "must be a JSON object"),
        (
            r#"{"agentName":5,"instructions":"x"}"#,
            "invalid type: integer `5`, expected a string",
        ),
        (
            r#"{"joinUrl":"https://dev.convos.org/v2?i=1","profileImage":"http://x/a.png"}"#,
            "profileImage: must be an https:// URL",
        ),
        (
            r#"{"metadata":{"a":{"b":"c"}}}"#,
            "metadata: \"a\" must be a string",
        ),
        (r#"{"metadata":["a"]}"#, "metadata: must be an object of strings"),
        (
            r#"{"runtime":"hermes"}"#,
            "runtime: unknown runtime \"hermes\"; this pool serves openclaw",
        ),
        (
            r#"{"agentName":"Ada","instructions":"x","joinUrl":"ftp://x"}"#,
            "joinUrl: must be an https:// URL",
        ),
        (
            r#"{"agentName":"Ada","instructions":"x","joinUrl":"https://popup.convos.org/v2?i=1"}"#,
            "joinUrl: popup.convos.org",
        ),
    ] {
        let a = api.post("/api/pool/claim", body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
        assert!(a.error().contains(expect), "{body}: {}", a.error());
    }
    let huge = format!(r#"{{"agentName":"Ada","instructions":"{}"}}"#, "x".repeat(70_000));
    let a = api.post("/api/pool/claim", &huge).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert!(!a.error().is_empty());

    let a = api.post("/api/pool/claim", CLAIM).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.error(),
        "No idle instances available. Try again in a few minutes."
    );
    assert_eq!(a.headers.get("retry-after").unwrap(), "30");
}

#[tokio::test]
async fn a_claim_returns_the_invite_and_token_and_the_rest_of_the_api_shows_it_without_secrets() {
    let api = Api::start().await;
    let ids = api.pool.idle_agents(2).await;
    let a = api
        .call(
            Method::POST,
            "/api/pool/claim",
            Some(KEY),
            Some(CLAIM),
            &[("idempotency-key", "k1")],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let claim = a.json();
    for field in [
        "inviteUrl",
        "conversationId",
        "instanceId",
        "gatewayToken",
        "gatewayUrl",
    ] {
        assert!(
            claim[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} in {claim}"
        );
    }
    assert_eq!(claim["joined"], false);
    let again = api
        .call(
            Method::POST,
            "/api/pool/claim",
            Some(KEY),
            Some(CLAIM),
            &[("idempotency-key", "k1")],
        )
        .await;
    assert_eq!(again.json(), claim, "a repeated key gets the first answer");

    let counts = api.get("/api/pool/counts").await.json();
    assert_eq!(
        (counts["claimed"].as_i64(), counts["idle"].as_i64()),
        (Some(1), Some(1))
    );
    let status = api.get("/api/pool/status").await;
    assert_eq!(status.json()["instances"].as_array().unwrap().len(), 2);
    let token = claim["gatewayToken"].as_str().unwrap();
    assert!(!status.text.contains(token), "no token in the status list");
    let detail = api
        .get(&format!(
            "/api/pool/agents/{}",
            claim["instanceId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(!detail.text.contains(token));
    assert!(detail.json()["events"].as_array().unwrap().len() >= 4);
    assert_eq!(detail.json()["agent"]["inviteUrl"], claim["inviteUrl"]);
    let agent = api.pool.store.agent(&ids[0]).await.unwrap().unwrap();
    use secrecy::ExposeSecret;
    let secrets = agent.secrets.unwrap();
    for secret in [
        secrets.agent_api_token.expose_secret(),
        secrets.gateway_token.expose_secret(),
    ] {
        assert!(!status.text.contains(secret) && !detail.text.contains(secret));
    }
}

#[tokio::test]
async fn unknown_ids_are_404_and_forbidden_states_409() {
    let api = Api::start().await;
    let ids = api.pool.idle_agents(1).await;
    // Found by schemathesis: ids with NUL bytes reached Postgres and answered 500.
    for a in [
        api.get("/api/pool/agents/bad%00id").await,
        api.delete("/api/pool/instances/bad%00id").await,
        api.post("/api/pool/redeploy", r#"{"instanceIds":["\u0000x"]}"#)
            .await,
    ] {
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    }
    for a in [
        api.get("/api/pool/agents/nosuchagent0").await,
        api.delete("/api/pool/instances/nosuchagent0").await,
        api.delete("/api/pool/crashed/nosuchagent0").await,
        api.post("/api/pool/redeploy", r#"{"instanceIds":["nosuchagent0"]}"#)
            .await,
    ] {
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
        assert!(a.error().contains("nosuchagent0"));
    }
    let a = api.delete(&format!("/api/pool/crashed/{}", ids[0])).await;
    assert_eq!(
        a.status,
        StatusCode::CONFLICT,
        "an idle agent is not crashed: {}",
        a.text
    );
    let a = api.delete(&format!("/api/pool/instances/{}", ids[0])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = api.delete(&format!("/api/pool/instances/{}", ids[0])).await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "a torn-down agent is gone: {}",
        a.text
    );
    api.pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn replenish_drain_reconcile_and_redeploy() {
    let api = Api::start().await;
    for body in [
        r#"{"count":0}"#,
        r#"{"count":21}"#,
        r#"{"count":"two"}"#,
        r#"{"count":-1}"#,
    ] {
        let a = api.post("/api/pool/replenish", body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
        let a = api.post("/api/pool/drain", body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
    }
    let a = api.post("/api/pool/replenish", r#"{"count":2}"#).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["creating"].as_array().unwrap().len(), 2);
    let a = api.post("/api/pool/replenish", "").await;
    assert_eq!(a.json()["triggered"], true);
    let a = api.post("/api/pool/reconcile", "").await;
    assert_eq!(a.status, StatusCode::ACCEPTED);

    // Wait for both creations, then make them idle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while api
        .pool
        .store
        .agents_with_status(pool_store::AgentStatus::Starting)
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for agent in api
        .pool
        .store
        .agents_with_status(pool_store::AgentStatus::Starting)
        .await
        .unwrap()
    {
        api.pool.make_idle(&agent.id).await;
    }
    let a = api.post("/api/pool/redeploy", r#"{"instanceIds":[]}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = api.post("/api/pool/redeploy", "{}").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["requested"], 2);
    assert_eq!(a.json()["in_progress"], 1, "one of two idle agents at a time");

    let a = api.post("/api/pool/drain", "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["drained"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let api = Api::start().await;
    let doc = api
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = pool_http::routes::routes()
        .iter()
        .map(|(r, _)| (r.method.to_string(), r.path.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    // And each documented route is really there: none answers 404/405.
    for (method, path) in &served {
        let path = path.replace("{id}", "abcdefabcdef");
        let a = api
            .call(method.parse().unwrap(), &path, Some(KEY), Some("{}"), &[])
            .await;
        assert!(
            a.status != StatusCode::METHOD_NOT_ALLOWED
                && !(a.status == StatusCode::NOT_FOUND && a.error() == "no such route"),
            "{method} {path}: {}",
            a.status
        );
    }
    // Every $ref resolves.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for piece in text.split("#/components/schemas/").skip(1) {
        let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
        assert!(schemas.contains_key(&name), "missing schema {name}");
    }
}

/// Railway's deploy events: the secret is checked in constant time, bad bodies are 4xx, events
/// for projects the pool does not know or types it does not act on are acknowledged and
/// ignored, and an event about one of its agents asks for a look at that agent — nothing
/// else. No agent row changes because of the event itself.
#[tokio::test]
async fn the_railway_webhook_checks_its_secret_and_asks_for_a_look_at_known_agents_only() {
    let api = Api::start().await;
    let id = api.pool.create_one().await.unwrap();
    let agent = api.pool.store.agent(&id).await.unwrap().unwrap();
    let project = agent.project_id.clone().unwrap();
    let service = agent.service_id.clone().unwrap();
    let before = agent.clone();
    let events_before = api.pool.store.events(&id).await.unwrap().len();
    let path = format!("/webhooks/railway/{WEBHOOK_SECRET}");
    let event = |kind: &str, project: &str| {
        json!({
            "type": kind,
            "details": {"id": "dep-x", "status": "CRASHED"},
            "resource": {
                "workspace": {"id": "ws-sim"},
                "project": {"id": project},
                "environment": {"id": "env-x"},
                "service": {"id": service},
                "deployment": {"id": "dep-x"}
            },
            "severity": "WARNING",
            "timestamp": "2026-12-01T10:00:00.000Z"
        })
        .to_string()
    };
    let api_ref = &api;
    let send = |path: String, body: String| async move {
        api_ref
            .call(
                Method::POST,
                &path,
                None,
                Some(&body),
                &[("content-type", "application/json")],
            )
            .await
    };

    // A wrong secret: 401, nothing asked.
    let forged = send(
        "/webhooks/railway/not-the-secret".into(),
        event("Deployment.crashed", &project),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(!forged.text.contains(WEBHOOK_SECRET));
    // Bad bodies: 400, or 413 when too large.
    assert_eq!(
        send(path.clone(), "not json".into()).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(path.clone(), "[1, 2]".into()).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(path.clone(), r#"{"resource": {}}"#.into()).await.status,
        StatusCode::BAD_REQUEST
    );
    let huge = format!(
        r#"{{"type": "Deployment.crashed", "pad": "{}"}}"#,
        "x".repeat(200_000)
    );
    assert_eq!(
        send(path.clone(), huge).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Ignored: an unknown project, a type the pool does not act on.
    for (kind, project) in [
        ("Deployment.crashed", "prj-not-ours"),
        ("Deployment.building", project.as_str()),
        ("VolumeAlert.triggered", project.as_str()),
    ] {
        let answer = send(path.clone(), event(kind, project)).await;
        assert_eq!(answer.status, StatusCode::OK, "{kind}");
        assert!(answer.json()["ignored"].is_string(), "{kind}: {}", answer.text);
    }
    assert!(api.control.looks_asked().is_empty(), "nothing was asked for yet");

    // One of ours: a look at that agent, twice for a duplicate — and the row is untouched.
    for _ in 0..2 {
        let answer = send(path.clone(), event("Deployment.crashed", &project)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.json()["agent"], agent.id.as_str());
        assert_eq!(answer.json()["look"], "status read");
    }
    let legacy = json!({"type": "DEPLOY", "status": "SUCCESS", "project": {"id": project}}).to_string();
    assert_eq!(send(path.clone(), legacy).await.json()["look"], "health check");
    assert_eq!(api.control.looks_asked(), vec![agent.id.clone(); 3]);
    let after = api.pool.store.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!(after.status, before.status);
    assert_eq!(after.status_changed_at, before.status_changed_at);
    assert_eq!(api.pool.store.events(&id).await.unwrap().len(), events_before);
}

// The stock per runtime (issue 22; tiers and cost, issue 21): `/api/pool/counts` and
// `/api/pool/status` show each runtime beside the whole pool (the original fields unchanged),
// and the status each runtime's tiers and monthly cost at the cost model's stated assumption.

fn dollars(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn cents(d: f64) -> f64 {
    (d * 100.0).round() / 100.0
}

#[tokio::test]
async fn counts_and_status_show_each_runtime_its_tiers_and_its_monthly_cost() {
    let api = Api::two_shapes().await;
    let pool = &api.pool;
    pool.idle_agents_of("openclaw", 2).await;
    let hermes = pool.idle_agents_of("hermes", 2).await;
    assert!(pool.provisioner.park(&hermes[0]).await.unwrap());
    let (status, claimed) = api.post_json("/api/pool/claim", r#"{"runtime":"hermes"}"#).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["instanceId"], hermes[1].to_string());

    // The counts: the whole pool's fields as before, and each runtime's.
    let (status, counts) = api.get_json("/api/pool/counts").await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    for (field, whole, openclaw, hermes) in [
        ("idle", 2, 2, 0),
        ("claimed", 1, 0, 1),
        ("parked", 1, 0, 1),
        ("starting", 0, 0, 0),
        ("crashed", 0, 0, 0),
        ("total", 4, 2, 2),
    ] {
        assert_eq!(counts[field], whole, "{field}: {counts}");
        assert_eq!(
            counts["runtimes"]["openclaw"][field], openclaw,
            "{field}: {counts}"
        );
        assert_eq!(counts["runtimes"]["hermes"][field], hermes, "{field}: {counts}");
    }

    let (status, answer) = api.get_json("/api/pool/status").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["counts"], {
        let mut whole = counts.clone();
        whole.as_object_mut().unwrap().remove("runtimes");
        whole
    });
    assert_eq!(answer["defaultRuntime"], "openclaw");
    assert_eq!(answer["instances"].as_array().unwrap().len(), 4);
    let runtimes = &answer["runtimes"];
    assert_eq!(
        runtimes.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["hermes", "openclaw"]
    );
    assert_eq!(runtimes["hermes"]["counts"], counts["runtimes"]["hermes"]);
    assert_eq!(
        runtimes["hermes"]["tiers"],
        json!({"warm": 0, "parked": 1, "parking": 0, "waking": 0})
    );
    assert_eq!(
        runtimes["openclaw"]["tiers"],
        json!({"warm": 2, "parked": 0, "parking": 0, "waking": 0})
    );
    assert_eq!(
        answer["tiers"],
        json!({"warm": 2, "parked": 1, "parking": 0, "waking": 0})
    );

    // The cost: the sizing crate's model at its stated assumption, said in the answer.
    let size = pool_sizing::AgentSize::ASSUMED;
    let assumptions = &answer["costAssumptions"];
    assert_eq!(dollars(&assumptions["agentMemoryGb"]), size.memory_gb);
    assert_eq!(dollars(&assumptions["agentVcpu"]), size.vcpu);
    assert_eq!(dollars(&assumptions["agentVolumeGb"]), size.volume_gb);
    assert_eq!(dollars(&assumptions["volumePerGbMonth"]), 0.15);
    assert!(assumptions["counted"].as_str().unwrap().contains("parked"));
    let hermes_cost = &runtimes["hermes"]["monthlyCost"];
    assert_eq!(dollars(&hermes_cost["runningDollars"]), 0.0);
    assert_eq!(dollars(&hermes_cost["parkedDollars"]), 0.15);
    assert_eq!(dollars(&hermes_cost["stockDollars"]), 0.15);
    assert_eq!(dollars(&hermes_cost["claimedDollars"]), cents(size.monthly(1, 0)));
    let openclaw_cost = &runtimes["openclaw"]["monthlyCost"];
    assert_eq!(
        dollars(&openclaw_cost["runningDollars"]),
        cents(size.monthly(2, 0))
    );
    assert_eq!(dollars(&openclaw_cost["parkedDollars"]), 0.0);
    let whole = &answer["monthlyCost"];
    assert_eq!(dollars(&whole["stockDollars"]), cents(size.monthly(2, 1)));
    assert!(
        (dollars(&whole["stockDollars"])
            - dollars(&openclaw_cost["stockDollars"])
            - dollars(&hermes_cost["stockDollars"]))
        .abs()
            < 0.011,
        "the whole is the sum of the runtimes: {answer}"
    );
    // A running agent costs about eighty times a parked one at this assumption.
    assert!(dollars(&openclaw_cost["runningDollars"]) / 2.0 > 50.0 * dollars(&hermes_cost["parkedDollars"]));

    // /metrics: each runtime's agents by status, its stock's cost by tier, and its claims (a
    // second hermes claim finds no idle hermes agent: refused).
    let (status, _) = api.post_json("/api/pool/claim", r#"{"runtime":"hermes"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let metrics = api.call(Method::GET, "/metrics", None, None, &[]).await.text;
    assert!(
        !metrics.contains("pool_claims_by_runtime_total{runtime=\"openclaw\""),
        "no openclaw claim was made"
    );
    for line in [
        "pool_claims_by_runtime_total{runtime=\"hermes\",result=\"served\"} 1".to_string(),
        "pool_claims_by_runtime_total{runtime=\"hermes\",result=\"refused\"} 1".into(),
        "pool_agents{status=\"idle\",runtime=\"openclaw\"} 2".into(),
        "pool_agents{status=\"idle\",runtime=\"hermes\"} 0".into(),
        "pool_agents{status=\"parked\",runtime=\"hermes\"} 1".into(),
        "pool_agents{status=\"claimed\",runtime=\"hermes\"} 1".into(),
        "pool_agents{status=\"claimed\",runtime=\"openclaw\"} 0".into(),
        "pool_stock_monthly_dollars{runtime=\"hermes\",tier=\"parked\"} 0.15".into(),
        "pool_stock_monthly_dollars{runtime=\"hermes\",tier=\"running\"} 0".into(),
        format!(
            "pool_stock_monthly_dollars{{runtime=\"openclaw\",tier=\"running\"}} {}",
            cents(size.monthly(2, 0))
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} in /metrics:\n{metrics}"
        );
    }

    // Each runtime's waiting claims and brake; no target before the leader sized the pool.
    for runtime in ["openclaw", "hermes"] {
        assert_eq!(runtimes[runtime]["waiting"], 0, "{runtime}");
        assert_eq!(runtimes[runtime]["brakeEngaged"], false, "{runtime}");
        assert_eq!(runtimes[runtime]["target"], Value::Null, "{runtime}");
    }
}

#[tokio::test]
async fn a_runtime_with_no_agents_is_shown_with_zeros_and_the_target_its_last_sample_said() {
    let api = Api::two_shapes().await;
    let pool = &api.pool;
    let sample = |target, reason: &str| pool_store::PoolSample {
        idle: 0,
        claimed: 0,
        warm: 0,
        target,
        reason: reason.into(),
    };
    pool.store
        .record_shape_sample("hermes", &sample(3, "hermes: floor 3"))
        .await
        .unwrap();
    pool.store.record_sample(&sample(3, "whole pool")).await.unwrap();
    let (_, counts) = api.get_json("/api/pool/counts").await;
    assert_eq!(counts["total"], 0);
    assert_eq!(counts["runtimes"]["hermes"]["total"], 0, "{counts}");
    assert_eq!(counts["runtimes"]["openclaw"]["total"], 0, "{counts}");
    let (_, answer) = api.get_json("/api/pool/status").await;
    assert_eq!(answer["runtimes"]["hermes"]["target"], 3, "{answer}");
    assert_eq!(answer["runtimes"]["hermes"]["targetReason"], "hermes: floor 3");
    assert_eq!(answer["runtimes"]["openclaw"]["target"], Value::Null);
    assert_eq!(answer["target"], 3);
    assert_eq!(dollars(&answer["monthlyCost"]["stockDollars"]), 0.0);
}

/// The prober's counters (issue 23's prober, shown for issue 22's status): what the replica's
/// control reports is in `/api/pool/status` (`prober`) and in `/metrics` (`pool_prober_*`).
#[tokio::test]
async fn the_probers_counters_show_in_the_status_and_the_metrics() {
    let api = Api::start().await;
    let (_, before) = api.get_json("/api/pool/status").await;
    assert_eq!(before["prober"], Value::Null, "no prober on a detached control");
    api.control.set_view(pool_http::ReconcilerView {
        prober: Some(pool_http::ProberView {
            agents: 200,
            interval_ms: 30_000,
            intervals: 3,
            checks: 601,
            failures: 4,
            reprobes: 4,
            reprobe_failures: 1,
            in_flight: 7,
            checks_per_interval: pool_http::ProberView::mean_checks_per_interval(601, 3),
        }),
        ..pool_http::ReconcilerView::default()
    });
    let (status, answer) = api.get_json("/api/pool/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["prober"],
        json!({
            "agents": 200, "intervalMs": 30000, "intervals": 3, "checks": 601, "failures": 4,
            "reprobes": 4, "reprobeFailures": 1, "inFlight": 7, "checksPerInterval": 200.3
        })
    );
    let metrics = api.call(Method::GET, "/metrics", None, None, &[]).await.text;
    for line in [
        "pool_prober_agents 200",
        "pool_prober_interval_seconds 30",
        "pool_prober_intervals_total 3",
        "pool_prober_checks_total 601",
        "pool_prober_check_failures_total 4",
        "pool_prober_reprobes_total 4",
        "pool_prober_reprobe_failures_total 1",
        "pool_prober_in_flight 7",
        "# TYPE pool_prober_checks_total counter",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} in /metrics:\n{metrics}"
        );
    }
}

/// The status lists every live agent, page by page from the database (never the fleet whole):
/// past several pages, each agent once, in id order, no archived one, in JSON that parses whole.
#[tokio::test]
async fn the_status_lists_every_live_agent_across_pages_each_once_in_order() {
    let api = Api::start().await;
    let seed = |i: usize| pool_store::testing::SeedAgent {
        id: format!("listed{i:06}"),
        project_id: format!("project-listed-{i}"),
        environment_id: format!("environment-listed-{i}"),
        service_id: format!("service-listed-{i}"),
        domain: format!("listed-{i}.up.railway.app"),
        token: format!("token-listed-{i}"),
    };
    // Seeded in two batches, the later ids first: the list's order is the ids', not the rows'.
    let (later, earlier): (Vec<usize>, Vec<usize>) = (0..1_203).partition(|i| *i >= 600);
    for batch in [later, earlier] {
        api.pool
            .db
            .seed_idle_agents(&batch.into_iter().map(seed).collect::<Vec<_>>())
            .await;
    }
    api.pool
        .db
        .client()
        .await
        .batch_execute("UPDATE agent_metadata SET status = 'deleted' WHERE id = 'listed000007'")
        .await
        .unwrap();
    let (status, answer) = api.get_json("/api/pool/status").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = answer["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..1_203)
        .filter(|i| *i != 7)
        .map(|i| format!("listed{i:06}"))
        .collect();
    assert_eq!(ids, expected);
    assert!(
        answer["counts"].is_object(),
        "the other fields too: {}",
        answer["counts"]
    );
}
