//! Parking and waking a service, as Railway does it: `deploymentRemove` (what `railway down`
//! sends) takes the deployment down and keeps the service's volume, variables and domain;
//! `serviceInstanceDeployV2` wakes it with one new deployment that finds `/data` as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{WORKSPACE, client, eventually, sim};
use http_body_util::{BodyExt, Full};
use railway_api::{
    DeploymentId, DeploymentStatus, EnvironmentId, ErrorKind, InstanceSettings, NewProject, NewService,
    ProjectId, RailwayClient, ServiceId, WorkspaceId,
};
use railway_sim::{DeployRateLimit, SimConfig, SimHandle};

/// Railway as it is, with short timings, minus the passing refusals of a brand-new service
/// (other tests cover those): these tests are about what happens after it runs.
fn quick() -> SimConfig {
    let mut config = SimConfig::quick();
    config.quirks.fresh_service_window = Duration::ZERO;
    config.quirks.fresh_limits_window = Duration::ZERO;
    config.quirks.domain_create_failure = 0.0;
    config
}

struct Parkable {
    project: ProjectId,
    environment: EnvironmentId,
    service: ServiceId,
    domain: String,
}

/// A project with a service, a volume on `/data`, a variable and a domain, deployed once from
/// an image pinned by digest, and running.
async fn running_service(sim: &SimHandle, client: &RailwayClient, name: &str) -> Parkable {
    let project = client
        .create_project(&NewProject {
            name: name.into(),
            description: "parking test".into(),
            workspace_id: WorkspaceId::new(WORKSPACE),
            default_environment_name: Some("production".into()),
        })
        .await
        .unwrap();
    let environment = project.environments[0].id.clone();
    let service = client
        .create_service(&NewService {
            project_id: project.id.clone(),
            environment_id: environment.clone(),
            name: "agent".into(),
            registry_credentials: None,
        })
        .await
        .unwrap()
        .id;
    let variables = BTreeMap::from([("GATEWAY_TOKEN".to_string(), "kept".to_string())]);
    client
        .upsert_variables(&project.id, &environment, &service, &variables, true)
        .await
        .unwrap();
    client
        .create_volume(&project.id, &environment, &service, "/data")
        .await
        .unwrap();
    let domain = client
        .create_service_domain(&environment, &service, Some(8080))
        .await
        .unwrap()
        .domain;
    let digest = sim.image_digest("nginx:1.27-alpine");
    client
        .update_service_instance(
            &environment,
            &service,
            &InstanceSettings {
                image: Some(format!("nginx@{digest}")),
                ..InstanceSettings::default()
            },
        )
        .await
        .unwrap();
    let parkable = Parkable {
        project: project.id,
        environment,
        service,
        domain,
    };
    wait_for_success(client, &parkable).await;
    parkable
}

async fn deployments(client: &RailwayClient, p: &Parkable) -> Vec<railway_api::Deployment> {
    client
        .service_deployments(&p.project, &p.environment, &p.service)
        .await
        .unwrap()
}

async fn wait_for_success(client: &RailwayClient, p: &Parkable) -> DeploymentId {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let newest = deployments(client, p).await.into_iter().next();
        if let Some(d) = newest
            && d.status == DeploymentStatus::Success
        {
            return d.id;
        }
        assert!(tokio::time::Instant::now() < deadline, "no SUCCESS within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the service's container serves from `/data/sentinel` (`None`: nothing answers).
async fn sentinel(sim: &SimHandle, domain: &str) -> Option<String> {
    let http = railway_api::https::client(&railway_api::https::ClientOptions::new(Duration::from_secs(5), 1))
        .unwrap();
    let uri = format!("{}/agents/{domain}/sentinel", sim.base_url());
    let request = hyper::Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    let response = http.request(request).await.unwrap();
    let ok = response.status().is_success();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    ok.then(|| String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_removed_deployment_keeps_volume_variables_and_domain_and_one_deploy_wakes_it() {
    let sim = sim(quick()).await;
    let client = client(&sim);
    let p = running_service(&sim, &client, "convos-agent-park").await;
    let running = wait_for_success(&client, &p).await;
    let volumes_before = client.project_volumes(&p.project).await.unwrap();
    let written = sentinel(&sim, &p.domain)
        .await
        .expect("the running container serves its sentinel");

    client.remove_deployment(&running).await.unwrap();

    let after = deployments(&client, &p).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].status, DeploymentStatus::Removed);
    assert_eq!(
        sentinel(&sim, &p.domain).await,
        None,
        "a parked service answers nothing"
    );
    // Nothing runs, so nothing is used: the compute counter stands still.
    let used = sim.compute_seconds();
    assert!(
        !eventually(Duration::from_millis(300), || sim.compute_seconds() > used).await,
        "a removed deployment kept using compute"
    );
    assert_eq!(sim.running_deployments(), 0);
    // A second removal changes nothing.
    client.remove_deployment(&running).await.unwrap();

    let woken = client.deploy_service(&p.environment, &p.service).await.unwrap();
    assert_eq!(wait_for_success(&client, &p).await, woken);
    let all = deployments(&client, &p).await;
    assert_eq!(all.len(), 2, "exactly one deployment per wake");
    assert_eq!(
        all.iter()
            .filter(|d| d.status == DeploymentStatus::Success)
            .count(),
        1
    );
    assert_eq!(client.project_volumes(&p.project).await.unwrap(), volumes_before);
    assert_eq!(
        client
            .service_domains(&p.project, &p.environment, &p.service)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.domain)
            .collect::<Vec<_>>(),
        vec![p.domain.clone()]
    );
    let variables = client
        .service_variables(&p.project, &p.environment, &p.service)
        .await
        .unwrap();
    assert_eq!(variables.get("GATEWAY_TOKEN").map(String::as_str), Some("kept"));
    assert_eq!(sentinel(&sim, &p.domain).await, Some(written), "/data survived");
    let volume = &volumes_before[0].id;
    assert!(sim.volume_file(volume.as_str(), "sentinel").is_some());
}

#[tokio::test]
async fn a_removed_deployment_cannot_be_redeployed_unless_the_quirk_is_off() {
    for refused in [true, false] {
        let mut config = quick();
        config.quirks.redeploy_of_removed_refused = refused;
        let sim = sim(config).await;
        let client = client(&sim);
        let p = running_service(&sim, &client, "convos-agent-redeploy").await;
        let running = wait_for_success(&client, &p).await;
        client.remove_deployment(&running).await.unwrap();
        let answer = client.redeploy(&running, true).await;
        if refused {
            let e = answer.expect_err("a removed deployment was redeployed");
            assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
            assert_eq!(deployments(&client, &p).await.len(), 1, "nothing was deployed");
        } else {
            answer.unwrap();
            assert_eq!(deployments(&client, &p).await.len(), 2);
        }
    }
}

#[tokio::test]
async fn a_stopped_deployment_stays_success_but_serves_and_costs_nothing() {
    let sim = sim(quick()).await;
    let client = client(&sim);
    let p = running_service(&sim, &client, "convos-agent-stop").await;
    let running = wait_for_success(&client, &p).await;
    client.stop_deployment(&running).await.unwrap();
    assert_eq!(
        deployments(&client, &p).await[0].status,
        DeploymentStatus::Success
    );
    assert_eq!(sentinel(&sim, &p.domain).await, None);
    assert_eq!(sim.running_deployments(), 0);
}

#[tokio::test]
async fn bulk_wakes_beyond_the_deploy_rate_limit_are_throttled() {
    let mut config = quick();
    config.quirks.project_create_interval = None;
    let sim = sim(config).await;
    let client = client(&sim);
    let mut parked = Vec::new();
    for i in 0..3 {
        let p = running_service(&sim, &client, &format!("convos-agent-bulk{i}")).await;
        let running = wait_for_success(&client, &p).await;
        client.remove_deployment(&running).await.unwrap();
        parked.push(p);
    }
    let mut quirks = sim.quirks();
    quirks.deploy_rate_limit = Some(DeployRateLimit {
        max: 2,
        per: Duration::from_secs(60),
    });
    sim.set_quirks(quirks);
    let mut answers = Vec::new();
    for p in &parked {
        answers.push(client.deploy_service(&p.environment, &p.service).await);
    }
    assert!(answers[0].is_ok() && answers[1].is_ok());
    let e = answers[2].as_ref().expect_err("the third wake within the window");
    assert!(matches!(e.kind(), ErrorKind::Throttled { .. }), "{e}");
    assert_eq!(
        deployments(&client, &parked[2]).await.len(),
        1,
        "a throttled wake deploys nothing"
    );
}
