//! The real binary, a real PostgreSQL and the simulator, as an operator runs them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_e2e::{ADMIN_KEY, ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_store::testing::TestDatabase;
use railway_sim::{AgentBehaviour, SimConfig};
use serde_json::{Value, json};

fn body(answer: &pool_provisioner::outbound::OutboundAnswer) -> Value {
    serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&answer.body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_fills_hands_out_an_agent_refills_kills_and_shuts_down_without_losing_a_claim() {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig {
        agents: AgentBehaviour {
            provision_time: Duration::from_millis(1500),
            ..AgentBehaviour::default()
        },
        ..SimConfig::quick()
    })
    .await
    .unwrap();
    let db = TestDatabase::empty().await; // the binary migrates it
    let env = sim_environment(&sim, db.url(), free_port().unwrap());
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    let mut responses = Vec::new(); // every non-claim answer, for the secret check

    // The pool fills.
    manager
        .wait_counts(Duration::from_secs(60), |c| c["idle"] == 2)
        .await
        .unwrap();

    // A claim returns an invite URL and a gateway token.
    let claim = manager.claim("Ada").await.unwrap();
    assert_eq!(claim.status, 200, "{}", String::from_utf8_lossy(&claim.body));
    let claimed = body(&claim);
    assert!(claimed["inviteUrl"].as_str().unwrap().starts_with("https://"));
    assert!(!claimed["gatewayToken"].as_str().unwrap().is_empty());

    // The pool refills.
    let counts = manager
        .wait_counts(Duration::from_secs(60), |c| c["idle"] == 2 && c["claimed"] == 1)
        .await
        .unwrap();
    responses.push(counts.to_string());

    // A kill tears the agent's project down.
    let status = manager.get("/api/pool/status", true).await.unwrap();
    responses.push(String::from_utf8_lossy(&status.body).to_string());
    let victim = body(&status)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["status"] == "idle")
        .cloned()
        .unwrap();
    let project = victim["projectId"].as_str().unwrap().to_string();
    let kill = manager
        .send(
            hyper::Method::DELETE,
            &format!("/api/pool/instances/{}", victim["id"].as_str().unwrap()),
            true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(kill.status, 200);
    responses.push(String::from_utf8_lossy(&kill.body).to_string());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sim
        .snapshot()
        .projects
        .iter()
        .any(|p| p.id == project && !p.deleted)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the killed agent's project was deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = manager
        .wait_counts(Duration::from_secs(60), |c| c["idle"] == 2 && c["deleting"] == 0)
        .await
        .unwrap();
    responses.push(counts.to_string());
    for path in ["/metrics", "/version", "/openapi.json", "/readyz"] {
        let answer = manager.get(path, false).await.unwrap();
        assert_eq!(answer.status, 200, "{path}");
        responses.push(String::from_utf8_lossy(&answer.body).to_string());
    }

    // SIGTERM during a claim: the claim completes, the process exits 0.
    let url = manager.base_url.clone();
    let in_flight = tokio::spawn(async move {
        let http = pool_provisioner::outbound::OutboundClient::new().unwrap();
        http.send(
            hyper::Method::POST,
            &format!("{url}/api/pool/claim"),
            Some(ADMIN_KEY),
            Some(&json!({"agentName": "Grace", "instructions": "hi"})),
            Duration::from_secs(60),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await; // the agent takes 1.5 s to provision
    manager.signal("TERM").unwrap();
    let late = in_flight.await.unwrap().unwrap();
    assert_eq!(
        late.status,
        200,
        "the in-flight claim finished: {}",
        String::from_utf8_lossy(&late.body)
    );
    let late = body(&late);
    assert_eq!(
        manager.wait_exit(Duration::from_secs(40)).await.unwrap(),
        Some(0),
        "{}",
        manager.output_text()
    );
    let store = db.store().await;
    let agent = store
        .agent(&pool_store::AgentId::parse(late["instanceId"].as_str().unwrap()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.status, pool_store::AgentStatus::Claimed, "no claim lost");
    assert_eq!(agent.invite_url.as_deref(), late["inviteUrl"].as_str());

    // No secret of the run appears in any log line or non-claim answer.
    let mut secrets: Vec<String> = [
        ADMIN_KEY,
        "sim-token",
        "ghp_e2e_registry_token",
        "sim-openrouter-management-key",
        "sim-agentmail-key",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let client = db.client().await;
    for row in client
        .query(
            "SELECT gateway_token, agent_api_token, setup_password, wallet_private_key, openrouter_api_key FROM agent_metadata",
            &[],
        )
        .await
        .unwrap()
    {
        for i in 0..5 {
            if let Some(secret) = row.get::<_, Option<String>>(i) {
                secrets.push(secret);
            }
        }
    }
    assert!(secrets.len() > 10, "the run's agents' secrets were collected");
    let logs = manager.output_text();
    assert!(logs.lines().count() > 10, "the run logged");
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret appears in the logs");
        for r in &responses {
            assert!(!r.contains(secret.as_str()), "a secret appears in an answer");
        }
    }
}

#[tokio::test]
async fn bad_configuration_lists_every_problem_and_exits_non_zero() {
    let binary = pool_manager_binary().unwrap();
    let env = [("PORT", "not-a-port"), ("RAILWAY_ENVIRONMENT_NAME", "pr-1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    assert_eq!(manager.wait_exit(Duration::from_secs(10)).await.unwrap(), Some(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let output = manager.output_text();
    for variable in [
        "PORT",
        "POOL_API_KEY",
        "DATABASE_URL",
        "RAILWAY_API_TOKEN",
        "RAILWAY_WORKSPACE_ID",
        "AGENT_IMAGE_TAG",
    ] {
        assert!(output.contains(variable), "{variable} not named in:\n{output}");
    }
}

#[tokio::test]
async fn a_project_token_is_refused_at_start_up_with_a_clear_message() {
    let binary = pool_manager_binary().unwrap();
    let mut config = SimConfig::quick();
    config.tokens.insert("project-token".into(), Vec::new()); // acts on no workspace
    let sim = railway_sim::start(config).await.unwrap();
    let db = TestDatabase::empty().await;
    let mut env = sim_environment(&sim, db.url(), free_port().unwrap());
    env.insert("RAILWAY_API_TOKEN".into(), "project-token".into());
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    assert_eq!(manager.wait_exit(Duration::from_secs(20)).await.unwrap(), Some(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        manager
            .output_text()
            .contains("a workspace (team) token is needed"),
        "{}",
        manager.output_text()
    );
}

#[tokio::test]
async fn an_unreachable_database_is_one_line_and_a_non_zero_exit() {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let env = sim_environment(&sim, "postgres://postgres@127.0.0.1:1/none", free_port().unwrap());
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    assert_eq!(manager.wait_exit(Duration::from_secs(20)).await.unwrap(), Some(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let output = manager.output_text();
    let line = output
        .lines()
        .find(|l| l.starts_with("pool-manager:"))
        .unwrap_or_else(|| panic!("{output}"));
    assert!(
        line.contains("database unreachable at 127.0.0.1:1/none"),
        "{line}"
    );
}
