//! The creation saga: one Railway project per agent, deployed exactly once.
//!
//! Order ([`CreationStep::ALL`]): project → environment → OpenRouter key → AgentMail inbox →
//! service (no source, with registry credentials) → variables (skipDeploys) → limits →
//! `/data` volume → domain → image source, start command, sleep off, restart policy → one
//! deploy. Each step is one function in `steps.rs`.
//!
//! The row exists before the first remote call. Before a step's remote call the step is
//! noted as in flight, and its remote id is journaled the moment it exists, so a crash in
//! between is visible: such a step is *uncertain*, and before doing it again the saga looks the
//! resource up by name and adopts it — nothing is created twice and nothing is lost. The same
//! goes for an answer that may have applied (a timeout, "Problem processing request", a
//! message nobody knows).
//!
//! Railway refuses a lot that passes: its throttles ("This workspace allows 1 project per 30
//! seconds"), a brand-new service whose instance has not landed yet ("ServiceInstance not
//! found"), "Failed to create service domain, please try again". Such a step waits and is
//! tried again, for up to `step_retry_deadline`, with the journal kept; it never compensates
//! the creation. Only a step that fails for real ends the saga; the caller then compensates.

mod steps;

pub(crate) use steps::Placement;

use pool_store::{Agent, AgentId, AgentStatus, CreationStep};
use railway_api::{Delivery, ErrorKind};
use tokio::time::Instant;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};

/// The saga's failure: which step, and why.
#[derive(Debug)]
pub(crate) struct StepFailure {
    pub step: CreationStep,
    pub error: ProvisionError,
}

/// Tries of a step whose answer nobody understands, before it counts as failed.
const UNKNOWN_ANSWER_TRIES: u32 = 3;

/// What a failed attempt of a step calls for.
enum Next {
    /// A passing refusal: wait (this long, if Railway said) and try again.
    Wait(Option<std::time::Duration>),
    /// It may have applied: look it up, then try again.
    LookAndRetry,
    /// A real failure.
    Fail,
}

/// The error of a creation whose row left `creating` under it.
fn left_creating(id: &AgentId, status: AgentStatus) -> ProvisionError {
    ProvisionError::CreationStopped {
        agent: id.clone(),
        status,
    }
}

fn next_after(error: &ProvisionError, unknown_tries: u32) -> Next {
    match error {
        ProvisionError::Railway(e) => match (e.kind(), e.delivery()) {
            (ErrorKind::Throttled { retry_after, .. }, _) => Next::Wait(Some(retry_after)),
            (ErrorKind::Transient, Delivery::MayHaveApplied) => Next::LookAndRetry,
            (ErrorKind::Transient, _) => Next::Wait(None),
            (ErrorKind::Unknown, _) if unknown_tries < UNKNOWN_ANSWER_TRIES => Next::LookAndRetry,
            _ => Next::Fail,
        },
        other if other.is_transient() => Next::Wait(None),
        _ => Next::Fail,
    }
}

impl Provisioner {
    /// Runs the remaining steps of an agent's creation. Ends with the agent in `starting`.
    pub(crate) async fn run_saga(&self, id: &AgentId) -> Result<(), StepFailure> {
        for step in CreationStep::ALL {
            if !self.step_applies(step) {
                continue;
            }
            self.run_step_until_done(id, step).await?;
            self.keep_creating(id, step).await?;
        }
        let moved = self
            .inner
            .store
            .transition(id, AgentStatus::Creating, AgentStatus::Starting, "deployed")
            .await
            .map_err(|e| StepFailure {
                step: CreationStep::Deploy,
                error: e.into(),
            })?;
        if !moved.applied() {
            tracing::warn!(agent = %id, ?moved, "agent left `creating` while its deploy finished");
        }
        self.inner.store.release_work_lease(id).await.ok();
        Ok(())
    }

    /// One step, tried until it is done, fails for real, or its retry deadline passes.
    async fn run_step_until_done(&self, id: &AgentId, step: CreationStep) -> Result<(), StepFailure> {
        let fail = |error: ProvisionError| StepFailure { step, error };
        let deadline = Instant::now() + self.inner.config.step_retry_deadline;
        let mut attempt = 0u32;
        let mut unknown_tries = 0u32;
        let mut look_first = false;
        loop {
            let agent = self.load(id).await.map_err(fail)?;
            if agent.status != AgentStatus::Creating {
                return Err(fail(left_creating(id, agent.status)));
            }
            if agent.has_completed(step) {
                return Ok(());
            }
            // A step left in flight by a crash may have made its resource: look first.
            let uncertain = look_first || agent.step_in_flight == Some(step);
            if !self
                .inner
                .store
                .begin_step(id, step)
                .await
                .map_err(|e| fail(e.into()))?
            {
                return Err(fail(left_creating(id, AgentStatus::Deleting)));
            }
            let error = match self.step(&agent, step, uncertain).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let next = next_after(&error, unknown_tries);
            if let ProvisionError::Railway(e) = &error
                && e.kind() == ErrorKind::Unknown
            {
                unknown_tries += 1;
            }
            let wait = match next {
                Next::Fail => return Err(fail(error)),
                Next::LookAndRetry => {
                    look_first = true;
                    Self::step_retry_wait(attempt, None)
                }
                Next::Wait(asked) => Self::step_retry_wait(attempt, asked),
            };
            if Instant::now() + wait > deadline {
                return Err(fail(error));
            }
            tracing::info!(agent = %id, %step, error = %error, ?wait, "step refused for now; trying it again");
            tokio::time::sleep(wait).await;
            attempt += 1;
            self.keep_creating(id, step).await?;
        }
    }

    /// Renews the creation's lease; a row that left `creating` stops the creation.
    async fn keep_creating(&self, id: &AgentId, step: CreationStep) -> Result<(), StepFailure> {
        let fail = |error: ProvisionError| StepFailure { step, error };
        let renewed = self
            .inner
            .store
            .renew_creation_lease(id, self.inner.config.work_lease)
            .await
            .map_err(|e| fail(e.into()))?;
        if renewed {
            Ok(())
        } else {
            let status = self.load(id).await.map_err(fail)?.status;
            Err(fail(left_creating(id, status)))
        }
    }

    /// Calls the test hook after a step's remote call (tests drop the saga there).
    async fn after_remote_call(&self, step: CreationStep) {
        if let Some(hook) = &self.inner.step_hook {
            hook(step).await;
        }
    }

    /// One attempt of one step. `uncertain`: its resource may exist already; look it up first.
    async fn step(&self, agent: &Agent, step: CreationStep, uncertain: bool) -> Result<()> {
        match step {
            CreationStep::Project => self.project_step(agent, uncertain).await,
            CreationStep::Environment => self.environment_step(agent).await,
            CreationStep::OpenRouterKey => self.openrouter_key_step(agent, uncertain).await,
            // Never applies now (see `step_applies`): inboxes are made on first use.
            CreationStep::AgentMailInbox => Ok(()),
            CreationStep::Service => self.service_step(agent, uncertain).await,
            CreationStep::Variables => self.variables_step(agent).await,
            CreationStep::Limits => self.limits_step(agent).await,
            CreationStep::Volume => self.volume_step(agent, uncertain).await,
            CreationStep::Domain => self.domain_step(agent, uncertain).await,
            CreationStep::Instance => self.instance_step(agent).await,
            CreationStep::Deploy => self.deploy_step(agent).await,
        }
    }
}
