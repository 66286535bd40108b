//! The client against Railway as it is: the live API's undocumented behaviours, each modelled
//! by the simulator (on by default), and what the client makes of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{WORKSPACE, config_for, sim};
use railway_api::{
    Delivery, ErrorKind, InstanceSettings, NewProject, NewService, ProjectId, ProjectPresence, RailwayClient,
    RailwayError, ThrottleScope, WorkspaceId,
};
use railway_sim::{ProjectThrottleScope, Quirks, SimConfig};

fn project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        description: "quirks".into(),
        workspace_id: WorkspaceId::new(WORKSPACE),
        default_environment_name: Some("staging".into()),
    }
}

fn with_tokens(quirks: Quirks, tokens: &[&str]) -> SimConfig {
    let mut config = SimConfig {
        quirks,
        ..SimConfig::default()
    };
    for t in tokens {
        config.tokens.insert(t.to_string(), vec![WORKSPACE.into()]);
    }
    config
}

/// Must show: a 5 s per-workspace create throttle with 3 tokens costs at most 1.5
/// `projectCreate` attempts per project created. The client sends one request per workspace
/// at the moment the throttle opens, and learns the interval from Railway's message.
#[tokio::test]
async fn a_workspace_throttle_costs_at_most_one_and_a_half_attempts_per_project() {
    let quirks = Quirks {
        project_create_interval: Some(Duration::from_secs(5)),
        ..Quirks::quick()
    };
    let sim = sim(with_tokens(quirks, &["token-a", "token-b", "token-c"])).await;
    let mut config = config_for(&sim, &["token-a", "token-b", "token-c"]);
    config.project_create_max_wait = Duration::from_secs(30);
    let client = RailwayClient::new(config).unwrap();
    let creations: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                loop {
                    match client.create_project(&project(&format!("p{i}"))).await {
                        Ok(p) => return p,
                        // The caller (the saga) waits out a throttle and asks again.
                        Err(e) if e.throttled_for().is_some() => {
                            tokio::time::sleep(e.throttled_for().unwrap()).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for c in creations {
        c.await.unwrap();
    }
    let attempts = sim.counters().requests["projectCreate"];
    assert_eq!(sim.snapshot().live_projects().len(), 4);
    assert!(
        attempts as f64 <= 1.5 * 4.0,
        "{attempts} projectCreate attempts for 4 projects"
    );
}

#[tokio::test]
async fn rotating_tokens_helps_only_where_railway_throttles_per_user() {
    let quirks = Quirks {
        project_create_interval: Some(Duration::from_secs(30)),
        project_create_scope: ProjectThrottleScope::User,
        ..Quirks::quick()
    };
    let sim = sim(with_tokens(quirks, &["token-a", "token-b"])).await;
    let client = RailwayClient::new(config_for(&sim, &["token-a", "token-b"])).unwrap();
    client.create_project(&project("one")).await.unwrap();
    // "Only one project can be created per user every 30s": the next token goes at once.
    client.create_project(&project("two")).await.unwrap();
    assert_eq!(sim.snapshot().live_projects().len(), 2);
    // Both users are throttled now: each token is tried once, then the throttle is the answer.
    let err = client.create_project(&project("three")).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Throttled { scope: ThrottleScope::User, retry_after } if retry_after == Duration::from_secs(30)),
        "{err:?}"
    );
    assert_eq!(err.delivery(), Delivery::Refused);
    assert_eq!(
        sim.counters().requests["projectCreate"],
        4,
        "two created, two refused"
    );
}

#[tokio::test]
async fn an_id_left_out_of_a_batch_is_not_gone_and_a_read_of_its_own_says_so() {
    let quirks = Quirks {
        batch_omission: 1.0,
        ..Quirks::quick()
    };
    let sim = sim(with_tokens(quirks, &[])).await;
    let seeded = sim.seed_projects(3, "staging", "ghcr.io/xmtplabs/convos-agent:staging");
    let client = RailwayClient::new(config_for(&sim, &["sim-token"])).unwrap();
    let ids: Vec<ProjectId> = seeded.iter().map(|s| ProjectId::new(&s.project_id)).collect();
    let read = client.projects_status(&ids).await;
    assert!(read.projects.is_empty());
    assert_eq!(read.omitted.len(), 3, "left out: unread, not gone");
    assert!(read.failed.is_empty());
    for id in &ids {
        assert_eq!(
            client.project_presence(id).await.unwrap(),
            ProjectPresence::Exists
        );
    }
}

#[tokio::test]
async fn a_deleted_project_is_deleted_then_not_found_and_a_second_delete_is_not_authorized() {
    let sim = sim(SimConfig::quick()).await;
    let (client, deleter) = RailwayClient::with_project_deleter(config_for(&sim, &["sim-token"])).unwrap();
    let p = client.create_project(&project("doomed")).await.unwrap();
    deleter.delete_project(&p.id).await.unwrap();
    assert_eq!(
        client.project_presence(&p.id).await.unwrap(),
        ProjectPresence::Deleted
    );
    let again = deleter.delete_project(&p.id).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Unauthorized, "{again:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.project_presence(&p.id).await.unwrap() != ProjectPresence::NotFound {
        assert!(tokio::time::Instant::now() < deadline, "never reported gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_brand_new_service_refuses_its_volume_with_problem_processing_request_and_a_trace_id() {
    let quirks = Quirks {
        fresh_service_window: Duration::from_secs(30),
        ..Quirks::quick()
    };
    let sim = sim(with_tokens(quirks, &[])).await;
    let client = RailwayClient::new(config_for(&sim, &["sim-token"])).unwrap();
    let p = client.create_project(&project("fresh")).await.unwrap();
    let env = p.environments[0].id.clone();
    let service = client
        .create_service(&NewService {
            project_id: p.id.clone(),
            environment_id: env.clone(),
            name: "agent".into(),
            registry_credentials: None,
        })
        .await
        .unwrap();
    let err = client
        .create_volume(&p.id, &env, &service.id, "/data")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err:?}");
    assert_eq!(err.delivery(), Delivery::MayHaveApplied);
    assert!(
        err.trace_id().is_some(),
        "the gateway's trace id is kept: {err:?}"
    );
    let RailwayError::Api { errors, .. } = &err else {
        panic!()
    };
    assert_eq!(errors[0].code, None, "no code at all");
    let domain = client
        .create_service_domain(&env, &service.id, Some(8080))
        .await
        .unwrap_err();
    assert_eq!(
        domain.kind(),
        ErrorKind::Transient,
        "ServiceInstance not found: {domain:?}"
    );
}

/// `serviceInstanceUpdate` that changes the image deploys by itself; a no-op does not.
#[tokio::test]
async fn an_instance_update_that_changes_the_image_deploys_by_itself() {
    for self_deploys in [true, false] {
        let quirks = Quirks {
            instance_update_deploys: self_deploys,
            ..Quirks::quick()
        };
        let sim = sim(with_tokens(quirks, &[])).await;
        let client = RailwayClient::new(config_for(&sim, &["sim-token"])).unwrap();
        let p = client.create_project(&project("self-deploy")).await.unwrap();
        let env = p.environments[0].id.clone();
        let service = client
            .create_service(&NewService {
                project_id: p.id.clone(),
                environment_id: env.clone(),
                name: "agent".into(),
                registry_credentials: None,
            })
            .await
            .unwrap();
        let settings = InstanceSettings {
            image: Some("nginx:1.27".into()),
            ..InstanceSettings::default()
        };
        client
            .update_service_instance(&env, &service.id, &settings)
            .await
            .unwrap();
        client
            .update_service_instance(&env, &service.id, &settings)
            .await
            .unwrap();
        let deployments = client
            .service_deployments(&p.id, &env, &service.id)
            .await
            .unwrap();
        assert_eq!(
            deployments.len(),
            usize::from(self_deploys),
            "self-deploying mode {self_deploys}: the first update deploys, the no-op does not"
        );
    }
}

/// A moving tag moves only for `serviceInstanceDeploy(latestCommit: true)`; every other
/// deploy of an instance that ran the tag before replays the digest it pulled then.
#[tokio::test]
async fn only_a_deploy_of_the_latest_source_pulls_a_moved_tag() {
    let sim = sim(SimConfig::quick()).await;
    let client = RailwayClient::new(config_for(&sim, &["sim-token"])).unwrap();
    let image = "nginx:staging";
    let p = client.create_project(&project("moving")).await.unwrap();
    let env = p.environments[0].id.clone();
    let service = client
        .create_service(&NewService {
            project_id: p.id.clone(),
            environment_id: env.clone(),
            name: "agent".into(),
            registry_credentials: None,
        })
        .await
        .unwrap();
    client
        .update_service_instance(
            &env,
            &service.id,
            &InstanceSettings {
                image: Some(image.into()),
                ..InstanceSettings::default()
            },
        )
        .await
        .unwrap();
    let first_digest = sim.image_digest(image);
    let new_digest = sim.push_image(image);
    assert_ne!(first_digest, new_digest);
    let digest_of_latest = || {
        let snapshot = sim.snapshot();
        let mut deployments = snapshot.deployments_of(service.id.as_str());
        deployments.sort_by_key(|d| d.id.clone());
        deployments.last().and_then(|d| d.image_digest.clone())
    };
    let v2 = client.deploy_service(&env, &service.id).await.unwrap();
    assert_eq!(
        digest_of_latest(),
        Some(first_digest.clone()),
        "V2 replays the old digest"
    );
    client.redeploy(&v2, false).await.unwrap();
    assert_eq!(
        digest_of_latest(),
        Some(first_digest),
        "a redeploy replays it too"
    );
    client.deploy_latest_source(&env, &service.id).await.unwrap();
    assert_eq!(
        digest_of_latest(),
        Some(new_digest),
        "latestCommit pulls the tag anew"
    );
}
