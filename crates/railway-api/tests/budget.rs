//! The request budget against the simulator's own rate limiter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{WORKSPACE, config_for, sim};
use railway_api::{NewProject, RailwayClient, RailwayError};
use railway_sim::{Faults, Limits, RateLimitStorm, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_from_fifty_tasks_stay_within_fifty_per_second() {
    let sim = sim(SimConfig::default()).await; // Pro limits: 50/s, 10,000/h
    let client = RailwayClient::new(config_for(&sim, &["sim-token"])).unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    client.token_workspaces().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let counters = sim.counters();
    assert_eq!(counters.requests_total, 1000);
    assert_eq!(counters.rate_limited, 0, "no 429s");
    assert!(
        counters.max_requests_in_one_second <= 50,
        "the simulator saw {} requests in one second",
        counters.max_requests_in_one_second
    );
}

#[tokio::test]
async fn after_a_429_with_retry_after_two_nothing_is_sent_for_two_seconds() {
    let sim = sim(SimConfig::default()).await;
    sim.set_faults(Faults {
        storm: Some(RateLimitStorm {
            retry_after_secs: 2,
            html: false,
            duration: Duration::from_millis(100),
        }),
        ..Faults::default()
    });
    let mut config = config_for(&sim, &["sim-token"]);
    config.max_attempts = 1;
    let client = RailwayClient::new(config).unwrap();
    let start = tokio::time::Instant::now();
    let err = client.token_workspaces().await.unwrap_err();
    assert!(matches!(err, RailwayError::RateLimited { .. }));
    // Other tasks try meanwhile; none gets a request out before the pause ends.
    let sent_before = sim.counters().requests_total;
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.token_workspaces().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(
        sim.counters().requests_total,
        sent_before,
        "nothing sent during the pause"
    );
    for t in waiting {
        t.await.unwrap().unwrap();
    }
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn a_project_create_throttle_on_one_token_moves_creation_to_the_next() {
    let mut config = SimConfig::default();
    config.tokens.insert("token-a".into(), vec![WORKSPACE.into()]);
    config.tokens.insert("token-b".into(), vec![WORKSPACE.into()]);
    config.limits = Limits {
        project_create_interval: Duration::from_secs(30),
        ..Limits::default()
    };
    let sim = sim(config).await;
    let client = Arc::new(RailwayClient::new(config_for(&sim, &["token-a", "token-b"])).unwrap());
    let project = |n: &str| NewProject {
        name: n.into(),
        description: "t".into(),
        workspace_id: WORKSPACE.into(),
        default_environment_name: None,
    };
    client.create_project(&project("one")).await.unwrap();
    // token-a is now throttled for 30 s; the next creation is throttled once, then goes
    // through token-b.
    client.create_project(&project("two")).await.unwrap();
    assert_eq!(sim.snapshot().live_projects().len(), 2);
    let stats = client.stats();
    assert_eq!(
        stats.by_operation.get(&("projectCreate".into(), "ok".into())),
        Some(&2)
    );
    // Both tokens throttled on Railway: each is tried once, then a clear throttle error.
    let sent = sim.counters().requests_total;
    let err = client.create_project(&project("three")).await.unwrap_err();
    assert!(
        matches!(err, RailwayError::Throttled { retry_after, .. } if retry_after > Duration::from_secs(20)),
        "{err:?}"
    );
    assert_eq!(sim.counters().requests_total, sent + 2, "one try per token");
    // Now both rest: the next creation sends nothing at all.
    let err = client.create_project(&project("four")).await.unwrap_err();
    assert!(matches!(err, RailwayError::Throttled { .. }), "{err:?}");
    assert_eq!(
        sim.counters().requests_total,
        sent + 2,
        "nothing sent while every token rests"
    );
}
