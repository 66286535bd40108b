//! The creation journal: a new agent's row, written before any remote call, then each step as
//! it starts and as its remote effect exists, and remote ids forgotten once deleted.

use secrecy::{ExposeSecret, SecretString};

use crate::agent::{Agent, AgentId, AgentStatus, CreationStep, NewAgent};
use crate::events::{EventKind, insert_event};
use crate::secrets::Binding;
use crate::{Result, Store, StoreError};

impl Store {
    /// creator's work lease already held (so crash recovery elsewhere leaves it alone).
    pub async fn insert_creating(&self, agent: &NewAgent, lease: std::time::Duration) -> Result<Agent> {
        let keys = self.keys();
        let seal = |column: &'static str, secret: &SecretString| {
            keys.seal(secret.expose_secret(), &Binding::agent(&agent.id, column))
        };
        let gateway_token = seal("gateway_token", &agent.secrets.gateway_token)?;
        let setup_password = seal("setup_password", &agent.setup.setup_password)?;
        let wallet_private_key = seal("wallet_private_key", &agent.setup.wallet_private_key)?;
        let agent_api_token = seal("agent_api_token", &agent.secrets.agent_api_token)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO agent_metadata (id, railway_project_id, status, image, gateway_token, \
             setup_password, wallet_private_key, agent_api_token, worker_lease_until, shape, worker_replica) \
             VALUES ($1, '', 'creating', $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8, $9)",
            &[
                &agent.id.as_str(),
                &agent.image,
                &gateway_token,
                &setup_password,
                &wallet_private_key,
                &agent_api_token,
                &lease.as_secs_f64(),
                &agent.shape,
                &self.replica_id(),
            ],
        )
        .await?;
        insert_event(
            &tx,
            &agent.id,
            EventKind::Created,
            None,
            Some(AgentStatus::Creating),
            &agent.image,
        )
        .await?;
        tx.commit().await?;
        drop(client);
        self.agent(&agent.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("agent {} vanished after insert", agent.id)))
    }

    /// Journals a completed saga step and saves the remote id it produced, in one transaction.
    /// Journaling the variables step also removes the setup secrets and the OpenRouter key from
    /// the row (trigger `agent_setup_secrets_forget`, migration V7): the agent has them now, and
    /// nothing reads them again.
    pub async fn record_step(&self, id: &AgentId, step: CreationStep, remote_id: Option<&str>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let (Some(column), Some(remote_id)) = (step.id_column(), remote_id) {
            // `column` comes from a fixed list in `CreationStep::id_column`, never from input.
            let sql = format!("UPDATE agent_metadata SET {column} = $2 WHERE id = $1");
            tx.execute(sql.as_str(), &[&id.as_str(), &remote_id]).await?;
        }
        tx.execute(
            "INSERT INTO agent_saga_steps (agent_id, step, remote_id) VALUES ($1, $2, $3) \
             ON CONFLICT (agent_id, step) DO UPDATE SET remote_id = EXCLUDED.remote_id",
            &[&id.as_str(), &step.as_str(), &remote_id],
        )
        .await?;
        tx.execute(
            "UPDATE agent_metadata SET step_in_flight = NULL WHERE id = $1 AND step_in_flight = $2",
            &[&id.as_str(), &step.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Notes that a step's remote call is about to be made: until [`Self::record_step`]
    /// journals it, the step's resource may exist without a recorded id. `false` (nothing
    /// noted) when the row is no longer `creating`: the creation must stop.
    pub async fn begin_step(&self, id: &AgentId, step: CreationStep) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE agent_metadata SET step_in_flight = $2 WHERE id = $1 AND status = 'creating'",
                &[&id.as_str(), &step.as_str()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Clears a step in flight that turned out to have made nothing (it failed, or a lookup
    /// found nothing to adopt or delete).
    pub async fn clear_step_in_flight(&self, id: &AgentId) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE agent_metadata SET step_in_flight = NULL WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Saves a per-agent OpenRouter key (hash for deletion, key for the agent's variables).
    pub async fn record_openrouter_key(&self, id: &AgentId, hash: &str, key: &SecretString) -> Result<()> {
        let sealed = self
            .keys()
            .seal(key.expose_secret(), &Binding::agent(id, "openrouter_api_key"))?;
        let client = self.client().await?;
        client
            .execute(
                "UPDATE agent_metadata SET openrouter_api_key = $2 WHERE id = $1",
                &[&id.as_str(), &sealed],
            )
            .await?;
        drop(client);
        self.record_step(id, CreationStep::OpenRouterKey, Some(hash))
            .await
    }

    /// Clears a remote id once the resource is confirmed gone (teardown progress).
    pub async fn forget_remote_id(&self, id: &AgentId, step: CreationStep) -> Result<()> {
        let Some(column) = step.id_column() else {
            return Ok(());
        };
        let client = self.client().await?;
        let value = if step == CreationStep::Project {
            Some("")
        } else {
            None
        };
        let sql = format!("UPDATE agent_metadata SET {column} = $2 WHERE id = $1");
        client.execute(sql.as_str(), &[&id.as_str(), &value]).await?;
        Ok(())
    }
}
