//! The API's wire types. The HTTP layer owns its format; these are built from the store's and
//! the provisioner's types and never carry a token, key or password. One is the store's own:
//! an agent's view is `pool_store::AgentListing`, which the status reads narrow from the
//! database page by page.

use chrono::{DateTime, Utc};
use pool_store::{AgentEvent, AgentListing, StatusCounts};
use serde::{Deserialize, Serialize};

/// Live agents by status (the original's four, plus the states the new pool adds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Being created.
    pub creating: i64,
    /// Deployed, not yet healthy.
    pub starting: i64,
    /// Ready to claim.
    pub idle: i64,
    /// Being provisioned for a claimer.
    pub claiming: i64,
    /// Handed out.
    pub claimed: i64,
    /// Handed out, the join waiting for the conversation's approval (the Node pool's key).
    pub pending_acceptance: i64,
    /// Claimed and dead.
    pub crashed: i64,
    /// Being parked (its deployment being removed).
    #[serde(default)]
    pub parking: i64,
    /// Parked: provisioned, no deployment running; woken by one deploy.
    #[serde(default)]
    pub parked: i64,
    /// Being woken.
    #[serde(default)]
    pub waking: i64,
    /// Being torn down.
    pub deleting: i64,
    /// All of the above.
    pub total: i64,
}

impl From<&StatusCounts> for Counts {
    fn from(c: &StatusCounts) -> Self {
        Self {
            creating: c.creating,
            starting: c.starting,
            idle: c.idle,
            claiming: c.claiming,
            claimed: c.claimed,
            pending_acceptance: c.pending_acceptance,
            crashed: c.crashed,
            parking: c.parking,
            parked: c.parked,
            waking: c.waking,
            deleting: c.deleting,
            total: c.total(),
        }
    }
}

/// An agent as operators see it: everything but its secrets, its instructions and its
/// creation journal (the store's listing of it, whose JSON this is).
pub type AgentView = AgentListing;

/// `GET /api/pool/status`, but for its last field, `instances` (every live agent, an
/// [`AgentView`] each, in id order), which is streamed after these (`status_body`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReply {
    /// Counts.
    pub counts: Counts,
    /// Warm agents the sizing policy wants (from the leader's last tick).
    pub target: Option<i32>,
    /// Why, in words (e.g. "target 14 = 0.4 claims/min × …").
    pub target_reason: Option<String>,
    /// Claims waiting for an agent.
    pub waiting: i64,
    /// The creation brake.
    pub brake: pool_store::BrakeState,
    /// The newest rollout (running, or how the last one ended).
    pub rollout: Option<pool_provisioner::RolloutView>,
    /// The runtime a claim without `runtime` gets.
    pub default_runtime: String,
    /// Each runtime's stock: counts, tiers, monthly cost, target, waiting claims, brake.
    pub runtimes: std::collections::BTreeMap<String, crate::stock::RuntimeStock>,
    /// The whole pool's tiers.
    pub tiers: crate::stock::Tiers,
    /// What the whole pool's stock costs a month, estimated.
    pub monthly_cost: crate::stock::MonthlyCost,
    /// The assumptions of every cost figure (agent size, Railway Pro prices, what is counted).
    pub cost_assumptions: crate::stock::CostAssumptions,
    /// The prober of the fleet's health on the replica that answers (`null`: none runs there;
    /// only the leader's checks the fleet).
    pub prober: Option<crate::ProberView>,
    /// The answering replica's id among the fleet's replicas (`null`: it takes no shards).
    pub replica: Option<String>,
    /// The replicas sharing the fleet's shards, oldest first: their shards, their leases'
    /// ages, which one leads.
    pub replicas: Vec<crate::replicas::ReplicaView>,
}

/// `GET /api/pool/counts`: the whole pool's counts (the original's fields, as before) and
/// each runtime's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountsReply {
    /// The whole pool.
    #[serde(flatten)]
    pub counts: Counts,
    /// By runtime.
    pub runtimes: std::collections::BTreeMap<String, Counts>,
}

/// An event of an agent's timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// When.
    pub at: DateTime<Utc>,
    /// Kind.
    pub kind: String,
    /// From.
    pub from_status: Option<String>,
    /// To.
    pub to_status: Option<String>,
    /// Why.
    pub reason: String,
    /// Who: the name of the API key that caused it (`admin`, `console`, a claim key's name);
    /// `null` for what the pool did by itself.
    pub actor: Option<String>,
}

impl From<&AgentEvent> for EventView {
    fn from(e: &AgentEvent) -> Self {
        Self {
            at: e.at,
            kind: e.kind.clone(),
            from_status: e.from_status.clone(),
            to_status: e.to_status.clone(),
            reason: e.reason.clone(),
            actor: e.actor.clone(),
        }
    }
}

/// `GET /api/pool/agents/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentReply {
    /// The agent.
    pub agent: AgentView,
    /// Its timeline, oldest first.
    pub events: Vec<EventView>,
}

/// `POST /api/pool/claim`: every field optional, as the Node pool takes them
/// (pool/src/index.ts:950-994); the landing page sends only `{joinUrl, source}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimBody {
    /// Display name ("Assistant" when missing or blank).
    #[serde(default)]
    pub agent_name: Option<String>,
    /// Instructions (the Node pool's default when missing or blank).
    #[serde(default)]
    pub instructions: Option<String>,
    /// Conversation to join.
    #[serde(default)]
    pub join_url: Option<String>,
    /// Who asks ("api" when missing).
    #[serde(default)]
    pub source: Option<String>,
    /// The agent's avatar: an https URL.
    #[serde(default)]
    pub profile_image: Option<String>,
    /// A flat string map for the agent.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Only this pool's runtime (`openclaw`).
    #[serde(default)]
    pub runtime: Option<String>,
}

/// `POST /api/pool/replenish` and `/drain`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CountBody {
    /// How many (1 to 20).
    #[serde(default)]
    pub count: Option<u32>,
}

/// `POST /api/pool/redeploy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedeployBody {
    /// Only these idle agents (default: all idle agents).
    #[serde(default)]
    pub instance_ids: Option<Vec<String>>,
}
