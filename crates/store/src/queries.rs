//! Reading agents: one, some, every live one, by status, and counts.

use crate::agent::{Agent, AgentId, AgentStatus, StatusCounts};
use crate::rows::select_agents;
use crate::{Result, Store};

impl Store {
    /// One agent, deleted ones included.
    pub async fn agent(&self, id: &AgentId) -> Result<Option<Agent>> {
        let client = self.client().await?;
        Ok(
            select_agents(&client, self.keys(), "a.id = $1", "a.id", &[&id.as_str()])
                .await?
                .into_iter()
                .next(),
        )
    }

    /// The agents with these ids, deleted ones included.
    pub async fn agents_by_ids(&self, ids: &[AgentId]) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        let ids: Vec<&str> = ids.iter().map(AgentId::as_str).collect();
        select_agents(&client, self.keys(), "a.id = ANY($1)", "a.id", &[&ids]).await
    }

    /// The live agent that owns this Railway project (or, for a legacy agent in the shared
    /// project, this service): whom a Railway event is about. `None` when it is not ours.
    pub async fn live_agent_on_railway(
        &self,
        project_id: &str,
        service_id: Option<&str>,
    ) -> Result<Option<Agent>> {
        let client = self.client().await?;
        Ok(select_agents(
            &client,
            self.keys(),
            "a.status <> 'deleted' AND a.railway_project_id = $1 AND (NOT a.legacy OR a.railway_service_id = $2)",
            "a.created_at, a.id",
            &[&project_id, &service_id as &(dyn tokio_postgres::types::ToSql + Sync)],
        )
        .await?
        .into_iter()
        .next())
    }

    /// Every agent that is not deleted: what the tick reconciles.
    pub async fn live_agents(&self) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        select_agents(
            &client,
            self.keys(),
            "a.status <> 'deleted'",
            "a.created_at, a.id",
            &[],
        )
        .await
    }

    /// The oldest `limit` live agents (a view that shows the first of them).
    pub async fn first_live_agents(&self, limit: usize) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        let order = format!("a.created_at, a.id LIMIT {}", limit.max(1));
        select_agents(&client, self.keys(), "a.status <> 'deleted'", &order, &[]).await
    }

    /// The oldest `limit` agents in one status (a view that shows the first of them).
    pub async fn first_agents_with_status(&self, status: AgentStatus, limit: usize) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        let order = format!("a.created_at, a.id LIMIT {}", limit.max(1));
        select_agents(&client, self.keys(), "a.status = $1", &order, &[&status.as_str()]).await
    }

    /// Agents in one status, oldest first.
    pub async fn agents_with_status(&self, status: AgentStatus) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        select_agents(
            &client,
            self.keys(),
            "a.status = $1",
            "a.created_at, a.id",
            &[&status.as_str()],
        )
        .await
    }

    /// Live agents by status.
    pub async fn counts(&self) -> Result<StatusCounts> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT status, count(*) FROM agent_metadata WHERE status <> 'deleted' GROUP BY status",
                &[],
            )
            .await?;
        let mut counts = StatusCounts::default();
        for row in rows {
            counts.add(AgentStatus::parse(row.get(0))?, row.get(1));
        }
        Ok(counts)
    }

    /// Live agents by status, per shape (runtime), by shape name.
    pub async fn counts_by_shape(&self) -> Result<std::collections::BTreeMap<String, StatusCounts>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT shape, status, count(*) FROM agent_metadata WHERE status <> 'deleted' GROUP BY shape, status",
                &[],
            )
            .await?;
        let mut counts = std::collections::BTreeMap::<String, StatusCounts>::new();
        for row in rows {
            counts
                .entry(row.get(0))
                .or_default()
                .add(AgentStatus::parse(row.get(1))?, row.get(2));
        }
        Ok(counts)
    }
}

impl StatusCounts {
    /// Adds every status of `more` (one shape's counts into the whole pool's).
    pub fn add_all(&mut self, more: &StatusCounts) {
        self.creating += more.creating;
        self.starting += more.starting;
        self.idle += more.idle;
        self.claiming += more.claiming;
        self.claimed += more.claimed;
        self.pending_acceptance += more.pending_acceptance;
        self.crashed += more.crashed;
        self.parking += more.parking;
        self.parked += more.parked;
        self.waking += more.waking;
        self.deleting += more.deleting;
    }
}
