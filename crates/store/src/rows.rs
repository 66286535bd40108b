//! Rows of `agent_metadata` as [`Agent`]s: the column list, the row mapping and the one
//! helper every agent-reading query goes through.

use deadpool_postgres::GenericClient;
use secrecy::SecretString;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::agent::{Agent, AgentId, AgentSecrets, AgentStatus, CreationStep, SetupSecrets};
use crate::secrets::{Binding, SecretsKeys};
use crate::{Result, StoreError};

const AGENT_COLUMNS: &str = "a.id, a.status, a.status_changed_at, a.created_at, a.legacy, a.quarantined, \
    a.railway_project_id, a.railway_environment_id, a.railway_service_id, a.railway_volume_id, \
    a.railway_domain, a.railway_deployment_id, a.image, a.openrouter_key_hash, a.openrouter_api_key, \
    a.agentmail_inbox_id, a.gateway_token, a.setup_password, a.wallet_private_key, a.agent_api_token, \
    a.agent_name, a.instructions, a.join_url, a.conversation_id, a.invite_url, a.joined, a.claimed_at, \
    a.claim_expires_at, a.deployment_status, a.last_health_at, a.last_health_ok, a.teardown_attempts, \
    a.next_attempt_at, a.last_error, a.worker_lease_until, a.redeploy_requested_at, a.step_in_flight, \
    a.project_marker_form, a.pending_acceptance_at, a.claim_source, a.profile_image, a.claim_metadata, \
    a.provision_status, a.runtime_version, a.runtime_name, a.shape, a.tier_step, a.parked_at, a.wake_failures, \
    ARRAY(SELECT s.step FROM agent_saga_steps s WHERE s.agent_id = a.id ORDER BY s.completed_at, s.step) AS steps";

/// Agents matching `condition` (SQL over the alias `a`, with `$1…` parameters), in `order`.
/// Their secrets are opened with `keys`; one that does not open is recorded on its agent
/// (`unreadable_secrets`), so one bad row never fails a read of the fleet.
pub(crate) async fn select_agents(
    client: &impl GenericClient,
    keys: &SecretsKeys,
    condition: &str,
    order: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Agent>> {
    let sql = format!("SELECT {AGENT_COLUMNS} FROM agent_metadata a WHERE {condition} ORDER BY {order}");
    client
        .query(sql.as_str(), params)
        .await?
        .iter()
        .map(|row| agent_from_row(row, keys))
        .collect()
}

/// The columns of an agent row, for statements that return one (`RETURNING`).
pub(crate) fn agent_columns() -> &'static str {
    AGENT_COLUMNS
}

/// An id read from the database (the table's own primary key, so it was valid when written).
pub(crate) fn stored_id(text: String) -> Result<AgentId> {
    AgentId::parse(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The secret columns of an agent row. The list every sealing, opening, migration and
/// archiving of agent secrets goes through.
pub(crate) const SECRET_COLUMNS: [&str; 5] = [
    "gateway_token",
    "agent_api_token",
    "setup_password",
    "wallet_private_key",
    "openrouter_api_key",
];

pub(crate) fn agent_from_row(row: &Row, keys: &SecretsKeys) -> Result<Agent> {
    let id = stored_id(row.try_get("id")?)?;
    let mut unreadable = Vec::new();
    let mut secret = |col: &'static str| -> Result<Option<SecretString>> {
        let Some(stored) = row.try_get::<_, Option<String>>(col)? else {
            return Ok(None);
        };
        match keys.open(&stored, &Binding::agent(&id, col)) {
            Ok(secret) => Ok(Some(secret)),
            Err(e) => {
                unreadable.push(e);
                Ok(None)
            }
        }
    };
    let secrets = match (secret("gateway_token")?, secret("agent_api_token")?) {
        (Some(gateway_token), Some(agent_api_token)) => Some(AgentSecrets {
            gateway_token,
            agent_api_token,
        }),
        _ => None,
    };
    let setup_secrets = match (secret("setup_password")?, secret("wallet_private_key")?) {
        (Some(setup_password), Some(wallet_private_key)) => Some(SetupSecrets {
            setup_password,
            wallet_private_key,
        }),
        _ => None,
    };
    let openrouter_api_key = secret("openrouter_api_key")?;
    let project: String = row.try_get("railway_project_id")?;
    let steps: Vec<String> = row.try_get("steps")?;
    Ok(Agent {
        id,
        status: AgentStatus::parse(row.try_get("status")?)?,
        status_changed_at: row.try_get("status_changed_at")?,
        created_at: row.try_get("created_at")?,
        legacy: row.try_get("legacy")?,
        quarantined: row.try_get("quarantined")?,
        project_id: (!project.is_empty()).then_some(project),
        environment_id: row.try_get("railway_environment_id")?,
        service_id: row.try_get("railway_service_id")?,
        volume_id: row.try_get("railway_volume_id")?,
        domain: row.try_get("railway_domain")?,
        deployment_id: row.try_get("railway_deployment_id")?,
        image: row.try_get("image")?,
        openrouter_key_hash: row.try_get("openrouter_key_hash")?,
        openrouter_api_key,
        agentmail_inbox_id: row.try_get("agentmail_inbox_id")?,
        secrets,
        setup_secrets,
        unreadable_secrets: unreadable,
        agent_name: row.try_get("agent_name")?,
        instructions: row.try_get("instructions")?,
        join_url: row.try_get("join_url")?,
        conversation_id: row.try_get("conversation_id")?,
        invite_url: row.try_get("invite_url")?,
        joined: row.try_get("joined")?,
        claimed_at: row.try_get("claimed_at")?,
        pending_acceptance_at: row.try_get("pending_acceptance_at")?,
        claim_source: row.try_get("claim_source")?,
        profile_image: row.try_get("profile_image")?,
        claim_metadata: row.try_get("claim_metadata")?,
        provision_status: row.try_get("provision_status")?,
        runtime_version: row.try_get("runtime_version")?,
        runtime_name: row.try_get("runtime_name")?,
        shape: row.try_get("shape")?,
        claim_expires_at: row.try_get("claim_expires_at")?,
        deployment_status: row.try_get("deployment_status")?,
        last_health_at: row.try_get("last_health_at")?,
        last_health_ok: row.try_get("last_health_ok")?,
        teardown_attempts: row.try_get("teardown_attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        worker_lease_until: row.try_get("worker_lease_until")?,
        redeploy_requested_at: row.try_get("redeploy_requested_at")?,
        project_marker_form: row.try_get("project_marker_form")?,
        completed_steps: steps.iter().filter_map(|s| CreationStep::parse(s)).collect(),
        step_in_flight: row
            .try_get::<_, Option<String>>("step_in_flight")?
            .as_deref()
            .and_then(CreationStep::parse),
        tier_step: row
            .try_get::<_, Option<String>>("tier_step")?
            .as_deref()
            .and_then(crate::agent::TierStep::parse),
        parked_at: row.try_get("parked_at")?,
        wake_failures: row.try_get("wake_failures")?,
    })
}

pub(crate) async fn current_status(client: &impl GenericClient, id: &AgentId) -> Result<Option<AgentStatus>> {
    client
        .query_opt("SELECT status FROM agent_metadata WHERE id = $1", &[&id.as_str()])
        .await?
        .map(|r| AgentStatus::parse(r.get(0)))
        .transpose()
}
