//! Reading the Node pool's tables as its drizzle migrations define them
//! (`pool/drizzle/0000_reflective_richard_fisk.sql`, `0001_sticky_black_queen.sql` adds
//! `runtime_type`, `0005_famous_northstar.sql` drops `instances.url`,
//! `0006_powerful_george_stacy.sql` adds `pool_settings`). Only `SELECT`s.

use super::{NODE_SCHEMA, NodeInfra, NodeInstance};
use crate::{Result, StoreError};

/// One `instance_services` row.
#[derive(Debug, Clone)]
pub(crate) struct NodeService {
    pub instance_id: String,
    pub tool_id: String,
    pub resource_id: String,
}

/// Everything the adoption reads.
pub(crate) struct NodeTables {
    pub instances: Vec<NodeInstance>,
    pub services: Vec<NodeService>,
    /// `pool_settings.value` of key `target_idle`.
    pub target_idle: Option<String>,
    /// Rows read: `instances`, `instance_infra`, `instance_services`.
    pub counts: (usize, usize, usize),
}

pub(crate) async fn read_node(tx: &tokio_postgres::Transaction<'_>) -> Result<NodeTables> {
    let present: i64 = tx
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 \
             AND table_name IN ('instances', 'instance_infra', 'instance_services', 'pool_settings')",
            &[&NODE_SCHEMA],
        )
        .await?
        .get(0);
    if present < 4 {
        return Err(StoreError::AdoptionRefused(format!(
            "schema {NODE_SCHEMA} does not hold the Node pool's tables (instances, instance_infra, \
             instance_services, pool_settings): this is not a Node pool's database; nothing was changed"
        )));
    }
    // A full join: an `instances` row without infra (no service id: refused, named) and an
    // infra row without `instances` (a creation that stopped between `infra.ts:204` and the
    // `upsertInstance` after it) are both seen.
    let rows = tx
        .query(
            "SELECT coalesce(i.id, f.instance_id) AS id, i.id IS NOT NULL AS has_instance, \
                    f.instance_id IS NOT NULL AS has_infra, i.status, i.agent_name, i.conversation_id, \
                    i.invite_url, i.instructions, coalesce(i.created_at, f.created_at) AS created_at, \
                    i.claimed_at, f.provider, f.provider_service_id, f.provider_env_id, \
                    f.provider_project_id, f.url, f.deploy_status, f.runtime_image, f.gateway_token, \
                    f.runtime_version, f.runtime_type, f.volume_id \
               FROM public.instances i FULL OUTER JOIN public.instance_infra f ON f.instance_id = i.id \
              ORDER BY coalesce(i.created_at, f.created_at), 1",
            &[],
        )
        .await?;
    let mut counts = (0, 0, 0);
    let mut instances = Vec::with_capacity(rows.len());
    for r in &rows {
        let has_instance: bool = r.try_get("has_instance")?;
        let has_infra: bool = r.try_get("has_infra")?;
        counts.0 += usize::from(has_instance);
        counts.1 += usize::from(has_infra);
        let infra = if has_infra {
            Some(NodeInfra {
                provider: r.try_get("provider")?,
                service_id: r.try_get("provider_service_id")?,
                environment_id: r.try_get("provider_env_id")?,
                project_id: r.try_get("provider_project_id")?,
                url: r.try_get("url")?,
                deploy_status: r.try_get("deploy_status")?,
                runtime_image: r.try_get("runtime_image")?,
                gateway_token: r.try_get("gateway_token")?,
                runtime_version: r.try_get("runtime_version")?,
                runtime_type: r.try_get("runtime_type")?,
                volume_id: r.try_get("volume_id")?,
            })
        } else {
            None
        };
        instances.push(NodeInstance {
            id: r.try_get("id")?,
            status: if has_instance { r.try_get("status")? } else { None },
            agent_name: r.try_get("agent_name")?,
            conversation_id: r.try_get("conversation_id")?,
            invite_url: r.try_get("invite_url")?,
            instructions: r.try_get("instructions")?,
            created_at: r.try_get("created_at")?,
            claimed_at: r.try_get("claimed_at")?,
            infra,
        });
    }
    let services: Vec<NodeService> = tx
        .query(
            "SELECT instance_id, tool_id, resource_id FROM public.instance_services ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| NodeService {
            instance_id: r.get(0),
            tool_id: r.get(1),
            resource_id: r.get(2),
        })
        .collect();
    counts.2 = services.len();
    let target_idle = tx
        .query_opt(
            "SELECT value FROM public.pool_settings WHERE key = 'target_idle'",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    Ok(NodeTables {
        instances,
        services,
        target_idle,
        counts,
    })
}
