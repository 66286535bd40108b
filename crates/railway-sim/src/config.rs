//! What the simulated Railway is like: timings, limits and faults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::quirks::Quirks;

/// Everything configurable about the simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Tokens the simulated Railway accepts, each with the workspaces it can act on. An empty
    /// list makes it a project token (scoped to one project; cannot create projects).
    pub tokens: BTreeMap<String, Vec<String>>,
    /// Workspaces: id → name.
    pub workspaces: BTreeMap<String, String>,
    /// Added before every GraphQL answer.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// How a deployment moves through its states.
    pub deploy: DeployTimings,
    /// How long a wake (a deploy of a service whose deployment was removed) takes.
    pub wake: WakeTimings,
    /// Railway's limits.
    pub limits: Limits,
    /// Railway's undocumented behaviours (all on by default).
    pub quirks: Quirks,
    /// Failures of Railway operations.
    pub faults: Faults,
    /// How the fake agents behave.
    pub agents: AgentBehaviour,
    /// Image prefixes that need registry credentials to pull (private images).
    pub private_image_prefixes: Vec<String>,
    /// Whether `projectCreate` names its environment after `defaultEnvironmentName` (when
    /// false, every project starts with `production`, as older API versions did).
    pub honour_default_environment_name: bool,
    /// Bearer the fake OpenRouter accepts for key management.
    pub openrouter_management_key: String,
    /// Bearer the fake AgentMail accepts.
    pub agentmail_api_key: String,
    /// Bearer the fake Telnyx accepts.
    pub telnyx_api_key: String,
    /// Where deploy events are posted, as Railway's webhooks do (`None`: nowhere). Also set
    /// at run time with `SimHandle::set_webhook_url` or `PUT /_sim/webhook`.
    pub webhook_url: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tokens: BTreeMap::from([("sim-token".to_string(), vec!["ws-sim".to_string()])]),
            workspaces: BTreeMap::from([("ws-sim".to_string(), "Simulated workspace".to_string())]),
            latency: Duration::ZERO,
            deploy: DeployTimings::default(),
            wake: WakeTimings::default(),
            limits: Limits::default(),
            quirks: Quirks::default(),
            faults: Faults::default(),
            agents: AgentBehaviour::default(),
            private_image_prefixes: vec!["ghcr.io/xmtplabs/".to_string()],
            honour_default_environment_name: true,
            openrouter_management_key: "sim-openrouter-management-key".to_string(),
            agentmail_api_key: "sim-agentmail-key".to_string(),
            telnyx_api_key: "sim-telnyx-key".to_string(),
            webhook_url: None,
        }
    }
}

impl SimConfig {
    /// Railway as it is, with every behaviour on but its slow timings shortened for tests
    /// (see [`Quirks::quick`]).
    pub fn quick() -> Self {
        Self {
            quirks: Quirks::quick(),
            wake: WakeTimings::scaled(0.01),
            ..Self::default()
        }
    }

    /// The schema's world: no undocumented behaviour at all (tests of the other branch), with
    /// wakes as short as [`Self::quick`]'s.
    pub fn without_quirks() -> Self {
        Self {
            quirks: Quirks::none(),
            wake: WakeTimings::scaled(0.01),
            ..Self::default()
        }
    }
}

/// Time a deployment spends in each state before `SUCCESS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeployTimings {
    /// `QUEUED`.
    #[serde(with = "millis")]
    pub queued: Duration,
    /// `BUILDING` (pulling the image: there is no build).
    #[serde(with = "millis")]
    pub building: Duration,
    /// `DEPLOYING`.
    #[serde(with = "millis")]
    pub deploying: Duration,
}

impl Default for DeployTimings {
    fn default() -> Self {
        Self {
            queued: Duration::from_millis(100),
            building: Duration::from_millis(200),
            deploying: Duration::from_millis(200),
        }
    }
}

impl DeployTimings {
    /// No waiting at all: deployments succeed at once (benchmarks of the claim path).
    pub fn instant() -> Self {
        Self {
            queued: Duration::ZERO,
            building: Duration::ZERO,
            deploying: Duration::ZERO,
        }
    }
}

/// How long a wake takes to reach `SUCCESS`: log-normal, given by its median and 95th
/// percentile. Railway documents the deploy phase of a deployment at 30 s to 2 min (the
/// figures issue 21 cites); the default is p50 45 s, p95 120 s. `scale` shrinks every draw
/// (tests and the demo: 0.01 makes the median 0.45 s) without changing its shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WakeTimings {
    /// Median time from the deploy to `SUCCESS`.
    #[serde(with = "millis")]
    pub p50: Duration,
    /// 95th percentile.
    #[serde(with = "millis")]
    pub p95: Duration,
    /// Factor applied to every draw (1: Railway's own times).
    pub scale: f64,
}

impl Default for WakeTimings {
    fn default() -> Self {
        Self {
            p50: Duration::from_secs(45),
            p95: Duration::from_secs(120),
            scale: 1.0,
        }
    }
}

impl WakeTimings {
    /// Railway's distribution, every draw multiplied by `scale`.
    pub fn scaled(scale: f64) -> Self {
        Self {
            scale,
            ..Self::default()
        }
    }

    /// One draw: `exp(mu + sigma z)` with `mu = ln p50` and `sigma = ln(p95 / p50) / 1.645`
    /// (the standard normal's 95th percentile), `z` standard normal (Box-Muller), scaled.
    pub fn draw(&self, rng: &mut impl rand::Rng) -> Duration {
        let p50 = self.p50.as_secs_f64().max(1e-6);
        let p95 = self.p95.as_secs_f64().max(p50);
        let sigma = (p95 / p50).ln() / 1.644_853_6;
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let secs = (p50.ln() + sigma * z).exp() * self.scale.max(0.0);
        Duration::from_secs_f64(secs.min(86_400.0))
    }
}

/// Railway's limits (per token, as Railway counts them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Requests per second per token (Pro: 50). 0 = unlimited.
    pub requests_per_second: usize,
    /// Requests per hour per token (Pro: 10,000). 0 = unlimited.
    pub requests_per_hour: usize,
    /// Requests per second without a query string, across all tokens (the edge: about 10).
    pub edge_requests_per_second: usize,
    /// How long the edge blocks after its limit is hit.
    #[serde(with = "millis")]
    pub edge_block: Duration,
    /// Longest project name.
    pub max_project_name: usize,
    /// Volumes per project (Pro: 20).
    pub max_volumes_per_project: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_second: 50,
            requests_per_hour: 10_000,
            edge_requests_per_second: 10,
            edge_block: Duration::from_secs(10),
            max_project_name: 32,
            max_volumes_per_project: 20,
        }
    }
}

/// Failures injected into Railway operations: each a probability per request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Applied to every operation without its own entry.
    pub all: OperationFaults,
    /// Per operation: a GraphQL root field (e.g. `projectCreate`), or `openrouter.createKey`,
    /// `openrouter.deleteKey`, `agentmail.createInbox`, `agentmail.deleteInbox`.
    pub operations: BTreeMap<String, OperationFaults>,
    /// A storm: every request gets 429 with this `Retry-After` until the storm ends.
    pub storm: Option<RateLimitStorm>,
}

/// Failure probabilities for one operation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OperationFaults {
    /// HTTP 503 before anything is applied.
    pub server_error: f64,
    /// Applied, then no answer until the client gives up.
    pub timeout_after_apply: f64,
    /// No answer until the client gives up, nothing applied: the request stalled before it
    /// reached Railway's API (an edge or gateway hang). The client cannot tell it from
    /// [`Self::timeout_after_apply`], so it must look the outcome up.
    pub timeout_before_apply: f64,
    /// HTTP 200 with a GraphQL `INTERNAL_SERVER_ERROR` and a message nobody knows, nothing
    /// applied (the client cannot tell, so it must assume it may have).
    pub graphql_error: f64,
    /// Refused outright, nothing applied: a validation error ("Invalid request"), or a 400
    /// from OpenRouter and AgentMail. Not worth retrying.
    pub refused: f64,
}

/// A 429 storm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateLimitStorm {
    /// Seconds sent in `Retry-After`.
    pub retry_after_secs: u64,
    /// Answer with the edge's HTML page (Cloudflare 1015, no rate-limit headers) instead of
    /// Railway's JSON.
    #[serde(default)]
    pub html: bool,
    /// How long the storm lasts from when it is set.
    #[serde(with = "millis")]
    pub duration: Duration,
}

/// How fake agents behave. Probabilities are drawn once per deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentBehaviour {
    /// Time from `SUCCESS` until `/pool/health` answers ready.
    #[serde(with = "millis")]
    pub ready_after: Duration,
    /// Time `/pool/provision` takes.
    #[serde(with = "millis")]
    pub provision_time: Duration,
    /// Deployment crashes (`CRASHED`) some time after `SUCCESS`.
    pub crash: f64,
    /// When a crashing deployment crashes, after `SUCCESS`.
    #[serde(with = "millis")]
    pub crash_after: Duration,
    /// Deployment fails (`FAILED`) while building.
    pub fail: f64,
    /// Deployment succeeds but the agent never becomes ready.
    pub never_ready: f64,
    /// `/pool/provision` never answers.
    pub provision_hang: f64,
    /// `/pool/provision` answers 500.
    pub provision_fail: f64,
}

impl Default for AgentBehaviour {
    fn default() -> Self {
        Self {
            ready_after: Duration::from_millis(100),
            provision_time: Duration::from_millis(20),
            crash: 0.0,
            crash_after: Duration::from_secs(1),
            fail: 0.0,
            never_ready: 0.0,
            provision_hang: 0.0,
            provision_fail: 0.0,
        }
    }
}

/// Durations as whole milliseconds in JSON.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as whole milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Reads whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }

    /// Optional durations as whole milliseconds (or `null`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `d` as whole milliseconds, `None` as `null`.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&(d.as_millis() as u64)),
                None => s.serialize_none(),
            }
        }

        /// Reads whole milliseconds or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn wake_times_follow_the_configured_median_and_95th_percentile() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let wake = WakeTimings::default();
        let mut draws: Vec<f64> = (0..20_000).map(|_| wake.draw(&mut rng).as_secs_f64()).collect();
        draws.sort_by(f64::total_cmp);
        let (p50, p95) = (draws[draws.len() / 2], draws[draws.len() * 95 / 100]);
        assert!((p50 - 45.0).abs() < 2.0, "p50 {p50}");
        assert!((p95 - 120.0).abs() < 8.0, "p95 {p95}");
        let scaled = WakeTimings::scaled(0.01).draw(&mut rng);
        assert!(scaled < Duration::from_secs(60), "{scaled:?}");
    }
}
