//! The agents' own calls to the pool, as the runtime at the pinned commit makes them: the pool
//! server's `POST ${POOL_URL}/api/pool/self-destruct` with `{instanceId, gatewayToken}`
//! (`runtime/convos-platform/pool-server/index.ts:470-479`, relayed for the runtime's
//! `/pool/self-destruct` when its conversation exploded or it was removed,
//! `runtime/openclaw/src/convos/src/channel.ts:957-968,1619-1640`) and the web tools'
//! `POST ${POOL_URL}/api/pool/self-info` (`runtime/openclaw/src/web-tools/index.ts:81-94`).
//! The Node pool answers both at `pool/src/index.ts:148-179,368-391`.
//!
//! The caller is already authenticated ([`Provisioner::authenticate_agent`]): every method
//! here acts on that agent only, so one agent's token never reaches another.

use std::time::Duration;

use pool_store::{Agent, AgentStatus, RateDecision, Transition};

use crate::{ProvisionError, Provisioner, Result};

/// The actor on the events of an agent's own calls: `agent:<id>`.
pub fn agent_actor(agent: &Agent) -> String {
    format!("agent:{}", agent.id)
}

/// What a self-destruct did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfDestructed {
    /// The agent moved to `deleting` now; its teardown runs.
    Started,
    /// It was being torn down already; nothing changed.
    AlreadyDeleting,
}

/// What an agent is told about itself (`self-info`): Node's `{instanceId, runtimeVersion,
/// runtimeImage, latestImage}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfInfo {
    /// Its id.
    pub instance_id: String,
    /// The runtime version its `/pool/health` reported, when it did.
    pub runtime_version: Option<String>,
    /// The image it was deployed from.
    pub runtime_image: Option<String>,
    /// The image new agents get now.
    pub latest_image: String,
}

impl Provisioner {
    /// Counts one of `agent`'s own calls against `POOL_AGENT_CALLS_PER_MINUTE` (one count for
    /// every replica, [`pool_store::Store::hit_rate_limit`]): over it, [`ProvisionError::RateLimited`].
    pub async fn charge_agent_call(&self, agent: &Agent) -> Result<()> {
        let limit = self.inner.config.agent_calls_per_minute;
        let key = format!("agent-calls:{}", agent.id);
        let minute = Duration::from_secs(60);
        match self.inner.store.hit_rate_limit(&key, minute, limit).await? {
            RateDecision::Allowed => Ok(()),
            RateDecision::Limited { retry_after } => {
                tracing::warn!(agent = %agent.id, "agent call rate limit reached");
                Err(ProvisionError::RateLimited {
                    what: format!("calls of this agent to the pool (at most {limit} per 60 s)"),
                    retry_after,
                })
            }
        }
    }

    /// The agent asked to be destroyed (its conversation ended): it moves to `deleting` now,
    /// with an event whose actor is `agent:<id>`, and is torn down in a task (retried until
    /// done); the next tick refills the pool. An agent a claim is provisioning is refused (409):
    /// the claim decides first; so is a protected one (`PROTECTED_INSTANCES`).
    pub async fn self_destruct(&self, agent: &Agent) -> Result<SelfDestructed> {
        let actor = agent_actor(agent);
        let reason = "self-destruct requested by the agent";
        if self.is_protected(&agent.id) {
            tracing::warn!(agent = %agent.id, "self-destruct refused: the agent is protected");
            return Err(ProvisionError::Conflict {
                agent: agent.id.clone(),
                status: agent.status,
                message:
                    "it is protected (PROTECTED_INSTANCES): only an operator's confirmed kill removes it"
                        .into(),
            });
        }
        match agent.status {
            AgentStatus::Deleting => return Ok(SelfDestructed::AlreadyDeleting),
            AgentStatus::Deleted => return Err(ProvisionError::NotFound(agent.id.clone())),
            AgentStatus::Claiming => {
                return Err(ProvisionError::Conflict {
                    agent: agent.id.clone(),
                    status: agent.status,
                    message: "a claim is provisioning it; ask again once the claim ends".into(),
                });
            }
            from => {
                let moved = self
                    .inner
                    .store
                    .begin_teardown_by(&agent.id, from, reason, false, Some(&actor))
                    .await?;
                if let Transition::LostRace { actual } = moved {
                    return match actual {
                        Some(AgentStatus::Deleting) => Ok(SelfDestructed::AlreadyDeleting),
                        actual => Err(ProvisionError::Conflict {
                            agent: agent.id.clone(),
                            status: actual.unwrap_or(AgentStatus::Deleted),
                            message: "its status changed meanwhile; ask again".into(),
                        }),
                    };
                }
            }
        }
        tracing::info!(agent = %agent.id, "self-destruct: teardown started");
        self.start_teardown(agent.id.clone());
        Ok(SelfDestructed::Started)
    }

    /// What `agent` is told about itself.
    pub fn self_info(&self, agent: &Agent) -> SelfInfo {
        SelfInfo {
            instance_id: agent.id.to_string(),
            runtime_version: agent.runtime_version.clone(),
            runtime_image: agent.image.clone(),
            latest_image: self
                .inner
                .config
                .shapes
                .get(&agent.shape)
                .unwrap_or_else(|| self.inner.config.default_shape())
                .image
                .to_string(),
        }
    }
}
