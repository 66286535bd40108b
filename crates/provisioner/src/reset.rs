//! An agent whose claim did not end as a conversation: look at its runtime before judging.
//!
//! The Node pool at the pinned commit, after a provision that failed, resets the runtime and
//! reads its status; a clean runtime goes back to idle, a dirty one is failed
//! (`pool/src/provision.ts:203-234`, `resetAndVerifyRuntime` at 21-41). This pool does the
//! same, and when the agent may hold a user's conversation (a 500 after the agent's own
//! retries, an answer we could not read) it first reads `/convos/status` and resets only a
//! runtime that holds no conversation: a conversation a user may already be in is never wiped
//! by the pool; that agent is torn down instead.
//!
//! `pending_acceptance` is resolved the same way: `complete` makes the agent `claimed`; `fail`
//! resets it, idle when clean, torn down otherwise (issue 19; the Node pool marks it `tainted`,
//! `pool/src/db/pool.ts:173-177`, and so loses an agent that could serve again).

use pool_store::{Agent, AgentId, AgentStatus, Transition};
use secrecy::ExposeSecret;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};

/// What became of an agent the pool looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// Its runtime was reset and said it is clean: back to idle, claimable again.
    Idle,
    /// Its runtime could not be made clean (or could not be asked): torn down.
    TornDown,
    /// Someone else changed the agent first; nothing was written.
    Moved {
        /// Its status now (`None`: no such agent).
        actual: Option<AgentStatus>,
    },
}

/// How much the pool knows about what the runtime holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    /// The runtime may hold a user's conversation: read `/convos/status` first and reset only
    /// one that holds none.
    StatusFirst,
    /// The runtime's state is the pool's to drop (a pending join that failed): reset, then
    /// read the status.
    ResetFirst,
}

impl Provisioner {
    /// A pending join was accepted: `pending_acceptance → claimed` with its conversation (the
    /// runtime's `POST /api/pool/pending-acceptance/complete`). An agent that is not pending is
    /// refused with a conflict; an empty conversation id is refused as invalid.
    pub async fn complete_pending_acceptance(&self, id: &AgentId, conversation_id: &str) -> Result<()> {
        let conversation_id = conversation_id.trim();
        if conversation_id.is_empty() || conversation_id.len() > 512 || conversation_id.contains('\0') {
            return Err(ProvisionError::InvalidRequest {
                field: "conversationId",
                message: "must be 1 to 512 characters".into(),
            });
        }
        match self
            .inner
            .store
            .complete_pending_acceptance(id, conversation_id)
            .await?
        {
            Transition::Applied => {
                tracing::info!(agent = %id, "pending join accepted; claimed");
                Ok(())
            }
            Transition::LostRace { actual } => Err(not_pending(id, actual)),
        }
    }

    /// A pending join failed (the runtime's `POST /api/pool/pending-acceptance/fail`): the
    /// runtime is reset; a clean one goes back to idle, any other is torn down.
    pub async fn fail_pending_acceptance(&self, id: &AgentId) -> Result<Recovered> {
        let agent = self.load(id).await?;
        if agent.status != AgentStatus::PendingAcceptance {
            return Err(not_pending(id, Some(agent.status)));
        }
        self.reset_or_tear_down(
            &agent,
            AgentStatus::PendingAcceptance,
            Look::ResetFirst,
            "the pending join failed",
            None,
        )
        .await
    }

    /// Tears down agents `pending_acceptance` for longer than
    /// `POOL_PENDING_ACCEPTANCE_TIMEOUT_MS` (protected ones excepted), each with an event
    /// saying why. Returns how many it started tearing down.
    pub async fn tear_down_overdue_pending_acceptances(&self) -> Result<usize> {
        let store = &self.inner.store;
        let limit = self.inner.config.pending_acceptance_timeout;
        let reason = format!(
            "pending acceptance for longer than POOL_PENDING_ACCEPTANCE_TIMEOUT_MS ({} s)",
            limit.as_secs()
        );
        let mut started = 0;
        for id in store.overdue_pending_acceptances(limit).await? {
            if self.is_protected(&id) {
                continue;
            }
            let moved = store
                .begin_teardown(&id, AgentStatus::PendingAcceptance, &reason, true)
                .await?;
            if moved.applied() {
                tracing::warn!(agent = %id, "pending join timed out; tearing down");
                self.start_teardown(id);
                started += 1;
            }
        }
        Ok(started)
    }

    /// Resets an agent in `from` and returns it to idle when its runtime says it is clean;
    /// tears it down (quarantined) otherwise. Under `idempotency`, the claim's answer is stored
    /// with the change.
    pub(crate) async fn reset_or_tear_down(
        &self,
        agent: &Agent,
        from: AgentStatus,
        look: Look,
        why: &str,
        idempotency: Option<(&str, &serde_json::Value)>,
    ) -> Result<Recovered> {
        let verdict = self.look_and_reset(agent, look).await;
        let store = &self.inner.store;
        let moved = match &verdict {
            Ok(()) => {
                let reason = format!("{why}; the runtime was reset and is clean");
                store
                    .return_to_pool(&agent.id, from, AgentStatus::Idle, &reason, idempotency)
                    .await?
            }
            Err(problem) => {
                let reason = format!("{why}; {problem}");
                let moved = if from == AgentStatus::Claiming {
                    store.abandon_claim(&agent.id, &reason, idempotency).await?
                } else {
                    store.begin_teardown(&agent.id, from, &reason, true).await?
                };
                if moved.applied() {
                    self.start_teardown(agent.id.clone());
                }
                moved
            }
        };
        Ok(match (moved, verdict) {
            (Transition::LostRace { actual }, _) => Recovered::Moved { actual },
            (Transition::Applied, Ok(())) => {
                tracing::info!(agent = %agent.id, %why, "runtime reset; agent back to idle");
                Recovered::Idle
            }
            (Transition::Applied, Err(problem)) => {
                tracing::warn!(agent = %agent.id, %why, %problem, "agent torn down");
                Recovered::TornDown
            }
        })
    }

    /// Ok when the runtime was reset and then said it is clean; otherwise why not.
    async fn look_and_reset(&self, agent: &Agent, look: Look) -> std::result::Result<(), String> {
        let Some(base_url) = self.agent_url(agent) else {
            return Err("the agent has no callable URL".into());
        };
        let Some(secrets) = &agent.secrets else {
            return Err("the agent's gateway token cannot be read".into());
        };
        let token = secrets.gateway_token.expose_secret();
        let agents = &self.inner.agents;
        if look == Look::StatusFirst {
            let status = agents
                .runtime_status(&base_url, token)
                .await
                .map_err(|e| format!("its runtime could not be read: {e}"))?;
            if !status.holds_no_conversation() {
                return Err(format!(
                    "its runtime holds a conversation ({}), which the pool does not wipe",
                    status.conversation_id.as_deref().unwrap_or("pending join")
                ));
            }
        }
        agents
            .reset_runtime(&base_url, token)
            .await
            .map_err(|e| format!("its runtime could not be reset: {e}"))?;
        let after = agents
            .runtime_status(&base_url, token)
            .await
            .map_err(|e| format!("its runtime could not be read after the reset: {e}"))?;
        if after.clean == Some(true) {
            Ok(())
        } else {
            Err("its runtime is not clean after the reset".into())
        }
    }
}

fn not_pending(id: &AgentId, actual: Option<AgentStatus>) -> ProvisionError {
    match actual {
        None | Some(AgentStatus::Deleted) => ProvisionError::NotFound(id.clone()),
        Some(status) => ProvisionError::Conflict {
            agent: id.clone(),
            status,
            message: "it is not waiting for a join's acceptance".into(),
        },
    }
}
