//! How a claim's try ends when the agent did not simply answer 200: the failure policy (never
//! burn an agent on a normal answer), and the answer for a claim whose `joinUrl` an agent
//! already serves.

use std::time::{Duration, Instant};

use pool_store::AgentStatus;
use secrecy::ExposeSecret;

use crate::Provisioner;
use crate::agent_client::{ProvisionFailure, ProvisionStatus};
use crate::claim::{Attempt, ClaimResponse, StoredAnswer};
use crate::error::{ProvisionError, Result};
use crate::reset::{Look, Recovered};

impl Provisioner {
    /// The failure policy: never burn an agent on a normal answer.
    /// - 400: the claim was bad, the agent is fine: back to idle, and the claimer gets a 400.
    /// - 503: not ready: back to `starting` (the tick checks it again), the claim tries another.
    /// - 401 (our token is wrong) or no answer in time (it may be provisioning still): torn
    ///   down.
    /// - anything else (a 500 after the agent's own retries, an answer we cannot read): its
    ///   runtime is read, and reset back to idle when it holds no conversation; torn down
    ///   otherwise (the Node pool, pool/src/provision.ts:196-234).
    pub(crate) async fn after_failed_provision(
        &self,
        agent: &pool_store::Agent,
        failure: ProvisionFailure,
        key: Option<&str>,
        started: Instant,
    ) -> Result<Attempt> {
        let store = &self.inner.store;
        let message = failure.to_string();
        let answer = serde_json::to_value(StoredAnswer::Failed {
            error: message.clone(),
        })
        .ok();
        let idempotency = key.zip(answer.as_ref());
        match &failure {
            ProvisionFailure::Refused {
                status: 400,
                message: said,
            } => {
                let reason = format!("the agent refused the claim's fields: {said}");
                store
                    .return_to_pool(
                        &agent.id,
                        AgentStatus::Claiming,
                        AgentStatus::Idle,
                        &reason,
                        idempotency,
                    )
                    .await?;
                self.inner.stats.claim("refused_by_agent", started.elapsed());
                Err(ProvisionError::InvalidRequest {
                    field: "claim",
                    message: format!("the agent refused it: {said}"),
                })
            }
            ProvisionFailure::Refused { status: 503, .. } => {
                store
                    .return_to_pool(
                        &agent.id,
                        AgentStatus::Claiming,
                        AgentStatus::Starting,
                        "the agent was not ready (503); the claim took another",
                        None,
                    )
                    .await?;
                if let Some(key) = key {
                    store.forget_idempotency_key(key, &agent.id).await?;
                }
                tracing::info!(agent = %agent.id, "agent not ready for a claim; back to starting");
                Ok(Attempt::NotReady)
            }
            ProvisionFailure::Refused { status: 401, .. } | ProvisionFailure::Timeout(_) => {
                self.fail_claim(&agent.id, key, message, started).await?;
                Err(ProvisionError::ProvisionFailed {
                    agent: agent.id.clone(),
                    failure,
                })
            }
            _ => {
                let recovered = self
                    .reset_or_tear_down(
                        agent,
                        AgentStatus::Claiming,
                        Look::StatusFirst,
                        &format!("provision failed: {message}"),
                        idempotency,
                    )
                    .await?;
                let outcome = match recovered {
                    Recovered::Idle => "failed_agent_kept",
                    _ => "failed",
                };
                self.inner.stats.claim(outcome, started.elapsed());
                Err(ProvisionError::ProvisionFailed {
                    agent: agent.id.clone(),
                    failure,
                })
            }
        }
    }

    /// The answer for a claim whose `joinUrl` an agent already serves: that agent's, once its
    /// own claim is done (waiting for it while it is `claiming`, up to the provision timeout).
    pub(crate) async fn same_join_answer(&self, first: pool_store::Agent) -> Result<ClaimResponse> {
        let deadline = Instant::now() + self.inner.config.provision_timeout;
        let mut agent = first;
        while agent.status == AgentStatus::Claiming && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            agent = self.load(&agent.id).await?;
        }
        let status = match agent.status {
            AgentStatus::Claimed | AgentStatus::Crashed => agent
                .provision_status
                .as_deref()
                .and_then(|s| serde_json::from_value(serde_json::json!(s)).ok())
                .unwrap_or(if agent.joined == Some(true) {
                    ProvisionStatus::Joined
                } else {
                    ProvisionStatus::Created
                }),
            AgentStatus::PendingAcceptance => ProvisionStatus::PendingAcceptance,
            AgentStatus::Claiming => return Err(ProvisionError::ClaimInProgress),
            other => {
                return Err(ProvisionError::Conflict {
                    agent: agent.id.clone(),
                    status: other,
                    message: "the claim for this joinUrl failed; try again".into(),
                });
            }
        };
        let (Some(secrets), Some(gateway_url)) = (&agent.secrets, self.agent_url(&agent)) else {
            return Err(ProvisionError::ClaimInProgress);
        };
        Ok(ClaimResponse {
            invite_url: agent.invite_url.clone().unwrap_or_default(),
            conversation_id: agent.conversation_id.clone(),
            status,
            agent_name: agent.agent_name.clone().unwrap_or_default(),
            instance_id: agent.id.to_string(),
            joined: agent.joined.unwrap_or(false),
            gateway_token: secrets.gateway_token.expose_secret().to_string(),
            gateway_url,
        })
    }
}
