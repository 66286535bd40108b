//! Claims gathered into shared statements.
//!
//! A claim is two short statements: take the oldest idle agent (`idle → claiming`), and once
//! the agent has answered, finish (`claiming → claimed`). Each is cheap in rows and dear in
//! everything around the rows: a round trip, a parse of the parameters, an executor start, a
//! commit with its WAL flush, TLS records both ways. On two cores PostgreSQL finished about
//! 2,200 claims a second one statement each, and 10,000–11,500 in statements of ten
//! (`pgbench`, the same statements, 8 clients), so under a burst of claims the statements,
//! not the agents, were the queue.
//!
//! Here concurrent claims of one shape take their agents in one statement, in the order they
//! arrived, oldest agent first; concurrent completions finish in one statement. A lane runs at
//! most [`RUNNERS`] statements at once: a claim that finds a runner free goes at once (alone,
//! when nothing else waits, so a quiet pool pays no wait), and claims that arrive while every
//! runner is busy go together in the next statement, up to [`BATCH`]. The claims that wait in
//! the queue of `Prefer: wait`, that carry an idempotency key or a `joinUrl`, keep their own
//! statements (`claims.rs`): they need a transaction of their own.
//!
//! Runners are tasks of their own: a caller that goes away (the client hung up) stops waiting
//! but never cuts a shared statement short. A caller that went away before its turn takes no
//! agent; one that went away while its statement ran leaves its agent `claiming`, as an
//! uncut statement of its own would, and the tick quarantines it when the lease runs out. When
//! a shared statement fails, each of its callers runs its own statement instead: its error (or
//! its success, when the database is back) is its own.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::agent::{Agent, AgentId, ClaimRequest};
use crate::rows::{agent_columns, agent_from_row};
use crate::{Result, Store};

/// Statements one lane runs at once.
pub(crate) const RUNNERS: usize = 4;
/// Claims (or completions) in one statement at most.
pub(crate) const BATCH: usize = 64;

/// Work waiting in lanes, each lane with at most [`RUNNERS`] runners.
pub(crate) struct Lanes<K, T, R> {
    lanes: Mutex<HashMap<K, Lane<T, R>>>,
}

struct Lane<T, R> {
    waiting: VecDeque<(T, oneshot::Sender<R>)>,
    runners: usize,
}

impl<K: Eq + Hash + Clone, T, R> Lanes<K, T, R> {
    fn new() -> Self {
        Self {
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Queues `item` in `key`'s lane. True when the caller must start a runner for the lane
    /// (fewer than [`RUNNERS`] run; the count already includes the new one).
    fn enqueue(&self, key: &K, item: T) -> (oneshot::Receiver<R>, bool) {
        let (tx, rx) = oneshot::channel();
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(key.clone()).or_insert_with(|| Lane {
            waiting: VecDeque::new(),
            runners: 0,
        });
        lane.waiting.push_back((item, tx));
        let start = lane.runners < RUNNERS;
        if start {
            lane.runners += 1;
        }
        (rx, start)
    }

    /// The next batch for a runner of `key`'s lane, oldest first, without the items whose
    /// callers stopped waiting. `None` when nothing waits: the runner stops (and is counted
    /// out in the same lock, so no item is left without a runner).
    fn next_batch(&self, key: &K) -> Option<Vec<(T, oneshot::Sender<R>)>> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.get_mut(key)?;
        let mut batch = Vec::new();
        while batch.len() < BATCH
            && let Some((item, tx)) = lane.waiting.pop_front()
        {
            if !tx.is_closed() {
                batch.push((item, tx));
            }
        }
        if batch.is_empty() {
            lane.runners -= 1;
            if lane.runners == 0 && lane.waiting.is_empty() {
                lanes.remove(key);
            }
            return None;
        }
        Some(batch)
    }

    /// A runner that ended without [`Self::next_batch`] saying so (it panicked): counted out,
    /// and when it was the lane's last, the waiting callers are let go (they run their own
    /// statements).
    fn runner_lost(&self, key: &K) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.get_mut(key) {
            lane.runners = lane.runners.saturating_sub(1);
            if lane.runners == 0 {
                lanes.remove(key);
            }
        }
    }
}

/// Counts a runner out of its lane if it ends other than by running out of work.
struct RunnerGuard<'a, K: Eq + Hash + Clone, T, R> {
    lanes: &'a Lanes<K, T, R>,
    key: &'a K,
    done: bool,
}

impl<K: Eq + Hash + Clone, T, R> Drop for RunnerGuard<'_, K, T, R> {
    fn drop(&mut self) {
        if !self.done {
            self.lanes.runner_lost(self.key);
        }
    }
}

/// What claims may share a statement: the same shape, lease and protected agents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TakeLane {
    shape: String,
    lease: std::time::Duration,
    protected: Vec<String>,
}

/// A gathered claim's answer.
pub(crate) enum Taken {
    /// The agent the shared statement took for it.
    Agent(Box<Agent>),
    /// No idle agent for it (or claims wait in the queue, which come first).
    PoolEmpty,
    /// Run a statement of its own: the shared one failed, or the agent it took had a secret
    /// that does not open (quarantined; `again`: the claim keeps its turn, as a second try).
    OnItsOwn { again: bool },
}

/// A finished claim to record.
pub(crate) struct Completion {
    pub id: AgentId,
    pub invite_url: String,
    pub conversation_id: String,
    pub joined: bool,
    pub key: Option<String>,
    pub sealed_answer: Option<String>,
}

/// A gathered completion's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completed {
    /// `claiming → claimed`, its answer stored and its event written.
    Applied,
    /// The agent was no longer `claiming`: the caller finds out what it is.
    NotClaiming,
    /// The shared statement failed: the caller runs its own.
    Failed,
}

/// The store's lanes: claims by shape, completions in one lane.
pub(crate) struct Gathered {
    takes: Lanes<TakeLane, ClaimRequest, Taken>,
    completions: Lanes<(), Completion, Completed>,
}

impl Gathered {
    pub(crate) fn new() -> Self {
        Self {
            takes: Lanes::new(),
            completions: Lanes::new(),
        }
    }
}

/// Takes the oldest idle agents of a shape for the claims `wanted` numbers (`n`, from 1 in
/// arrival order), the oldest agent for the first claim; the conditions are the one-claim
/// statement's ([`crate::claims`]) for a claim without a ticket.
///
/// It locks `limit` agents, a literal: with `LIMIT $11` PostgreSQL's generic plan assumes a
/// tenth of the table and never wins over a plan made for the values, so every execution was
/// planned anew (measured: 5,668 plans for 5,658 executions, as much time planning as
/// running). One statement per power of two ([`TAKE_LIMITS`]) keeps a generic plan each; the
/// agents locked beyond the claims (fewer than half) stay `idle` and are free again at commit.
fn take_sql(limit: usize) -> String {
    format!(
        "WITH wanted AS (
            SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[])
                   WITH ORDINALITY AS w(agent_name, instructions, source, profile_image, metadata, claimant, n)),
         picked AS (
            SELECT id, row_number() OVER (ORDER BY created_at, id) AS n
              FROM (SELECT id, created_at FROM agent_metadata
                     WHERE {idle}
                       AND NOT EXISTS (SELECT 1 FROM claim_queue q WHERE q.shape = $10 AND {live})
                     ORDER BY created_at, id
                     FOR UPDATE SKIP LOCKED LIMIT {limit}) oldest),
         taken AS (
            UPDATE agent_metadata a SET status = 'claiming', status_changed_at = now(),
                   claim_expires_at = now() + make_interval(secs => $1),
                   agent_name = w.agent_name, instructions = w.instructions, join_url = NULL,
                   claim_source = w.source, profile_image = w.profile_image, claim_metadata = w.metadata,
                   provision_status = NULL, pending_acceptance_at = NULL
              FROM picked p JOIN wanted w USING (n)
             WHERE a.id = p.id
            RETURNING a.*, w.n AS wanted, w.claimant AS claimant_of_claim),
         logged AS (
            INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason, actor)
            SELECT id, 'status_changed', 'idle', 'claiming', 'claimed', claimant_of_claim FROM taken)
         SELECT a.wanted, {columns} FROM taken a",
        idle = crate::claims::idle_and_usable("$10", "$8", "$9"),
        live = crate::queue::LIVE_TICKET,
        columns = agent_columns()
    )
}

/// The shared claim statements, by the agents they lock: 1, 2, 4 … [`BATCH`].
static TAKE_LIMITS: std::sync::LazyLock<Vec<(usize, String)>> = std::sync::LazyLock::new(|| {
    std::iter::successors(Some(1usize), |n| (*n < BATCH).then_some(n * 2))
        .map(|limit| (limit, take_sql(limit)))
        .collect()
});

/// The statement that locks the fewest agents for `claims` claims.
fn take_statement(claims: usize) -> &'static str {
    TAKE_LIMITS
        .iter()
        .find(|(limit, _)| *limit >= claims)
        .or(TAKE_LIMITS.last())
        .map(|(_, sql)| sql.as_str())
        .unwrap_or_default()
}

/// Finishes the claims of `input`: the one-claim statement's (`Store::complete_claim`), for
/// many agents.
const COMPLETE_SQL: &str = "WITH input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::text[])
               AS i(id, invite_url, conversation_id, joined, key, sealed_answer)),
     done AS (
        UPDATE agent_metadata a SET status = 'claimed', status_changed_at = now(), claimed_at = now(),
               claim_expires_at = NULL, invite_url = i.invite_url, conversation_id = i.conversation_id,
               joined = i.joined, provision_status = CASE WHEN i.joined THEN 'joined' ELSE 'created' END
          FROM input i
         WHERE a.id = i.id AND a.status = 'claiming'
        RETURNING a.id),
     answer AS (
        UPDATE claim_idempotency_keys k SET sealed_response = i.sealed_answer, response = NULL
          FROM input i
         WHERE i.key IS NOT NULL AND k.key = i.key AND k.agent_id = i.id
           AND i.id IN (SELECT id FROM done)),
     logged AS (
        INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason)
        SELECT id, 'status_changed', 'claiming', 'claimed', 'provisioned' FROM done)
     SELECT id FROM done";

impl Store {
    /// Takes an idle agent for a claim without a ticket, idempotency key or `joinUrl`, in a
    /// statement shared with the claims that arrive while this lane's runners are busy.
    pub(crate) async fn take_gathered(&self, request: &ClaimRequest) -> Result<Option<Agent>> {
        let lane = TakeLane {
            shape: request.shape.clone(),
            lease: request.lease,
            protected: request.protected.clone(),
        };
        let (answer, start) = self.gathered.takes.enqueue(&lane, request.clone());
        if start {
            let store = self.clone();
            tokio::spawn(async move { store.run_takes(lane).await });
        }
        let again = match answer.await {
            Ok(Taken::Agent(agent)) => return Ok(Some(*agent)),
            Ok(Taken::PoolEmpty) => return Ok(None),
            Ok(Taken::OnItsOwn { again }) => again,
            // The runner ended without answering (it panicked).
            Err(_) => false,
        };
        let client = self.client().await?;
        self.take_usable(&client, request, again).await
    }

    async fn run_takes(&self, lane: TakeLane) {
        let lanes = &self.gathered.takes;
        let mut guard = RunnerGuard {
            lanes,
            key: &lane,
            done: false,
        };
        while let Some(batch) = lanes.next_batch(&lane) {
            let (requests, answers): (Vec<ClaimRequest>, Vec<oneshot::Sender<Taken>>) =
                batch.into_iter().unzip();
            let taken = match self.take_for(&lane, &requests).await {
                Ok(taken) => taken,
                Err(e) => {
                    tracing::warn!(error = %e, claims = requests.len(), "a shared claim statement failed; each claim runs its own");
                    requests
                        .iter()
                        .map(|_| Taken::OnItsOwn { again: false })
                        .collect()
                }
            };
            for (answer, taken) in answers.into_iter().zip(taken) {
                if let Err(Taken::Agent(agent)) = answer.send(taken) {
                    tracing::warn!(agent = %agent.id, "a claimer went away while its agent was taken; the lease's end quarantines it");
                }
            }
        }
        guard.done = true;
    }

    /// One shared statement: an answer per request, in order.
    async fn take_for(&self, lane: &TakeLane, requests: &[ClaimRequest]) -> Result<Vec<Taken>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(take_statement(requests.len())).await?;
        let names: Vec<&str> = requests.iter().map(|r| r.agent_name.as_str()).collect();
        let instructions: Vec<&str> = requests.iter().map(|r| r.instructions.as_str()).collect();
        let sources: Vec<&str> = requests.iter().map(|r| r.source.as_str()).collect();
        let images: Vec<Option<&str>> = requests.iter().map(|r| r.profile_image.as_deref()).collect();
        let metadata: Vec<Option<&serde_json::Value>> =
            requests.iter().map(|r| r.metadata.as_ref()).collect();
        let claimants: Vec<&str> = requests.iter().map(|r| r.claimant.as_str()).collect();
        let lease = lane.lease.as_secs_f64();
        let known = self.keys().known_ids();
        let rows = client
            .query(
                &statement,
                &[
                    &lease,
                    &names,
                    &instructions,
                    &sources,
                    &images,
                    &metadata,
                    &claimants,
                    &known,
                    &lane.protected,
                    &lane.shape,
                ],
            )
            .await?;
        let mut taken: Vec<Taken> = requests.iter().map(|_| Taken::PoolEmpty).collect();
        for row in &rows {
            let wanted: i64 = row.try_get("wanted")?;
            let Some(slot) = usize::try_from(wanted - 1).ok().and_then(|i| taken.get_mut(i)) else {
                return Err(crate::StoreError::Corrupt(format!(
                    "a shared claim answered claim {wanted} of {}",
                    requests.len()
                )));
            };
            let agent = agent_from_row(row, self.keys())?;
            *slot = match agent.tampered_secret() {
                None => Taken::Agent(Box::new(agent)),
                Some(problem) => {
                    self.quarantine_claiming(&client, &agent.id, &problem.to_string())
                        .await?;
                    Taken::OnItsOwn { again: true }
                }
            };
        }
        Ok(taken)
    }

    /// Runs one shared claim statement for `requests` (which must be of one shape, lease and
    /// protected list) and answers each in order: its agent, or `None`. What a lane's runner
    /// does with a batch, without the lane, so a test can be sure the claims shared it.
    #[cfg(feature = "testing")]
    pub async fn take_in_one_statement(&self, requests: &[ClaimRequest]) -> Result<Vec<Option<Agent>>> {
        let Some(first) = requests.first() else {
            return Ok(Vec::new());
        };
        let lane = TakeLane {
            shape: first.shape.clone(),
            lease: first.lease,
            protected: first.protected.clone(),
        };
        Ok(self
            .take_for(&lane, requests)
            .await?
            .into_iter()
            .map(|taken| match taken {
                Taken::Agent(agent) => Some(*agent),
                Taken::PoolEmpty | Taken::OnItsOwn { .. } => None,
            })
            .collect())
    }

    /// Records a finished claim in a statement shared with the completions that arrive while
    /// the runners are busy.
    pub(crate) async fn complete_gathered(&self, completion: Completion) -> Completed {
        let (answer, start) = self.gathered.completions.enqueue(&(), completion);
        if start {
            let store = self.clone();
            tokio::spawn(async move { store.run_completions().await });
        }
        answer.await.unwrap_or(Completed::Failed)
    }

    async fn run_completions(&self) {
        let lanes = &self.gathered.completions;
        let mut guard = RunnerGuard {
            lanes,
            key: &(),
            done: false,
        };
        while let Some(batch) = lanes.next_batch(&()) {
            let (completions, answers): (Vec<Completion>, Vec<oneshot::Sender<Completed>>) =
                batch.into_iter().unzip();
            let answered = match self.complete_all(&completions).await {
                Ok(done) => completions
                    .iter()
                    .map(|c| {
                        if done.contains(c.id.as_str()) {
                            Completed::Applied
                        } else {
                            Completed::NotClaiming
                        }
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, claims = completions.len(), "a shared completion failed; each claim runs its own");
                    vec![Completed::Failed; completions.len()]
                }
            };
            for (answer, completed) in answers.into_iter().zip(answered) {
                let _ = answer.send(completed);
            }
        }
        guard.done = true;
    }

    /// The ids of `completions` whose agents went `claiming → claimed`.
    async fn complete_all(&self, completions: &[Completion]) -> Result<std::collections::HashSet<String>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(COMPLETE_SQL).await?;
        let ids: Vec<&str> = completions.iter().map(|c| c.id.as_str()).collect();
        let invites: Vec<&str> = completions.iter().map(|c| c.invite_url.as_str()).collect();
        let conversations: Vec<&str> = completions.iter().map(|c| c.conversation_id.as_str()).collect();
        let joined: Vec<bool> = completions.iter().map(|c| c.joined).collect();
        let keys: Vec<Option<&str>> = completions.iter().map(|c| c.key.as_deref()).collect();
        let answers: Vec<Option<&str>> = completions.iter().map(|c| c.sealed_answer.as_deref()).collect();
        let rows = client
            .query(
                &statement,
                &[&ids, &invites, &conversations, &joined, &keys, &answers],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_starts_at_most_its_runners_and_counts_each_out_when_nothing_waits() {
        let lanes: Lanes<(), u32, u32> = Lanes::new();
        let mut receivers = Vec::new();
        let mut started = 0;
        for i in 0..10 {
            let (rx, start) = lanes.enqueue(&(), i);
            receivers.push(rx);
            started += usize::from(start);
        }
        assert_eq!(started, RUNNERS);
        // The first batch takes every waiting item, oldest first.
        let batch = lanes.next_batch(&()).unwrap();
        assert_eq!(
            batch.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        // Each runner finds nothing more and stops; the lane is gone with the last.
        for _ in 0..RUNNERS {
            assert!(lanes.next_batch(&()).is_none());
        }
        assert!(lanes.lanes.lock().unwrap().is_empty());
        // A new item starts a runner again.
        assert!(lanes.enqueue(&(), 11).1);
    }

    #[test]
    fn a_batch_is_at_most_its_size_and_skips_callers_that_went_away() {
        let lanes: Lanes<(), usize, ()> = Lanes::new();
        let mut kept = Vec::new();
        for i in 0..3 * BATCH {
            let (rx, _) = lanes.enqueue(&(), i);
            // Every third caller stops waiting before its turn.
            if i % 3 != 0 {
                kept.push(rx);
            }
        }
        let first = lanes.next_batch(&()).unwrap();
        assert_eq!(first.len(), BATCH);
        assert!(first.iter().all(|(i, _)| i % 3 != 0));
        let second = lanes.next_batch(&()).unwrap();
        assert!(second.iter().all(|(i, _)| i % 3 != 0));
        assert_eq!(first.len() + second.len(), kept.len());
    }

    #[test]
    fn the_shared_claim_locks_the_next_power_of_two_of_agents() {
        let limit = |claims| {
            TAKE_LIMITS
                .iter()
                .find(|(_, sql)| sql.as_str() == take_statement(claims))
                .map(|(limit, _)| *limit)
        };
        assert_eq!(
            [1, 2, 3, 5, 8, 33, BATCH].map(limit),
            [Some(1), Some(2), Some(4), Some(8), Some(8), Some(64), Some(BATCH)]
        );
        assert!(take_statement(7).contains("LIMIT 8)"));
    }

    #[test]
    fn a_lost_runner_is_counted_out() {
        let lanes: Lanes<(), u32, u32> = Lanes::new();
        for i in 0..RUNNERS {
            assert!(lanes.enqueue(&(), i as u32).1);
        }
        assert!(!lanes.enqueue(&(), 99).1);
        lanes.runner_lost(&());
        assert!(lanes.enqueue(&(), 100).1);
    }
}
