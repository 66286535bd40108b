//! Taking over a Node pool's database: its agents become this pool's, in one transaction.
//!
//! The Node pool at the pinned commit (xmtplabs/convos-managed-agent-runtime `723ba978`) keeps
//! its state in four tables of schema `public` (`pool/drizzle/0000_reflective_richard_fisk.sql`
//! references `"public"."instance_infra"`): `instances` (one row per agent and its status,
//! `pool/src/db/schema.ts:16-28`), `instance_infra` (its Railway ids, url, image and gateway
//! token, `schema.ts:31-46`), `instance_services` (its OpenRouter key, AgentMail inbox …,
//! `schema.ts:49-61`) and `pool_settings` (key/value; `target_idle` is the one key it accepts,
//! `pool/src/index.ts:113-115`). They are read as they are and never written: they stay in
//! place, read-only to this pool.
//!
//! Node's `pool_settings` has the name of this pool's own table (migration V6), so in such a
//! database this pool's tables live in a schema of their own (`DATABASE_SCHEMA`); migrations
//! refuse to run into the schema that holds Node's tables ([`refuse_node_schema`]).
//!
//! What each Node status becomes (`InstanceStatus`, `schema.ts:4-13`) is [`plan_instance`]'s
//! table. A row this pool cannot take over safely (a status Node never writes, no service id,
//! another provider, no project) stops the whole adoption before anything changes, naming the
//! row. Adopted agents keep their Railway project: it is not one this pool created (no
//! `project` step in the saga journal), so their teardown removes only their volumes and
//! service ([`crate::Agent::project_not_ours`]), never a project.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use tokio_postgres::IsolationLevel;

use crate::agent::{AgentId, AgentStatus};
use crate::secrets::Binding;
use crate::settings::PoolSettings;
use crate::{Result, Store, StoreError};

/// The schema the Node pool's tables are in (drizzle's default; its foreign key names it).
pub const NODE_SCHEMA: &str = "public";

/// Held while adopting ("pool-ado" in ASCII): replicas starting together adopt once.
const ADOPTION_LOCK_KEY: i64 = 0x706f_6f6c_2d61_646f;

/// Every status the Node pool writes (`pool/src/db/schema.ts:4-13`).
pub const NODE_STATUSES: [&str; 9] = [
    "starting",
    "idle",
    "claimed",
    "pending_acceptance",
    "tainted",
    "crashed",
    "claiming",
    "dead",
    "sleeping",
];

/// How to adopt.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// Print what would happen; change nothing.
    pub dry_run: bool,
    /// The Node pool's own Railway project (`RAILWAY_PROJECT_ID`): rows without
    /// `provider_project_id` predate one project per agent and live there
    /// (`pool/src/services/infra.ts:267-270`). Required only when such rows exist.
    pub legacy_project_id: Option<String>,
    /// The settings written when this database has none yet (with `minIdle` from Node's
    /// `target_idle`).
    pub settings_seed: PoolSettings,
}

/// A Node `instances` row joined with its `instance_infra` row (either may be missing).
#[derive(Debug, Clone, Default)]
pub struct NodeInstance {
    /// `instances.id` (or `instance_infra.instance_id` for an infra row alone).
    pub id: String,
    /// `instances.status`; `None` when only `instance_infra` has the id.
    pub status: Option<String>,
    /// `instances.agent_name`.
    pub agent_name: Option<String>,
    /// `instances.conversation_id`.
    pub conversation_id: Option<String>,
    /// `instances.invite_url`.
    pub invite_url: Option<String>,
    /// `instances.instructions`.
    pub instructions: Option<String>,
    /// `instances.created_at` (or the infra row's).
    pub created_at: Option<DateTime<Utc>>,
    /// `instances.claimed_at`.
    pub claimed_at: Option<DateTime<Utc>>,
    /// The `instance_infra` row.
    pub infra: Option<NodeInfra>,
}

/// A Node `instance_infra` row.
#[derive(Debug, Clone, Default)]
pub struct NodeInfra {
    /// `provider` (`railway`).
    pub provider: String,
    /// `provider_service_id`.
    pub service_id: String,
    /// `provider_env_id`.
    pub environment_id: String,
    /// `provider_project_id`: its own project, or none for the shared-project era.
    pub project_id: Option<String>,
    /// `url` (`https://<domain>`).
    pub url: Option<String>,
    /// `deploy_status`: Railway's word when Node last looked.
    pub deploy_status: Option<String>,
    /// `runtime_image`.
    pub runtime_image: Option<String>,
    /// `gateway_token`: the agent's `GATEWAY_TOKEN` (`infra.ts:32-37`).
    pub gateway_token: Option<String>,
    /// `runtime_version`.
    pub runtime_version: Option<String>,
    /// `runtime_type` (`openclaw`, `hermes`).
    pub runtime_type: Option<String>,
    /// `volume_id`.
    pub volume_id: Option<String>,
}

/// What happens to one Node instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAgent {
    /// The agent id (Node's `nanoid(12)`, kept).
    pub id: AgentId,
    /// Node's status (`(no instances row)` for an infra row alone).
    pub node_status: String,
    /// The status it gets here.
    pub status: AgentStatus,
    /// Why, in a few words.
    pub why: &'static str,
    /// True when it lives in the Node pool's shared project (no project of its own).
    pub shared_project: bool,
}

/// What an adoption did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct AdoptionReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Rows read: `instances`, `instance_infra`, `instance_services`.
    pub read: (usize, usize, usize),
    /// Agents adopted now (or that would be).
    pub adopted: Vec<PlannedAgent>,
    /// Node ids this database already has: adopted before.
    pub already_adopted: Vec<String>,
    /// Node's `target_idle`, if set.
    pub target_idle: Option<u32>,
    /// `minIdle` before and after, when this adoption sets it (the first one only).
    pub min_idle: Option<(Option<u32>, u32)>,
    /// Node `instance_services` rows this pool does not manage, left to the operator
    /// (`agent id`, `tool_id`, `resource_id`).
    pub left_to_operator: Vec<(String, String, String)>,
}

impl fmt::Display for AdoptionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, n, s) = self.read;
        writeln!(
            f,
            "Node pool adoption{}: read {i} instances, {n} instance_infra, {s} instance_services rows from schema {NODE_SCHEMA}",
            if self.dry_run {
                " (dry run, nothing changed)"
            } else {
                ""
            }
        )?;
        let mut groups: BTreeMap<(&str, AgentStatus, &str), Vec<&str>> = BTreeMap::new();
        for a in &self.adopted {
            groups
                .entry((a.node_status.as_str(), a.status, a.why))
                .or_default()
                .push(a.id.as_str());
        }
        let verb = if self.dry_run { "would adopt" } else { "adopted" };
        for ((node, ours, why), ids) in &groups {
            let to = if *ours == AgentStatus::Deleting {
                "teardown".to_string()
            } else {
                ours.to_string()
            };
            writeln!(
                f,
                "  {node:<20} -> {to:<10} {:>3}  ({why}): {}",
                ids.len(),
                ids.join(", ")
            )?;
        }
        let shared = self.adopted.iter().filter(|a| a.shared_project).count();
        if shared > 0 {
            writeln!(
                f,
                "  {shared} of them live in the Node pool's shared project (legacy agents)"
            )?;
        }
        writeln!(f, "  {verb}: {}", self.adopted.len())?;
        if self.adopted.is_empty() && !self.already_adopted.is_empty() {
            writeln!(f, "  nothing new: already adopted")?;
        }
        writeln!(f, "  already adopted: {}", self.already_adopted.len())?;
        match (self.target_idle, self.min_idle) {
            (Some(t), Some((before, after))) => writeln!(
                f,
                "  minIdle: {} -> {after} (Node's target_idle {t})",
                before.map_or("unset".into(), |b| b.to_string())
            )?,
            (Some(t), None) => writeln!(
                f,
                "  minIdle: unchanged (Node's target_idle {t}; set by an earlier adoption)"
            )?,
            (None, _) => writeln!(f, "  minIdle: unchanged (Node has no target_idle)")?,
        }
        for (agent, tool, resource) in &self.left_to_operator {
            writeln!(
                f,
                "  left to the operator: {tool} {resource} of agent {agent} (not managed by this pool)"
            )?;
        }
        Ok(())
    }
}

/// Why one Node row cannot be adopted.
fn refusal(id: &str, what: impl fmt::Display) -> String {
    format!("instances row {id:?}: {what}")
}

/// What a Node instance becomes here, or why it cannot be adopted (naming the row).
///
/// | Node status | here | why |
/// |---|---|---|
/// | `starting`, `idle`, `claimed`, `pending_acceptance`, `crashed` | the same | kept |
/// | `claiming` | `starting` | the tick health-checks it, then it is idle |
/// | `sleeping` | `claimed` when it was claimed, else `starting` | Railway slept it (`pool/src/status.ts:16`) |
/// | `tainted`, `dead` | teardown | Node had given up on it |
/// | no `instances` row | teardown | a creation that stopped half-way (`infra.ts:203-214`) |
/// | no gateway token, unclaimed | teardown | it cannot be provisioned |
pub fn plan_instance(
    row: &NodeInstance,
    legacy_project: Option<&str>,
) -> std::result::Result<PlannedAgent, String> {
    let id = AgentId::parse(&row.id).map_err(|e| refusal(&row.id, e))?;
    let node_status = row.status.clone().unwrap_or_else(|| "(no instances row)".into());
    if let Some(s) = &row.status
        && !NODE_STATUSES.contains(&s.as_str())
    {
        return Err(refusal(
            &row.id,
            format!(
                "status {s:?} is not one the Node pool writes ({}); nothing was changed",
                NODE_STATUSES.join(", ")
            ),
        ));
    }
    let Some(infra) = row.infra.as_ref().filter(|i| !i.service_id.trim().is_empty()) else {
        return Err(refusal(
            &row.id,
            format!(
                "status {node_status:?} has no service id (no instance_infra.provider_service_id); nothing was changed"
            ),
        ));
    };
    if infra.provider != "railway" {
        return Err(refusal(
            &row.id,
            format!(
                "provider {:?} is not railway; nothing was changed",
                infra.provider
            ),
        ));
    }
    if infra.environment_id.trim().is_empty() {
        return Err(refusal(&row.id, "has no provider_env_id; nothing was changed"));
    }
    let own_project = infra.project_id.as_deref().filter(|p| !p.is_empty());
    if own_project.is_none() && legacy_project.is_none_or(str::is_empty) {
        return Err(refusal(
            &row.id,
            "has no provider_project_id, so it lives in the Node pool's shared project: set RAILWAY_PROJECT_ID \
             (or --legacy-project-id) to that project's id; nothing was changed",
        ));
    }
    let claimed_before = row.claimed_at.is_some() || row.agent_name.is_some();
    let has_token = infra.gateway_token.as_deref().is_some_and(|t| !t.is_empty());
    use AgentStatus as S;
    let (status, why) = match row.status.as_deref() {
        None => (S::Deleting, "a creation that stopped half-way"),
        Some("tainted") => (S::Deleting, "Node had given up on it"),
        Some("dead") => (S::Deleting, "its deployment is dead"),
        Some("idle" | "starting" | "claiming") if !has_token => (S::Deleting, "no gateway token"),
        Some("sleeping") if !has_token && !claimed_before => (S::Deleting, "no gateway token"),
        Some("starting") => (S::Starting, "kept"),
        Some("idle") => (S::Idle, "kept"),
        Some("claimed") => (S::Claimed, "kept"),
        Some("crashed") => (S::Crashed, "kept"),
        Some("pending_acceptance") => (S::PendingAcceptance, "kept"),
        Some("claiming") => (S::Starting, "health check, then idle"),
        Some("sleeping") if claimed_before => (S::Claimed, "slept by Railway, was claimed"),
        Some("sleeping") => (S::Starting, "slept by Railway, health check"),
        Some(other) => unreachable!("status {other} was checked above"),
    };
    Ok(PlannedAgent {
        id,
        node_status,
        status,
        why,
        shared_project: own_project.is_none(),
    })
}

/// Node's `target_idle`, read as Node reads it (`pool/src/pool.ts:95-96`: `parseInt`, 0..=50
/// when written, `pool/src/index.ts:114`).
pub fn parse_target_idle(value: &str) -> std::result::Result<u32, String> {
    let digits: String = value.trim().chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<u32>() {
        Ok(n) if n <= 50 => Ok(n),
        _ => Err(format!(
            "pool_settings row \"target_idle\": {:?} is not a number from 0 to 50; nothing was changed",
            value.chars().take(40).collect::<String>()
        )),
    }
}

/// Refuses to migrate into a schema that holds the Node pool's tables: this pool's V6
/// `pool_settings` would collide with Node's, and its tables belong in a schema of their own.
pub(crate) async fn refuse_node_schema(client: &tokio_postgres::Client, schema: &str) -> Result<()> {
    let node: bool = client
        .query_one(
            "SELECT to_regclass(format('%I.instances', $1::text)) IS NOT NULL \
                AND to_regclass(format('%I.instance_infra', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await?
        .get(0);
    if node {
        return Err(StoreError::Migration(format!(
            "schema {schema} holds the Node pool's tables (instances, instance_infra, pool_settings); this pool's \
             pool_settings would collide with Node's. Set DATABASE_SCHEMA to a schema of this pool's own (for example \
             agent_pool), then adopt Node's agents with `cargo xtask migrate adopt-node` or POOL_ADOPT_NODE_SCHEMA=true"
        )));
    }
    Ok(())
}

mod read;
mod write;

impl Store {
    /// Adopts the Node pool's agents from schema [`NODE_SCHEMA`] of this database: a dry run
    /// changes nothing; a real run writes everything in one transaction, or nothing. A second
    /// run adopts only ids this database does not have yet.
    pub async fn adopt_node(&self, options: &AdoptOptions) -> Result<AdoptionReport> {
        let schema = self.config().checked_schema()?;
        if schema == NODE_SCHEMA {
            return Err(StoreError::AdoptionRefused(format!(
                "this pool's tables are in schema {NODE_SCHEMA}, where the Node pool's are: set DATABASE_SCHEMA to a \
                 schema of this pool's own (for example agent_pool) and run again; nothing was changed"
            )));
        }
        let (mut client, connection) = self.config().connect_dedicated().await?;
        let result = async {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&ADOPTION_LOCK_KEY])
                .await?;
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(options.dry_run)
                .start()
                .await?;
            let report = self.adopt_in(&tx, options).await?;
            if options.dry_run {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            Ok(report)
        }
        .await;
        drop(client);
        let _ = connection.await;
        result
    }

    async fn adopt_in(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        options: &AdoptOptions,
    ) -> Result<AdoptionReport> {
        let node = read::read_node(tx).await?;
        let legacy = options.legacy_project_id.as_deref();
        let mut problems = Vec::new();
        let mut planned = Vec::new();
        for row in &node.instances {
            match plan_instance(row, legacy) {
                Ok(p) => planned.push(p),
                Err(e) => problems.push(e),
            }
        }
        let target_idle = match &node.target_idle {
            Some(v) => match parse_target_idle(v) {
                Ok(n) => Some(n),
                Err(e) => {
                    problems.push(e);
                    None
                }
            },
            None => None,
        };
        if !problems.is_empty() {
            return Err(StoreError::AdoptionRefused(problems.join("; ")));
        }
        let ids: Vec<&str> = planned.iter().map(|p| p.id.as_str()).collect();
        let known: BTreeSet<String> = tx
            .query("SELECT id FROM agent_metadata WHERE id = ANY($1)", &[&ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (already, adopted): (Vec<PlannedAgent>, Vec<PlannedAgent>) =
            planned.into_iter().partition(|p| known.contains(p.id.as_str()));
        let adopted_ids: BTreeSet<&str> = adopted.iter().map(|p| p.id.as_str()).collect();
        let mut report = AdoptionReport {
            dry_run: options.dry_run,
            read: node.counts,
            already_adopted: already.iter().map(|p| p.id.to_string()).collect(),
            target_idle,
            left_to_operator: node
                .services
                .iter()
                .filter(|s| adopted_ids.contains(s.instance_id.as_str()) && write::unmanaged_tool(&s.tool_id))
                .map(|s| (s.instance_id.clone(), s.tool_id.clone(), s.resource_id.clone()))
                .collect(),
            ..AdoptionReport::default()
        };
        let first = !write::adopted_before(tx).await?;
        if let (Some(target), true) = (target_idle, first) {
            report.min_idle = Some((
                write::current_min_idle(tx, &self.config.default_shape).await?,
                target,
            ));
        }
        if !options.dry_run && (!adopted.is_empty() || report.min_idle.is_some()) {
            let keys = self.keys();
            for plan in &adopted {
                let row = node
                    .instances
                    .iter()
                    .find(|r| r.id == plan.id.as_str())
                    .ok_or_else(|| StoreError::Corrupt(format!("adopted row {} vanished", plan.id)))?;
                let token = row
                    .infra
                    .as_ref()
                    .and_then(|i| i.gateway_token.as_deref())
                    .filter(|t| !t.is_empty());
                let sealed = match token {
                    Some(t) => Some((
                        keys.seal(t, &Binding::agent(&plan.id, "gateway_token"))?,
                        keys.seal(t, &Binding::agent(&plan.id, "agent_api_token"))?,
                    )),
                    None => None,
                };
                write::insert_agent(tx, plan, row, sealed, legacy).await?;
                let services: Vec<&read::NodeService> = node
                    .services
                    .iter()
                    .filter(|s| s.instance_id == plan.id.as_str())
                    .collect();
                write::insert_services(tx, &plan.id, &services).await?;
                write::insert_event(tx, plan).await?;
            }
            write::record_adoption(
                tx,
                &report,
                &adopted,
                &options.settings_seed,
                &self.config.default_shape,
            )
            .await?;
        }
        report.adopted = adopted;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
