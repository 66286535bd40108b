//! A batched status read: the latest deployment of every service of many projects, 50
//! projects per request, against a simulator started in-process.
//!
//! `cargo run -p railway-api --example status_read`

use railway_api::{ClientConfig, ProjectId, RailwayClient};
use secrecy::SecretString;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = railway_sim::SimConfig::quick();
    // Only the unknown id is left out: the simulator's random omission of readable ids
    // (`Quirks::batch_omission`, 2% per id in `quick`) would change this output from run to run
    // (its test failed about one run in seventeen).
    config.quirks.batch_omission = 0.0;
    let sim = railway_sim::start(config).await?;
    let seeded = sim.seed_projects(3, "staging", "nginx:1.27");

    let token = SecretString::from("sim-token".to_string());
    let client = RailwayClient::new(ClientConfig::new(sim.graphql_url(), vec![token]))?;

    // The seeded projects and one that does not exist: Railway leaves an id it cannot read
    // out of the answer instead of failing the whole read.
    let mut ids: Vec<ProjectId> = seeded
        .iter()
        .map(|p| ProjectId::new(p.project_id.clone()))
        .collect();
    ids.push(ProjectId::new("project-that-does-not-exist"));

    let read = client.projects_status(&ids).await;
    println!(
        "{} projects read in {} request(s)",
        read.projects.len(),
        read.requests
    );
    for (id, project) in &read.projects {
        for service in &project.services {
            let status = service
                .latest_deployment
                .as_ref()
                .map_or("no deployment", |d| d.status.as_str());
            println!(
                "  {id} {} in {}: {status}",
                service.service_name, service.environment_name
            );
        }
    }
    // Unknown this time, not gone: a caller keeps what it knew about these.
    println!(
        "omitted: {:?}",
        read.omitted.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    println!(
        "failed: {:?}",
        read.failed.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    Ok(())
}
