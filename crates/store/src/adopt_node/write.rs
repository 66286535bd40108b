//! Writing the adopted agents, their services and the adoption's own record: only this pool's
//! tables, inside the adoption's one transaction.

use tokio_postgres::Transaction;

use super::read::NodeService;
use super::{AdoptionReport, NodeInstance, PlannedAgent};
use crate::agent::{AgentId, AgentStatus};
use crate::events::EventKind;
use crate::settings::PoolSettings;
use crate::{Result, StoreError};

/// Node tools this pool manages after the adoption: the OpenRouter key (deleted at teardown
/// by its hash, as Node does, `pool/src/services/infra.ts:294-297`) and the AgentMail inbox
/// (served by the proxy, deleted at teardown, `infra.ts:302-305`). Others (Exa keys, Telnyx
/// numbers) stay in Node's rows, named in the report for the operator.
pub(super) fn unmanaged_tool(tool: &str) -> bool {
    !matches!(tool, "openrouter" | "agentmail")
}

/// `https://x.up.railway.app` (Node's `url`, `infra.ts:169`) as this pool stores a domain.
fn domain_of(url: Option<&str>) -> Option<String> {
    let url = url?.trim();
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let host = host.split('/').next().unwrap_or("").trim();
    (!host.is_empty()).then(|| host.to_string())
}

pub(super) async fn insert_agent(
    tx: &Transaction<'_>,
    plan: &PlannedAgent,
    row: &NodeInstance,
    sealed_tokens: Option<(String, String)>,
    legacy_project: Option<&str>,
) -> Result<()> {
    let infra = row
        .infra
        .as_ref()
        .ok_or_else(|| StoreError::Corrupt(format!("adopted row {} has no infra", plan.id)))?;
    let project = infra
        .project_id
        .as_deref()
        .filter(|p| !p.is_empty())
        .or(legacy_project)
        .unwrap_or_default();
    let (gateway_token, agent_api_token) = sealed_tokens.unzip();
    let keeps_claim = matches!(
        plan.status,
        AgentStatus::Claimed | AgentStatus::PendingAcceptance | AgentStatus::Crashed
    );
    let pending = plan.status == AgentStatus::PendingAcceptance;
    // A pending join's `invite_url` is its join URL (`pool/src/provision.ts:113-115`): kept as
    // the join URL too, so a second claim with it gets this agent (V13's joinUrl dedupe).
    // Its wait is counted from the take-over: the pool's pending limit does not tear it down
    // for time spent under the Node pool.
    let join_url = if pending { row.invite_url.clone() } else { None };
    let claim = |v: &Option<String>| if keeps_claim { v.clone() } else { None };
    // Its shape is the runtime the Node pool gave it (`RUNTIME_TYPE`, pool/src/services/
    // providers/railway.ts:351), `openclaw` when unrecorded (the Node pool's own fallback).
    tx.execute(
        "INSERT INTO agent_metadata (id, railway_project_id, railway_environment_id, railway_service_id, \
             railway_volume_id, railway_domain, image, gateway_token, agent_api_token, status, legacy, \
             quarantined, agent_name, instructions, conversation_id, invite_url, created_at, claimed_at, \
             deployment_status, runtime_version, runtime_name, join_url, pending_acceptance_at, shape) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 coalesce($17, now()), $18, $19, $20, $21, $22, \
                 CASE WHEN $23 THEN now() END, coalesce($21, 'openclaw'))",
        &[
            &plan.id.as_str(),
            &project,
            &infra.environment_id,
            &infra.service_id,
            &infra.volume_id,
            &domain_of(infra.url.as_deref()),
            &infra.runtime_image,
            &gateway_token,
            &agent_api_token,
            &plan.status.as_str(),
            &plan.shared_project,
            &(plan.status == AgentStatus::Deleting),
            &claim(&row.agent_name),
            &claim(&row.instructions),
            &claim(&row.conversation_id),
            &claim(&row.invite_url),
            &row.created_at,
            &if keeps_claim { row.claimed_at } else { None },
            &infra.deploy_status,
            &infra.runtime_version,
            &infra.runtime_type,
            &join_url,
            &pending,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn insert_services(
    tx: &Transaction<'_>,
    agent: &AgentId,
    services: &[&NodeService],
) -> Result<()> {
    for s in services {
        match s.tool_id.as_str() {
            "openrouter" => {
                tx.execute(
                    "UPDATE agent_metadata SET openrouter_key_hash = $2 WHERE id = $1",
                    &[&agent.as_str(), &s.resource_id],
                )
                .await?;
            }
            "agentmail" => {
                tx.execute(
                    "INSERT INTO agent_services (agent_id, service, state, resource_id, assigned_at) \
                     VALUES ($1, 'email', 'active', $2, now())",
                    &[&agent.as_str(), &s.resource_id],
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The agent's first event: where it came from and what it became.
pub(super) async fn insert_event(tx: &Transaction<'_>, plan: &PlannedAgent) -> Result<()> {
    tx.execute(
        "INSERT INTO agent_events (agent_id, kind, to_status, reason) VALUES ($1, $2, $3, $4)",
        &[
            &plan.id.as_str(),
            &EventKind::Adopted.as_str(),
            &plan.status.as_str(),
            &format!(
                "adopted from the Node pool: status {} ({})",
                plan.node_status, plan.why
            ),
        ],
    )
    .await?;
    Ok(())
}

/// Whether an earlier adoption ran (its `node_adopted` pool event).
pub(super) async fn adopted_before(tx: &Transaction<'_>) -> Result<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pool_events WHERE kind = 'node_adopted')",
            &[],
        )
        .await?
        .get(0))
}

pub(super) async fn current_min_idle(tx: &Transaction<'_>, shape: &str) -> Result<Option<u32>> {
    Ok(tx
        .query_opt("SELECT min_idle FROM pool_settings WHERE shape = $1", &[&shape])
        .await?
        .map(|r| r.get::<_, i32>(0).max(0) as u32))
}

/// The default shape's `minIdle` from Node's `target_idle` (the first adoption only), and the
/// pool event that records the adoption.
pub(super) async fn record_adoption(
    tx: &Transaction<'_>,
    report: &AdoptionReport,
    adopted: &[PlannedAgent],
    seed: &PoolSettings,
    shape: &str,
) -> Result<()> {
    if let Some((before, after)) = report.min_idle {
        let min_idle = i32::try_from(after).unwrap_or(i32::MAX);
        if before.is_some() {
            tx.execute(
                "UPDATE pool_settings SET min_idle = $1, updated_at = now(), updated_by = 'node-adoption' WHERE shape = $2",
                &[&min_idle, &shape],
            )
            .await?;
        } else {
            let to_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO pool_settings (shape, min_idle, max_total, paused, idle_schedule, max_idle_age_ms, \
                     create_failure_limit, parked_min, parked_max, park_after_ms, updated_by) \
                     VALUES ($10, $1, $2, $3, $4, $5, $6, $7, $8, $9, 'node-adoption')",
                &[
                    &min_idle,
                    &seed.max_total.map(to_i32),
                    &seed.paused,
                    &seed.idle_schedule,
                    &seed.max_idle_age.map(|d| d.as_millis() as i64),
                    &to_i32(seed.create_failure_limit),
                    &to_i32(seed.parked_min),
                    &to_i32(seed.parked_max),
                    &(seed.park_after.as_millis() as i64),
                    &shape,
                ],
            )
            .await?;
        }
    }
    let mut by_status = serde_json::Map::new();
    for a in adopted {
        let key = format!("{} -> {}", a.node_status, a.status);
        let n = by_status
            .get(&key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        by_status.insert(key, (n + 1).into());
    }
    let detail = serde_json::json!({
        "adopted": adopted.len(),
        "alreadyAdopted": report.already_adopted.len(),
        "byStatus": by_status,
        "targetIdle": report.target_idle,
        "minIdle": report.min_idle.map(|(before, after)| serde_json::json!({"before": before, "after": after})),
        "leftToOperator": report.left_to_operator.iter()
            .map(|(agent, tool, resource)| serde_json::json!({"agent": agent, "tool": tool, "resource": resource}))
            .collect::<Vec<_>>(),
    });
    tx.execute(
        "INSERT INTO pool_events (kind, actor, detail) VALUES ('node_adopted', 'node-adoption', $1)",
        &[&detail],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_become_domains() {
        assert_eq!(
            domain_of(Some("https://convos-agent-x.up.railway.app")).as_deref(),
            Some("convos-agent-x.up.railway.app")
        );
        assert_eq!(
            domain_of(Some("https://a.up.railway.app/")).as_deref(),
            Some("a.up.railway.app")
        );
        assert_eq!(domain_of(Some("")), None);
        assert_eq!(domain_of(None), None);
    }
}
