//! Lists a workspace's projects: a Railway client embedded in a program of its own, pointed
//! at a simulator started in-process (point it at [`railway_api::DEFAULT_ENDPOINT`] with a
//! real workspace token to list a real workspace).
//!
//! `cargo run -p railway-api --example list_projects`

use railway_api::{ClientConfig, RailwayClient, WorkspaceId};
use secrecy::SecretString;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A simulated Railway with three projects in the workspace `ws-sim`, whose token is
    // `sim-token`.
    let sim = railway_sim::start(railway_sim::SimConfig::quick()).await?;
    sim.seed_projects(3, "staging", "nginx:1.27");

    let token = SecretString::from("sim-token".to_string());
    let client = RailwayClient::new(ClientConfig::new(sim.graphql_url(), vec![token]))?;

    // Every page of the workspace's projects, in one call.
    let projects = client.workspace_projects(&WorkspaceId::new("ws-sim")).await?;
    println!("{} projects in ws-sim:", projects.len());
    for project in &projects {
        println!(
            "  {} {} (created {})",
            project.id,
            project.name,
            project.created_at.to_rfc3339()
        );
    }
    // What that cost against Railway's budget.
    println!("requests sent: {}", client.budget().sent_total);
    Ok(())
}
