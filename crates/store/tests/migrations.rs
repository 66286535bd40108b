//! The schema's migrations, including the seed's change on a Node-era database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pool_store::testing::TestDatabase;
use pool_store::{AgentStatus, MigrateOptions, MigrationState, Store, StoreError, run_migrations};

/// The table as the Node.js pool manager created it, with a claimed and an unclaimed agent.
async fn node_era_database() -> TestDatabase {
    let db = TestDatabase::empty().await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE agent_metadata (
                id TEXT PRIMARY KEY,
                railway_service_id TEXT NOT NULL,
                agent_name TEXT,
                conversation_id TEXT,
                invite_url TEXT,
                instructions TEXT,
                created_at TIMESTAMPTZ DEFAULT NOW(),
                claimed_at TIMESTAMPTZ,
                source_branch TEXT,
                openrouter_key_hash TEXT,
                agentmail_inbox_id TEXT
             );
             INSERT INTO agent_metadata (id, railway_service_id, agent_name, conversation_id, invite_url,
                 instructions, claimed_at, source_branch, openrouter_key_hash, agentmail_inbox_id)
             VALUES
                ('legacyclaimd', 'svc-1', 'Ada', 'conv-1', 'https://convos.org/i/1', 'be kind', now(), 'main', 'h1', 'in1'),
                ('legacyidle01', 'svc-2', NULL, NULL, NULL, NULL, NULL, 'main', 'h2', NULL),
                ('legacyidle02', 'svc-3', NULL, NULL, NULL, NULL, NULL, 'staging', NULL, NULL);",
        )
        .await
        .expect("build the Node-era table");
    db
}

async fn column_names(db: &TestDatabase) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'agent_metadata' ORDER BY column_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn seed_migration_backfills_legacy_rows_with_the_pools_own_project() {
    let db = node_era_database().await;
    let options = MigrateOptions {
        legacy_project_id: Some("pool-own-project".into()),
    };
    run_migrations(&db.config(), &options)
        .await
        .expect("migrations run");

    let client = db.client().await;
    let projects: Vec<(String, String)> = client
        .query(
            "SELECT id, railway_project_id FROM agent_metadata ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        projects,
        vec![
            ("legacyclaimd".to_string(), "pool-own-project".to_string()),
            ("legacyidle01".to_string(), "pool-own-project".to_string()),
            ("legacyidle02".to_string(), "pool-own-project".to_string()),
        ]
    );
    let nullable: String = client
        .query_one(
            "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'agent_metadata' AND column_name = 'railway_project_id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nullable, "NO", "railway_project_id is NOT NULL");
    assert!(!column_names(&db).await.contains(&"source_branch".to_string()));

    // Legacy rows are marked as such and keep their claim; the rest start unobserved.
    let store = db.store().await;
    let claimed = store
        .agent(&pool_store::AgentId::parse("legacyclaimd").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(claimed.legacy);
    assert_eq!(claimed.status, AgentStatus::Claimed);
    assert_eq!(claimed.service_id.as_deref(), Some("svc-1"));
    assert_eq!(claimed.openrouter_key_hash.as_deref(), Some("h1"));
    let idle = store
        .agent(&pool_store::AgentId::parse("legacyidle01").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(idle.status, AgentStatus::Starting);
    assert_eq!(idle.project_id.as_deref(), Some("pool-own-project"));
}

#[tokio::test]
async fn seed_migration_without_a_project_id_fails_clearly_and_changes_nothing() {
    let db = node_era_database().await;
    let before = column_names(&db).await;

    let err = run_migrations(&db.config(), &MigrateOptions::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Migration(_)), "{err:?}");
    assert!(
        message.contains("RAILWAY_PROJECT_ID"),
        "names the variable: {message}"
    );
    assert!(message.contains("3 legacy row"), "says how many rows: {message}");

    assert_eq!(column_names(&db).await, before, "agent_metadata unchanged");
    let client = db.client().await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM agent_metadata", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);
    let history: bool = client
        .query_one("SELECT to_regclass('agent_events') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!history, "no later migration was applied either");
}

#[tokio::test]
async fn fresh_database_needs_no_project_id() {
    let db = TestDatabase::empty().await;
    let statuses = run_migrations(&db.config(), &MigrateOptions::default())
        .await
        .unwrap();
    assert!(statuses.iter().all(|s| s.applied_on.is_some()));
    assert_eq!(
        db.store().await.migration_state().await.unwrap(),
        MigrationState::Current
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_from_two_tasks_at_once_both_succeed_with_one_history() {
    let db = TestDatabase::empty().await;
    let runner = || {
        let config = db.config();
        tokio::spawn(async move { run_migrations(&config, &MigrateOptions::default()).await })
    };
    let (a, b) = (runner(), runner());
    let (a, b) = (
        a.await.unwrap().expect("first runner"),
        b.await.unwrap().expect("second runner"),
    );
    assert_eq!(a, b, "both see the same applied history");
    let client = db.client().await;
    let rows: Vec<(i32, i64)> = client
        .query(
            "SELECT version, count(*) FROM refinery_schema_history GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|(_, n)| *n == 1),
        "each migration recorded once: {rows:?}"
    );
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused_in_one_line() {
    let db = TestDatabase::migrated().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
        )
        .await
        .unwrap();
    let err = run_migrations(&db.config(), &MigrateOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { database: 999, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(!message.contains('\n'));
    assert!(message.contains("version 999"), "{message}");
    assert!(matches!(
        db.store().await.migration_state().await.unwrap(),
        MigrationState::TooNew { database: 999, .. }
    ));
}

#[tokio::test]
async fn an_unreachable_database_is_reported_in_one_line() {
    // Port 1 on loopback: nothing listens there.
    let mut config = pool_store::StoreConfig::new("postgres://postgres@127.0.0.1:1/postgres");
    config.connect_timeout = std::time::Duration::from_secs(2);
    let err = Store::connect(config).await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("database unreachable at 127.0.0.1:1/postgres"),
        "{message}"
    );
    assert!(!message.contains('\n'));
}

#[tokio::test]
async fn refused_credentials_are_reported_without_the_password() {
    // The test server trusts local logins, so a role that does not exist is what it refuses
    // (SQLSTATE 28000, the same class as a wrong password: 28P01).
    let db = TestDatabase::empty().await;
    let url = db
        .url()
        .replacen("postgres://postgres@", "postgres://no_such_role:s3cret-pw@", 1);
    let err = Store::connect(pool_store::StoreConfig::new(url))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::AuthenticationFailed { .. }), "{err:?}");
    assert!(message.contains("no_such_role"), "{message}");
    assert!(
        !message.contains("s3cret-pw"),
        "the password never prints: {message}"
    );
    assert!(!message.contains('\n'));
}
