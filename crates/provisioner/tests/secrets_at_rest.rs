//! Secrets at rest, end to end through the provisioner: a dump of the database after a fill and
//! claims holds no agent secret, yet the pool health-checks and provisions with them; the
//! creation keeps only what it uses again; an archived agent keeps nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use pool_provisioner::ClaimInput;
use pool_provisioner::testing::TestPool;
use pool_store::{AgentId, AgentStatus};
use secrecy::ExposeSecret;

/// The variables that carry an agent's own secrets.
const SECRET_VARIABLES: [&str; 5] = [
    "POOL_API_KEY",
    "OPENCLAW_GATEWAY_TOKEN",
    "SETUP_PASSWORD",
    "PRIVATE_WALLET_KEY",
    "OPENROUTER_API_KEY",
];

fn input(name: &str) -> ClaimInput {
    ClaimInput {
        agent_name: name.into(),
        instructions: "be helpful".into(),
        join_url: None,
        ..ClaimInput::default()
    }
}

/// The variables Railway (the simulator) holds for an agent's service.
fn deployed_variables(pool: &TestPool, service_id: &str) -> BTreeMap<String, String> {
    let snapshot = pool.sim.snapshot();
    snapshot
        .services
        .iter()
        .find(|s| s.id == service_id)
        .expect("the agent's service")
        .variables
        .clone()
}

/// `pg_dump` of the PostgreSQL the tests use (PATH first, then Debian's versioned directories).
fn pg_dump() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("pg_dump"))
        .find(|p| p.is_file());
    let versioned = || {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin/pg_dump"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    };
    on_path
        .or_else(versioned)
        .expect("pg_dump is installed with PostgreSQL")
}

async fn dump(pool: &TestPool) -> String {
    let out = tokio::process::Command::new(pg_dump())
        .args(["--data-only", "--no-owner", "--dbname", pool.db.url()])
        .output()
        .await
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a text dump")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_after_a_fill_and_claims_holds_no_secret_and_the_pool_still_works_with_them() {
    let pool = TestPool::quick().await;
    let ids = pool.idle_agents(3).await;

    // Every agent's secrets, as Railway holds them (the database must hold none of them).
    let mut secrets: Vec<(String, String)> = Vec::new();
    for id in &ids {
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        let vars = deployed_variables(&pool, agent.service_id.as_deref().unwrap());
        for name in SECRET_VARIABLES {
            let value = vars.get(name).unwrap_or_else(|| panic!("{id} has {name}"));
            assert!(value.len() >= 16, "{name} is a real secret");
            secrets.push((format!("{id} {name}"), value.clone()));
        }
    }
    // Two claims, one under an idempotency key (its answer, with the gateway token, is kept).
    let first = pool
        .provisioner
        .claim(&input("Ada"), Some("dump-key"))
        .await
        .unwrap();
    let second = pool.provisioner.claim(&input("Bob"), None).await.unwrap();
    for claim in [&first, &second] {
        secrets.push((
            format!("claim of {}", claim.instance_id),
            claim.gateway_token.clone(),
        ));
    }

    let text = dump(&pool).await;
    assert!(
        text.contains("COPY public.agent_metadata"),
        "the dump has the agents"
    );
    assert!(text.contains("v1:"), "sealed values are in the dump");
    for (what, secret) in &secrets {
        assert!(!text.contains(secret.as_str()), "{what} is in the dump");
    }

    // What the dump holds opens, and the pool uses it: a health check with each agent's own
    // token, and provisions, which the agent accepts only with its gateway token (the claims
    // above, and one more).
    for id in &ids {
        let agent = pool.store.agent(id).await.unwrap().unwrap();
        let vars = deployed_variables(&pool, agent.service_id.as_deref().unwrap());
        let own = agent.secrets.as_ref().expect("the lasting secrets open");
        assert_eq!(own.agent_api_token.expose_secret(), vars["POOL_API_KEY"]);
        assert_eq!(own.gateway_token.expose_secret(), vars["OPENCLAW_GATEWAY_TOKEN"]);
        let url = pool.provisioner.agent_url(&agent).unwrap();
        assert!(
            pool.provisioner
                .agents()
                .health(&url, own.agent_api_token.expose_secret())
                .await
                .is_ready(),
            "{id} health-checks with its opened token"
        );
    }
    assert_eq!(
        first.gateway_token,
        deployed_variables(
            &pool,
            pool.store
                .agent(&AgentId::parse(&first.instance_id).unwrap())
                .await
                .unwrap()
                .unwrap()
                .service_id
                .as_deref()
                .unwrap()
        )["OPENCLAW_GATEWAY_TOKEN"]
    );
    let third = pool.provisioner.claim(&input("Cy"), None).await.unwrap();
    assert!(!third.invite_url.is_empty(), "the last idle agent provisions too");
    // A repeat under the key gets the first answer back, opened.
    let repeat = pool
        .provisioner
        .claim(&input("Ada"), Some("dump-key"))
        .await
        .unwrap();
    assert_eq!(repeat, first);
    pool.assert_nothing_leaked().await;
}

/// The secret columns of one agent row: whether each holds a value.
async fn stored(pool: &TestPool, id: &AgentId) -> BTreeMap<&'static str, bool> {
    let row = pool
        .db
        .client()
        .await
        .query_one(
            "SELECT gateway_token, agent_api_token, setup_password, wallet_private_key, openrouter_api_key \
             FROM agent_metadata WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .unwrap();
    [
        "gateway_token",
        "agent_api_token",
        "setup_password",
        "wallet_private_key",
        "openrouter_api_key",
    ]
    .into_iter()
    .enumerate()
    .map(|(i, column)| {
        let value: Option<String> = row.get(i);
        if let Some(v) = &value {
            assert!(v.starts_with("v1:"), "{column} is sealed");
        }
        (column, value.is_some())
    })
    .collect()
}

#[tokio::test]
async fn a_created_agent_keeps_only_its_tokens_and_an_archived_one_keeps_nothing() {
    let pool = TestPool::quick().await;
    let id = pool.create_one().await.unwrap();
    let kept = stored(&pool, &id).await;
    assert_eq!(
        kept,
        BTreeMap::from([
            ("gateway_token", true),
            ("agent_api_token", true),
            ("setup_password", false),
            ("wallet_private_key", false),
            ("openrouter_api_key", false),
        ]),
        "the setup password, wallet key and OpenRouter key are Railway's alone after the variables step"
    );
    // The agent got every one of them all the same.
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    let vars = deployed_variables(&pool, agent.service_id.as_deref().unwrap());
    for name in SECRET_VARIABLES {
        assert!(vars.contains_key(name), "{name} was set");
    }

    pool.make_idle(&id).await;
    let claim = pool.provisioner.claim(&input("Ada"), None).await.unwrap();
    assert_eq!(claim.instance_id, id.as_str());
    pool.provisioner.kill(&id, "test: archive").await.unwrap();
    let archived = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(archived.status, AgentStatus::Deleted);
    assert!(
        stored(&pool, &id).await.values().all(|kept| !kept),
        "an archived agent keeps no secret"
    );
    assert!(archived.secrets.is_none() && archived.unreadable_secrets.is_empty());
}

#[tokio::test]
async fn a_creation_whose_secret_was_tampered_with_is_compensated_before_its_variables_are_set() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use pool_store::CreationStep;

    // Stop the saga right after its service exists, so the row can be tampered with before
    // the variables step reads it.
    let armed = Arc::new(AtomicBool::new(true));
    let hook_armed = armed.clone();
    let hook: pool_provisioner::StepHook = Arc::new(move |step| {
        let armed = hook_armed.clone();
        Box::pin(async move {
            if step == CreationStep::Service && armed.swap(false, Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        })
    });
    let pool = TestPool::with_hook(railway_sim::SimConfig::quick(), Some(hook)).await;
    let started = pool
        .provisioner
        .start_creations(pool_provisioner::CreationDemand::Exactly(1))
        .await
        .unwrap();
    let id = started.ids[0].clone();
    // Wait until the saga hangs in the hook (the service was made), then drop it there.
    for _ in 0..400 {
        if !armed.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    started.abort();
    let client = pool.db.client().await;
    client
        .execute(
            "UPDATE agent_metadata SET setup_password = wallet_private_key, worker_lease_until = NULL WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .unwrap();

    let recovery = pool.provisioner.recover_abandoned_creations().await.unwrap();
    assert_eq!(recovery.compensated, vec![id.clone()], "{recovery:?}");
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Deleted);
    assert!(
        agent
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("setup_password of agent"),
        "{:?}",
        agent.last_error
    );
    let service = pool.sim.snapshot();
    assert!(
        service
            .services
            .iter()
            .filter(|s| s.name.ends_with(id.as_str()))
            .all(|s| !s.variables.contains_key("SETUP_PASSWORD")),
        "no variable was set from a value that does not open"
    );
    pool.assert_nothing_leaked().await;
}
