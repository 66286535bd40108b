//! The claim: hand one idle agent to a user, exactly once.
//!
//! The oldest idle agent is taken under a lease (`FOR UPDATE SKIP LOCKED`, so concurrent
//! claims never share one), provisioned over `/pool/provision` with the agent's own token,
//! and recorded: `claimed`, or `pending_acceptance` when its join waits for approval. An
//! agent is never burned on a normal answer (see `Provisioner::after_failed_provision`'s
//! policy); one that may hold the user's conversation is never handed out again. An
//! `Idempotency-Key` returns the first answer to a repeat, and a claim for a `joinUrl` an
//! agent already serves gets that agent's answer.

use std::time::{Duration, Instant};

use pool_store::{AgentId, AgentStatus, ClaimOutcome, ClaimRequest, PoolSignal, Transition};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::Provisioner;
use crate::agent_client::{ProvisionFailure, ProvisionRequest, ProvisionStatus};
use crate::claim_input::{CheckedClaim, ClaimInput};
use crate::error::{ProvisionError, Result};

/// Agents one claim tries when they answer 503 (not ready).
const MAX_NOT_READY: usize = 3;

/// How one agent's try at a claim ended, when it did not fail.
pub(crate) enum Attempt {
    /// The claimer's answer.
    Done(Box<ClaimResponse>),
    /// The agent was not ready; it went back to `starting`.
    NotReady,
}

/// What a claimer gets: the original API's payload, with the Node pool's `status` and
/// `agentName` (pool/src/provision.ts:125-133, 165-173).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResponse {
    /// The invite URL for the user (a join's own URL when the agent joined or waits).
    pub invite_url: String,
    /// The conversation; `null` while a join waits for acceptance.
    pub conversation_id: Option<String>,
    /// `created`, `joined` or `pending_acceptance`.
    #[serde(default = "created")]
    pub status: ProvisionStatus,
    /// The name the agent was given.
    #[serde(default)]
    pub agent_name: String,
    /// The agent's id.
    pub instance_id: String,
    /// Whether it joined an existing conversation.
    pub joined: bool,
    /// The agent's gateway token (the one secret that leaves the pool, to its claimer).
    pub gateway_token: String,
    /// The agent's base URL.
    pub gateway_url: String,
}

/// The status of answers stored before `status` was.
fn created() -> ProvisionStatus {
    ProvisionStatus::Created
}

/// The stored answer of a claim under an idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum StoredAnswer {
    Claimed(ClaimResponse),
    Failed { error: String },
}

/// The longest a claim may wait for an agent (`Prefer: wait=N`, N at most this): what a
/// wake needs. A waiting claim on an empty warm tier wakes a parked agent, whose deploy takes
/// 30 s to 2 min (Railway's documented deploy phase; the simulator's p95 is 120 s), then its
/// health checks; 300 s covers a slow wake with room for the claims ahead in the queue.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(300);

/// The claimant of claims made with the admin key (`POOL_API_KEY`).
pub const ADMIN_CLAIMANT: &str = "admin";
/// The claimant of claims made from the operator console.
pub const CONSOLE_CLAIMANT: &str = "console";

/// A fingerprint of a claim's fields (SHA-256, hex), kept with its idempotency key: a repeat
/// under the same key must carry the same fields. The fields are hashed as the claim uses
/// them (defaults applied, the name trimmed), so JSON spacing and key order do not matter.
/// A `runtime` is hashed only when the claim named one, so a claim without it hashes as it
/// did before shapes.
pub fn request_fingerprint(claim: &CheckedClaim) -> String {
    let mut fields = vec![
        serde_json::json!(claim.agent_name),
        serde_json::json!(claim.instructions),
        serde_json::json!(claim.join_url),
        serde_json::json!(claim.source),
        serde_json::json!(claim.profile_image),
        serde_json::json!(claim.metadata),
    ];
    if let Some(runtime) = &claim.runtime {
        fields.push(serde_json::json!(runtime));
    }
    let canonical = serde_json::Value::Array(fields).to_string();
    ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Provisioner {
    /// Claims an idle agent for a user. See the module documentation.
    pub async fn claim(&self, input: &ClaimInput, idempotency_key: Option<&str>) -> Result<ClaimResponse> {
        self.claim_waiting(input, idempotency_key, Duration::ZERO).await
    }

    /// [`Self::claim`], waiting up to `wait` (at most [`MAX_CLAIM_WAIT`]) for an agent to
    /// become idle when none is: first in, first out with every other waiting claim, on every
    /// replica. A waiting claim prompts creation at once. Without a wait, a claim finds the
    /// pool empty while any claim waits (those came first).
    pub async fn claim_waiting(
        &self,
        input: &ClaimInput,
        idempotency_key: Option<&str>,
        wait: Duration,
    ) -> Result<ClaimResponse> {
        self.claim_as(ADMIN_CLAIMANT, input, idempotency_key, wait).await
    }

    /// [`Self::claim_waiting`] on behalf of `claimant`, the name of the caller's API key
    /// (never the key): the claim's event records it, and the idempotency key is the
    /// claimant's own (the same key from two claimants is two claims). A repeated key whose
    /// fields differ from the first request's is refused and changes nothing.
    pub async fn claim_as(
        &self,
        claimant: &str,
        input: &ClaimInput,
        idempotency_key: Option<&str>,
        wait: Duration,
    ) -> Result<ClaimResponse> {
        if wait > MAX_CLAIM_WAIT {
            return Err(ProvisionError::InvalidRequest {
                field: "Prefer",
                message: format!("wait must be at most {} seconds", MAX_CLAIM_WAIT.as_secs()),
            });
        }
        let checked = input.check(self.inner.config.is_production())?;
        // The shape asked for, or the default; an unknown runtime is a 400 naming it, before
        // any agent is touched.
        let shape = crate::claim_input::pick_shape(&self.inner.config.shapes, checked.runtime.as_deref())?
            .name
            .clone();
        if let Some(key) = idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(ProvisionError::InvalidRequest {
                field: "Idempotency-Key",
                message: "must be 1 to 200 characters".into(),
            });
        }
        let started = Instant::now();
        let request = ClaimRequest {
            agent_name: checked.agent_name.clone(),
            instructions: checked.instructions.clone(),
            join_url: checked.join_url.clone(),
            source: checked.source.clone(),
            profile_image: checked.profile_image.clone(),
            metadata: checked.metadata.clone(),
            // The lease outlives the provision timeout: the tick never takes an agent from a
            // claimer that is still waiting for it.
            lease: self.inner.config.provision_timeout + Duration::from_secs(60),
            idempotency_key: idempotency_key.map(str::to_string),
            ticket: None,
            claimant: claimant.to_string(),
            request_hash: request_fingerprint(&checked),
            idempotency_ttl: self.inner.config.idempotency_ttl,
            protected: self.inner.config.protected_instances.clone(),
            shape,
        };
        let result = self
            .claim_next_ready(&request, idempotency_key, wait, started)
            .await;
        self.inner.stats.claim_of_runtime(&request.shape, &result);
        result
    }

    /// An agent that answers 503 is not ready: it goes back to `starting` and the claim takes
    /// the next one, up to three agents (the runtime's "Runtime not ready yet",
    /// runtime/convos-platform/pool-server/index.ts:410-413).
    async fn claim_next_ready(
        &self,
        request: &ClaimRequest,
        idempotency_key: Option<&str>,
        mut wait: Duration,
        started: Instant,
    ) -> Result<ClaimResponse> {
        for _ in 0..MAX_NOT_READY {
            match self.claim_one(request, idempotency_key, wait, started).await? {
                Attempt::Done(response) => return Ok(*response),
                Attempt::NotReady => wait = Duration::ZERO,
            }
        }
        self.inner.stats.claim("not_ready", started.elapsed());
        Err(ProvisionError::PoolEmpty)
    }

    /// One agent's try at a claim.
    async fn claim_one(
        &self,
        request: &ClaimRequest,
        idempotency_key: Option<&str>,
        wait: Duration,
        started: Instant,
    ) -> Result<Attempt> {
        let store = &self.inner.store;
        let claimant = request.claimant.as_str();
        let agent = match self.take_agent(request.clone(), wait).await? {
            ClaimOutcome::PoolEmpty => {
                self.inner.stats.claim("pool_empty", started.elapsed());
                let counted = self.inner.config.refusals_counted_per_minute;
                if let Err(e) = store
                    .record_refused_claim(claimant, counted, &request.shape)
                    .await
                {
                    tracing::warn!(error = %e, "could not record a refused claim");
                }
                return Err(ProvisionError::PoolEmpty);
            }
            ClaimOutcome::Repeated(previous) => {
                if previous
                    .request_hash
                    .as_ref()
                    .is_some_and(|first| *first != request.request_hash)
                {
                    self.inner.stats.claim("idempotency_mismatch", started.elapsed());
                    return Err(ProvisionError::IdempotencyMismatch);
                }
                self.inner.stats.claim("repeated", started.elapsed());
                return match previous.response.map(serde_json::from_value::<StoredAnswer>) {
                    None => Err(ProvisionError::ClaimInProgress),
                    Some(Ok(StoredAnswer::Claimed(response))) => Ok(Attempt::Done(Box::new(response))),
                    Some(Ok(StoredAnswer::Failed { error })) => Err(ProvisionError::RepeatedFailure(error)),
                    Some(Err(e)) => Err(ProvisionError::RepeatedFailure(format!(
                        "stored answer unreadable: {e}"
                    ))),
                };
            }
            ClaimOutcome::SameJoin(agent) => {
                self.inner.stats.claim("same_join", started.elapsed());
                return self
                    .same_join_answer(*agent)
                    .await
                    .map(|r| Attempt::Done(Box::new(r)));
            }
            ClaimOutcome::Claimed(agent) => agent,
        };
        // Once the row is `claiming`, a refill can start; the caller's tick trigger does that.
        let (Some(domain), Some(secrets)) = (&agent.domain, &agent.secrets) else {
            let failure = ProvisionFailure::Unexpected("agent has no domain or token recorded".into());
            self.fail_claim(&agent.id, idempotency_key, failure.to_string(), started)
                .await?;
            return Err(ProvisionError::ProvisionFailed {
                agent: agent.id.clone(),
                failure,
            });
        };
        let base_url = match self.inner.config.agent_url(domain) {
            Ok(url) => url,
            Err(refused) => {
                // No token goes to a host that is not an agent's: the agent is quarantined.
                let failure = ProvisionFailure::NotSent(format!("not called: {refused}"));
                self.fail_claim(&agent.id, idempotency_key, failure.to_string(), started)
                    .await?;
                return Err(ProvisionError::ProvisionFailed {
                    agent: agent.id.clone(),
                    failure,
                });
            }
        };
        let provision = ProvisionRequest {
            agent_name: request.agent_name.clone(),
            instructions: request.instructions.clone(),
            join_url: request.join_url.clone(),
            profile_image: request.profile_image.clone(),
            metadata: request.metadata.clone(),
        };
        let tokens = crate::ProvisionTokens {
            gateway: secrets.gateway_token.expose_secret(),
            legacy: Some(secrets.agent_api_token.expose_secret()),
        };
        let provisioned = match self.inner.agents.provision(&base_url, tokens, &provision).await {
            Ok(p) => p,
            Err(failure) => {
                return self
                    .after_failed_provision(&agent, failure, idempotency_key, started)
                    .await;
            }
        };
        // A join answers its own URL (pool/src/provision.ts:126, 144).
        let Some(invite_url) = provisioned
            .invite_url
            .clone()
            .or_else(|| request.join_url.clone())
        else {
            let failure = ProvisionFailure::Unexpected("a created conversation without an inviteUrl".into());
            self.fail_claim(&agent.id, idempotency_key, failure.to_string(), started)
                .await?;
            return Err(ProvisionError::ProvisionFailed {
                agent: agent.id.clone(),
                failure,
            });
        };
        let response = ClaimResponse {
            invite_url: invite_url.clone(),
            conversation_id: provisioned.conversation_id.clone(),
            status: provisioned.status,
            agent_name: request.agent_name.clone(),
            instance_id: agent.id.to_string(),
            joined: provisioned.joined,
            gateway_token: secrets.gateway_token.expose_secret().to_string(),
            gateway_url: base_url,
        };
        let stored = serde_json::to_value(StoredAnswer::Claimed(response.clone()))
            .map_err(|e| ProvisionError::RepeatedFailure(e.to_string()))?;
        let idempotency = idempotency_key.map(|k| (k, &stored));
        let done = match &provisioned.conversation_id {
            Some(conversation_id) if provisioned.status != ProvisionStatus::PendingAcceptance => {
                store
                    .complete_claim(
                        &agent.id,
                        &invite_url,
                        conversation_id,
                        provisioned.joined,
                        idempotency,
                    )
                    .await?
            }
            _ => {
                store
                    .enter_pending_acceptance(&agent.id, &invite_url, idempotency)
                    .await?
            }
        };
        if let Transition::LostRace { actual } = done {
            // The lease ran out and the tick quarantined the agent: the user must not use it.
            self.inner.stats.claim("failed", started.elapsed());
            return Err(ProvisionError::Conflict {
                agent: agent.id.clone(),
                status: actual.unwrap_or(AgentStatus::Deleted),
                message: "the claim lease expired before provisioning finished".into(),
            });
        }
        let outcome = match response.status {
            ProvisionStatus::PendingAcceptance => "pending_acceptance",
            _ => "claimed",
        };
        self.inner.stats.claim(outcome, started.elapsed());
        tracing::info!(agent = %agent.id, status = response.status.as_str(), "claimed");
        Ok(Attempt::Done(Box::new(response)))
    }

    /// Takes an idle agent now, or — with a wait — joins the queue and takes one when it is
    /// this claim's turn and an agent is idle, woken by the other replicas' notifications.
    ///
    /// The ticket leaves the queue on every way out: served (the claim statement removes it),
    /// the wait ran out, an error, a repeat of an idempotency key that another request won,
    /// and the caller going away — hyper drops the handler's future when the client hangs up,
    /// and the [`TicketGuard`] removes the ticket then. While waiting, the claim beats the
    /// ticket's heartbeat; a ticket whose claim stopped (a dead replica) is skipped by the
    /// others within [`pool_store::TICKET_STALE`].
    async fn take_agent(&self, mut request: ClaimRequest, wait: Duration) -> Result<ClaimOutcome> {
        let store = &self.inner.store;
        let outcome = store.claim(&request).await?;
        if wait.is_zero() || !matches!(outcome, ClaimOutcome::PoolEmpty) {
            return Ok(outcome);
        }
        // Subscribe before joining the queue, so no wake-up is missed in between.
        let mut signals = self.inner.listener.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        let max = self.inner.config.max_waiting_per_claimant;
        let Some(ticket) = store
            .enqueue_claim(&request.claimant, wait, max, &request.shape)
            .await?
        else {
            return Err(ProvisionError::TooManyWaiting { max });
        };
        let guard = TicketGuard {
            store: store.clone(),
            tasks: self.inner.tasks.clone(),
            ticket: Some(ticket.clone()),
        };
        let _waiting = WaitingGauge::new(&self.inner.stats);
        request.ticket = Some(ticket.clone());
        // A waiting claim is demand: the leader sizes the pool now, and creates.
        if let Err(e) = store.notify(PoolSignal::SizeSoon).await {
            tracing::warn!(error = %e, "could not prompt sizing for a waiting claim");
        }
        // On an empty warm tier it wakes a parked agent for itself, on any replica: one deploy,
        // no create token. It gets that agent or the first one ready before it.
        self.wake_for_waiting_claim(&request.shape).await;
        let waited = Instant::now();
        let mut next_beat = tokio::time::Instant::now() + pool_store::TICKET_HEARTBEAT;
        let outcome = loop {
            match store.claim(&request).await {
                Ok(ClaimOutcome::PoolEmpty) => {}
                other => break other,
            }
            // Wait for an agent to become idle, for the queue to move, or for the listener to
            // come back (it may have missed both); beat the heartbeat on the way; never past
            // the deadline.
            loop {
                let now = tokio::time::Instant::now();
                if now >= next_beat {
                    next_beat = now + pool_store::TICKET_HEARTBEAT;
                    if let Err(e) = store.keep_ticket_alive(&ticket).await {
                        tracing::warn!(error = %e, "could not beat a waiting claim's heartbeat");
                    }
                }
                match tokio::time::timeout_at(next_beat.min(deadline), signals.recv()).await {
                    Err(_) if tokio::time::Instant::now() >= deadline => break,
                    Err(_) => continue,
                    Ok(Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                        // No more wake-ups: look again at each beat until the deadline.
                        tokio::time::sleep_until(next_beat.min(deadline)).await;
                        break;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                // One last look: an agent may have become idle as the wait ran out.
                break store.claim(&request).await;
            }
        };
        self.inner.stats.waited(waited.elapsed());
        guard.leave().await;
        Ok(outcome?)
    }

    /// Quarantines an agent whose provision failed and starts its teardown.
    pub(crate) async fn fail_claim(
        &self,
        id: &AgentId,
        key: Option<&str>,
        message: String,
        started: Instant,
    ) -> Result<()> {
        let stored = serde_json::to_value(StoredAnswer::Failed {
            error: message.clone(),
        })
        .ok();
        let idempotency = match (key, &stored) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => None,
        };
        self.inner
            .store
            .abandon_claim(id, &format!("provision failed: {message}"), idempotency)
            .await?;
        self.inner.stats.claim("failed", started.elapsed());
        tracing::warn!(agent = %id, %message, "claim failed; agent quarantined");
        self.start_teardown(id.clone());
        Ok(())
    }
}

/// A ticket in the queue that leaves it however its claim ends: [`TicketGuard::leave`] on the
/// claim's own ways out, and — when the claim's future is dropped (the client hung up, the
/// route timed out) — a task the provisioner owns, started from `Drop`.
struct TicketGuard {
    store: pool_store::Store,
    tasks: tokio_util::task::TaskTracker,
    ticket: Option<pool_store::QueueTicket>,
}

impl TicketGuard {
    /// Leaves the queue now and tells the other claims it moved.
    async fn leave(mut self) {
        if let Some(ticket) = self.ticket.take() {
            leave_queue(&self.store, &ticket).await;
        }
    }
}

impl Drop for TicketGuard {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to run the delete on (a process going down): the ticket stops being
            // live within TICKET_STALE, as its heartbeat stops.
            return;
        }
        let store = self.store.clone();
        tracing::info!(ticket = ticket.id, owner = %ticket.owner, "a waiting claim went away; its ticket leaves the queue");
        self.tasks
            .spawn(async move { leave_queue(&store, &ticket).await });
    }
}

async fn leave_queue(store: &pool_store::Store, ticket: &pool_store::QueueTicket) {
    if let Err(e) = store.leave_queue(ticket).await {
        // Its heartbeat stops with it: it is skipped within TICKET_STALE all the same.
        tracing::warn!(error = %e, ticket = ticket.id, "could not remove a ticket from the claim queue");
    }
    // The head left (served or not): the next one looks again.
    if let Err(e) = store.notify(PoolSignal::QueueMoved).await {
        tracing::warn!(error = %e, "could not tell the queue it moved");
    }
}

/// Counts a waiting claim in the stats for as long as it waits, however it ends.
struct WaitingGauge<'a>(&'a crate::stats::ProvisionerStats);

impl<'a> WaitingGauge<'a> {
    fn new(stats: &'a crate::stats::ProvisionerStats) -> Self {
        stats.waiting(1);
        Self(stats)
    }
}

impl Drop for WaitingGauge<'_> {
    fn drop(&mut self) {
        self.0.waiting(-1);
    }
}
