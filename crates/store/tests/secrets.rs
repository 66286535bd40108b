//! Secrets at rest against a real PostgreSQL: what the columns hold, what a copied value does,
//! rotation, the migration of plaintext left by earlier versions, and what is kept when.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_store::testing::{TEST_SECRETS_KEY, TestDatabase, claim_request};
use pool_store::{
    AgentId, AgentSecrets, AgentStatus, ClaimOutcome, CreationStep, NewAgent, SecretProblem, SecretsKey,
    SecretsKeys, SetupSecrets, Store, StoreConfig,
};
use secrecy::{ExposeSecret, SecretString};

const LEASE: Duration = Duration::from_secs(300);

/// Every secret of agent `id`, as generated (distinct per agent and per column).
fn secrets_of(id: &str) -> [String; 5] {
    [
        format!("gateway-{id}-secret"),
        format!("api-{id}-secret"),
        format!("setup-{id}-secret"),
        format!("wallet-{id}-secret"),
        format!("openrouter-{id}-secret"),
    ]
}

fn new_agent(id: &str) -> NewAgent {
    let [gateway, api, setup, wallet, _] = secrets_of(id);
    NewAgent {
        id: AgentId::parse(id).unwrap(),
        image: "ghcr.io/xmtplabs/convos-agent:staging".into(),
        shape: pool_store::DEFAULT_SHAPE.into(),
        secrets: AgentSecrets {
            gateway_token: SecretString::from(gateway),
            agent_api_token: SecretString::from(api),
        },
        setup: SetupSecrets {
            setup_password: SecretString::from(setup),
            wallet_private_key: SecretString::from(wallet),
        },
    }
}

fn keys(seed: u8, previous: Option<u8>) -> SecretsKeys {
    SecretsKeys::new(
        SecretsKey::from_bytes(&[seed; 32]),
        previous.map(|p| SecretsKey::from_bytes(&[p; 32])),
    )
}

fn key_id(seed: u8) -> String {
    SecretsKey::from_bytes(&[seed; 32]).id().to_string()
}

async fn store_with(db: &TestDatabase, keys: SecretsKeys) -> Store {
    Store::connect(StoreConfig {
        secrets: keys,
        ..db.config()
    })
    .await
    .unwrap()
}

/// A row as the creation leaves it before the variables step: every secret recorded.
async fn creating_agent(store: &Store, id: &str) -> AgentId {
    let agent = new_agent(id);
    store.insert_creating(&agent, LEASE).await.unwrap();
    let openrouter = secrets_of(id)[4].clone();
    store
        .record_openrouter_key(&agent.id, &format!("hash-{id}"), &SecretString::from(openrouter))
        .await
        .unwrap();
    agent.id
}

/// An idle agent, past its variables step.
async fn idle_agent(store: &Store, id: &str) -> AgentId {
    let id = creating_agent(store, id).await;
    for step in [CreationStep::Project, CreationStep::Variables] {
        store
            .record_step(&id, step, Some(&format!("remote-{id}")))
            .await
            .unwrap();
    }
    for (from, to) in [
        (AgentStatus::Creating, AgentStatus::Starting),
        (AgentStatus::Starting, AgentStatus::Idle),
    ] {
        assert!(store.transition(&id, from, to, "test").await.unwrap().applied());
    }
    id
}

/// Every stored secret value: `(where, value)`.
async fn raw_values(db: &TestDatabase) -> Vec<(String, String)> {
    let client = db.client().await;
    let mut values = Vec::new();
    for row in client
        .query(
            "SELECT id, gateway_token, agent_api_token, setup_password, wallet_private_key, openrouter_api_key \
             FROM agent_metadata ORDER BY id",
            &[],
        )
        .await
        .unwrap()
    {
        let id: String = row.get(0);
        for (i, column) in ["gateway_token", "agent_api_token", "setup_password", "wallet_private_key", "openrouter_api_key"]
            .iter()
            .enumerate()
        {
            if let Some(v) = row.get::<_, Option<String>>(i + 1) {
                values.push((format!("{id}.{column}"), v));
            }
        }
    }
    for row in client
        .query(
            "SELECT key, response::text, sealed_response FROM claim_idempotency_keys",
            &[],
        )
        .await
        .unwrap()
    {
        let key: String = row.get(0);
        if let Some(v) = row.get::<_, Option<String>>(1) {
            values.push((format!("{key}.response"), v));
        }
        if let Some(v) = row.get::<_, Option<String>>(2) {
            values.push((format!("{key}.sealed_response"), v));
        }
    }
    values
}

#[tokio::test]
async fn the_raw_columns_hold_no_plaintext_and_the_store_reads_it_back() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let current = SecretsKey::parse(TEST_SECRETS_KEY).unwrap().id().to_string();
    let creating = creating_agent(&store, "creatingaaaa").await;
    let idle = idle_agent(&store, "idleagentbbb").await;
    let ClaimOutcome::Claimed(claimed) = store.claim(&claim_request(Some("k-1"))).await.unwrap() else {
        panic!("an idle agent is there");
    };
    assert_eq!(claimed.id, idle);
    let gateway = claimed
        .secrets
        .as_ref()
        .unwrap()
        .gateway_token
        .expose_secret()
        .to_string();
    assert_eq!(gateway, secrets_of("idleagentbbb")[0]);
    let answer = serde_json::json!({"outcome": "claimed", "gatewayToken": gateway});
    assert!(
        store
            .complete_claim(&idle, "https://invite", "conv", false, Some(("k-1", &answer)))
            .await
            .unwrap()
            .applied()
    );

    let values = raw_values(&db).await;
    assert_eq!(
        values.len(),
        5 + 2 + 1,
        "every secret of the creating agent, the lasting two of the idle one, one answer: {values:?}"
    );
    let plaintexts: Vec<String> = ["creatingaaaa", "idleagentbbb"]
        .iter()
        .flat_map(|id| secrets_of(id))
        .collect();
    for (at, value) in &values {
        assert!(
            value.starts_with(&format!("v1:{current}:")),
            "{at} is not sealed: {value}"
        );
        for plaintext in &plaintexts {
            assert!(!value.contains(plaintext.as_str()), "{at} holds a plaintext");
        }
    }

    // The store reads it all back.
    let agent = store.agent(&creating).await.unwrap().unwrap();
    assert!(agent.unreadable_secrets.is_empty());
    let [gateway, api, setup, wallet, openrouter] = secrets_of("creatingaaaa");
    let s = agent.secrets.unwrap();
    let setup_secrets = agent.setup_secrets.unwrap();
    assert_eq!(s.gateway_token.expose_secret(), gateway);
    assert_eq!(s.agent_api_token.expose_secret(), api);
    assert_eq!(setup_secrets.setup_password.expose_secret(), setup);
    assert_eq!(setup_secrets.wallet_private_key.expose_secret(), wallet);
    assert_eq!(agent.openrouter_api_key.unwrap().expose_secret(), openrouter);
    let repeat = store.idempotent_claim("admin", "k-1").await.unwrap().unwrap();
    assert_eq!(repeat.response, Some(answer));
}

#[tokio::test]
async fn a_sealed_value_copied_to_another_agent_or_column_does_not_open_and_says_where() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let a = creating_agent(&store, "agentaaaaaaa").await;
    let b = creating_agent(&store, "agentbbbbbbb").await;
    let client = db.client().await;
    // A's gateway token into B's row, and A's own API token into A's gateway column.
    client
        .execute(
            "UPDATE agent_metadata SET gateway_token = (SELECT gateway_token FROM agent_metadata WHERE id = $1) WHERE id = $2",
            &[&a.as_str(), &b.as_str()],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE agent_metadata SET gateway_token = agent_api_token WHERE id = $1",
            &[&a.as_str()],
        )
        .await
        .unwrap();

    let fleet = store.live_agents().await.unwrap();
    assert_eq!(fleet.len(), 2, "one bad value never fails a read of the fleet");
    for (agent, id) in [(&fleet[0], &a), (&fleet[1], &b)] {
        assert_eq!(&agent.id, id);
        assert!(
            agent.secrets.is_none(),
            "never another agent's or column's secret"
        );
        let problem = agent.tampered_secret().expect("the copied value is reported");
        assert_eq!(problem.column, "gateway_token");
        assert_eq!(problem.owner, format!("agent {id}"));
        assert!(matches!(problem.problem, SecretProblem::DoesNotDecrypt { .. }));
        let message = problem.to_string();
        assert!(
            message.starts_with(&format!("gateway_token of agent {id} cannot be read"))
                && message.contains("tampered with, or copied from another row or column"),
            "{message}"
        );
        for plaintext in secrets_of(a.as_str()).iter().chain(&secrets_of(b.as_str())) {
            assert!(!message.contains(plaintext.as_str()));
        }
        // The rest of the row is still read.
        assert!(agent.setup_secrets.is_some() && agent.openrouter_api_key.is_some());
    }
}

#[tokio::test]
async fn a_claim_passes_over_an_agent_whose_secret_was_tampered_with_and_quarantines_it() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let bad = idle_agent(&store, "agent0000bad").await;
    let good = idle_agent(&store, "agent0001god").await;
    db.client()
        .await
        .execute(
            "UPDATE agent_metadata SET agent_api_token = gateway_token WHERE id = $1",
            &[&bad.as_str()],
        )
        .await
        .unwrap();
    for key in [None, Some("k")] {
        let ClaimOutcome::Claimed(agent) = store.claim(&claim_request(key)).await.unwrap() else {
            panic!("the good agent is handed out");
        };
        assert_eq!(agent.id, good, "the oldest idle agent is passed over");
        store
            .transition(&good, AgentStatus::Claiming, AgentStatus::Idle, "test: again")
            .await
            .unwrap();
        db.client()
            .await
            .execute("DELETE FROM claim_idempotency_keys", &[])
            .await
            .unwrap();
    }
    let bad_row = store.agent(&bad).await.unwrap().unwrap();
    assert_eq!(bad_row.status, AgentStatus::Deleting);
    assert!(bad_row.quarantined);
    let events = store.events(&bad).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, "quarantined");
    assert!(
        last.reason.contains("agent_api_token of agent agent0000bad"),
        "{}",
        last.reason
    );
}

#[tokio::test]
async fn the_upkeep_quarantines_agents_with_a_tampered_secret_and_only_flags_claimed_ones() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let idle = idle_agent(&store, "agentidle000").await;
    let claimed = idle_agent(&store, "agentclaimed").await;
    let fine = idle_agent(&store, "agentfine000").await;
    store
        .transition(&claimed, AgentStatus::Idle, AgentStatus::Claimed, "test")
        .await
        .unwrap();
    let client = db.client().await;
    for id in [&idle, &claimed] {
        // A truncated value: malformed, no key opens it.
        client
            .execute(
                "UPDATE agent_metadata SET gateway_token = left(gateway_token, 30) WHERE id = $1",
                &[&id.as_str()],
            )
            .await
            .unwrap();
    }
    let done = store.upkeep_secrets(2).await.unwrap();
    assert_eq!(done.quarantined, vec![claimed.clone(), idle.clone()]);
    let idle_row = store.agent(&idle).await.unwrap().unwrap();
    assert_eq!(
        (idle_row.status, idle_row.quarantined),
        (AgentStatus::Deleting, true)
    );
    let claimed_row = store.agent(&claimed).await.unwrap().unwrap();
    assert_eq!(
        (claimed_row.status, claimed_row.quarantined),
        (AgentStatus::Claimed, true),
        "a user's agent is flagged, not torn down"
    );
    let fine_row = store.agent(&fine).await.unwrap().unwrap();
    assert_eq!(
        (fine_row.status, fine_row.quarantined),
        (AgentStatus::Idle, false)
    );
    // Once is enough: a second pass adds no event.
    let events = store.events(&claimed).await.unwrap().len();
    assert!(store.upkeep_secrets(2).await.unwrap().quarantined.is_empty());
    assert_eq!(store.events(&claimed).await.unwrap().len(), events);
}

#[tokio::test]
async fn a_rotation_reads_values_under_the_previous_key_and_seals_them_anew() {
    let db = TestDatabase::migrated().await;
    let old = store_with(&db, keys(1, None)).await;
    let creating = creating_agent(&old, "rotateaaaaaa").await;
    let idle = idle_agent(&old, "rotatebbbbbb").await;
    let ClaimOutcome::Claimed(_) = old.claim(&claim_request(Some("k-rot"))).await.unwrap() else {
        panic!("claimable");
    };
    let answer = serde_json::json!({"gatewayToken": secrets_of("rotatebbbbbb")[0]});
    old.complete_claim(&idle, "https://i", "c", false, Some(("k-rot", &answer)))
        .await
        .unwrap();
    let census = old.secrets_census().await.unwrap();
    assert_eq!(census.sealed.get(&key_id(1)), Some(&8));

    // Started with the new key and the old one as previous: everything reads.
    let new = store_with(&db, keys(2, Some(1))).await;
    assert!(
        new.secrets_census()
            .await
            .unwrap()
            .unreadable(&keys(2, Some(1)))
            .is_empty()
    );
    assert!(
        !new.secrets_census()
            .await
            .unwrap()
            .unreadable(&keys(2, None))
            .is_empty(),
        "without the previous key, a start-up would be refused"
    );
    let agent = new.agent(&creating).await.unwrap().unwrap();
    assert_eq!(
        agent.setup_secrets.unwrap().wallet_private_key.expose_secret(),
        secrets_of("rotateaaaaaa")[3]
    );

    // The upkeep seals everything anew under the new key, once.
    let done = new.upkeep_secrets(1).await.unwrap();
    assert_eq!((done.sealed, done.raced, done.unreadable), (8, 0, 0));
    assert_eq!(new.upkeep_secrets(1).await.unwrap().sealed, 0, "idempotent");
    for (at, value) in raw_values(&db).await {
        assert!(value.starts_with(&format!("v1:{}:", key_id(2))), "{at}");
    }
    let census = new.secrets_census().await.unwrap();
    assert_eq!(census.not_current(&keys(2, None)), 0);

    // The previous key can go: the new key alone reads everything.
    let after = store_with(&db, keys(2, None)).await;
    let agent = after.agent(&idle).await.unwrap().unwrap();
    assert_eq!(
        agent.secrets.unwrap().gateway_token.expose_secret(),
        secrets_of("rotatebbbbbb")[0]
    );
    let repeat = after.idempotent_claim("admin", "k-rot").await.unwrap().unwrap();
    assert_eq!(repeat.response, Some(answer));
    // The old key alone no longer does, and says why (it is not the value's fault).
    let stale = store_with(&db, keys(1, None)).await;
    let agent = stale.agent(&idle).await.unwrap().unwrap();
    let problem = &agent.unreadable_secrets[0];
    assert!(
        matches!(problem.problem, SecretProblem::UnknownKey { .. }),
        "{problem}"
    );
    assert!(!problem.is_tampered());
}

#[tokio::test]
async fn plaintext_left_by_an_earlier_version_is_sealed_in_place_by_two_replicas_at_once() {
    let db = TestDatabase::migrated().await;
    let client = db.client().await;
    // What the previous version wrote: plaintext columns and a JSON answer.
    let ids: Vec<String> = (0..25).map(|i| format!("legacyplain{i:02}")).collect();
    for id in &ids {
        let [gateway, api, setup, wallet, openrouter] = secrets_of(id);
        client
            .execute(
                "INSERT INTO agent_metadata (id, railway_project_id, status, gateway_token, agent_api_token, \
                 setup_password, wallet_private_key, openrouter_api_key) VALUES ($1, 'p', 'starting', $2, $3, $4, $5, $6)",
                &[id, &gateway, &api, &setup, &wallet, &openrouter],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO claim_idempotency_keys (scope, key, agent_id, response, expires_at) \
             VALUES ('admin', 'old-key', $1, $2, now() + interval '1 hour')",
            &[
                &ids[0],
                &serde_json::json!({"gatewayToken": secrets_of(&ids[0])[0]}),
            ],
        )
        .await
        .unwrap();
    let store = db.store().await;
    let census = store.secrets_census().await.unwrap();
    assert_eq!(census.plaintext, 25 * 5 + 1);
    // Read as it is meanwhile.
    let agent = store
        .agent(&AgentId::parse(&ids[3]).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        agent.secrets.unwrap().agent_api_token.expose_secret(),
        secrets_of(&ids[3])[1]
    );

    // Two replicas start at once.
    let (one, two) = (db.store().await, db.store().await);
    let (a, b) = tokio::join!(one.upkeep_secrets(4), two.upkeep_secrets(4));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sealed + b.sealed, 25 * 5 + 1, "{a:?} {b:?}");
    let census = store.secrets_census().await.unwrap();
    assert_eq!(census.plaintext, 0);
    let current = SecretsKey::parse(TEST_SECRETS_KEY).unwrap().id().to_string();
    assert_eq!(census.sealed.get(&current), Some(&(25 * 5 + 1)));
    for (at, value) in raw_values(&db).await {
        assert!(value.starts_with("v1:"), "{at}");
        assert!(!value.contains("-secret"), "{at}");
    }
    for id in &ids {
        let agent = store.agent(&AgentId::parse(id).unwrap()).await.unwrap().unwrap();
        assert!(agent.unreadable_secrets.is_empty());
        assert_eq!(
            agent.openrouter_api_key.unwrap().expose_secret(),
            secrets_of(id)[4]
        );
    }
    let repeat = store.idempotent_claim("admin", "old-key").await.unwrap().unwrap();
    assert_eq!(
        repeat.response,
        Some(serde_json::json!({"gatewayToken": secrets_of(&ids[0])[0]}))
    );
    assert_eq!(store.upkeep_secrets(4).await.unwrap().sealed, 0, "idempotent");
}

#[tokio::test]
async fn the_variables_step_removes_the_setup_secrets_and_archiving_removes_all() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    let id = creating_agent(&store, "minimisedaaa").await;
    let columns = || async {
        let row = db
            .client()
            .await
            .query_one(
                "SELECT gateway_token IS NOT NULL, agent_api_token IS NOT NULL, setup_password IS NOT NULL, \
                 wallet_private_key IS NOT NULL, openrouter_api_key IS NOT NULL FROM agent_metadata WHERE id = $1",
                &[&id.as_str()],
            )
            .await
            .unwrap();
        (0..5).map(|i| row.get::<_, bool>(i)).collect::<Vec<bool>>()
    };
    assert_eq!(columns().await, [true; 5]);
    store
        .record_step(&id, CreationStep::Project, Some("p"))
        .await
        .unwrap();
    assert_eq!(columns().await, [true; 5], "other steps keep them");
    store
        .record_step(&id, CreationStep::Variables, None)
        .await
        .unwrap();
    assert_eq!(
        columns().await,
        [true, true, false, false, false],
        "only the gateway and API tokens outlive the variables step"
    );
    let agent = store.agent(&id).await.unwrap().unwrap();
    assert!(agent.secrets.is_some() && agent.setup_secrets.is_none() && agent.openrouter_api_key.is_none());

    store
        .begin_teardown(&id, AgentStatus::Creating, "test", false)
        .await
        .unwrap();
    assert_eq!(columns().await, [true, true, false, false, false]);
    assert!(
        store
            .transition(&id, AgentStatus::Deleting, AgentStatus::Deleted, "torn down")
            .await
            .unwrap()
            .applied()
    );
    assert_eq!(columns().await, [false; 5], "an archived agent keeps no secret");
    let archived = store.agent(&id).await.unwrap().unwrap();
    assert_eq!(
        archived.status,
        AgentStatus::Deleted,
        "the row stays as the archive"
    );
    assert_eq!(archived.openrouter_key_hash.as_deref(), Some("hash-minimisedaaa"));
}

#[tokio::test]
async fn a_store_without_keys_writes_no_secret_unless_plaintext_was_asked_for() {
    let db = TestDatabase::migrated().await;
    let none = store_with(&db, SecretsKeys::default()).await;
    let err = none
        .insert_creating(&new_agent("nokeyaaaaaaa"), LEASE)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("POOL_SECRETS_KEY"), "{err}");
    assert!(!err.to_string().contains("-secret"));
    assert!(
        none.agent(&AgentId::parse("nokeyaaaaaaa").unwrap())
            .await
            .unwrap()
            .is_none(),
        "nothing was written"
    );

    let plain = store_with(&db, SecretsKeys::plaintext()).await;
    let id = creating_agent(&plain, "plainaaaaaaa").await;
    let values = raw_values(&db).await;
    assert!(values.iter().any(|(_, v)| v == &secrets_of("plainaaaaaaa")[0]));
    // A key added later seals it.
    let sealed = db.store().await;
    assert_eq!(sealed.upkeep_secrets(10).await.unwrap().sealed, 5);
    let agent = sealed.agent(&id).await.unwrap().unwrap();
    assert_eq!(
        agent.secrets.unwrap().gateway_token.expose_secret(),
        secrets_of("plainaaaaaaa")[0]
    );
    // And the plaintext store can no longer read it (it has no key), without failing.
    let agent = plain.agent(&id).await.unwrap().unwrap();
    assert!(matches!(
        agent.unreadable_secrets[0].problem,
        SecretProblem::NoKey { .. }
    ));
}

/// Issue 20: once the upkeep has sealed every value, a plaintext value is refused — one written
/// into the database by hand is no gateway token. Before that, plaintext left by earlier
/// versions is read (and sealed by the upkeep).
#[tokio::test]
async fn once_every_secret_is_sealed_a_plaintext_value_is_refused_as_tampered_with() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    db.seed_idle_agents(&[
        pool_store::testing::SeedAgent {
            id: "sealedagent1".into(),
            project_id: "prj-1".into(),
            environment_id: "env-1".into(),
            service_id: "svc-1".into(),
            domain: "a-1.up.railway.app".into(),
            token: "token-1".into(),
        },
        pool_store::testing::SeedAgent {
            id: "sealedagent2".into(),
            project_id: "prj-2".into(),
            environment_id: "env-2".into(),
            service_id: "svc-2".into(),
            domain: "a-2.up.railway.app".into(),
            token: "token-2".into(),
        },
    ])
    .await;
    let client = db.client().await;
    let plaintext = "UPDATE agent_metadata SET gateway_token = 'written-by-hand' WHERE id = 'sealedagent2'";
    client.batch_execute(plaintext).await.unwrap();
    // Not everything is sealed yet: plaintext is read, and the pool does not seal for good.
    assert!(!store.seal_for_good_if_done().await.unwrap());
    let id2 = pool_store::AgentId::parse("sealedagent2").unwrap();
    let agent = store.agent(&id2).await.unwrap().unwrap();
    assert!(agent.unreadable_secrets.is_empty());
    store.upkeep_secrets(100).await.unwrap();
    assert!(
        store.seal_for_good_if_done().await.unwrap(),
        "everything is sealed now"
    );

    // Now a plaintext value is refused, by this store and by any that reads the flag.
    client.batch_execute(plaintext).await.unwrap();
    let other = db.store().await;
    assert!(other.refresh_secrets_sealed().await.unwrap());
    for store in [&store, &other] {
        let agent = store.agent(&id2).await.unwrap().unwrap();
        assert!(agent.secrets.is_none());
        let problem = agent.tampered_secret().expect("refused as tampered with");
        assert_eq!(problem.problem, pool_store::SecretProblem::Unsealed, "{problem}");
    }
    let report = store.upkeep_secrets(100).await.unwrap();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
}
