//! The services an agent was given through the service proxy (an AgentMail inbox, a Telnyx
//! phone number), and the phone numbers the pool owns.
//!
//! Which inbox or number belongs to which agent is this module's fact: the agent never names
//! one. A row is written before the remote call that costs money (`provisioning`, under a
//! lease, so one provisioning per agent and service runs at a time on all replicas), and
//! becomes `active` with the remote id; a provisioning that fails removes its row. An agent
//! whose teardown began gets nothing new (the check and the row are one transaction, under
//! the agent row's lock, so a teardown that starts meanwhile sees the row and releases what it
//! names).
//!
//! Phone numbers cost money every month: a released number goes back to `available` and is
//! given to the next agent that asks. `assigned_at` bounds what its new owner may read of it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::agent::AgentId;
use crate::rows::stored_id;
use crate::{Result, Store, StoreError};

/// A service the proxy gives agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKind {
    /// An AgentMail inbox.
    Email,
    /// A Telnyx phone number.
    Sms,
}

impl ServiceKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "email" => Ok(Self::Email),
            "sms" => Ok(Self::Sms),
            other => Err(StoreError::Corrupt(format!("unknown service {other:?}"))),
        }
    }
}

/// One agent's service as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentService {
    /// The agent.
    pub agent_id: AgentId,
    /// Which service.
    pub kind: ServiceKind,
    /// The inbox id or phone number (`None` while provisioning).
    pub resource_id: Option<String>,
    /// A provisioning holds the row until then (`None` once active).
    pub lease_until: Option<DateTime<Utc>>,
    /// When the resource became this agent's.
    pub assigned_at: Option<DateTime<Utc>>,
}

impl AgentService {
    /// True once the resource is the agent's.
    pub fn is_active(&self) -> bool {
        self.lease_until.is_none() && self.resource_id.is_some()
    }
}

/// What [`Store::begin_service`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceStart {
    /// The row is written and the lease is the caller's: make the resource, then
    /// [`Store::activate_service`] (or [`Store::abandon_service`]).
    Began,
    /// The agent has it already.
    Existing(AgentService),
    /// Another provisioning of the same service for this agent holds the lease.
    Busy,
    /// The agent is being torn down, or is gone: nothing new is made for it.
    AgentGone,
}

/// A phone number the pool owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    /// E.164.
    pub phone_number: String,
    /// The Telnyx messaging profile it sends through.
    pub messaging_profile_id: String,
    /// `ordering`, `available` or `assigned`.
    pub status: String,
    /// Its holder (while ordering or assigned).
    pub agent_id: Option<String>,
}

const SERVICE_COLUMNS: &str = "agent_id, service, resource_id, lease_until, assigned_at";

fn service_from_row(row: &tokio_postgres::Row) -> Result<AgentService> {
    let state: Option<String> = row.try_get("state").ok();
    let lease_until: Option<DateTime<Utc>> = row.try_get("lease_until")?;
    Ok(AgentService {
        agent_id: stored_id(row.try_get("agent_id")?)?,
        kind: ServiceKind::parse(row.try_get("service")?)?,
        resource_id: row.try_get("resource_id")?,
        lease_until: match state.as_deref() {
            Some("active") => None,
            _ => lease_until,
        },
        assigned_at: row.try_get("assigned_at")?,
    })
}

fn number_from_row(row: &tokio_postgres::Row) -> PhoneNumber {
    PhoneNumber {
        phone_number: row.get("phone_number"),
        messaging_profile_id: row.get("messaging_profile_id"),
        status: row.get("status"),
        agent_id: row.get("agent_id"),
    }
}

impl Store {
    /// Every service recorded for an agent (active or being provisioned).
    pub async fn agent_services(&self, agent: &AgentId) -> Result<Vec<AgentService>> {
        let client = self.client().await?;
        client
            .query(
                &format!(
                    "SELECT state, {SERVICE_COLUMNS} FROM agent_services WHERE agent_id = $1 ORDER BY service"
                ),
                &[&agent.as_str()],
            )
            .await?
            .iter()
            .map(service_from_row)
            .collect()
    }

    /// The agent's active service of this kind, if it has one.
    pub async fn active_service(&self, agent: &AgentId, kind: ServiceKind) -> Result<Option<AgentService>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!(
                    "SELECT state, {SERVICE_COLUMNS} FROM agent_services
                      WHERE agent_id = $1 AND service = $2 AND state = 'active'"
                ),
                &[&agent.as_str(), &kind.as_str()],
            )
            .await?
            .as_ref()
            .map(service_from_row)
            .transpose()
    }

    /// Begins provisioning `kind` for `agent`: writes the row (or takes over one whose lease
    /// ran out) under a lease of `lease`. See [`ServiceStart`].
    pub async fn begin_service(
        &self,
        agent: &AgentId,
        kind: ServiceKind,
        lease: Duration,
    ) -> Result<ServiceStart> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The agent row's lock: a teardown that begins now waits for this transaction, then
        // finds the row; one that began first is seen here.
        let status: Option<String> = tx
            .query_opt(
                "SELECT status FROM agent_metadata WHERE id = $1 FOR SHARE",
                &[&agent.as_str()],
            )
            .await?
            .map(|r| r.get(0));
        if !matches!(status.as_deref(), Some(s) if s != "deleting" && s != "deleted") {
            return Ok(ServiceStart::AgentGone);
        }
        let began = tx
            .execute(
                "INSERT INTO agent_services (agent_id, service, state, lease_until)
                 VALUES ($1, $2, 'provisioning', now() + make_interval(secs => $3))
                 ON CONFLICT (agent_id, service) DO UPDATE SET lease_until = EXCLUDED.lease_until
                  WHERE agent_services.state = 'provisioning' AND agent_services.lease_until < now()",
                &[&agent.as_str(), &kind.as_str(), &lease.as_secs_f64()],
            )
            .await?;
        let outcome = if began > 0 {
            ServiceStart::Began
        } else {
            let row = tx
                .query_one(
                    &format!(
                        "SELECT state, {SERVICE_COLUMNS} FROM agent_services WHERE agent_id = $1 AND service = $2"
                    ),
                    &[&agent.as_str(), &kind.as_str()],
                )
                .await?;
            let service = service_from_row(&row)?;
            if service.is_active() {
                ServiceStart::Existing(service)
            } else {
                ServiceStart::Busy
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Records the resource a provisioning made: the row becomes active, assigned now.
    /// `false` when the row is gone (a teardown released it meanwhile): the caller removes
    /// what it made.
    pub async fn activate_service(
        &self,
        agent: &AgentId,
        kind: ServiceKind,
        resource_id: &str,
    ) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE agent_services SET state = 'active', resource_id = $3, lease_until = NULL,
                        assigned_at = now()
                  WHERE agent_id = $1 AND service = $2 AND state = 'provisioning'",
                &[&agent.as_str(), &kind.as_str(), &resource_id],
            )
            .await?
            > 0)
    }

    /// Removes a provisioning's row (it failed, and what it made is removed).
    pub async fn abandon_service(&self, agent: &AgentId, kind: ServiceKind) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM agent_services WHERE agent_id = $1 AND service = $2 AND state = 'provisioning'",
                &[&agent.as_str(), &kind.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Forgets an agent's service once its resource was released (any state).
    pub async fn forget_service(&self, agent: &AgentId, kind: ServiceKind) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM agent_services WHERE agent_id = $1 AND service = $2",
                &[&agent.as_str(), &kind.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Every inbox recorded for an agent (the orphan sweep keeps these).
    pub async fn recorded_inboxes(&self) -> Result<Vec<(AgentId, String)>> {
        let client = self.client().await?;
        client
            .query(
                "SELECT agent_id, resource_id FROM agent_services WHERE service = 'email' AND resource_id IS NOT NULL",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((stored_id(r.get(0))?, r.get(1))))
            .collect()
    }

    /// Agents whose inbox is being made now (the orphan sweep leaves their inboxes alone:
    /// the id is about to be recorded).
    pub async fn inboxes_in_provisioning(&self) -> Result<Vec<AgentId>> {
        let client = self.client().await?;
        client
            .query(
                "SELECT agent_id FROM agent_services WHERE service = 'email' AND state = 'provisioning'",
                &[],
            )
            .await?
            .iter()
            .map(|r| stored_id(r.get(0)))
            .collect()
    }

    /// Gives `agent` a released number, if one is available: the oldest released first.
    pub async fn assign_available_number(&self, agent: &AgentId) -> Result<Option<PhoneNumber>> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "UPDATE phone_numbers SET status = 'assigned', agent_id = $1, assigned_at = now()
                  WHERE phone_number = (SELECT phone_number FROM phone_numbers WHERE status = 'available'
                                         ORDER BY released_at NULLS FIRST, phone_number
                                         FOR UPDATE SKIP LOCKED LIMIT 1)
                 RETURNING *",
                &[&agent.as_str()],
            )
            .await?
            .as_ref()
            .map(number_from_row))
    }

    /// Records a number about to be ordered for `agent` (before the order: nothing that costs
    /// money without a row). `false` when the number is known already.
    pub async fn record_number_order(&self, agent: &AgentId, number: &str, profile: &str) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "INSERT INTO phone_numbers (phone_number, messaging_profile_id, status, agent_id)
                 VALUES ($1, $2, 'ordering', $3) ON CONFLICT DO NOTHING",
                &[&number, &profile, &agent.as_str()],
            )
            .await?
            > 0)
    }

    /// The order went through: the number is the agent's, assigned now.
    pub async fn number_ordered(&self, number: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE phone_numbers SET status = 'assigned', assigned_at = now() WHERE phone_number = $1",
                &[&number],
            )
            .await?;
        Ok(())
    }

    /// The order did not go through: the pool does not own the number.
    pub async fn forget_number(&self, number: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM phone_numbers WHERE phone_number = $1 AND status = 'ordering'",
                &[&number],
            )
            .await?;
        Ok(())
    }

    /// A number goes back to the pool's stock (its agent released it or was torn down).
    pub async fn release_number(&self, number: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE phone_numbers SET status = 'available', agent_id = NULL, assigned_at = NULL,
                        released_at = now()
                  WHERE phone_number = $1",
                &[&number],
            )
            .await?;
        Ok(())
    }

    /// The numbers an agent holds or is ordering (teardown releases them all).
    pub async fn numbers_of(&self, agent: &AgentId) -> Result<Vec<PhoneNumber>> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT * FROM phone_numbers WHERE agent_id = $1 ORDER BY phone_number",
                &[&agent.as_str()],
            )
            .await?
            .iter()
            .map(number_from_row)
            .collect())
    }

    /// Every number the pool owns.
    pub async fn phone_numbers(&self) -> Result<Vec<PhoneNumber>> {
        let client = self.client().await?;
        Ok(client
            .query("SELECT * FROM phone_numbers ORDER BY phone_number", &[])
            .await?
            .iter()
            .map(number_from_row)
            .collect())
    }
}
