//! One agent's whole life, embedded: create it on a simulated Railway (project → environment
//! → service → … → one deploy), then kill it — its project is deleted through the guard and
//! its row is archived.
//!
//! Needs a PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! the example works in a fresh database of its own, dropped at the end.
//!
//! `cargo run -p pool-provisioner --example create_and_tear_down`

use std::time::Duration;

use pool_provisioner::testing::{client_config, provisioner_config, test_settings};
use pool_provisioner::{CreationDemand, Provisioner};
use pool_store::testing::TestDatabase;
use railway_api::RailwayClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = railway_sim::start(railway_sim::SimConfig::quick()).await?;
    let db = TestDatabase::migrated().await;
    let store = db.store().await;
    // The binary seeds the runtime settings from the environment on its first start.
    store.seed_settings(&test_settings()).await?;

    // The capability to delete projects comes only with a new client, and only the
    // provisioner's guard will hold it.
    let (railway, deleter) = RailwayClient::with_project_deleter(client_config(&sim))?;
    let mut config = provisioner_config(&sim, None);
    // Every project's marker names the pool by its database's random id.
    config.pool_id = Some(store.pool_id().await?);
    let provisioner = Provisioner::new(config, store.clone(), railway, deleter)?;

    // The row is written before the first remote call; the saga runs in a task the
    // provisioner owns, and `finished` waits for it.
    let started = provisioner.start_creations(CreationDemand::Exactly(1)).await?;
    let id = started
        .finished()
        .await
        .into_iter()
        .next()
        .ok_or("no creation was started")??;
    let agent = store.agent(&id).await?.ok_or("the new agent has no row")?;
    println!(
        "created agent {id}: {} in project {}",
        agent.status,
        agent.project_id.as_deref().unwrap_or("?")
    );
    println!(
        "live projects on the simulator: {}",
        sim.snapshot().live_projects().len()
    );

    // Teardown: OpenRouter key and AgentMail inbox, then `projectDelete` through the guard,
    // then the row (kept as an archive).
    provisioner.kill(&id, "example").await?;
    let agent = store.agent(&id).await?.ok_or("the row is gone")?;
    let snapshot = sim.snapshot();
    println!(
        "after the kill, agent {id} is {} (its row is kept as the archive)",
        agent.status
    );
    println!(
        "live on the simulator: {} projects, {} keys, {} inboxes",
        snapshot.live_projects().len(),
        snapshot.keys.iter().filter(|k| !k.deleted).count(),
        snapshot.inboxes.iter().filter(|i| !i.deleted).count(),
    );
    provisioner.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
