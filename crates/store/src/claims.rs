//! The claim: the oldest idle agent under a lease, exactly once, with idempotency keys.

use secrecy::ExposeSecret;

use crate::agent::{Agent, AgentId, AgentStatus, ClaimRequest};
use crate::events::{EventKind, insert_event};
use crate::gathered::{Completed, Completion};
use crate::rows::{agent_columns, agent_from_row, current_status, select_agents, stored_id};
use crate::secrets::{Binding, SecretsKeys};
use crate::transitions::Transition;
use crate::{Result, Store, StoreError};

/// A claim's first answer, kept under its idempotency key.
#[derive(Debug, Clone)]
pub struct IdempotentClaim {
    /// The agent the first request took.
    pub agent_id: AgentId,
    /// The stored response, once the first request finished (`None` while it still runs).
    pub response: Option<serde_json::Value>,
    /// The first request's fingerprint (`None` for keys stored before fingerprints were).
    pub request_hash: Option<String>,
}

/// What a claim got from the database.
#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    /// An idle agent, now `claiming` under a lease.
    Claimed(Box<Agent>),
    /// No idle agent right now.
    PoolEmpty,
    /// The idempotency key was used before: the first request's agent and answer.
    Repeated(IdempotentClaim),
    /// An agent is already `claiming`, `claimed` or `pending_acceptance` for the claim's
    /// `joinUrl` (the iOS double tap): that agent, and no second one was taken.
    SameJoin(Box<Agent>),
}

/// The claim statement: takes the oldest idle agent of the claim's shape (`$13`) under a lease and logs the event, in one
/// statement. An agent whose `/pool/health` last reported another runtime than its shape's
/// is never taken (the tick tears it down; this holds in between). `FOR UPDATE SKIP LOCKED` makes concurrent claims pass over each other's rows.
/// Claims that wait ([`crate::QueueTicket`]) are served first in, first out: while any live
/// ticket waits, only the head of the live queue may take an agent, and a claim that does not
/// wait takes none (a ticket whose claim stopped beating its heartbeat is skipped).
/// A claim that already took an agent whose secret turned out not to open (`$7`) keeps its
/// turn. Agents whose tokens are sealed under a key this process does not hold (`$8`: the ids
/// of those it does) are left to a replica that can read them (a key rotation's deploy).
static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH taken AS (
            UPDATE agent_metadata SET status = 'claiming', status_changed_at = now(),
                   claim_expires_at = now() + make_interval(secs => $1),
                   agent_name = $2, instructions = $3, join_url = $4,
                   claim_source = $9, profile_image = $10, claim_metadata = $11::jsonb,
                   provision_status = NULL, pending_acceptance_at = NULL
             WHERE id = (SELECT id FROM agent_metadata
                          WHERE {idle}
                            AND CASE WHEN $7::boolean THEN true
                                     WHEN $5::bigint IS NULL
                                     THEN NOT EXISTS (SELECT 1 FROM claim_queue q WHERE q.shape = $13 AND {live})
                                     ELSE $5 = (SELECT min(q.id) FROM claim_queue q WHERE q.shape = $13 AND {live})
                                END
                          ORDER BY created_at, id
                          FOR UPDATE SKIP LOCKED LIMIT 1)
            RETURNING *),
         dequeued AS (
            DELETE FROM claim_queue WHERE id = $5 AND EXISTS (SELECT 1 FROM taken)),
         logged AS (
            INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason, actor)
            SELECT id, 'status_changed', 'idle', 'claiming', 'claimed', $6::text FROM taken)
         SELECT {columns} FROM taken a",
        live = crate::queue::LIVE_TICKET,
        idle = idle_and_usable("$13", "$8", "$12"),
        columns = agent_columns()
    )
});

/// The condition on an agent a claim may take: `idle`, of the shape `shape` (a parameter),
/// not quarantined, reporting its shape's runtime (or none yet), its tokens readable with the
/// keys `known` (a parameter), and not one of the `protected` agents (a parameter).
pub(crate) fn idle_and_usable(shape: &str, known: &str, protected: &str) -> String {
    format!(
        "status = 'idle' AND shape = {shape} AND NOT quarantined \
         AND (runtime_name IS NULL OR runtime_name = shape) \
         AND {} AND {} \
         AND NOT (id = ANY({protected}::text[]))",
        sealed_under_known_key("gateway_token", known),
        sealed_under_known_key("agent_api_token", known),
    )
}

/// The claim statement's condition that `column` is plaintext, empty, or sealed under one of
/// the keys this process holds (`known`, a parameter).
///
/// Written as a `CASE`, not as the equivalent `column IS NULL OR column NOT LIKE 'v1:%' OR
/// split_part(..) = ANY(known)`: PostgreSQL estimates that disjunction at about half a percent of
/// the rows for each of the two columns, so on an analysed table (autovacuum's `ANALYZE`) it
/// expects one idle agent in the whole pool and plans a scan of the whole table and a sort
/// instead of the first entry of `agent_metadata_idle_by_shape`. Measured on 50,000 idle
/// agents: 64 ms a claim in each connection's first five executions (custom plans), against
/// 0.2 ms; a `CASE` is estimated at one half and keeps the index.
/// (`the_claim_takes_the_oldest_idle_agent_by_its_index_on_an_analysed_table` checks the plan.)
fn sealed_under_known_key(column: &str, known: &str) -> String {
    format!(
        "CASE WHEN {column} LIKE 'v1:%' THEN split_part({column}, ':', 2) = ANY({known}::text[]) ELSE true END"
    )
}

/// How many agents one claim takes at most when those it takes turn out to have a secret that
/// does not open (each is quarantined on the way).
const MAX_TAKES: usize = 3;

/// Quarantines an agent a claim has just taken: `claiming → deleting`, with its event, in one
/// statement (so it holds without a transaction too).
const QUARANTINE_CLAIMING_SQL: &str = "WITH q AS (
        UPDATE agent_metadata SET status = 'deleting', status_changed_at = now(), quarantined = true,
               claim_expires_at = NULL, last_error = $2
         WHERE id = $1 AND status = 'claiming' RETURNING id)
     INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason)
     SELECT id, 'quarantined', 'claiming', 'deleting', $2 FROM q";

impl Store {
    /// taken and the first request's agent is returned instead.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome> {
        let key = request.idempotency_key.as_deref();
        if key.is_none() && request.join_url.is_none() {
            // The hot path: one statement, atomic on its own; shared with the claims that
            // arrive at the same time when it has no ticket (`gathered.rs`).
            let taken = if request.ticket.is_none() {
                self.take_gathered(request).await?
            } else {
                self.take_usable(&self.client().await?, request, false).await?
            };
            return match taken {
                Some(agent) => Ok(ClaimOutcome::Claimed(Box::new(agent))),
                None => Ok(ClaimOutcome::PoolEmpty),
            };
        }
        let mut client = self.client().await?;
        let scope = &request.claimant;
        if let Some(key) = key {
            prune_idempotency_keys(&client, IDEMPOTENCY_PRUNE_BATCH).await?;
            if let Some(previous) = idempotent_claim(&client, self.keys(), scope, key).await? {
                return Ok(ClaimOutcome::Repeated(previous));
            }
        }
        let tx = client.transaction().await?;
        if let Some(url) = &request.join_url {
            // One claim per joinUrl at a time, on every replica: a transaction lock keyed on
            // the URL, held until this claim's agent is `claiming` with it (then the next
            // claim finds it), or until it took none.
            tx.execute("SELECT pg_advisory_xact_lock(19, hashtext($1))", &[url])
                .await?;
            let same = select_agents(
                &tx,
                self.keys(),
                "a.join_url = $1 AND a.status IN ('claiming', 'claimed', 'pending_acceptance')",
                "a.status_changed_at DESC, a.id LIMIT 1",
                &[url],
            )
            .await?;
            if let Some(agent) = same.into_iter().next() {
                tx.rollback().await?;
                return Ok(ClaimOutcome::SameJoin(Box::new(agent)));
            }
        }
        if let Some(key) = key {
            // Taking the key first makes a concurrent request with the same key wait here
            // until this one commits (then it finds the key) or rolls back (then it goes on).
            // A key that expired is taken over as if it were new.
            let inserted = tx
                .execute(
                    "INSERT INTO claim_idempotency_keys (scope, key, request_hash, expires_at)
                     VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                     ON CONFLICT (scope, key) DO UPDATE
                        SET agent_id = '', created_at = now(), response = NULL, sealed_response = NULL,
                            request_hash = EXCLUDED.request_hash, expires_at = EXCLUDED.expires_at
                      WHERE claim_idempotency_keys.expires_at <= now()",
                    &[
                        scope,
                        &key,
                        &request.request_hash,
                        &request.idempotency_ttl.as_secs_f64(),
                    ],
                )
                .await?;
            if inserted == 0 {
                tx.rollback().await?;
                return match idempotent_claim(&client, self.keys(), scope, key).await? {
                    Some(previous) => Ok(ClaimOutcome::Repeated(previous)),
                    None => Err(StoreError::Corrupt(format!("idempotency key {key:?} vanished"))),
                };
            }
        }
        let Some(agent) = self.take_usable(&tx, request, false).await? else {
            // Rolling back also frees the idempotency key: a retry may find an agent later.
            tx.rollback().await?;
            return Ok(ClaimOutcome::PoolEmpty);
        };
        if let Some(key) = key {
            tx.execute(
                "UPDATE claim_idempotency_keys SET agent_id = $2 WHERE scope = $3 AND key = $1",
                &[&key, &agent.id.as_str(), scope],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ClaimOutcome::Claimed(Box::new(agent)))
    }

    /// Forgets the idempotency key a claim took `agent` under (the agent was not ready and
    /// went back; the claim goes on with another, and takes the key anew).
    pub async fn forget_idempotency_key(&self, key: &str, agent: &AgentId) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM claim_idempotency_keys WHERE key = $1 AND agent_id = $2",
                &[&key, &agent.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Runs the claim statement until it takes an agent none of whose secrets was tampered
    /// with. One that was is quarantined on the way (`claiming → deleting`, then torn down by
    /// the tick's teardown retries), never handed out, and the claim takes the next one.
    /// `again`: this claim already took such an agent (it keeps its turn from the first try).
    pub(crate) async fn take_usable(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        request: &ClaimRequest,
        again: bool,
    ) -> Result<Option<Agent>> {
        let statement = client.prepare_cached(&CLAIM_SQL).await?;
        let mut values = ClaimValues::of(request, self.keys());
        for attempt in 0..MAX_TAKES {
            values.again = again || attempt > 0;
            let params = values.params(request);
            let Some(row) = client.query_opt(&statement, &params).await? else {
                return Ok(None);
            };
            let agent = agent_from_row(&row, self.keys())?;
            let Some(problem) = agent.tampered_secret() else {
                return Ok(Some(agent));
            };
            self.quarantine_claiming(client, &agent.id, &problem.to_string())
                .await?;
        }
        Ok(None)
    }

    /// Quarantines an agent a claim has just taken whose secret does not open.
    pub(crate) async fn quarantine_claiming(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        id: &AgentId,
        problem: &str,
    ) -> Result<()> {
        let reason = format!("quarantined: {problem}");
        client
            .execute(QUARANTINE_CLAIMING_SQL, &[&id.as_str(), &reason])
            .await?;
        tracing::warn!(agent = %id, error = %problem, "a claim took an agent whose secret does not open; quarantined");
        Ok(())
    }

    /// Finishes a claim that provisioned: `claiming → claimed` with what the agent answered.
    pub async fn complete_claim(
        &self,
        id: &AgentId,
        invite_url: &str,
        conversation_id: &str,
        joined: bool,
        idempotency: Option<(&str, &serde_json::Value)>,
    ) -> Result<Transition> {
        let (key, response) = match idempotency {
            Some((k, r)) => (Some(k), Some(self.seal_claim_answer(id, k, r)?)),
            None => (None, None),
        };
        // Shared with the completions that arrive at the same time (`gathered.rs`).
        let shared = self
            .complete_gathered(Completion {
                id: id.clone(),
                invite_url: invite_url.to_string(),
                conversation_id: conversation_id.to_string(),
                joined,
                key: key.map(str::to_string),
                sealed_answer: response.clone(),
            })
            .await;
        if shared == Completed::Applied {
            return Ok(Transition::Applied);
        }
        let client = self.client().await?;
        if shared == Completed::NotClaiming {
            let actual = current_status(&client, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        // The shared statement failed: this claim's own. One claimer per agent, and only its
        // completion makes a `claiming` agent `claimed`: finding it `claimed` here means the
        // shared statement did commit and only its answer was lost.
        let statement = client
            .prepare_cached(
                "WITH done AS (
                    UPDATE agent_metadata SET status = 'claimed', status_changed_at = now(), claimed_at = now(),
                           claim_expires_at = NULL, invite_url = $2, conversation_id = $3, joined = $4,
                           provision_status = CASE WHEN $4 THEN 'joined' ELSE 'created' END
                     WHERE id = $1 AND status = 'claiming' RETURNING id),
                 answer AS (
                    UPDATE claim_idempotency_keys SET sealed_response = $6, response = NULL
                     WHERE key = $5 AND agent_id = $1 AND EXISTS (SELECT 1 FROM done)),
                 logged AS (
                    INSERT INTO agent_events (agent_id, kind, from_status, to_status, reason)
                    SELECT id, 'status_changed', 'claiming', 'claimed', 'provisioned' FROM done)
                 SELECT count(*) FROM done",
            )
            .await?;
        let done: i64 = client
            .query_one(
                &statement,
                &[
                    &id.as_str(),
                    &invite_url,
                    &conversation_id,
                    &joined,
                    &key,
                    &response,
                ],
            )
            .await?
            .get(0);
        if done == 0 {
            let actual = current_status(&client, id).await?;
            if actual == Some(AgentStatus::Claimed) {
                return Ok(Transition::Applied);
            }
            return Ok(Transition::LostRace { actual });
        }
        Ok(Transition::Applied)
    }

    /// failed, or `claiming` with an expired lease for the tick.
    pub async fn abandon_claim(
        &self,
        id: &AgentId,
        reason: &str,
        idempotency: Option<(&str, &serde_json::Value)>,
    ) -> Result<Transition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                "UPDATE agent_metadata SET status = 'deleting', status_changed_at = now(), quarantined = true, \
                 claim_expires_at = NULL, last_error = $2 WHERE id = $1 AND status = 'claiming'",
                &[&id.as_str(), &reason],
            )
            .await?;
        if updated == 0 {
            let actual = current_status(&tx, id).await?;
            return Ok(Transition::LostRace { actual });
        }
        self.store_claim_answer(&tx, id, idempotency).await?;
        insert_event(
            &tx,
            id,
            EventKind::Quarantined,
            Some(AgentStatus::Claiming),
            Some(AgentStatus::Deleting),
            reason,
        )
        .await?;
        tx.commit().await?;
        Ok(Transition::Applied)
    }

    /// Agents whose claim lease ran out (their claimer died mid-provision).
    pub async fn expired_claim_leases(&self) -> Result<Vec<AgentId>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT id FROM agent_metadata WHERE status = 'claiming' AND claim_expires_at < now() ORDER BY id", &[])
            .await?;
        rows.iter().map(|r| stored_id(r.get(0))).collect()
    }

    /// The first answer stored under a caller's (`scope`'s) idempotency key, if the key was
    /// used and has not expired.
    pub async fn idempotent_claim(&self, scope: &str, key: &str) -> Result<Option<IdempotentClaim>> {
        let client = self.client().await?;
        idempotent_claim(&client, self.keys(), scope, key).await
    }

    /// Deletes up to `limit` expired idempotency keys; returns how many. Claims with a key
    /// prune a batch as they go; a retention task may call this too.
    pub async fn prune_idempotency_keys(&self, limit: i64) -> Result<u64> {
        let client = self.client().await?;
        prune_idempotency_keys(&client, limit).await
    }

    /// Stores a claim's answer under the idempotency key that took `id` (keys are scoped per
    /// caller, so the key's row is the one that took this agent), in the caller's transaction.
    pub(crate) async fn store_claim_answer(
        &self,
        tx: &impl deadpool_postgres::GenericClient,
        id: &AgentId,
        idempotency: Option<(&str, &serde_json::Value)>,
    ) -> Result<()> {
        if let Some((key, response)) = idempotency {
            let sealed = self.seal_claim_answer(id, key, response)?;
            tx.execute(
                "UPDATE claim_idempotency_keys SET sealed_response = $2, response = NULL \
                 WHERE key = $1 AND agent_id = $3",
                &[&key, &sealed, &id.as_str()],
            )
            .await?;
        }
        Ok(())
    }

    /// A claim's answer as it is stored: sealed (it carries the agent's gateway token), bound
    /// to the agent and the idempotency key.
    pub(crate) fn seal_claim_answer(
        &self,
        agent: &AgentId,
        key: &str,
        response: &serde_json::Value,
    ) -> Result<String> {
        self.keys()
            .seal(&response.to_string(), &Binding::claim_answer(agent, key))
    }
}

/// The claim statement's parameters that are not the request's own fields.
struct ClaimValues {
    lease: f64,
    ticket: Option<i64>,
    /// A later try of the same claim (`$7`): it keeps its turn in the queue.
    again: bool,
    known: Vec<String>,
}

impl ClaimValues {
    fn of(request: &ClaimRequest, keys: &SecretsKeys) -> Self {
        Self {
            lease: request.lease.as_secs_f64(),
            ticket: request.ticket.as_ref().map(|t| t.id),
            again: false,
            known: keys.known_ids(),
        }
    }

    /// `$1…$13` of [`CLAIM_SQL`].
    fn params<'a>(
        &'a self,
        request: &'a ClaimRequest,
    ) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 13] {
        [
            &self.lease,
            &request.agent_name,
            &request.instructions,
            &request.join_url,
            &self.ticket,
            &request.claimant,
            &self.again,
            &self.known,
            &request.source,
            &request.profile_image,
            &request.metadata,
            &request.protected,
            &request.shape,
        ]
    }
}

impl Store {
    /// The plan PostgreSQL makes for `request`'s claim statement with its values (a custom
    /// plan, as each connection's first executions get), as `EXPLAIN` prints it. Nothing is
    /// claimed. What `the_claim_takes_the_oldest_idle_agent_by_its_index_on_an_analysed_table`
    /// checks.
    #[cfg(feature = "testing")]
    pub async fn claim_plan(&self, request: &ClaimRequest) -> Result<String> {
        let client = self.client().await?;
        let values = ClaimValues::of(request, self.keys());
        let rows = client
            .query(
                format!("EXPLAIN {}", *CLAIM_SQL).as_str(),
                &values.params(request),
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// Expired keys a claim with a key prunes on its way.
const IDEMPOTENCY_PRUNE_BATCH: i64 = 100;

async fn prune_idempotency_keys(client: &impl deadpool_postgres::GenericClient, limit: i64) -> Result<u64> {
    Ok(client
        .execute(
            "DELETE FROM claim_idempotency_keys WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM claim_idempotency_keys WHERE expires_at <= now() LIMIT $1))",
            &[&limit],
        )
        .await?)
}

async fn idempotent_claim(
    client: &impl deadpool_postgres::GenericClient,
    keys: &SecretsKeys,
    scope: &str,
    key: &str,
) -> Result<Option<IdempotentClaim>> {
    let row = client
        .query_opt(
            "SELECT agent_id, response, request_hash, sealed_response FROM claim_idempotency_keys
              WHERE scope = $1 AND key = $2 AND expires_at > now()",
            &[&scope, &key],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let agent_id = stored_id(row.get(0))?;
    let response = match row.get::<_, Option<String>>(3) {
        Some(sealed) => {
            let opened = keys.open(&sealed, &Binding::claim_answer(&agent_id, key))?;
            Some(serde_json::from_str(opened.expose_secret()).map_err(|_| {
                StoreError::Corrupt(format!(
                    "the answer stored under idempotency key {key:?} is not JSON"
                ))
            })?)
        }
        // Stored by an earlier version, before answers were sealed: the secrets upkeep seals it.
        // Once every secret was sealed, a plaintext answer was written by hand: refused.
        None => {
            let response: Option<serde_json::Value> = row.get(1);
            if response.is_some() && keys.refuses_plaintext() {
                return Err(StoreError::Secret(crate::SecretError {
                    owner: format!(
                        "the claim under idempotency key {:?}",
                        key.chars().take(60).collect::<String>()
                    ),
                    column: "response",
                    problem: crate::SecretProblem::Unsealed,
                }));
            }
            response
        }
    };
    Ok(Some(IdempotentClaim {
        agent_id,
        response,
        request_hash: row.get(2),
    }))
}
