//! `cargo xtask sim`: the Railway simulator, standalone, until Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use railway_sim::SimConfig;

pub fn main(args: &[String]) -> Result<(), String> {
    let mut port = 4000u16;
    let mut config = SimConfig::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            // Railway's behaviours, with their slow timings (the 30 s projectCreate throttle)
            // shortened for local runs.
            "--quick" => config.quirks = railway_sim::Quirks::quick(),
            "--no-quirks" => config.quirks = railway_sim::Quirks::none(),
            "--latency-ms" => {
                config.latency =
                    Duration::from_millis(value()?.parse().map_err(|e| format!("--latency-ms: {e}"))?)
            }
            "--config" => {
                let path = value()?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                config = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            }
            other => {
                return Err(format!(
                    "unknown option {other:?}\nusage: cargo xtask sim [--port N] [--latency-ms N] [--quick | --no-quirks] [--config sim.json]"
                ));
            }
        }
    }
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let sim = railway_sim::start_on(config, SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        println!("railway-sim listening on {}", sim.base_url());
        println!("  RAILWAY_API_URL={}", sim.graphql_url());
        println!("  RAILWAY_API_TOKEN=sim-token   RAILWAY_WORKSPACE_ID=ws-sim");
        println!(
            "  AGENT_URL_TEMPLATE={}   POOL_ALLOW_INSECURE_URLS=true",
            sim.agent_url_template()
        );
        println!(
            "  OPENROUTER_API_URL={}   OPENROUTER_MANAGEMENT_KEY=sim-openrouter-management-key",
            sim.openrouter_url()
        );
        println!(
            "  AGENTMAIL_API_URL={}   AGENTMAIL_API_KEY=sim-agentmail-key",
            sim.agentmail_url()
        );
        println!("  inspect: {}/_sim/state", sim.base_url());
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        println!("railway-sim stopped");
        Ok(())
    })
}
