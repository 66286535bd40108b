//! Agents as a list of the fleet shows them (`GET /api/pool/status`'s `instances`): what an
//! operator sees of each, read without what a list never shows — the tokens and other
//! secrets (no decryption), the users' instructions (up to 32 KiB each on a claimed agent),
//! the creation journal (a subquery per row). A page of the whole fleet costs PostgreSQL a
//! walk of the primary key and the replica a few hundred bytes per agent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentId, AgentStatus};
use crate::rows::stored_id;
use crate::{Result, Store};

/// One agent as operators see it, in a list of the fleet or alone: everything but its
/// secrets, its instructions and its creation journal. Its JSON (camelCase) is what the API
/// shows of an agent (`GET /api/pool/status`'s `instances`, `GET /api/pool/agents/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentListing {
    /// Id.
    pub id: AgentId,
    /// Stored status.
    pub status: AgentStatus,
    /// Written.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub status_changed_at: DateTime<Utc>,
    /// From the shared-project era.
    pub legacy: bool,
    /// Never handed out again.
    pub quarantined: bool,
    /// Railway project (`None` before the project was made).
    pub project_id: Option<String>,
    /// Railway service.
    pub service_id: Option<String>,
    /// Public domain.
    pub domain: Option<String>,
    /// Latest deployment status seen.
    pub deployment_status: Option<String>,
    /// Image.
    pub image: Option<String>,
    /// Last health check.
    pub last_health_at: Option<DateTime<Utc>>,
    /// Its result.
    pub last_health_ok: Option<bool>,
    /// Claimed: the agent's name.
    pub agent_name: Option<String>,
    /// Claimed: the invite URL.
    pub invite_url: Option<String>,
    /// Claimed: the conversation.
    pub conversation_id: Option<String>,
    /// Claimed: when.
    pub claimed_at: Option<DateTime<Utc>>,
    /// Since when its join waits for acceptance.
    pub pending_acceptance_at: Option<DateTime<Utc>>,
    /// Claimed: who asked (`source`).
    pub claim_source: Option<String>,
    /// Claimed: created, joined or pending_acceptance.
    pub provision_status: Option<String>,
    /// What its `/pool/health` said it runs: version.
    pub runtime_version: Option<String>,
    /// And runtime.
    pub runtime_name: Option<String>,
    /// A redeploy is pending.
    pub redeploy_requested: bool,
    /// Failed teardown attempts.
    pub teardown_attempts: i32,
    /// Last error.
    pub last_error: Option<String>,
}

impl From<&Agent> for AgentListing {
    /// The listing of an agent read whole.
    fn from(a: &Agent) -> Self {
        Self {
            id: a.id.clone(),
            status: a.status,
            created_at: a.created_at,
            status_changed_at: a.status_changed_at,
            legacy: a.legacy,
            quarantined: a.quarantined,
            project_id: a.project_id.clone(),
            service_id: a.service_id.clone(),
            domain: a.domain.clone(),
            deployment_status: a.deployment_status.clone(),
            image: a.image.clone(),
            last_health_at: a.last_health_at,
            last_health_ok: a.last_health_ok,
            agent_name: a.agent_name.clone(),
            invite_url: a.invite_url.clone(),
            conversation_id: a.conversation_id.clone(),
            claimed_at: a.claimed_at,
            pending_acceptance_at: a.pending_acceptance_at,
            claim_source: a.claim_source.clone(),
            provision_status: a.provision_status.clone(),
            runtime_version: a.runtime_version.clone(),
            runtime_name: a.runtime_name.clone(),
            redeploy_requested: a.redeploy_requested_at.is_some(),
            teardown_attempts: a.teardown_attempts,
            last_error: a.last_error.clone(),
        }
    }
}

impl AgentListing {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self> {
        let project: String = row.try_get("railway_project_id")?;
        Ok(Self {
            id: stored_id(row.try_get("id")?)?,
            status: AgentStatus::parse(row.try_get("status")?)?,
            created_at: row.try_get("created_at")?,
            status_changed_at: row.try_get("status_changed_at")?,
            legacy: row.try_get("legacy")?,
            quarantined: row.try_get("quarantined")?,
            project_id: (!project.is_empty()).then_some(project),
            service_id: row.try_get("railway_service_id")?,
            domain: row.try_get("railway_domain")?,
            deployment_status: row.try_get("deployment_status")?,
            image: row.try_get("image")?,
            last_health_at: row.try_get("last_health_at")?,
            last_health_ok: row.try_get("last_health_ok")?,
            agent_name: row.try_get("agent_name")?,
            invite_url: row.try_get("invite_url")?,
            conversation_id: row.try_get("conversation_id")?,
            claimed_at: row.try_get("claimed_at")?,
            pending_acceptance_at: row.try_get("pending_acceptance_at")?,
            claim_source: row.try_get("claim_source")?,
            provision_status: row.try_get("provision_status")?,
            runtime_version: row.try_get("runtime_version")?,
            runtime_name: row.try_get("runtime_name")?,
            redeploy_requested: row.try_get("redeploy_requested")?,
            teardown_attempts: row.try_get("teardown_attempts")?,
            last_error: row.try_get("last_error")?,
        })
    }
}

const LISTING_COLUMNS: &str = "id, status, created_at, status_changed_at, legacy, quarantined, \
    railway_project_id, railway_service_id, railway_domain, deployment_status, image, last_health_at, \
    last_health_ok, agent_name, invite_url, conversation_id, claimed_at, pending_acceptance_at, \
    claim_source, provision_status, runtime_version, runtime_name, \
    redeploy_requested_at IS NOT NULL AS redeploy_requested, teardown_attempts, last_error";

impl Store {
    /// One page of the live agents in id order, after the agent `after`: the status lists the
    /// fleet a page at a time on the primary key's index and never holds it whole. In
    /// `created_at` order, with no index to walk, each of the 200 pages sorted the whole
    /// table: 90 s for a status at 100,000 agents (`cargo xtask bench shards`); with whole rows
    /// (secrets opened, instructions, the creation journal) 42–49 s in id order.
    pub async fn live_agents_page(&self, after: Option<&AgentId>, limit: usize) -> Result<Vec<AgentListing>> {
        let client = self.client().await?;
        let after = after.map_or("", AgentId::as_str);
        // The limit a literal: a generic plan for `LIMIT $2` assumes a tenth of the table.
        let statement = client
            .prepare_cached(&format!(
                "SELECT {LISTING_COLUMNS} FROM agent_metadata WHERE status <> 'deleted' AND id > $1 \
                 ORDER BY id LIMIT {}",
                limit.max(1)
            ))
            .await?;
        client
            .query(&statement, &[&after])
            .await?
            .iter()
            .map(AgentListing::from_row)
            .collect()
    }
}
