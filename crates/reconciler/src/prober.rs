//! The prober: the fleet's health checks, run on their own, spread over the health interval.
//!
//! - Each agent is checked once per `health_interval`, at a stable offset in it (a hash of its
//!   id), so the checks of a fleet arrive evenly, never in one burst. The checks go round in
//!   95 % of the interval, so two checks of one agent are never further apart than it.
//! - At most `health_concurrency` checks are in flight; when they fall behind, the prober
//!   waits for a slot rather than piling up tasks, and catches up in order.
//! - A check reads at most [`PROBE_MAX_BODY`] bytes: an agent answering more has failed it.
//! - Connections are closed after each answer by default (`probe_keep_alive` zero; see the
//!   README's benchmark of kept against closed connections): memory does not grow with
//!   connections, and TLS sessions are resumed from a store that keeps one ticket per agent,
//!   sized to the fleet ([`railway_api::sessions::PerHostSessions`]).
//! - A failed check is not a verdict yet: the prober checks the agent again on a fresh
//!   connection `reprobe_delay` later (a few seconds), and only a failure of that re-probe is
//!   a confirmed one, which makes the agent a suspect the tick reads from Railway. An agent
//!   whose failure was confirmed and that fails again stays confirmed without another
//!   re-probe.
//! - Results go to a compact table (agent → last verdict, when, confirmed or not); the tick
//!   reads it and never waits for checks or re-probes. Which agents to check (the roster) the tick tells it as it walks the
//!   fleet, and agents the walk no longer meets leave the roster and the table.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pool_provisioner::{AgentClient, Provisioner};
use pool_store::{AgentId, TickRow};
use railway_api::sessions::PerHostSessions;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::observe::Checked;
use crate::suspicion::id_hash;

/// The most a health check reads of an answer; the runtime's answer is under 100 bytes
/// (`{"ready":true,"version":…,"runtime":…}`, pool-server/index.ts:359).
pub const PROBE_MAX_BODY: usize = 4 * 1024;

/// How often the prober looks for checks that came due.
const STEP: Duration = Duration::from_millis(20);

/// The share of the interval a round of checks spans: every agent is checked once a round, so
/// the gap between two checks of one agent stays under the interval by the rest (1.5 s of
/// 30 s) whatever the loop's step, a busy machine's lateness or a check's wait for a slot
/// add (at 10,000 agents, one round over the whole interval left a gap of 30.34 s).
const ROUND_SHARE: (u32, u32) = (19, 20);

/// The round of checks for an interval (see [`ROUND_SHARE`]).
fn round_of(interval: Duration) -> Duration {
    (interval * ROUND_SHARE.0 / ROUND_SHARE.1).max(Duration::from_millis(1))
}

/// Hosts the TLS session store holds before the first walk sized it.
const INITIAL_SESSIONS: usize = 1_024;

/// The last check of an agent.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// What it found.
    pub checked: Checked,
    /// When it finished.
    pub at: Instant,
    /// A failure confirmed by a re-probe on a fresh connection (or following one): the agent
    /// is a suspect. False for a check that passed, and for a first failure whose re-probe
    /// is pending.
    pub confirmed: bool,
}

/// An agent on the roster.
#[derive(Debug)]
struct Target {
    id: AgentId,
    url: Box<str>,
    /// The walk that last enlisted it.
    walk: u64,
}

#[derive(Debug, Default)]
struct Roster {
    /// Agents by their offset in the interval (milliseconds).
    by_offset: BTreeMap<u64, Vec<Target>>,
    len: usize,
}

/// What the prober has done, for the status, the metrics and the benches.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ProberStats {
    /// Agents on the roster.
    pub agents: usize,
    /// Checks finished since start.
    pub checks: u64,
    /// Of those, the failed ones (not ready).
    pub failures: u64,
    /// Re-probes sent (fresh connections, `reprobe_delay` after a first failure).
    pub reprobes: u64,
    /// Of those, the failed ones (confirmed failures).
    pub confirmed: u64,
    /// Whole intervals the prober has gone through since start.
    pub intervals: u64,
    /// Checks in flight now.
    pub in_flight: usize,
}

struct Inner {
    client: AgentClient,
    /// Fresh connections for re-probes.
    fresh: AgentClient,
    sessions: Arc<PerHostSessions>,
    interval: Duration,
    /// Every agent is checked once a round: [`ROUND_SHARE`] of the interval.
    round: Duration,
    reprobe_delay: Duration,
    concurrency: usize,
    roster: Mutex<Roster>,
    results: Mutex<HashMap<AgentId, Probe>>,
    /// Agents whose re-probe is on its way (one at a time, however often they fail meanwhile).
    reprobing: Mutex<std::collections::HashSet<AgentId>>,
    walks: AtomicU64,
    running: AtomicBool,
    checks: AtomicU64,
    failures: AtomicU64,
    reprobes: AtomicU64,
    confirmed: AtomicU64,
    intervals: AtomicU64,
    permits: Arc<Semaphore>,
}

/// The prober (see the [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("interval", &self.inner.interval)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A client of the prober's: its own connections (kept for `keep_alive`, zero: closed after
/// each answer), the body cap, TLS sessions from `sessions`.
fn probe_client(
    provisioner: &Provisioner,
    keep_alive: Duration,
    sessions: &Arc<PerHostSessions>,
) -> AgentClient {
    let shared = provisioner.agents();
    match pool_provisioner::outbound::OutboundClient::for_probes(
        &provisioner.config().agent_roots,
        keep_alive,
        sessions.clone(),
        PROBE_MAX_BODY,
    ) {
        Ok(http) => AgentClient::new(http, shared.health_timeout, shared.provision_timeout),
        Err(e) => {
            // The same roots built the provisioner's client, so this does not happen.
            tracing::warn!(error = %e, "no client of the prober's own; checks use the agents' client");
            shared.clone()
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Mixes a hash's bits (splitmix64's finaliser), so ids that differ only at their end still
/// land far apart in the interval.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Resets the running flag when the prober's loop ends (or is aborted).
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Prober {
    /// A prober for the provisioner's agents: checks every `interval`, `concurrency` at a
    /// time, connections kept for `keep_alive` (zero: closed after each answer); a failed
    /// check is checked again on a fresh connection `reprobe_delay` later.
    pub fn new(
        provisioner: &Provisioner,
        interval: Duration,
        concurrency: usize,
        keep_alive: Duration,
        reprobe_delay: Duration,
    ) -> Self {
        let sessions = Arc::new(PerHostSessions::new(INITIAL_SESSIONS));
        let client = probe_client(provisioner, keep_alive, &sessions);
        let fresh = probe_client(provisioner, Duration::ZERO, &sessions);
        let concurrency = concurrency.max(1);
        Self {
            inner: Arc::new(Inner {
                client,
                fresh,
                sessions,
                interval: interval.max(Duration::from_millis(1)),
                round: round_of(interval),
                reprobe_delay,
                concurrency,
                roster: Mutex::default(),
                results: Mutex::default(),
                reprobing: Mutex::default(),
                walks: AtomicU64::new(0),
                running: AtomicBool::new(false),
                checks: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                reprobes: AtomicU64::new(0),
                confirmed: AtomicU64::new(0),
                intervals: AtomicU64::new(0),
                permits: Arc::new(Semaphore::new(concurrency)),
            }),
        }
    }

    /// The client of fresh connections for re-probes: closed after each answer, with the same
    /// body cap and TLS sessions (a fresh connection, a resumed handshake).
    pub(crate) fn fresh_client(&self) -> AgentClient {
        self.inner.fresh.clone()
    }

    /// The interval in which every agent is checked once.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// True while [`Self::run`] runs: the tick then reads the prober's results instead of
    /// checking agents itself.
    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// What it has done.
    pub fn stats(&self) -> ProberStats {
        ProberStats {
            agents: lock(&self.inner.roster).len,
            checks: self.inner.checks.load(Ordering::SeqCst),
            failures: self.inner.failures.load(Ordering::SeqCst),
            reprobes: self.inner.reprobes.load(Ordering::SeqCst),
            confirmed: self.inner.confirmed.load(Ordering::SeqCst),
            intervals: self.inner.intervals.load(Ordering::SeqCst),
            in_flight: self
                .inner
                .concurrency
                .saturating_sub(self.inner.permits.available_permits()),
        }
    }

    /// The agent's offset in the round (milliseconds): stable, spread by a hash of its id.
    fn offset(&self, id: &AgentId) -> u64 {
        mix(id_hash(id)) % (self.inner.round.as_millis().max(1) as u64)
    }

    /// A walk over the fleet begins: its number, for [`Self::enlist`] and [`Self::walked`].
    pub(crate) fn begin_walk(&self) -> u64 {
        self.inner.walks.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Puts these agents (with their URLs) on the roster for walk `walk`.
    pub(crate) fn enlist(&self, walk: u64, agents: &[(AgentId, String)]) {
        let mut roster = lock(&self.inner.roster);
        for (id, url) in agents {
            let offset = self.offset(id);
            let slot = roster.by_offset.entry(offset).or_default();
            match slot.iter_mut().find(|t| t.id == *id) {
                Some(target) => {
                    target.walk = walk;
                    if *target.url != **url {
                        target.url = url.as_str().into();
                    }
                }
                None => {
                    slot.push(Target {
                        id: id.clone(),
                        url: url.as_str().into(),
                        walk,
                    });
                    roster.len += 1;
                }
            }
        }
    }

    /// Walk `walk` met every live agent: those it did not meet leave the roster and the table,
    /// and the TLS session store is sized to the fleet.
    pub(crate) fn walked(&self, walk: u64) {
        let mut roster = lock(&self.inner.roster);
        let mut gone = Vec::new();
        roster.by_offset.retain(|_, slot| {
            slot.retain(|t| {
                let kept = t.walk >= walk;
                if !kept {
                    gone.push(t.id.clone());
                }
                kept
            });
            !slot.is_empty()
        });
        roster.len -= gone.len();
        let fleet = roster.len;
        drop(roster);
        let mut results = lock(&self.inner.results);
        for id in &gone {
            results.remove(id);
        }
        // Room for a quarter more than the fleet (agents created meanwhile).
        self.inner
            .sessions
            .resize((fleet + fleet / 4).max(INITIAL_SESSIONS));
    }

    /// Forgets every agent but those `keep` keeps (this replica gave shards away or lost
    /// them).
    pub(crate) fn keep_only(&self, keep: impl Fn(&AgentId) -> bool) {
        let mut roster = lock(&self.inner.roster);
        let mut gone = 0;
        roster.by_offset.retain(|_, slot| {
            slot.retain(|t| {
                let kept = keep(&t.id);
                gone += usize::from(!kept);
                kept
            });
            !slot.is_empty()
        });
        roster.len -= gone;
        drop(roster);
        lock(&self.inner.results).retain(|id, _| keep(id));
    }

    /// The latest results for these agents (those checked so far).
    pub(crate) fn results(&self, ids: &[&TickRow]) -> HashMap<AgentId, Probe> {
        let results = lock(&self.inner.results);
        ids.iter()
            .filter_map(|a| results.get(&a.id).map(|p| (a.id.clone(), p.clone())))
            .collect()
    }

    /// The agent's latest result: its verdict, and how long ago it came (`None`: not checked
    /// yet, or not on the roster).
    pub fn latest(&self, id: &AgentId) -> Option<(pool_provisioner::Health, Duration)> {
        lock(&self.inner.results)
            .get(id)
            .map(|p| (p.checked.0.clone(), p.at.elapsed()))
    }

    /// True when the agent's latest result is a failure a re-probe confirmed: a suspect.
    pub fn suspected(&self, id: &AgentId) -> bool {
        lock(&self.inner.results).get(id).is_some_and(|p| p.confirmed)
    }

    fn store(&self, id: AgentId, checked: Checked, confirmed: bool) {
        let probe = Probe {
            checked,
            at: Instant::now(),
            confirmed,
        };
        lock(&self.inner.results).insert(id, probe);
    }

    /// One check of the roster's, then, when it failed for the first time, its re-probe on a
    /// fresh connection `reprobe_delay` later (a slot of its own taken then).
    async fn check(self, id: AgentId, url: String, permit: tokio::sync::OwnedSemaphorePermit) {
        let inner = &self.inner;
        let checked = inner.client.health_report(&url, None).await;
        drop(permit);
        inner.checks.fetch_add(1, Ordering::SeqCst);
        let failed = !checked.0.is_ready();
        if failed {
            inner.failures.fetch_add(1, Ordering::SeqCst);
        }
        // An agent that left the roster meanwhile is not remembered.
        if !self.enlisted(&id) {
            return;
        }
        // A failure after a confirmed one stays confirmed: it needs no second re-probe.
        let confirmed = failed && self.suspected(&id);
        self.store(id.clone(), checked, confirmed);
        if !failed || confirmed || !lock(&inner.reprobing).insert(id.clone()) {
            return;
        }
        tokio::time::sleep(inner.reprobe_delay).await;
        let permit = inner.permits.clone().acquire_owned().await;
        lock(&inner.reprobing).remove(&id);
        if permit.is_err() || !self.enlisted(&id) {
            return;
        }
        let again = inner.fresh.health_report(&url, None).await;
        drop(permit);
        inner.reprobes.fetch_add(1, Ordering::SeqCst);
        let failed = !again.0.is_ready();
        if failed {
            inner.confirmed.fetch_add(1, Ordering::SeqCst);
        }
        if self.enlisted(&id) {
            self.store(id, again, failed);
        }
    }

    /// The agents whose offsets fall in `(from, to]` (from the start of the interval when
    /// `from` is `None`), in milliseconds since the prober started; everyone when that spans
    /// a whole interval.
    fn due(&self, from: Option<u64>, to: u64) -> Vec<(AgentId, String)> {
        let period = self.inner.round.as_millis().max(1) as u64;
        let roster = lock(&self.inner.roster);
        let mut out = Vec::new();
        let mut take = |slot: &Vec<Target>| {
            out.extend(slot.iter().map(|t| (t.id.clone(), t.url.to_string())));
        };
        let spans_all = match from {
            None => to >= period,
            Some(from) => to.saturating_sub(from) >= period,
        };
        if spans_all {
            roster.by_offset.values().for_each(take);
            return out;
        }
        let b = to % period;
        match from.map(|f| f % period) {
            None => roster.by_offset.range(..=b).for_each(|(_, s)| take(s)),
            Some(a) if a < b => roster.by_offset.range(a + 1..=b).for_each(|(_, s)| take(s)),
            Some(a) if a > b => {
                roster.by_offset.range(a + 1..).for_each(|(_, s)| take(s));
                roster.by_offset.range(..=b).for_each(|(_, s)| take(s));
            }
            Some(_) => {}
        }
        out
    }

    /// True while `id` is on the roster.
    fn enlisted(&self, id: &AgentId) -> bool {
        lock(&self.inner.roster)
            .by_offset
            .get(&self.offset(id))
            .is_some_and(|slot| slot.iter().any(|t| t.id == *id))
    }

    /// Checks the roster, each agent once an interval at its offset, until dropped (abort
    /// the task to stop it).
    pub async fn run(self) {
        let inner = &self.inner;
        inner.running.store(true, Ordering::SeqCst);
        let _running = Running(&inner.running);
        let started = Instant::now();
        let interval = inner.interval.as_millis().max(1) as u64;
        let mut done: Option<u64> = None;
        loop {
            tokio::time::sleep(STEP).await;
            let now = started.elapsed().as_millis() as u64;
            let due = self.due(done, now);
            done = Some(now);
            for (id, url) in due {
                // Bounded: when the checks fall behind, the prober waits here for a slot.
                let Ok(permit) = inner.permits.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(self.clone().check(id, url, permit));
            }
            // Counted once every check due in it has started (a loop that lags behind, on a
            // busy machine, does not count an interval whose last checks it has not sent).
            inner.intervals.store(now / interval, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_of_checks_is_shorter_than_the_interval() {
        assert_eq!(round_of(Duration::from_secs(30)), Duration::from_millis(28_500));
        assert_eq!(round_of(Duration::from_secs(2)), Duration::from_millis(1_900));
        assert_eq!(round_of(Duration::ZERO), Duration::from_millis(1));
    }

    #[test]
    fn offsets_spread_evenly_over_the_interval() {
        // 10,000 sequential ids over 100 buckets of a 30 s interval: each holds about 100.
        let buckets = 100u64;
        let period = 30_000u64;
        let mut counts = vec![0u32; buckets as usize];
        for i in 0..10_000 {
            let id = AgentId::parse(&format!("{i:012}")).unwrap_or_else(|_| AgentId::random());
            let offset = mix(id_hash(&id)) % period;
            counts[(offset * buckets / period) as usize] += 1;
        }
        let (min, max) = (
            counts.iter().min().copied().unwrap_or_default(),
            counts.iter().max().copied().unwrap_or_default(),
        );
        assert!(min >= 50 && max <= 160, "buckets between {min} and {max}");
    }
}
