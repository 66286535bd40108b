//! Retention against a real PostgreSQL: old rows go in batches, recent ones stay, and the audit
//! logs stay append-only for everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_store::testing::{SeedAgent, TestDatabase};
use pool_store::{MIN_EVENT_RETENTION, Retention};

fn seed(i: usize) -> SeedAgent {
    SeedAgent {
        id: format!("retained{i:04}"),
        project_id: format!("prj-{i}"),
        environment_id: format!("env-{i}"),
        service_id: format!("svc-{i}"),
        domain: format!("agent-{i}.up.railway.app"),
        token: format!("token-{i}"),
    }
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
