//! What the reconcile tick reads and writes, in pages: narrow rows (no secret, no claim
//! payload) walked by keyset on the id, and the tick's observations written back one
//! statement per page (`unnest`). The tick's memory then follows the page size, not the
//! fleet's rows.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::agent::{AgentId, AgentStatus};
use crate::rows::stored_id;
use crate::{Result, ShardFilter, Store};

/// What the tick needs of one agent to observe it and decide: ids, times, leases, Railway's
/// ids, the domain and the last health. Never a secret: a health check needs no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickRow {
    /// Id.
    pub id: AgentId,
    /// Stored status.
    pub status: AgentStatus,
    /// When the status last changed.
    pub status_changed_at: DateTime<Utc>,
    /// Adopted from the shared-project era.
    pub legacy: bool,
    /// Railway project (`None` before `projectCreate` was journaled).
    pub project_id: Option<String>,
    /// Railway environment.
    pub environment_id: Option<String>,
    /// Railway service.
    pub service_id: Option<String>,
    /// Public domain (what the health check calls).
    pub domain: Option<String>,
    /// Last deployment status seen.
    pub deployment_status: Option<String>,
    /// Last health seen.
    pub last_health_ok: Option<bool>,
    /// `claiming`: the claimer's lease.
    pub claim_expires_at: Option<DateTime<Utc>>,
    /// `creating`: the saga's work lease.
    pub worker_lease_until: Option<DateTime<Utc>>,
    /// A redeploy is being sent.
    pub redeploy_requested_at: Option<DateTime<Utc>>,
    /// What its `/pool/health` last said it runs.
    pub runtime_version: Option<String>,
    /// See `runtime_version`.
    pub runtime_name: Option<String>,
    /// The shape (runtime) it belongs to: the runtime it must report.
    pub shape: String,
}

const TICK_COLUMNS: &str = "id, status, status_changed_at, legacy, railway_project_id, railway_environment_id, \
    railway_service_id, railway_domain, deployment_status, last_health_ok, claim_expires_at, \
    worker_lease_until, redeploy_requested_at, runtime_version, runtime_name, shape";

fn tick_row(row: &Row) -> Result<TickRow> {
    let project: String = row.try_get("railway_project_id")?;
    Ok(TickRow {
        id: stored_id(row.try_get("id")?)?,
        status: AgentStatus::parse(row.try_get("status")?)?,
        status_changed_at: row.try_get("status_changed_at")?,
        legacy: row.try_get("legacy")?,
        project_id: (!project.is_empty()).then_some(project),
        environment_id: row.try_get("railway_environment_id")?,
        service_id: row.try_get("railway_service_id")?,
        domain: row.try_get("railway_domain")?,
        deployment_status: row.try_get("deployment_status")?,
        last_health_ok: row.try_get("last_health_ok")?,
        claim_expires_at: row.try_get("claim_expires_at")?,
        worker_lease_until: row.try_get("worker_lease_until")?,
        redeploy_requested_at: row.try_get("redeploy_requested_at")?,
        runtime_version: row.try_get("runtime_version")?,
        runtime_name: row.try_get("runtime_name")?,
        shape: row.try_get("shape")?,
    })
}

/// What the tick saw of one agent, to be remembered (`None`: not seen this time, kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenAgent {
    /// Id.
    pub id: AgentId,
    /// The latest deployment's status, when Railway was read.
    pub deployment_status: Option<String>,
    /// Whether the health check said ready, and when, when one ran.
    pub health: Option<(bool, DateTime<Utc>)>,
    /// What its `/pool/health` said it runs: version, runtime.
    pub runtime: Option<(Option<String>, Option<String>)>,
}

/// The live agents of one page of a walk, `after` the last id of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickScope<'a> {
    /// Every live agent (not deleted).
    Live,
    /// Live agents in these statuses.
    Statuses(&'a [AgentStatus]),
}

impl Store {
    /// One page of live agents in `scope`, ordered by id, after `after` (the last id of the
    /// previous page; `None` for the first), at most `limit`; of the shards in `shards` only,
    /// when given (filtered by Postgres on the rows' stored `shard_key`). An empty page ends
    /// the walk.
    pub async fn tick_page(
        &self,
        scope: TickScope<'_>,
        shards: Option<&ShardFilter>,
        after: Option<&AgentId>,
        limit: usize,
    ) -> Result<Vec<TickRow>> {
        let client = self.client().await?;
        let after = after.map_or("", AgentId::as_str);
        let limit = limit.max(1) as i64;
        let statuses: Vec<&str>;
        let (count, owned): (i64, Vec<i64>);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &limit];
        let mut conditions = vec!["id > $1".to_string()];
        match scope {
            TickScope::Live => conditions.push("status <> 'deleted'".into()),
            TickScope::Statuses(wanted) => {
                statuses = wanted.iter().map(|s| s.as_str()).collect();
                params.push(&statuses);
                conditions.push(format!("status = ANY(${})", params.len()));
            }
        }
        if let Some(filter) = shards {
            // The id's index gives the order; the shard key filters the rows it visits.
            count = i64::from(filter.count.max(1));
            owned = filter.owned.iter().map(|s| i64::from(*s)).collect();
            params.push(&count);
            params.push(&owned);
            conditions.push(format!(
                "shard_key % ${} = ANY(${})",
                params.len() - 1,
                params.len()
            ));
        }
        let rows = client
            .query(
                &format!(
                    "SELECT {TICK_COLUMNS} FROM agent_metadata WHERE {} ORDER BY id LIMIT $2",
                    conditions.join(" AND ")
                ),
                &params,
            )
            .await?;
        rows.iter().map(tick_row).collect()
    }

    /// The narrow rows of these agents (deleted ones included), by id.
    pub async fn tick_rows(&self, ids: &[AgentId]) -> Result<Vec<TickRow>> {
        let client = self.client().await?;
        let ids: Vec<&str> = ids.iter().map(AgentId::as_str).collect();
        client
            .query(
                &format!("SELECT {TICK_COLUMNS} FROM agent_metadata WHERE id = ANY($1) ORDER BY id"),
                &[&ids],
            )
            .await?
            .iter()
            .map(tick_row)
            .collect()
    }

    /// Idle agents of `shape` that have been idle since before `idle_since` (all of them when
    /// `None`), legacy ones and those in `excluded` left out: how many, and the oldest `limit` of
    /// them, oldest (by creation) first.
    pub async fn oldest_idle(
        &self,
        shape: &str,
        idle_since: Option<DateTime<Utc>>,
        excluded: &[String],
        limit: usize,
    ) -> Result<(i64, Vec<TickRow>)> {
        let client = self.client().await?;
        let condition = "status = 'idle' AND NOT legacy AND NOT (id = ANY($1)) \
                         AND ($2::timestamptz IS NULL OR status_changed_at < $2) AND shape = $3";
        let count: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM agent_metadata WHERE {condition}"),
                &[&excluded, &idle_since, &shape],
            )
            .await?
            .get(0);
        let rows = client
            .query(
                &format!(
                    "SELECT {TICK_COLUMNS} FROM agent_metadata WHERE {condition} \
                     ORDER BY created_at, id LIMIT $4"
                ),
                &[&excluded, &idle_since, &shape, &(limit as i64)],
            )
            .await?;
        Ok((count, rows.iter().map(tick_row).collect::<Result<_>>()?))
    }

    /// Remembers what the tick saw of a page of agents, in one statement: a deployment
    /// status, a health result and a runtime replace the stored ones; absent ones are kept.
    pub async fn record_seen(&self, seen: &[SeenAgent]) -> Result<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = seen.iter().map(|s| s.id.as_str()).collect();
        let deployments: Vec<Option<&str>> = seen.iter().map(|s| s.deployment_status.as_deref()).collect();
        let health_ok: Vec<Option<bool>> = seen.iter().map(|s| s.health.map(|(ok, _)| ok)).collect();
        let health_at: Vec<Option<DateTime<Utc>>> = seen.iter().map(|s| s.health.map(|(_, at)| at)).collect();
        let versions: Vec<Option<&str>> = seen
            .iter()
            .map(|s| s.runtime.as_ref().and_then(|(v, _)| v.as_deref()))
            .collect();
        let runtimes: Vec<Option<&str>> = seen
            .iter()
            .map(|s| s.runtime.as_ref().and_then(|(_, r)| r.as_deref()))
            .collect();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE agent_metadata a SET \
                 deployment_status = COALESCE(s.deployment, a.deployment_status), \
                 last_health_ok = COALESCE(s.ok, a.last_health_ok), \
                 last_health_at = COALESCE(s.at, a.last_health_at), \
                 runtime_version = COALESCE(s.version, a.runtime_version), \
                 runtime_name = COALESCE(s.runtime, a.runtime_name) \
                 FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[], $5::text[], $6::text[]) \
                   AS s(id, deployment, ok, at, version, runtime) \
                 WHERE a.id = s.id",
                &[&ids, &deployments, &health_ok, &health_at, &versions, &runtimes],
            )
            .await?;
        Ok(())
    }

    /// Of these Railway projects, those a live agent (not deleted) owns: one side of the
    /// orphan sweep's set difference, asked page by page of the workspace's listing.
    pub async fn owned_projects(&self, project_ids: &[&str]) -> Result<BTreeSet<String>> {
        if project_ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT DISTINCT railway_project_id FROM agent_metadata \
                 WHERE status <> 'deleted' AND railway_project_id = ANY($1)",
                &[&project_ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// The statuses of these agents (deleted ones included); ids without a row are absent.
    pub async fn statuses(&self, ids: &[AgentId]) -> Result<Vec<(AgentId, AgentStatus)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let ids: Vec<&str> = ids.iter().map(AgentId::as_str).collect();
        client
            .query(
                "SELECT id, status FROM agent_metadata WHERE id = ANY($1)",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| Ok((stored_id(r.get(0))?, AgentStatus::parse(r.get(1))?)))
            .collect()
    }

    /// What these agents record of their OpenRouter key and AgentMail inbox, with their
    /// status: the other side of the orphan sweep's difference for keys and inboxes.
    pub async fn resource_owners(&self, ids: &[AgentId]) -> Result<Vec<ResourceOwner>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let ids: Vec<&str> = ids.iter().map(AgentId::as_str).collect();
        client
            .query(
                "SELECT id, status, openrouter_key_hash, agentmail_inbox_id FROM agent_metadata WHERE id = ANY($1)",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(ResourceOwner {
                    id: stored_id(r.get(0))?,
                    status: AgentStatus::parse(r.get(1))?,
                    openrouter_key_hash: r.get(2),
                    agentmail_inbox_id: r.get(3),
                })
            })
            .collect()
    }
}

/// An agent as the orphan sweep sees it: its status and the remote resources its row records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceOwner {
    /// Id.
    pub id: AgentId,
    /// Status.
    pub status: AgentStatus,
    /// Its OpenRouter key.
    pub openrouter_key_hash: Option<String>,
    /// Its AgentMail inbox.
    pub agentmail_inbox_id: Option<String>,
}
