//! The append-only audit log: every transition of every agent, with its reason.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::agent::{AgentId, AgentStatus};
use crate::{Result, Store};

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The row was written; creation starts.
    Created,
    /// The status changed.
    StatusChanged,
    /// A creation step failed and was compensated.
    CreationFailed,
    /// A teardown attempt failed; it will be retried.
    TeardownFailed,
    /// A claim died mid-provision: never handed out again.
    Quarantined,
    /// Redeployed to a new image.
    Redeployed,
    /// Taken over from the Node pool's database.
    Adopted,
    /// A wake failed (passing: retried; lasting or too often: torn down).
    WakeFailed,
    /// Its `/pool/health` reported a runtime other than its shape's.
    RuntimeMismatch,
    /// Anything else worth an operator's eyes.
    Note,
}

impl EventKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::StatusChanged => "status_changed",
            Self::CreationFailed => "creation_failed",
            Self::TeardownFailed => "teardown_failed",
            Self::Quarantined => "quarantined",
            Self::Redeployed => "redeployed",
            Self::Adopted => "adopted",
            Self::WakeFailed => "wake_failed",
            Self::RuntimeMismatch => "runtime_mismatch",
            Self::Note => "note",
        }
    }
}

/// One entry of an agent's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct AgentEvent {
    /// Position in the log.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// What kind of event (`EventKind` as text).
    pub kind: String,
    /// Status before, for transitions.
    pub from_status: Option<String>,
    /// Status after, for transitions.
    pub to_status: Option<String>,
    /// Why.
    pub reason: String,
    /// Who caused it: the name of the API key (`admin`, `console` or a claim key's name),
    /// never the key; `None` for what the pool did by itself.
    pub actor: Option<String>,
}

pub(crate) async fn insert_event(
    client: &impl deadpool_postgres::GenericClient,
    agent: &AgentId,
    kind: EventKind,
    from: Option<AgentStatus>,
    to: Option<AgentStatus>,
    reason: &str,
) -> Result<()> {
    insert_event_by(client, agent, kind, (from, to), reason, None).await
}

/// [`insert_event`] with who caused it (`actor`; `None`: the pool by itself).
pub(crate) async fn insert_event_by(
    client: &impl deadpool_postgres::GenericClient,
    agent: &AgentId,
    kind: EventKind,
    (from, to): (Option<AgentStatus>, Option<AgentStatus>),
    reason: &str,
    actor: Option<&str>,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason, actor) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&agent.as_str(), &kind.as_str(), &from.map(AgentStatus::as_str), &to.map(AgentStatus::as_str), &reason, &actor],
        )
        .await?;
    Ok(())
}

impl Store {
    /// Appends an event that is not a status change.
    pub async fn append_event(&self, agent: &AgentId, kind: EventKind, reason: &str) -> Result<()> {
        let client = self.client().await?;
        insert_event(&client, agent, kind, None, None, reason).await
    }

    /// An agent's timeline, oldest first.
    pub async fn events(&self, agent: &AgentId) -> Result<Vec<AgentEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, at, kind, from_status, to_status, reason, actor FROM agent_events WHERE agent_id = $1 ORDER BY id",
                &[&agent.as_str()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AgentEvent {
                id: r.get(0),
                at: r.get(1),
                kind: r.get(2),
                from_status: r.get(3),
                to_status: r.get(4),
                reason: r.get(5),
                actor: r.get(6),
            })
            .collect())
    }
}
