//! Every error kind, against the simulator, and what each says about delivery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{WORKSPACE, client, config_for, sim};
use railway_api::{Delivery, ErrorKind, NewProject, RailwayClient, RailwayError, WorkspaceId};
use railway_sim::{Faults, OperationFaults, RateLimitStorm, SimConfig};

fn project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        description: "test".into(),
        workspace_id: WorkspaceId::new(WORKSPACE),
        default_environment_name: None,
    }
}

fn faults_for(operation: &str, f: OperationFaults) -> Faults {
    Faults {
        operations: BTreeMap::from([(operation.to_string(), f)]),
        ..Faults::default()
    }
}

#[tokio::test]
async fn nothing_listening_is_not_sent() {
    let sim = sim(SimConfig::quick()).await;
    let mut config = config_for(&sim, &["sim-token"]);
    config.endpoint = "http://127.0.0.1:1/graphql/v2".into();
    config.max_attempts = 2;
    let err = RailwayClient::new(config)
        .unwrap()
        .token_workspaces()
        .await
        .unwrap_err();
    assert!(matches!(err, RailwayError::NotSent { .. }), "{err:?}");
    assert_eq!(err.delivery(), Delivery::NotSent);
}

#[tokio::test]
async fn an_unknown_token_is_unauthorized() {
    let sim = sim(SimConfig::quick()).await;
    let client = RailwayClient::new(config_for(&sim, &["wrong-token"])).unwrap();
    let err = client.token_workspaces().await.unwrap_err();
    assert!(
        matches!(&err, RailwayError::Api { kind: ErrorKind::Unauthorized, errors, .. } if errors[0].message == "Not Authorized"),
        "{err:?}"
    );
    assert_eq!(err.delivery(), Delivery::Refused);
}

#[tokio::test]
async fn a_graphql_error_inside_http_200_is_classified_by_its_message_not_its_code() {
    let sim = sim(SimConfig::quick()).await;
    let err = client(&sim)
        .create_project(&project("a-name-that-is-much-longer-than-thirty-two-characters"))
        .await
        .unwrap_err();
    let RailwayError::Api { kind, errors, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(errors[0].message.contains("32 characters"), "{errors:?}");
    assert_eq!(errors[0].path, vec!["projectCreate".to_string()]);
    // As on the live API, the code says nothing; the message says it is invalid.
    assert_eq!(errors[0].code.as_deref(), Some("INTERNAL_SERVER_ERROR"));
    assert_eq!(*kind, ErrorKind::Invalid);
    assert_eq!(err.delivery(), Delivery::Refused);
    assert!(sim.snapshot().live_projects().is_empty());
}

#[tokio::test]
async fn an_unknown_message_may_have_applied_and_a_query_is_retried() {
    let sim = sim(SimConfig::quick()).await;
    sim.set_faults(faults_for(
        "apiToken",
        OperationFaults {
            graphql_error: 1.0,
            ..Default::default()
        },
    ));
    let client = client(&sim);
    let err = client.token_workspaces().await.unwrap_err();
    let RailwayError::Api { kind, errors, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(errors[0].code.as_deref(), Some("INTERNAL_SERVER_ERROR"));
    assert_eq!(*kind, ErrorKind::Unknown, "a message nobody knows");
    assert_eq!(err.delivery(), Delivery::MayHaveApplied);
    assert_eq!(
        sim.counters().requests["apiToken"],
        4,
        "a query is tried max_attempts times"
    );
}

#[tokio::test]
async fn a_5xx_is_an_http_error_and_a_mutation_is_not_retried() {
    let sim = sim(SimConfig::quick()).await;
    sim.set_faults(faults_for(
        "projectCreate",
        OperationFaults {
            server_error: 1.0,
            ..Default::default()
        },
    ));
    let err = client(&sim).create_project(&project("p1")).await.unwrap_err();
    assert!(
        matches!(&err, RailwayError::Http { status: 503, body_excerpt } if body_excerpt.contains("upstream")),
        "{err:?}"
    );
    assert_eq!(err.delivery(), Delivery::MayHaveApplied);
    assert_eq!(
        sim.counters().requests["projectCreate"],
        1,
        "a mutation that may have applied is never repeated"
    );
}

#[tokio::test]
async fn a_timeout_after_applying_is_reported_as_may_have_applied() {
    let sim = sim(SimConfig::quick()).await;
    sim.set_faults(faults_for(
        "projectCreate",
        OperationFaults {
            timeout_after_apply: 1.0,
            ..Default::default()
        },
    ));
    let mut config = config_for(&sim, &["sim-token"]);
    config.request_timeout = Duration::from_millis(300);
    let err = RailwayClient::new(config)
        .unwrap()
        .create_project(&project("p1"))
        .await
        .unwrap_err();
    assert!(matches!(err, RailwayError::Timeout(_)), "{err:?}");
    assert_eq!(err.delivery(), Delivery::MayHaveApplied);
    assert_eq!(sim.snapshot().live_projects().len(), 1, "it was applied");
    assert_eq!(sim.counters().requests["projectCreate"], 1);
}

#[tokio::test]
async fn an_html_429_from_the_edge_is_rate_limited_with_its_retry_after() {
    let sim = sim(SimConfig::quick()).await;
    sim.set_faults(Faults {
        storm: Some(RateLimitStorm {
            retry_after_secs: 1,
            html: true,
            duration: Duration::from_millis(500),
        }),
        ..Faults::default()
    });
    let mut config = config_for(&sim, &["sim-token"]);
    config.max_attempts = 1;
    let client = RailwayClient::new(config).unwrap();
    let err = client.token_workspaces().await.unwrap_err();
    assert!(
        matches!(err, RailwayError::RateLimited { retry_after, edge: true } if retry_after == Duration::from_secs(1)),
        "{err:?}"
    );
    assert_eq!(err.delivery(), Delivery::Refused);
    assert_eq!(client.budget().rate_limited_total, 1);
    // After the pause a retrying client gets through.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(client.token_workspaces().await.is_ok());
}

#[tokio::test]
async fn a_json_429_is_rate_limited_and_a_mutation_is_retried_after_it() {
    let sim = sim(SimConfig::quick()).await;
    sim.set_faults(Faults {
        storm: Some(RateLimitStorm {
            retry_after_secs: 1,
            html: false,
            duration: Duration::from_millis(300),
        }),
        ..Faults::default()
    });
    let client = client(&sim);
    // The 429 provably did not apply, so even a mutation is repeated once the pause is over.
    let created = client.create_project(&project("after-storm")).await.unwrap();
    assert_eq!(sim.snapshot().live_projects().len(), 1);
    assert_eq!(sim.snapshot().live_projects()[0].id, created.id.as_str());
    assert!(client.budget().rate_limited_total >= 1);
    let stats = client.stats();
    assert!(
        stats
            .by_operation
            .contains_key(&("projectCreate".to_string(), "rate_limited".to_string()))
    );
}

#[tokio::test]
async fn tokens_never_appear_in_debug_output_or_errors() {
    let sim = sim(SimConfig::quick()).await;
    let client = RailwayClient::new(config_for(&sim, &["very-secret-token"])).unwrap();
    assert!(!format!("{client:?}").contains("very-secret-token"));
    let err = client.token_workspaces().await.unwrap_err();
    assert!(!format!("{err:?} {err}").contains("very-secret-token"));
}

#[tokio::test]
async fn every_request_carries_a_query_string() {
    let sim = sim(SimConfig::quick()).await;
    let client = client(&sim);
    for _ in 0..20 {
        client.token_workspaces().await.unwrap();
    }
    let counters = sim.counters();
    assert_eq!(counters.requests_total, 20);
    assert_eq!(counters.without_query_string, 0);
}
