//! `cargo xtask bench [railway|tick|prober|shards|claim|fill|sizing|all]`: benchmarks that print tables. They
//! are never timing assertions: the machines are shared and noisy, so the figures are for
//! reading.

pub mod claim;
mod fill;
mod options;
mod prober;
mod railway;
mod shards;
mod sizing;
mod tick;

pub fn main(args: &[String]) -> Result<(), String> {
    // Timings of a debug build say little: run the benchmarks from a release build.
    if cfg!(debug_assertions) {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--release", "--package", "xtask", "--", "bench"])
            .args(args)
            .status()
            .map_err(|e| format!("could not start the release build: {e}"))?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("benchmark failed ({status})"))
        };
    }
    let which = args.first().map(String::as_str).unwrap_or("all");
    if which == "sizing" {
        // Simulated time: no runtime, no simulator, no database.
        return sizing::run(&args[1..]);
    }
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        match which {
            "railway" => railway::run().await,
            "tick" => tick::run(&args[1..]).await,
            // The tick bench's fleet, in a process of its own (started by `bench tick`).
            "tick-fleet" => tick::serve_fleet(&args[1..]).await,
            "prober" => prober::run(&args[1..]).await,
            // The child process of `bench prober`: the checks, measured on their own.
            "prober-client" => prober::client(&args[1..]).await,
            "shards" => shards::run(&args[1..]).await,
            "claim" => claim::run().await,
            "fill" => fill::run().await,
            "all" => {
                railway::run().await?;
                tick::run(&[]).await?;
                claim::run().await?;
                fill::run().await?;
                sizing::run(&[])
            }
            other => Err(format!(
                "unknown benchmark {other:?} (railway, tick, prober, shards, claim, fill, sizing, all)"
            )),
        }
    })
}

/// A Markdown table, printed as it is built.
pub struct Table {
    widths: Vec<usize>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        let widths: Vec<usize> = headers.iter().map(|h| h.len().max(22)).collect();
        let t = Self { widths };
        t.row(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        println!(
            "|{}|",
            t.widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        );
        t
    }

    pub fn row(&self, cells: &[String]) {
        let cells: Vec<String> = cells
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| format!(" {c:>w$} "))
            .collect();
        println!("|{}|", cells.join("|"));
    }
}

/// A steady fleet of `count` idle agents: projects deployed in the simulator (each agent
/// answering health checks with its own token) and the matching rows in a fresh database.
pub async fn seed_fleet(
    sim: &railway_sim::SimHandle,
    count: usize,
) -> (
    pool_store::testing::TestDatabase,
    Vec<pool_store::testing::SeedAgent>,
) {
    let seeded = sim.seed_agent_projects(count, "staging", "ghcr.io/xmtplabs/convos-agent:staging", |i| {
        std::collections::BTreeMap::from([("POOL_API_KEY".to_string(), format!("token-{i}"))])
    });
    let db = pool_store::testing::TestDatabase::migrated().await;
    let rows: Vec<pool_store::testing::SeedAgent> = seeded
        .iter()
        .enumerate()
        .map(|(i, s)| pool_store::testing::SeedAgent {
            id: format!("{i:012}"),
            project_id: s.project_id.clone(),
            environment_id: s.environment_id.clone(),
            service_id: s.service_id.clone(),
            domain: s.domain.clone(),
            token: format!("token-{i}"),
        })
        .collect();
    db.seed_idle_agents(&rows).await;
    // A steady fleet: the settings keep what is there and create nothing.
    let mut settings = pool_provisioner::testing::test_settings();
    settings.min_idle = 0;
    if let Err(e) = db.store().await.seed_settings(&settings).await {
        eprintln!("seeding the settings failed: {e}");
    }
    (db, rows)
}
