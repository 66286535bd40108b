//! Helpers shared by the client's tests: a simulator and a client pointed at it.
#![allow(dead_code)]

use std::time::Duration;

use railway_api::{ClientConfig, RailwayClient};
use railway_sim::{SimConfig, SimHandle};
use secrecy::SecretString;

pub const WORKSPACE: &str = "ws-sim";

pub async fn sim(config: SimConfig) -> SimHandle {
    railway_sim::start(config).await.expect("start simulator")
}

pub fn config_for(sim: &SimHandle, tokens: &[&str]) -> ClientConfig {
    let mut config = ClientConfig::new(
        sim.graphql_url(),
        tokens.iter().map(|t| SecretString::from(t.to_string())).collect(),
    );
    config.request_timeout = Duration::from_secs(5);
    config.retry_min_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(100);
    config
}

pub fn client(sim: &SimHandle) -> RailwayClient {
    RailwayClient::new(config_for(sim, &["sim-token"])).expect("client")
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}
