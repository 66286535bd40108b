//! The reconcile tick: Postgres is the truth, Railway and the agents are observed.
//!
//! ```no_run
//! use pool_provisioner::Provisioner;
//! use pool_reconciler::{Reconciler, ReconcilerConfig};
//!
//! # async fn example(provisioner: Provisioner) -> Result<(), tokio::task::JoinError> {
//! let reconciler = Reconciler::new(provisioner, ReconcilerConfig::default());
//! // Ticks every interval, and at once when asked, while this replica holds the leader lock.
//! let running = tokio::spawn(reconciler.clone().run(async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }));
//! reconciler.trigger();
//! if let Some(tick) = reconciler.status().last_tick {
//!     println!("{} agents, {} transitions, {} Railway requests", tick.agents, tick.transitions, tick.railway_requests);
//! }
//! running.await
//! # }
//! ```
//!
//! `pool-reconciler` owns the tick — load every live agent from the database, read Railway in
//! batches (agents in motion every tick, steady ones in a slower full sweep), health-check
//! agents, decide each agent's status with a pure function, apply, replenish, retry
//! teardowns —, the orphan sweep (the leader's, in a task of its own: no tick waits for its
//! workspace listing) and the leader election that makes exactly one replica run them.
//!
//! Besides the tick there is the *look*: when Railway reports a deployment event for an agent
//! (the webhook), the leader reads that agent's status and checks its health at once, through
//! the same decide-and-apply path as a tick. A look is a hint to observe sooner; what it finds
//! decides, so duplicate, late, out-of-order or forged events change nothing on their own.
//!
//! Architecture invariant: every decision is [`decide::decide`], a pure function of (stored
//! facts, observation, stuck timeout). The loop around it only schedules, locks and executes.

mod announce;
mod apply;
pub mod decide;
mod error;
mod observe;
pub mod phases;
pub mod prober;
mod reads;
mod report;
mod shards;
mod sizing;
mod suspicion;
pub mod sweep;
mod tick;
mod tiers;
mod walk;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_provisioner::Provisioner;
use pool_store::{AgentId, LEADER_LOCK_KEY, LeaderLock, PoolSignal};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use error::ReconcileError;
pub use prober::{PROBE_MAX_BODY, Prober, ProberStats};
pub use shards::ShardsStatus;
pub use suspicion::{BreakerState, FULL_SWEEP_BUDGET_SHARE, SweepPace, sweep_pace, sweep_slices};
pub use sweep::{
    ORPHAN_SWEEP_BUDGET_SHARE, OrphanSweepSummary, SweepReport, orphan_sweep_interval, sweep_orphans,
    sweep_orphans_while,
};
pub use tick::TickReport;

/// The reconciler's settings.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// The sizing policy's headroom over the demand forecast.
    pub headroom: f64,
    /// Idle agents recycled or drained at most per tick.
    pub retire_per_tick: usize,
    /// Time between ticks (`TICK_INTERVAL_MS`).
    pub tick_interval: Duration,
    /// Time an agent may stay starting (or unknown) before it is judged dead
    /// (`POOL_STUCK_TIMEOUT_MS`).
    pub stuck_timeout: Duration,
    /// Time in which the rolling sweep reads every steady agent from Railway (a slice of the
    /// fleet each tick; `POOL_FULL_SWEEP_INTERVAL_MS`).
    pub full_sweep_interval: Duration,
    /// Time after a failed health check before the agent is checked again on a fresh
    /// connection (by the prober, or by a tick driven without it); only a second failure makes
    /// it a suspect read from Railway (`POOL_REPROBE_DELAY_MS`).
    pub reprobe_delay: Duration,
    /// First wait before an agent Railway confirmed down is read again; it doubles each read
    /// (`POOL_DOWN_BACKOFF_MS`).
    pub down_backoff: Duration,
    /// Longest such wait (`POOL_DOWN_BACKOFF_MAX_MS`).
    pub down_backoff_max: Duration,
    /// The breaker trips when more agents than max(this, `breaker_fraction` of the fleet)
    /// fail their checks in one tick.
    pub breaker_min_failures: usize,
    /// See `breaker_min_failures`.
    pub breaker_fraction: f64,
    /// Time between orphan sweeps.
    pub orphan_sweep_interval: Duration,
    /// Age below which an unowned marked project is not an orphan yet.
    pub orphan_grace: Duration,
    /// Projects one orphan sweep deletes at most (`POOL_ORPHAN_SWEEP_MAX_DELETES`); the rest
    /// wait for the next pass.
    pub orphan_sweep_max_deletes: usize,
    /// Health checks in flight at once (`POOL_HEALTH_CONCURRENCY`).
    pub health_concurrency: usize,
    /// Time in which the prober checks every steady agent once, each at a stable offset in
    /// it (`POOL_HEALTH_INTERVAL_MS`, the tick's interval unless set).
    pub health_interval: Duration,
    /// How long the prober keeps a connection to an agent after a check; zero closes each
    /// after its answer (`POOL_PROBE_KEEP_ALIVE_MS`).
    pub probe_keep_alive: Duration,
    /// The leader lock's key.
    pub leader_lock_key: i64,
    /// Shards the fleet's agents are split into (`POOL_SHARDS`): each replica checks and
    /// reads the agents of the shards it owns. Every replica must have the same count.
    pub shards: u32,
    /// A replica's lease in `pool_replicas`, renewed every third of it
    /// (`POOL_REPLICA_LEASE_MS`): a dead replica's shards are all taken over within two.
    pub replica_lease: Duration,
    /// What is pruned after how long.
    pub retention: pool_store::Retention,
    /// Time between retention passes.
    pub retention_interval: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            headroom: pool_sizing::DEFAULT_HEADROOM,
            retire_per_tick: 2,
            tick_interval: Duration::from_secs(30),
            stuck_timeout: Duration::from_secs(900),
            full_sweep_interval: Duration::from_secs(600),
            reprobe_delay: Duration::from_secs(3),
            down_backoff: Duration::from_secs(30),
            down_backoff_max: Duration::from_secs(600),
            breaker_min_failures: 20,
            breaker_fraction: 0.01,
            orphan_sweep_interval: Duration::from_secs(1800),
            orphan_grace: Duration::from_secs(600),
            orphan_sweep_max_deletes: 5,
            health_concurrency: 64,
            health_interval: Duration::from_secs(30),
            probe_keep_alive: Duration::ZERO,
            leader_lock_key: LEADER_LOCK_KEY,
            shards: pool_store::DEFAULT_SHARDS,
            replica_lease: Duration::from_secs(15),
            retention: pool_store::Retention::default(),
            retention_interval: Duration::from_secs(600),
        }
    }
}

/// What the reconciler is doing, for metrics and the console.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReconcilerStatus {
    /// This replica holds the leader lock.
    pub is_leader: bool,
    /// Ticks run by this replica.
    pub ticks: u64,
    /// The last tick's report.
    pub last_tick: Option<TickReport>,
    /// Looks run by this replica (reads of single agents that Railway's events asked for).
    pub looks: u64,
    /// Sizing passes run by this replica (what claims ask for: size the pool and create, no
    /// health checks, no Railway reads).
    pub sizings: u64,
    /// The breaker, while it is open: too many agents failed at once, per-agent reads and
    /// demotions are stopped.
    pub breaker: Option<BreakerState>,
    /// This replica's shards (once [`Reconciler::run`] has renewed them).
    pub shards: Option<ShardsStatus>,
    /// Orphan sweeps this replica finished (the leader runs them in a task of their own).
    pub orphan_sweeps: u64,
    /// What the last of them did.
    pub last_orphan_sweep: Option<OrphanSweepSummary>,
}

/// Time a look waits for more events of the same burst, so they make one Railway read.
const LOOK_GATHER: Duration = Duration::from_millis(100);
/// Looks start at most this often: a flood of events costs at most one read a second.
const LOOK_SPACING: Duration = Duration::from_secs(1);
/// Agents remembered for a look at most; beyond it, the next tick reads them anyway.
const MAX_PENDING_LOOKS: usize = 1_000;
/// Sizing passes start at most this often: a burst of claims costs one pass a second, and a
/// creation takes minutes, so a second's delay changes nothing.
const SIZING_SPACING: Duration = Duration::from_secs(1);
/// A replica without the leader lock tries for it this often, whatever its tick interval: a
/// leader that stepped down (its lock connection cut, or too slow to answer the check) or died
/// is replaced within this time, not at the next interval — which may be an hour away.
const LEADER_RETRY: Duration = Duration::from_secs(5);

/// What woke the loop up, gathered until it acts.
#[derive(Debug, Default, Clone, Copy)]
struct Wake {
    /// A whole tick (it sizes, and takes pending looks, too); a walk of its shards for a
    /// replica without the leader lock.
    tick: bool,
    /// Time to try for the leader lock again (a new leader ticks at once).
    leader_try: bool,
    /// A look at the agents Railway's events named.
    look: bool,
    /// A sizing pass (claims).
    size: bool,
}

impl Wake {
    /// Adds what a signal asks for. `false`: nothing the reconciler acts on.
    fn hear(&mut self, reconciler: &Reconciler, signal: PoolSignal) -> bool {
        match signal {
            PoolSignal::TickSoon | PoolSignal::Reconnected => self.tick = true,
            PoolSignal::SizeSoon => self.size = true,
            // A look is for the replica that owns the agent's shard; the others drop it.
            PoolSignal::Look(agent) if !reconciler.ownership.owns(&agent) => return false,
            PoolSignal::Look(agent) => {
                reconciler.note_look(agent);
                self.look = true;
            }
            PoolSignal::AgentIdle | PoolSignal::QueueMoved => return false,
        }
        true
    }
}

/// The reconciler. Cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    provisioner: Provisioner,
    config: ReconcilerConfig,
    prompt: Arc<Notify>,
    status: Arc<Mutex<ReconcilerStatus>>,
    leader: Arc<AtomicBool>,
    /// Ticks started: the rolling sweep's slice.
    sweep_tick: Arc<std::sync::atomic::AtomicU64>,
    /// Agents the last walk met: the rolling sweep lengthens with them.
    fleet: Arc<std::sync::atomic::AtomicUsize>,
    /// Projects the last orphan sweep's workspace listing held: sweeps space out with them.
    workspace_projects: Arc<std::sync::atomic::AtomicUsize>,
    suspicion: Arc<Mutex<suspicion::Suspicion>>,
    /// The fleet's health checks, spread over the health interval; the tick reads its
    /// results while it runs.
    prober: Prober,
    /// Health checks on a fresh connection each: the tick's re-probes while the prober does
    /// not run (ticks driven by hand); the prober re-probes on its own.
    fresh_agents: pool_provisioner::AgentClient,
    last_orphan_sweep: Arc<Mutex<Option<Instant>>>,
    last_retention: Arc<Mutex<Option<Instant>>>,
    /// Agents Railway's events asked to look at, and the prompt that a look is wanted.
    pending_looks: Arc<Mutex<BTreeSet<AgentId>>>,
    look_prompt: Arc<Notify>,
    /// The shards this replica owns.
    ownership: Arc<shards::Ownership>,
    /// Sizing announcements to every replica, gathered.
    size_announced: Arc<announce::Gathered>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn due(last: &Mutex<Option<Instant>>, every: Duration) -> bool {
    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if last.is_none_or(|t| now.duration_since(t) >= every) {
        *last = Some(now);
        true
    } else {
        false
    }
}

impl Reconciler {
    /// A reconciler over this provisioner.
    pub fn new(provisioner: Provisioner, config: ReconcilerConfig) -> Self {
        let prober = Prober::new(
            &provisioner,
            config.health_interval,
            config.health_concurrency,
            config.probe_keep_alive,
            config.reprobe_delay,
        );
        let fresh_agents = prober.fresh_client();
        let replica = provisioner.store().replica_id().to_string();
        Self {
            provisioner,
            prompt: Arc::new(Notify::new()),
            status: Arc::default(),
            leader: Arc::default(),
            sweep_tick: Arc::default(),
            fleet: Arc::default(),
            workspace_projects: Arc::default(),
            suspicion: Arc::default(),
            prober,
            fresh_agents,
            last_orphan_sweep: Arc::default(),
            last_retention: Arc::default(),
            pending_looks: Arc::default(),
            look_prompt: Arc::new(Notify::new()),
            ownership: Arc::new(shards::Ownership::new(
                config.shards,
                config.replica_lease,
                replica,
            )),
            size_announced: Arc::default(),
            config,
        }
    }

    fn note_look(&self, agent: AgentId) {
        let mut pending = self.pending_looks.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() < MAX_PENDING_LOOKS {
            pending.insert(agent);
        }
    }

    fn take_looks(&self) -> BTreeSet<AgentId> {
        std::mem::take(&mut *self.pending_looks.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Asks this replica for a tick now.
    pub fn trigger(&self) {
        self.prompt.notify_one();
    }

    /// What it is doing.
    pub fn status(&self) -> ReconcilerStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True while this replica holds the leader lock.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// The prober of the fleet's health (run by [`Self::run`]; tests run it by hand).
    pub fn prober(&self) -> &Prober {
        &self.prober
    }

    /// Settings.
    pub fn config(&self) -> &ReconcilerConfig {
        &self.config
    }

    /// This tick's slice of the rolling sweep (none when this tick's share of the budget does
    /// not add up to a request), and how many slices there are.
    fn next_sweep_slice(&self) -> (Option<u64>, u64) {
        let railway = self.provisioner.railway();
        let pace = suspicion::sweep_pace(
            self.config.full_sweep_interval,
            self.config.tick_interval,
            self.fleet.load(Ordering::SeqCst),
            railway.budget().requests_per_hour,
            railway.configured_hourly_budget(),
        );
        let tick = self.sweep_tick.fetch_add(1, Ordering::SeqCst);
        (pace.slot(tick), pace.slices)
    }

    fn suspicion(&self) -> std::sync::MutexGuard<'_, suspicion::Suspicion> {
        self.suspicion.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn orphan_sweep_due(&self) -> bool {
        let every = sweep::orphan_sweep_interval(
            self.config.orphan_sweep_interval,
            self.fleet
                .load(Ordering::SeqCst)
                .max(self.workspace_projects.load(Ordering::SeqCst)),
            self.provisioner.railway().budget().requests_per_hour,
        );
        due(&self.last_orphan_sweep, every)
    }

    fn retention_due(&self) -> bool {
        due(&self.last_retention, self.config.retention_interval)
    }

    fn set_leader(&self, leader: bool) {
        if self.leader.swap(leader, Ordering::SeqCst) != leader {
            if leader {
                tracing::info!("became the reconciler leader");
            } else {
                tracing::warn!("not the reconciler leader (any more)");
            }
        }
        self.status.lock().unwrap_or_else(|p| p.into_inner()).is_leader = leader;
    }

    /// Runs ticks until `shutdown` resolves: every interval, at once when triggered here, and
    /// at once when any replica announces something to act on (`NOTIFY`: a replenish, a
    /// drain, a settings change); sizing passes when a replica announces a claim; looks when
    /// Railway's events name agents — only while this replica holds the leader lock. Ticks never overlap. A replica that loses the lock's connection stops
    /// reconciling before its next step; a replica without the lock tries for it every
    /// few seconds, so a lost leadership is taken again without waiting for the interval. While the notification listener is down, the
    /// interval alone drives ticks.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let store_config = self.provisioner.store().config().clone();
        let mut signals = self.provisioner.listener().subscribe();
        let mut lock: Option<LeaderLock> = None;
        let mut interval = tokio::time::interval(self.config.tick_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_look: Option<Instant> = None;
        let mut last_sizing: Option<Instant> = None;
        // When a replica without the lock tries for it next: a deadline, not a sleep made anew
        // each turn, so a stream of ignored notifications cannot put the try off forever.
        let mut next_try = tokio::time::Instant::now();
        // The prober checks whom this replica's walks put on its roster: its shards' agents.
        let probing = tokio::spawn(self.prober.clone().run());
        // This replica's shards: taken before the first walk (the interval's first tick, at
        // once), then renewed on their own.
        self.renew_shards().await;
        let keeping = tokio::spawn(self.clone().keep_shards());
        // The orphan sweep, in a task of its own while this replica leads.
        let mut sweeping = sweep::SweepTask::default();
        loop {
            let mut wake = Wake::default();
            tokio::select! {
                () = &mut shutdown => break,
                _ = interval.tick() => wake.tick = true,
                // A new leader ticks at once: the pool may have gone unwatched meanwhile.
                () = tokio::time::sleep_until(next_try), if lock.is_none() => wake.leader_try = true,
                () = self.prompt.notified() => wake.tick = true,
                () = self.look_prompt.notified() => wake.look = true,
                signal = signals.recv() => match signal {
                    Ok(signal) => {
                        if !wake.hear(&self, signal) {
                            continue;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => wake.tick = true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        signals = self.provisioner.listener().subscribe();
                        continue;
                    }
                },
            }
            if !wake.tick {
                // The events of one burst make one read, and looks come at most once a
                // second; the claims of one burst make one sizing pass a second.
                let spacing = |last: Option<Instant>, every: Duration| {
                    last.map_or(Duration::ZERO, |t| every.saturating_sub(t.elapsed()))
                };
                let mut pause = Duration::ZERO;
                if wake.look {
                    pause = pause.max(LOOK_GATHER.max(spacing(last_look, LOOK_SPACING)));
                }
                if wake.size {
                    pause = pause.max(spacing(last_sizing, SIZING_SPACING));
                }
                tokio::time::sleep(pause).await;
            }
            // Many wake-ups at once make one tick; looks asked for meanwhile are kept.
            while let Ok(signal) = signals.try_recv() {
                wake.hear(&self, signal);
            }
            if lock.is_none() {
                next_try = tokio::time::Instant::now() + LEADER_RETRY;
                match LeaderLock::try_acquire_for(
                    &store_config,
                    self.config.leader_lock_key,
                    self.replica_id(),
                )
                .await
                {
                    Ok(acquired) => {
                        // A new leader ticks at once: the pool may have gone unwatched meanwhile.
                        // That tick is this interval's: without the reset, the interval's own
                        // first tick (due at start) would make a second one straight after.
                        if acquired.is_some() {
                            wake.tick = true;
                            interval.reset();
                        }
                        lock = acquired;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not try the leader lock"),
                }
            }
            if let Some(held) = &lock
                && !held.still_held(Duration::from_secs(2)).await
            {
                lock = None;
            }
            self.set_leader(lock.is_some());
            // Every replica walks its own shards and looks at their agents; the leader also
            // sizes, creates and sweeps.
            let mut reports = Vec::new();
            if wake.tick {
                let report = match &lock {
                    Some(held) => self.tick(Some(held)).await,
                    None => self.shard_tick().await,
                };
                reports.push(("tick", report));
            } else {
                if wake.look {
                    let agents = self.take_looks();
                    if !agents.is_empty() {
                        last_look = Some(Instant::now());
                        reports.push(("look", self.look(agents, lock.as_ref()).await));
                    }
                }
                if let Some(held) = &lock
                    && wake.size
                    && !reports.iter().any(|(_, r)| r.lost_leadership)
                {
                    last_sizing = Some(Instant::now());
                    reports.push(("sizing", self.size_only(Some(held)).await));
                }
            }
            for (kind, report) in reports {
                if report.lost_leadership {
                    lock = None;
                    self.set_leader(false);
                }
                if !report.errors.is_empty() {
                    tracing::warn!(errors = ?report.errors, kind, "tick finished with errors");
                }
                tracing::debug!(?report, kind, "tick");
                let breaker = self.suspicion().breaker.clone();
                let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                status.breaker = breaker;
                match kind {
                    "look" => status.looks += 1,
                    "sizing" => status.sizings += 1,
                    _ => {
                        status.ticks += 1;
                        status.last_tick = Some(report);
                    }
                }
            }
            if lock.is_none() {
                sweeping.stop();
            } else if wake.tick {
                self.start_orphan_sweep(&mut sweeping);
            }
        }
        sweeping.stop();
        probing.abort();
        keeping.abort();
        self.leave_shards().await;
        self.set_leader(false);
        if let Some(lock) = lock {
            lock.release().await;
        }
    }
}
