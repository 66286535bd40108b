//! `cargo xtask api-check`: schemathesis (from PyPI) against `/openapi.json` of a running pool
//! manager — the real binary, on the simulator and a scratch database. It generates requests
//! from the document (valid and invalid), and fails on any 5xx or any answer that breaks the
//! document.

use std::time::Duration;

use pool_e2e::{ADMIN_KEY, ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_store::testing::TestDatabase;
use railway_sim::SimConfig;

pub fn main(args: &[String]) -> Result<(), String> {
    let examples = args
        .iter()
        .position(|a| a == "--max-examples")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "25".into());
    crate::runtime()?.block_on(async {
        let binary = pool_manager_binary()?;
        let sim = railway_sim::start(SimConfig::quick()).await.map_err(|e| e.to_string())?;
        let db = TestDatabase::empty().await;
        let env = sim_environment(&sim, db.url(), free_port()?);
        let mut manager = ManagerProcess::start(&binary, &env).await?;
        manager.wait_healthy(Duration::from_secs(60)).await?;
        manager.wait_counts(Duration::from_secs(60), |c| c["idle"] == 2).await?;
        let schema = format!("{}/openapi.json", manager.base_url);
        println!("==> schemathesis run {schema}");
        let status = tokio::process::Command::new("schemathesis")
            .args([
                "--config-file",
                concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml"),
                "run",
                &schema,
                "--header",
                &format!("Authorization: Bearer {ADMIN_KEY}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                &examples,
                "--request-timeout",
                "30",
            ])
            .status()
            .await
            .map_err(|e| format!("could not run schemathesis (pip install schemathesis): {e}"))?;
        manager.signal("TERM")?;
        let exit = manager.wait_exit(Duration::from_secs(30)).await?;
        if !status.success() {
            return Err(format!("schemathesis found problems ({status})"));
        }
        if exit != Some(0) {
            return Err(format!("pool-manager exited with {exit:?}"));
        }
        Ok(())
    })
}
