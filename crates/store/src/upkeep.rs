//! Keeping the stored secrets under the current key: the census a start-up checks, and the pass
//! that seals plaintext left by earlier versions, seals anew what a rotation's previous key
//! sealed, and quarantines agents whose secret no key opens.
//!
//! The pass walks the tables in batches by primary key and never holds a lock across a batch:
//! each rewrite is a compare-and-set on the value it read, so two replicas running it at once
//! (both started together) each seal a value at most once between them, and a value a claim or
//! a creation wrote meanwhile is left as it is.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;
use tokio_postgres::types::ToSql;

use crate::agent::{AgentId, AgentStatus};
use crate::events::{EventKind, insert_event};
use crate::rows::{SECRET_COLUMNS, stored_id};
use crate::secrets::{Binding, SecretError, SecretsKeys};
use crate::{Result, Store};

/// What the database holds, by key: a start-up checks it can read all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsCensus {
    /// Stored values that are plaintext (left by an earlier version, or the plaintext mode).
    pub plaintext: i64,
    /// Sealed values by the id of the key that sealed them.
    pub sealed: BTreeMap<String, i64>,
}

impl SecretsCensus {
    /// Sealed values under keys `keys` does not hold: `(key id, count)`. Starting with any is
    /// refused, so a forgotten `POOL_SECRETS_KEY_PREVIOUS` loses nothing.
    pub fn unreadable(&self, keys: &SecretsKeys) -> Vec<(String, i64)> {
        self.sealed
            .iter()
            .filter(|(id, _)| !keys.knows(id))
            .map(|(id, n)| (id.clone(), *n))
            .collect()
    }

    /// Values not yet under the current key (plaintext, or sealed under another key).
    pub fn not_current(&self, keys: &SecretsKeys) -> i64 {
        let current = keys.current_id();
        self.plaintext
            + self
                .sealed
                .iter()
                .filter(|(id, _)| Some(id.as_str()) != current)
                .map(|(_, n)| n)
                .sum::<i64>()
    }
}

/// What one pass of [`Store::upkeep_secrets`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsUpkeep {
    /// Values sealed under the current key (they were plaintext, or under the previous key).
    pub sealed: u64,
    /// Agents quarantined because a secret of theirs does not open (tampered with, or copied
    /// from another row or column).
    pub quarantined: Vec<AgentId>,
    /// Values under a key this process does not hold (left for a replica that has it).
    pub unreadable: u64,
    /// Values another writer changed while the pass looked at them (the next pass looks again).
    pub raced: u64,
}

/// The census of every stored secret: agent columns and claim answers.
const CENSUS_SQL: &str = "SELECT split_part(v, ':', 2), count(*) FROM (
        SELECT unnest(ARRAY[gateway_token, agent_api_token, setup_password, wallet_private_key, openrouter_api_key]) AS v
          FROM agent_metadata
        UNION ALL
        SELECT sealed_response FROM claim_idempotency_keys
     ) s
     WHERE v LIKE 'v1:%' GROUP BY 1";

const PLAINTEXT_SQL: &str = "SELECT (SELECT count(*) FROM (
        SELECT unnest(ARRAY[gateway_token, agent_api_token, setup_password, wallet_private_key, openrouter_api_key]) AS v
          FROM agent_metadata) s WHERE v IS NOT NULL AND v NOT LIKE 'v1:%')
     + (SELECT count(*) FROM claim_idempotency_keys
         WHERE response IS NOT NULL OR sealed_response NOT LIKE 'v1:%')";

impl Store {
    /// Reads whether every stored secret was once found sealed (`pool_identity`), and from then
    /// on refuses plaintext values as tampered with. Returns the flag.
    pub async fn refresh_secrets_sealed(&self) -> Result<bool> {
        let client = self.client().await?;
        let sealed: bool = client
            .query_one("SELECT secrets_sealed_at IS NOT NULL FROM pool_identity", &[])
            .await?
            .get(0);
        self.keys().set_refuse_plaintext(sealed);
        Ok(self.keys().refuses_plaintext())
    }

    /// Once the upkeep has sealed every stored value under the current key (no plaintext, no
    /// value under another key), records it for every replica: plaintext is refused from then
    /// on (issue 20: a value written into the database by hand was accepted as a secret).
    /// Returns whether the pool refuses plaintext now.
    pub async fn seal_for_good_if_done(&self) -> Result<bool> {
        let keys = self.keys();
        if !keys.seals() {
            return Ok(false);
        }
        let census = self.secrets_census().await?;
        if census.plaintext == 0 && census.not_current(keys) == 0 {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE pool_identity SET secrets_sealed_at = now() WHERE secrets_sealed_at IS NULL",
                    &[],
                )
                .await?;
        }
        self.refresh_secrets_sealed().await
    }

    /// Counts the stored secrets by the key that sealed them.
    pub async fn secrets_census(&self) -> Result<SecretsCensus> {
        let client = self.client().await?;
        let mut census = SecretsCensus::default();
        for row in client.query(CENSUS_SQL, &[]).await? {
            census.sealed.insert(row.get(0), row.get(1));
        }
        census.plaintext = client.query_one(PLAINTEXT_SQL, &[]).await?.get(0);
        Ok(census)
    }

    /// One pass over every stored secret, `batch` rows at a time: plaintext and values under
    /// the previous key are sealed under the current key, and an agent with a secret that no
    /// key opens is quarantined (taken out of the pool and torn down if nobody holds it;
    /// flagged, with an event, if it is claimed). Idempotent, and safe to run on several
    /// replicas at once. Without a current key it only quarantines.
    pub async fn upkeep_secrets(&self, batch: usize) -> Result<SecretsUpkeep> {
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut report = SecretsUpkeep::default();
        let mut after = String::new();
        loop {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT id, status, quarantined, gateway_token, agent_api_token, setup_password, \
                     wallet_private_key, openrouter_api_key FROM agent_metadata \
                     WHERE id > $1 AND num_nonnulls(gateway_token, agent_api_token, setup_password, \
                     wallet_private_key, openrouter_api_key) > 0 ORDER BY id LIMIT $2",
                    &[&after, &batch],
                )
                .await?;
            drop(client);
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            let done = rows.len() < usize::try_from(batch).unwrap_or(usize::MAX);
            for row in &rows {
                let id = stored_id(row.get(0))?;
                let status = AgentStatus::parse(row.get(1))?;
                let quarantined: bool = row.get(2);
                self.upkeep_agent(&id, status, quarantined, row, &mut report)
                    .await?;
            }
            if done {
                break;
            }
        }
        self.upkeep_claim_answers(batch, &mut report).await?;
        Ok(report)
    }

    async fn upkeep_agent(
        &self,
        id: &AgentId,
        status: AgentStatus,
        quarantined: bool,
        row: &tokio_postgres::Row,
        report: &mut SecretsUpkeep,
    ) -> Result<()> {
        let keys = self.keys();
        let mut changes: Vec<(&'static str, String, String)> = Vec::new();
        let mut tampered: Option<SecretError> = None;
        for column in SECRET_COLUMNS {
            let Some(stored) = row.get::<_, Option<String>>(column) else {
                continue;
            };
            let at = Binding::agent(id, column);
            match keys.open(&stored, &at) {
                Ok(secret) if keys.needs_resealing(&stored) => {
                    let sealed = keys.seal(secret.expose_secret(), &at)?;
                    changes.push((column, stored, sealed));
                }
                Ok(_) => {}
                Err(e) if e.is_tampered() => {
                    tampered.get_or_insert(e);
                }
                Err(_) => report.unreadable += 1,
            }
        }
        if let Some(problem) = tampered {
            if !quarantined && self.quarantine_for_secret(id, status, &problem).await? {
                tracing::warn!(agent = %id, error = %problem, "a stored secret does not open; agent quarantined");
                report.quarantined.push(id.clone());
            }
            return Ok(());
        }
        if changes.is_empty() {
            return Ok(());
        }
        // Compare-and-set on every value read: a concurrent writer's value is never replaced.
        let id_text = id.as_str();
        let mut sets = Vec::new();
        let mut checks = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id_text];
        for (i, (column, old, new)) in changes.iter().enumerate() {
            checks.push(format!("{column} = ${}", 2 * i + 2));
            sets.push(format!("{column} = ${}", 2 * i + 3));
            params.push(old);
            params.push(new);
        }
        // `column` comes from SECRET_COLUMNS, never from input.
        let sql = format!(
            "UPDATE agent_metadata SET {} WHERE id = $1 AND {}",
            sets.join(", "),
            checks.join(" AND ")
        );
        let client = self.client().await?;
        if client.execute(sql.as_str(), &params).await? == 1 {
            report.sealed += changes.len() as u64;
        } else {
            report.raced += changes.len() as u64;
        }
        Ok(())
    }

    /// Takes an agent whose secret no key opens out of use: one nobody holds (`creating`,
    /// `starting`, `idle`) goes to `deleting`, quarantined, and is torn down by the teardown
    /// retries; a claimed one is only flagged, with an event (it is its user's). `true` when
    /// this call quarantined it.
    async fn quarantine_for_secret(
        &self,
        id: &AgentId,
        status: AgentStatus,
        problem: &SecretError,
    ) -> Result<bool> {
        let reason = format!("quarantined: {problem}");
        match status {
            AgentStatus::Creating | AgentStatus::Starting | AgentStatus::Idle | AgentStatus::Parked => {
                Ok(self.begin_teardown(id, status, &reason, true).await?.applied())
            }
            AgentStatus::Claiming
            | AgentStatus::Claimed
            | AgentStatus::PendingAcceptance
            | AgentStatus::Crashed
            | AgentStatus::Parking
            | AgentStatus::Waking => {
                let mut client = self.client().await?;
                let tx = client.transaction().await?;
                let flagged = tx
                    .execute(
                        "UPDATE agent_metadata SET quarantined = true, last_error = $2 \
                         WHERE id = $1 AND status = $3 AND NOT quarantined",
                        &[&id.as_str(), &reason, &status.as_str()],
                    )
                    .await?;
                if flagged == 1 {
                    insert_event(&tx, id, EventKind::Quarantined, None, None, &reason).await?;
                }
                tx.commit().await?;
                Ok(flagged == 1)
            }
            AgentStatus::Deleting | AgentStatus::Deleted => Ok(false),
        }
    }

    /// Claim answers: those stored as JSON by earlier versions, and those under the previous
    /// key, sealed under the current key.
    async fn upkeep_claim_answers(&self, batch: i64, report: &mut SecretsUpkeep) -> Result<()> {
        let keys = self.keys();
        if !keys.seals() {
            return Ok(());
        }
        let current = keys.current_id().unwrap_or_default().to_string();
        let (mut after_scope, mut after_key) = (String::new(), String::new());
        loop {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT scope, key, agent_id, response::text, sealed_response FROM claim_idempotency_keys \
                     WHERE (scope, key) > ($1, $2) AND agent_id <> '' \
                       AND (response IS NOT NULL OR split_part(sealed_response, ':', 2) <> $3) \
                     ORDER BY scope, key LIMIT $4",
                    &[&after_scope, &after_key, &current, &batch],
                )
                .await?;
            let Some(last) = rows.last() else { break };
            (after_scope, after_key) = (last.get(0), last.get(1));
            let done = rows.len() < usize::try_from(batch).unwrap_or(usize::MAX);
            for row in &rows {
                let (scope, key): (String, String) = (row.get(0), row.get(1));
                let agent = stored_id(row.get(2))?;
                let at = Binding::claim_answer(&agent, &key);
                let (plain, sealed_before): (Option<String>, Option<String>) = (row.get(3), row.get(4));
                let opened = match (&sealed_before, plain) {
                    (Some(sealed), _) => match keys.open(sealed, &at) {
                        Ok(opened) => opened.expose_secret().to_string(),
                        Err(e) => {
                            if e.is_tampered() {
                                tracing::warn!(error = %e, "a stored claim answer does not open");
                            }
                            report.unreadable += 1;
                            continue;
                        }
                    },
                    (None, Some(plain)) => plain,
                    (None, None) => continue,
                };
                let sealed = keys.seal(&opened, &at)?;
                // Compare-and-set on what was read, as for agents.
                let n = match &sealed_before {
                    Some(before) => {
                        client
                            .execute(
                                "UPDATE claim_idempotency_keys SET sealed_response = $4, response = NULL \
                                 WHERE scope = $1 AND key = $2 AND sealed_response = $3",
                                &[&scope, &key, before, &sealed],
                            )
                            .await?
                    }
                    None => {
                        client
                            .execute(
                                "UPDATE claim_idempotency_keys SET sealed_response = $3, response = NULL \
                                 WHERE scope = $1 AND key = $2 AND sealed_response IS NULL AND response IS NOT NULL",
                                &[&scope, &key, &sealed],
                            )
                            .await?
                    }
                };
                if n == 1 {
                    report.sealed += 1;
                } else {
                    report.raced += 1;
                }
            }
            if done {
                break;
            }
        }
        Ok(())
    }
}
