//! Retention against a real PostgreSQL: old rows go in batches, recent ones stay, and the audit
//! logs stay append-only for everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_store::testing::{SeedAgent, TestDatabase};
use pool_store::{MIN_EVENT_RETENTION, Retention};

fn seed(i: usize) -> SeedAgent {
    SeedAgent::numbered(format!("retained{i:04}"), i)
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn old_rows_go_in_batches_recent_ones_stay_and_the_logs_stay_append_only() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    db.seed_idle_agents(&(0..4).map(seed).collect::<Vec<_>>()).await;
    let client = db.client().await;
    client
        .batch_execute(
            "-- two archived long ago, one archived yesterday, one live
             UPDATE agent_metadata SET status = 'deleted', status_changed_at = now() - interval '40 days'
              WHERE id IN ('retained0000', 'retained0001');
             UPDATE agent_metadata SET status = 'deleted', status_changed_at = now() - interval '1 day'
              WHERE id = 'retained0002';
             -- events: three of 100 days ago, two of today
             INSERT INTO agent_events (agent_id, kind, reason, at)
             SELECT 'retained0003', 'status_changed', 'old', now() - interval '100 days' FROM generate_series(1, 3);
             INSERT INTO agent_events (agent_id, kind, reason) VALUES ('retained0003', 'status_changed', 'new'),
                                                                     ('retained0003', 'status_changed', 'new');
             INSERT INTO pool_events (kind, actor, at) VALUES ('settings_changed', 'admin key', now() - interval '100 days'),
                                                              ('settings_changed', 'console', now());
             INSERT INTO claim_refusals (at) VALUES (now() - interval '100 days'), (now());
             INSERT INTO console_sessions (token_hash, csrf_token, expires_at)
             VALUES ('expired', 'c', now() - interval '1 hour'), ('current', 'c', now() + interval '1 hour');
             INSERT INTO claim_idempotency_keys (scope, key, expires_at)
             VALUES ('admin', 'expired', now() - interval '1 minute'), ('admin', 'current', now() + interval '1 hour');",
        )
        .await
        .unwrap();
    let old_events = "SELECT count(*) FROM agent_events WHERE reason = 'old'";

    // A small batch: at most two of each kind per pass.
    let retention = Retention {
        batch: 2,
        ..Retention::default()
    };
    let first = store.prune(&retention).await.unwrap();
    assert_eq!(first.agent_events, 2);
    assert_eq!(first.archived_agents, 2);
    let second = store.prune(&retention).await.unwrap();
    assert_eq!(second.agent_events, 1, "the backlog goes over several passes");
    let third = store.prune(&retention).await.unwrap();
    assert_eq!(third.total(), 0, "{third:?}");

    assert_eq!(count(&db, old_events).await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM agent_events WHERE reason = 'new'").await,
        2
    );
    assert_eq!(count(&db, "SELECT count(*) FROM pool_events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM claim_refusals").await, 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM agent_metadata").await,
        2,
        "the agent archived yesterday and the live one stay"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM agent_saga_steps WHERE agent_id IN ('retained0000', 'retained0001')"
        )
        .await,
        0,
        "the archived agents' journal went with them"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM console_sessions").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM claim_idempotency_keys").await, 1);

    // The logs stay append-only: no edit, and no delete outside the retention pass.
    for refused in [
        "UPDATE agent_events SET reason = 'edited'",
        "DELETE FROM agent_events WHERE reason = 'new'",
        "UPDATE pool_events SET actor = 'someone'",
    ] {
        let e = client.batch_execute(refused).await.unwrap_err();
        assert!(
            e.to_string().contains("append-only") || format!("{e:?}").contains("append-only"),
            "{refused}: {e:?}"
        );
    }
    // Even a transaction that claims to be the retention pass cannot delete recent events.
    let e = client
        .batch_execute("BEGIN; SET LOCAL pool.retention = 'on'; DELETE FROM agent_events; COMMIT;")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("append-only"), "{e:?}");
    client.batch_execute("ROLLBACK").await.ok();
    assert_eq!(
        count(&db, "SELECT count(*) FROM agent_events WHERE reason = 'new'").await,
        2
    );
}

#[tokio::test]
async fn retention_never_goes_below_the_week_the_forecast_needs() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO claim_refusals (at) VALUES (now() - interval '7 days'), (now() - interval '9 days');",
        )
        .await
        .unwrap();
    let eager = Retention {
        events: Duration::from_secs(60),
        ..Retention::default()
    };
    let pruned = store.prune(&eager).await.unwrap();
    assert_eq!(
        pruned.demand, 1,
        "only the claim older than {MIN_EVENT_RETENTION:?}"
    );
}

/// Issue 20: archived agents' events have no cascade, so the 30-day prune of archived rows was
/// suspected to fail while their events are younger than the 90 days events are kept. It does
/// not: `agent_events.agent_id` has no foreign key (the audit log outlives the rows it names),
/// and the row goes with its journal and its services. Proven here with an archived agent whose
/// events are 40 and 5 days old.
#[tokio::test]
async fn an_archived_agent_is_pruned_while_its_events_are_younger_than_the_events_retention() {
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    db.seed_idle_agents(&[seed(7)]).await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO agent_events (agent_id, kind, reason, at)
             VALUES ('retained0007', 'status_changed', 'young', now() - interval '40 days'),
                    ('retained0007', 'status_changed', 'young', now() - interval '5 days');
             INSERT INTO agent_services (agent_id, service, state, lease_until)
             VALUES ('retained0007', 'email', 'provisioning', now());
             DELETE FROM agent_services WHERE agent_id = 'retained0007';
             UPDATE agent_metadata SET status = 'deleted', status_changed_at = now() - interval '31 days'
              WHERE id = 'retained0007';",
        )
        .await
        .unwrap();
    let pruned = store.prune(&Retention::default()).await.unwrap();
    assert_eq!(pruned.archived_agents, 1, "{pruned:?}");
    assert_eq!(pruned.agent_events, 0, "{pruned:?}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM agent_metadata WHERE id = 'retained0007'"
        )
        .await,
        0,
        "the archived row is gone"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM agent_events WHERE agent_id = 'retained0007'"
        )
        .await,
        2,
        "its events stay for their own 90 days"
    );
}

/// Issue 20: the audit logs could be pruned by any session that set `pool.retention`, and
/// TRUNCATE was not covered. Now only `prune_audit_logs` (running as the NOLOGIN role
/// `pool_pruner`) may delete, and TRUNCATE is refused. An ordinary login role — what an
/// application's user is — can neither switch the check on nor become the pruning role.
#[tokio::test]
async fn only_the_pruning_function_deletes_from_the_audit_logs_and_truncate_is_refused() {
    let db = TestDatabase::migrated().await;
    let admin = db.client().await;
    let app_role = format!("pool_app_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {app_role};
             CREATE ROLE {app_role} LOGIN;
             GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON agent_events, pool_events TO {app_role};
             INSERT INTO agent_events (agent_id, kind, reason, at)
             SELECT 'someone', 'status_changed', 'old', now() - interval '100 days' FROM generate_series(1, 3);
             INSERT INTO pool_events (kind, actor, at) VALUES ('settings_changed', 'admin key', now() - interval '100 days');"
        ))
        .await
        .unwrap();
    let app_url = db.url().replacen("postgres@", &format!("{app_role}@"), 1);
    assert_ne!(app_url, db.url(), "the test database URL names the postgres user");
    let app = pool_store::testing::client_for(&app_url).await;
    let refused = |sql: &'static str| {
        let app = &app;
        async move {
            let e = app.batch_execute(sql).await.expect_err(sql);
            let _ = app.batch_execute("ROLLBACK").await;
            format!("{e:?}")
        }
    };
    for sql in [
        "BEGIN; SET LOCAL pool.retention = 'on'; DELETE FROM agent_events; COMMIT;",
        "SET pool.retention = 'on'; DELETE FROM pool_events;",
        "DELETE FROM agent_events WHERE reason = 'old';",
    ] {
        assert!(refused(sql).await.contains("append-only"), "{sql}");
    }
    assert!(
        refused("TRUNCATE agent_events")
            .await
            .contains("TRUNCATE is refused")
    );
    assert!(
        refused("TRUNCATE pool_events")
            .await
            .contains("TRUNCATE is refused")
    );
    let e = refused("SET ROLE pool_pruner").await;
    assert!(e.contains("permission denied"), "{e}");
    let e = refused("SELECT * FROM prune_audit_logs(interval '1 day', 10)").await;
    assert!(
        e.contains("permission denied"),
        "only the migration's user may prune: {e}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM agent_events WHERE reason = 'old'").await,
        3,
        "nothing was deleted"
    );
    // The pool's own pass (the migration's user) prunes through the function.
    let pruned = db.store().await.prune(&Retention::default()).await.unwrap();
    assert_eq!((pruned.agent_events, pruned.pool_events), (3, 1));
    drop(app);
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON agent_events, pool_events FROM {app_role}; DROP ROLE {app_role};"
        ))
        .await
        .unwrap();
}
