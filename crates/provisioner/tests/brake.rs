//! The creation brake: after too many failed creations in a row creation stops, but for a
//! probe now and then; the first success releases it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_provisioner::{CreationDemand, CreationLimit, ProvisionError};
use railway_sim::{Faults, OperationFaults};

fn projects_refused() -> Faults {
    Faults {
        operations: BTreeMap::from([(
            "projectCreate".to_string(),
            OperationFaults {
                refused: 1.0,
                ..OperationFaults::default()
            },
        )]),
        ..Faults::default()
    }
}

#[tokio::test]
async fn the_brake_stops_creations_after_the_limit_and_resumes_after_a_successful_probe() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.create_failure_limit = 3).await;
    let mut config = provisioner_config(&pool.sim, None);
    config.brake_probe_interval = Duration::from_millis(800);
    let provisioner = pool.provisioner(config);
    pool.sim.set_faults(projects_refused());

    // Three creations fail outright (Railway refuses the project): the brake engages.
    let outcomes = provisioner
        .start_creations(CreationDemand::UpTo(3))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(outcomes.iter().all(Result::is_err), "{outcomes:?}");
    let brake = pool.store.brake().await.unwrap();
    assert!(brake.engaged(), "{brake:?}");
    assert_eq!(brake.consecutive_failures, 3);
    assert!(
        brake.last_failure.as_deref().unwrap().contains("step project"),
        "{brake:?}"
    );

    // Now an operator's request is refused, and the tick gets one probe at most.
    let refused = provisioner
        .start_creations(CreationDemand::Exactly(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            ProvisionError::Capacity(CreationLimit::Brake { failures: 3, .. })
        ),
        "{refused:?}"
    );
    let probe = provisioner
        .start_creations(CreationDemand::UpTo(5))
        .await
        .unwrap();
    assert_eq!(probe.ids.len(), 1, "one probe");
    assert!(matches!(probe.limited_by, Some(CreationLimit::Brake { .. })));
    assert!(probe.finished().await[0].is_err(), "the probe fails too");
    let again = provisioner
        .start_creations(CreationDemand::UpTo(5))
        .await
        .unwrap();
    assert!(again.ids.is_empty(), "no second probe within the interval");

    // Railway works again: after the interval a probe goes and succeeds; creation resumes.
    pool.sim.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(900)).await;
    let probe = provisioner
        .start_creations(CreationDemand::UpTo(5))
        .await
        .unwrap();
    assert_eq!(probe.ids.len(), 1);
    assert!(probe.finished().await[0].is_ok());
    let brake = pool.store.brake().await.unwrap();
    assert!(!brake.engaged() && brake.consecutive_failures == 0, "{brake:?}");
    let free = provisioner
        .start_creations(CreationDemand::UpTo(2))
        .await
        .unwrap();
    assert_eq!(free.ids.len(), 2, "creation runs freely again");
    free.finished().await;

    let kinds: Vec<String> = pool
        .store
        .pool_events(20)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"brake_engaged".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"brake_released".to_string()), "{kinds:?}");
    pool.assert_nothing_leaked().await;
}

#[tokio::test]
async fn an_operator_releases_the_brake_and_a_paused_pool_creates_nothing() {
    let pool = TestPool::start(unthrottled()).await;
    pool.set_settings(|s| s.create_failure_limit = 1).await;
    pool.sim.set_faults(projects_refused());
    assert!(pool.create_one().await.is_err());
    assert!(pool.store.brake().await.unwrap().engaged());
    assert!(pool.store.release_brake("operator").await.unwrap());
    assert!(!pool.store.brake().await.unwrap().engaged());
    pool.sim.set_faults(Faults::default());

    pool.set_settings(|s| s.paused = true).await;
    let refused = pool
        .provisioner
        .start_creations(CreationDemand::Exactly(1))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ProvisionError::Capacity(CreationLimit::Paused)),
        "{refused:?}"
    );
    let none = pool
        .provisioner
        .start_creations(CreationDemand::UpTo(3))
        .await
        .unwrap();
    assert!(none.ids.is_empty());
}
