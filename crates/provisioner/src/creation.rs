//! Starting creations: the one place they start (tick, API and console alike), under the
//! capacity check; the tasks that run their sagas; compensation; and crash recovery.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use pool_store::{
    AgentId, AgentSecrets, AgentStatus, BrakeState, CreationStep, NewAgent, PoolSettings, SetupSecrets,
    StatusCounts,
};
use rand::Rng;
use secrecy::SecretString;
use tokio::task::JoinHandle;

use crate::Provisioner;
use crate::capacity::{CreationDemand, CreationLimit, creations_allowed};
use crate::error::{ProvisionError, Result};
use crate::saga::StepFailure;

/// Creations that started, and the tasks that run them.
#[derive(Debug)]
pub struct StartedCreations {
    /// The new agents (each has its row in `creating`).
    pub ids: Vec<AgentId>,
    /// Why fewer than asked for started, if they did.
    pub limited_by: Option<CreationLimit>,
    handles: Vec<JoinHandle<Result<()>>>,
}

impl StartedCreations {
    /// Stops the sagas where they are, as if the process died: their rows stay in `creating`
    /// with their journals, for crash recovery (tests of exactly that).
    pub fn abort(&self) {
        for handle in &self.handles {
            handle.abort();
        }
    }

    /// Waits for every creation's saga: each agent's id, or why its creation failed.
    pub async fn finished(self) -> Vec<Result<AgentId>> {
        let mut outcomes = Vec::with_capacity(self.ids.len());
        for (id, handle) in self.ids.into_iter().zip(self.handles) {
            outcomes.push(match handle.await {
                Ok(Ok(())) => Ok(id),
                Ok(Err(e)) => Err(e),
                Err(join) => Err(ProvisionError::Config(format!(
                    "creation task of {id} failed: {join}"
                ))),
            });
        }
        outcomes
    }
}

/// The figures the capacity check reads (counts by shape, each shape's settings and brake),
/// read once for several starts: see [`Provisioner::creation_figures`].
#[derive(Debug, Clone)]
pub struct CreationFigures {
    counts: BTreeMap<String, StatusCounts>,
    settings: HashMap<String, PoolSettings>,
    brakes: HashMap<String, BrakeState>,
}

/// What crash recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Creations resumed to the end.
    pub resumed: Vec<AgentId>,
    /// Creations that could not be resumed and were compensated.
    pub compensated: Vec<AgentId>,
    /// Creations that met a passing failure again and wait for a later recovery.
    pub deferred: Vec<AgentId>,
}

fn random_secret(bytes: usize) -> SecretString {
    let mut rng = rand::rng();
    let hex: String = (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    SecretString::from(hex)
}

impl Provisioner {
    /// Starts creations: writes each new agent's row (so it is counted at once) and runs its
    /// saga in a task this provisioner owns. The capacity check — `POOL_MAX_TOTAL`, the free
    /// creation slots for [`CreationDemand::UpTo`] — decides how many; an
    /// [`CreationDemand::Exactly`] that does not fit starts none and fails with
    /// [`ProvisionError::Capacity`]. The agents are of the default shape.
    pub async fn start_creations(&self, demand: CreationDemand) -> Result<StartedCreations> {
        let shape = self.inner.config.default_shape().name.clone();
        self.start_creations_of(&shape, demand).await
    }

    /// [`Self::start_creations`] of agents of one shape (runtime): its settings (`maxTotal`,
    /// paused) and its brake decide; the creation slots are the whole pool's.
    pub async fn start_creations_of(&self, shape: &str, demand: CreationDemand) -> Result<StartedCreations> {
        let mut figures = self.creation_figures().await?;
        self.start_creations_with(shape, demand, &mut figures).await
    }

    /// What the capacity check reads, read once for several starts in a row (the tick's
    /// creation slots, started one at a time): the counts by shape now; settings and brakes
    /// as they are first needed.
    pub async fn creation_figures(&self) -> Result<CreationFigures> {
        Ok(CreationFigures {
            counts: self.inner.store.counts_by_shape().await?,
            settings: HashMap::new(),
            brakes: HashMap::new(),
        })
    }

    /// [`Self::start_creations_of`] on figures read before (by [`Self::creation_figures`]),
    /// which it keeps up to date with the creations it starts.
    pub async fn start_creations_with(
        &self,
        shape: &str,
        demand: CreationDemand,
        figures: &mut CreationFigures,
    ) -> Result<StartedCreations> {
        let config = &self.inner.config;
        let shape = config.shape(shape)?.name.clone();
        let store = &self.inner.store;
        let settings = match figures.settings.get(&shape) {
            Some(settings) => settings.clone(),
            None => {
                let settings = store.shape_settings(&shape).await?.settings;
                figures.settings.insert(shape.clone(), settings.clone());
                settings
            }
        };
        let counts = figures.counts.get(&shape).cloned().unwrap_or_default();
        let mut pool = StatusCounts::default();
        for c in figures.counts.values() {
            pool.creating += c.creating;
        }
        let max_total = settings.max_total.map(|m| m as usize);
        // The shape's own cap (its `maxTotal` share) over its own agents, then the pool's
        // creation slots over every shape's creations.
        let (mut n, mut limited_by) = creations_allowed(demand, &counts, max_total, i64::MAX as usize);
        if let CreationDemand::UpTo(_) = demand {
            let (slots, limit) =
                creations_allowed(CreationDemand::UpTo(n), &pool, None, config.create_concurrency);
            if slots < n {
                (n, limited_by) = (slots, limit);
            }
        }
        if settings.paused {
            (n, limited_by) = (0, Some(CreationLimit::Paused));
        }
        if n > 0 {
            let brake = match figures.brakes.get(&shape) {
                Some(brake) => brake.clone(),
                None => {
                    let brake = store.shape_brake(&shape).await?;
                    figures.brakes.insert(shape.clone(), brake.clone());
                    brake
                }
            };
            if brake.engaged() {
                let limit = CreationLimit::Brake {
                    failures: brake.consecutive_failures,
                    last_failure: brake.last_failure.clone().unwrap_or_default(),
                };
                // One probe creation per interval finds out whether Railway works again.
                let probe = matches!(demand, CreationDemand::UpTo(_))
                    && store
                        .take_brake_probe(&shape, config.brake_probe_interval)
                        .await?;
                if probe {
                    tracing::info!(%shape, "the creation brake is engaged; starting one probe creation");
                }
                (n, limited_by) = (usize::from(probe).min(n), Some(limit));
            }
        }
        let wanted = match demand {
            CreationDemand::UpTo(_) => 0,
            CreationDemand::Exactly(k) => k,
        };
        if n < wanted
            && let Some(limit) = &limited_by
        {
            return Err(ProvisionError::Capacity(limit.clone()));
        }
        let mut started = StartedCreations {
            ids: Vec::with_capacity(n),
            limited_by,
            handles: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let id = self.begin_creation(&shape).await?;
            figures.counts.entry(shape.clone()).or_default().creating += 1;
            let this = self.clone();
            let task_id = id.clone();
            started.handles.push(self.inner.tasks.spawn(async move {
                let outcome = this.continue_creation(&task_id).await;
                if let Err(e) = &outcome {
                    tracing::warn!(agent = %task_id, error = %e, "creation did not finish");
                }
                outcome
            }));
            started.ids.push(id);
        }
        Ok(started)
    }

    /// Writes a new agent's row (`creating`, of `shape` and its image, with its secrets and
    /// the work lease). Makes no remote call.
    async fn begin_creation(&self, shape: &str) -> Result<AgentId> {
        let image = self.inner.config.shape(shape)?.image.to_string();
        let id = AgentId::random();
        let wallet = format!("0x{}", secrecy::ExposeSecret::expose_secret(&random_secret(32)));
        let agent = NewAgent {
            id: id.clone(),
            image,
            shape: shape.to_string(),
            secrets: AgentSecrets {
                gateway_token: random_secret(32),
                agent_api_token: random_secret(32),
            },
            setup: SetupSecrets {
                setup_password: random_secret(16),
                wallet_private_key: SecretString::from(wallet),
            },
        };
        self.inner
            .store
            .insert_creating(&agent, self.inner.config.work_lease)
            .await?;
        tracing::info!(agent = %id, shape, image = %agent.image, "creating agent");
        Ok(id)
    }

    /// Waits for a creation slot — renewing the row's lease meanwhile, so recovery elsewhere
    /// never mistakes a waiting creation for a dead one — then runs the saga.
    async fn continue_creation(&self, id: &AgentId) -> Result<()> {
        let lease = self.inner.config.work_lease;
        let store = &self.inner.store;
        let _permit = loop {
            match tokio::time::timeout(lease / 3, self.inner.create_permits.acquire()).await {
                Ok(permit) => {
                    break permit.map_err(|_| ProvisionError::Config("creation slots closed".into()))?;
                }
                // Abandoned or killed while it waited: nothing was made; its new owner ends it.
                Err(_) if !store.renew_creation_lease(id, lease).await? => return Ok(()),
                Err(_) => {}
            }
        };
        if !store.renew_creation_lease(id, lease).await? {
            return Ok(());
        }
        self.finish_creation(id).await
    }

    /// Runs the saga to its end. A passing failure leaves the creation to recovery; any other
    /// failure is compensated.
    async fn finish_creation(&self, id: &AgentId) -> Result<()> {
        match self.run_saga_with_lease(id).await {
            Ok(()) => {
                self.inner.stats.creation(true);
                let shape = self.load(id).await?.shape;
                if self.inner.store.record_creation_success(&shape).await? {
                    tracing::info!(%shape, "a creation succeeded: the creation brake is released");
                }
                Ok(())
            }
            Err(StepFailure { step, error }) if error.is_transient() => {
                // A throttle or a passing failure never turns into a compensation: the journal
                // is kept, the lease released, and recovery resumes it later.
                let message = format!("creation paused at step {step}: {error}");
                tracing::warn!(agent = %id, %step, error = %error, "creation paused; recovery resumes it");
                let store = &self.inner.store;
                store.record_error(id, &message).await?;
                store.release_work_lease(id).await?;
                Err(ProvisionError::step(step, error))
            }
            Err(StepFailure {
                step,
                error: stopped @ ProvisionError::CreationStopped { .. },
            }) => {
                // Not a failure: the row is someone else's now (a teardown cleans up, looking
                // up the step in flight), so it is neither compensated nor counted.
                tracing::info!(agent = %id, %step, error = %stopped, "creation stopped");
                Err(stopped)
            }
            Err(StepFailure { step, error }) => {
                self.inner.stats.creation(false);
                let message = format!("creation failed at step {step}: {error}");
                tracing::warn!(agent = %id, %step, error = %error, "creation failed; compensating");
                let shape = self.load(id).await?.shape;
                self.compensate(id, &message).await?;
                self.count_failed_creation(&shape, &message).await?;
                Err(ProvisionError::step(step, error))
            }
        }
    }

    /// Runs the saga while a keeper renews the row's lease every third of it — so however long
    /// a step waits (Railway's `projectCreate` pace, a slow deploy), the lease stays short and a
    /// dead worker's creation is recovered within it. When the row leaves `creating` under it
    /// (abandoned, killed), the keeper stops the saga where it is, as a crash would; the row's
    /// new owner looks up the step in flight.
    async fn run_saga_with_lease(&self, id: &AgentId) -> std::result::Result<(), crate::saga::StepFailure> {
        let lease = self.inner.config.work_lease;
        let keeper = async {
            loop {
                tokio::time::sleep(lease / 3).await;
                match self.inner.store.renew_creation_lease(id, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let row = self.load(id).await.ok();
                        return crate::saga::StepFailure {
                            step: row
                                .as_ref()
                                .and_then(|a| a.step_in_flight)
                                .unwrap_or(CreationStep::Project),
                            error: ProvisionError::CreationStopped {
                                agent: id.clone(),
                                status: row.map_or(AgentStatus::Deleting, |a| a.status),
                            },
                        };
                    }
                    // The database is away: the saga's own writes will fail and say so.
                    Err(e) => tracing::warn!(agent = %id, error = %e, "could not renew a creation's lease"),
                }
            }
        };
        tokio::select! {
            done = self.run_saga(id) => done,
            stopped = keeper => Err(stopped),
        }
    }

    /// Counts a failed creation towards its shape's brake.
    pub(crate) async fn count_failed_creation(&self, shape: &str, message: &str) -> Result<()> {
        let store = &self.inner.store;
        let limit = store.shape_settings(shape).await?.settings.create_failure_limit;
        let (state, engaged_now) = store.record_creation_failure(shape, message, limit).await?;
        if engaged_now {
            tracing::error!(
                %shape,
                failures = state.consecutive_failures,
                last_failure = message,
                "the creation brake is engaged: creation stops but for a probe now and then"
            );
        }
        Ok(())
    }

    /// Deletes everything a failed creation made and archives the row.
    pub(crate) async fn compensate(&self, id: &AgentId, reason: &str) -> Result<()> {
        let store = &self.inner.store;
        store
            .append_event(id, pool_store::EventKind::CreationFailed, reason)
            .await?;
        store.record_error(id, reason).await?;
        let moved = store
            .begin_teardown(id, AgentStatus::Creating, reason, false)
            .await?;
        if !moved.applied() {
            tracing::warn!(agent = %id, ?moved, "agent left `creating` before compensation");
        }
        store.release_work_lease(id).await?;
        if let Err(e) = self.teardown_agent(id).await {
            tracing::warn!(agent = %id, error = %e, "compensation will be retried by the tick");
        }
        Ok(())
    }

    /// Recovers creations whose worker died (a crash, a killed replica, a creation paused by a
    /// passing failure): each is resumed from its journal — looking up the step a crash may
    /// have left unrecorded — or, if that fails for good, compensated.
    pub async fn recover_abandoned_creations(&self) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        for agent in self.inner.store.abandoned_creations().await? {
            if !self
                .inner
                .store
                .take_work_lease(&agent.id, AgentStatus::Creating, self.inner.config.work_lease)
                .await?
            {
                continue;
            }
            tracing::info!(agent = %agent.id, step = ?agent.step_in_flight, "resuming an abandoned creation");
            match self.finish_creation(&agent.id).await {
                Ok(()) => recovery.resumed.push(agent.id),
                Err(e) if e.is_transient() => recovery.deferred.push(agent.id),
                Err(_) => recovery.compensated.push(agent.id),
            }
        }
        Ok(recovery)
    }

    /// [`Self::recover_abandoned_creations`] in a task, unless one runs already. Returns
    /// whether it started.
    pub fn start_recovery(&self) -> bool {
        let Ok(guard) = self.inner.recovering.clone().try_lock_owned() else {
            return false;
        };
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let _guard = guard;
            match this.recover_abandoned_creations().await {
                Ok(r) => tracing::info!(
                    resumed = r.resumed.len(),
                    compensated = r.compensated.len(),
                    deferred = r.deferred.len(),
                    "recovered creations"
                ),
                Err(e) => tracing::warn!(error = %e, "recovering creations failed"),
            }
        });
        true
    }

    /// Whether a creation step applies to this pool (resources are optional).
    pub(crate) fn step_applies(&self, step: CreationStep) -> bool {
        match step {
            CreationStep::OpenRouterKey => self.inner.openrouter.is_some(),
            // Inboxes are made on an agent's first use, through the service proxy (the Node
            // pool's way: `pool/src/services/infra.ts:19-22`); the step stays in the journal of
            // creations made before.
            CreationStep::AgentMailInbox => false,
            _ => true,
        }
    }

    /// How long the saga waits between tries of a step that met a passing failure.
    pub(crate) fn step_retry_wait(attempt: u32, asked: Option<Duration>) -> Duration {
        let backoff = Duration::from_millis(500).saturating_mul(2u32.saturating_pow(attempt.min(6)));
        asked
            .unwrap_or(backoff)
            .clamp(Duration::from_millis(100), Duration::from_secs(30))
    }
}
