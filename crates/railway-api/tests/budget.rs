//! The request budget against the simulator's own rate limiter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{config_for, sim};
use railway_api::{RailwayClient, RailwayError};
use railway_sim::{Faults, RateLimitStorm, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_from_fifty_tasks_stay_within_fifty_per_second() {
    let sim = sim(SimConfig::quick()).await; // Pro limits: 50/s, 10,000/h
    // The count must be exact, so no request may time out and be sent again: on a loaded
    // machine a 5 s timeout did (1,022 requests seen), which says nothing about the budget.
    let mut config = config_for(&sim, &["sim-token"]);
    config.request_timeout = Duration::from_secs(120);
    let client = RailwayClient::new(config).unwrap();
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
    let sim = sim(SimConfig::quick()).await;
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

/// `cargo xtask bench claim` got no first tick: with the simulator's hourly limit off, every
/// answer said `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset: 3600`, and the client
/// paused for an hour. With the limit off there are no rate-limit headers; with it on, the
/// headers count the window and the client goes on.
#[tokio::test]
async fn the_simulator_with_its_hourly_limit_off_sends_no_rate_limit_headers_and_nothing_pauses() {
    let mut sim_config = SimConfig::quick();
    sim_config.limits.requests_per_hour = 0;
    let sim = sim(sim_config).await;
    let client = RailwayClient::new(config_for(&sim, &["sim-token"])).unwrap();
    for _ in 0..3 {
        client.token_workspaces().await.unwrap();
    }
    let budget = client.budget();
    assert_eq!(budget.paused_for, None, "{budget:?}");
    assert_eq!(
        budget.server_remaining, None,
        "no X-RateLimit-Remaining: {budget:?}"
    );

    let mut sim_config = SimConfig::quick();
    sim_config.limits.requests_per_hour = 100;
    let sim = self::sim(sim_config).await;
    let client = RailwayClient::new(config_for(&sim, &["sim-token"])).unwrap();
    for _ in 0..3 {
        client.token_workspaces().await.unwrap();
    }
    let budget = client.budget();
    assert_eq!(budget.paused_for, None, "{budget:?}");
    assert_eq!(budget.server_remaining, Some(97), "{budget:?}");
}
