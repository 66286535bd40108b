//! The agent as the database knows it.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::StoreError;
pub use crate::counts::StatusCounts;

/// An agent's id: the suffix of its name (`convos-agent-<id>`), stable for life. Built only by
/// parsing ([`AgentId::parse`]) or by [`AgentId::random`], so an invalid one cannot exist.
///
/// The alphabet is nanoid's (`A-Z a-z 0-9 _ -`): the Node.js pool manager gave its agents
/// `nanoid(12)` ids, and its rows are adopted as they are. New ids are 12 lowercase letters
/// and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AgentId(String);

/// Why text is not an agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an agent id: 1 to 64 letters, digits, '_' or '-'")]
pub struct InvalidAgentId(String);

impl AgentId {
    /// Length of a generated id.
    pub const GENERATED_LEN: usize = 12;

    /// Longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses an id: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
    pub fn parse(text: &str) -> Result<Self, InvalidAgentId> {
        let valid = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(text.to_string()))
        } else {
            // Keep the message short and printable whatever was sent.
            Err(InvalidAgentId(
                text.chars().take(40).filter(|c| !c.is_control()).collect(),
            ))
        }
    }

    /// A fresh random id: 12 lowercase letters and digits.
    pub fn random() -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        Self(
            (0..Self::GENERATED_LEN)
                .map(|_| ALPHABET[rand::Rng::random_range(&mut rng, 0..ALPHABET.len())] as char)
                .collect(),
        )
    }

    /// True for an id of the form this pool generates (12 lowercase letters and digits).
    pub fn is_generated(&self) -> bool {
        self.0.len() == Self::GENERATED_LEN
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AgentId {
    type Err = InvalidAgentId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where an agent is in its life. Stored as text; transitions name the expected old status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// The creation saga is running; remote resources may exist.
    Creating,
    /// Deployed, not yet healthy (or redeploying). Not claimable.
    Starting,
    /// Healthy and unclaimed: can be handed out.
    Idle,
    /// Taken by a claim that is provisioning it, under a lease.
    Claiming,
    /// Handed to a user.
    Claimed,
    /// Handed to a user whose conversation needs approval before the agent is in it (the
    /// runtime's pool server answered `status: "pending_acceptance"`,
    /// `runtime/convos-platform/pool-server/index.ts:304-306`). Counted apart, never claimed
    /// again; resolved by the agent's `pending-acceptance/{complete,fail}` calls, or torn down
    /// past `POOL_PENDING_ACCEPTANCE_TIMEOUT_MS`.
    #[serde(rename = "pending_acceptance")]
    PendingAcceptance,
    /// Claimed, then its deployment died. Kept until an operator dismisses it.
    Crashed,
    /// Being parked: its deployment is being removed (`deploymentRemove`). Not claimable.
    Parking,
    /// Parked: project, service, variables, volume and domain kept, no deployment running
    /// (no compute). Woken by one deploy.
    Parked,
    /// Being woken: its one deploy is under way; then `starting` as a new agent.
    Waking,
    /// Teardown in progress; retried until done.
    Deleting,
    /// Torn down; the row is kept as an archive.
    Deleted,
}

impl AgentStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [AgentStatus; 12] = [
        Self::Creating,
        Self::Starting,
        Self::Idle,
        Self::Claiming,
        Self::Claimed,
        Self::PendingAcceptance,
        Self::Crashed,
        Self::Parking,
        Self::Parked,
        Self::Waking,
        Self::Deleting,
        Self::Deleted,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Starting => "starting",
            Self::Idle => "idle",
            Self::Claiming => "claiming",
            Self::Claimed => "claimed",
            Self::PendingAcceptance => "pending_acceptance",
            Self::Crashed => "crashed",
            Self::Parking => "parking",
            Self::Parked => "parked",
            Self::Waking => "waking",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown agent status {s:?}")))
    }
}

impl std::fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The secrets the pool uses for an agent's whole life: generated by the provisioner, sealed
/// at rest (see `secrets.rs`), never printed, removed when the agent is archived.
#[derive(Clone)]
pub struct AgentSecrets {
    /// `OPENCLAW_GATEWAY_TOKEN`: sent with `/pool/provision` and returned to the claimer.
    pub gateway_token: SecretString,
    /// The agent's own `POOL_API_KEY`: the bearer for `/pool/health` and `/pool/provision`.
    pub agent_api_token: SecretString,
}

impl std::fmt::Debug for AgentSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentSecrets(***)")
    }
}

/// The secrets only the creation needs: set as the agent's variables by the saga's variables
/// step, and removed from the row in the same transaction that journals that step (a trigger
/// of migration V7), so a resumed creation can still set them but nothing keeps them after.
#[derive(Clone)]
pub struct SetupSecrets {
    /// `SETUP_PASSWORD`.
    pub setup_password: SecretString,
    /// `PRIVATE_WALLET_KEY`.
    pub wallet_private_key: SecretString,
}

impl std::fmt::Debug for SetupSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetupSecrets(***)")
    }
}

/// A row to insert before the first remote call of a creation.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// The new agent's id.
    pub id: AgentId,
    /// The image reference it will be deployed from.
    pub image: String,
    /// The shape (runtime) it belongs to.
    pub shape: String,
    /// Its lasting secrets.
    pub secrets: AgentSecrets,
    /// Its setup secrets (kept until the variables step).
    pub setup: SetupSecrets,
}

/// One agent row.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Id.
    pub id: AgentId,
    /// Stored status.
    pub status: AgentStatus,
    /// When the status last changed.
    pub status_changed_at: DateTime<Utc>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
    /// True for agents adopted from the shared-project era (they live in the pool's own
    /// project and are torn down service by service).
    pub legacy: bool,
    /// Never hand out again (a claim died mid-provision).
    pub quarantined: bool,
    /// Railway project (`None` until created).
    pub project_id: Option<String>,
    /// Railway environment.
    pub environment_id: Option<String>,
    /// Railway service.
    pub service_id: Option<String>,
    /// Railway volume.
    pub volume_id: Option<String>,
    /// Public domain (`x.up.railway.app`).
    pub domain: Option<String>,
    /// The deployment this pool started last.
    pub deployment_id: Option<String>,
    /// The image reference it runs.
    pub image: Option<String>,
    /// OpenRouter key hash (for deletion).
    pub openrouter_key_hash: Option<String>,
    /// OpenRouter key itself (set as the agent's `OPENROUTER_API_KEY`): kept, like the
    /// [`SetupSecrets`], only until the variables step.
    pub openrouter_api_key: Option<SecretString>,
    /// AgentMail inbox id.
    pub agentmail_inbox_id: Option<String>,
    /// Lasting secrets (absent on legacy rows, which were created by the Node pool, on
    /// archived rows, and when one of them cannot be read: see `unreadable_secrets`).
    pub secrets: Option<AgentSecrets>,
    /// Setup secrets, until the variables step has set them.
    pub setup_secrets: Option<SetupSecrets>,
    /// Stored secrets of this row that could not be read (tampered with, or sealed under a
    /// key this process does not hold). Their fields above are `None`.
    pub unreadable_secrets: Vec<crate::SecretError>,
    /// Claim: the agent's display name.
    pub agent_name: Option<String>,
    /// Claim: the instructions it was given.
    pub instructions: Option<String>,
    /// Claim: the join URL, when it joined an existing conversation.
    pub join_url: Option<String>,
    /// Claim: the conversation.
    pub conversation_id: Option<String>,
    /// Claim: the invite URL the user got.
    pub invite_url: Option<String>,
    /// Claim: whether it joined an existing conversation.
    pub joined: Option<bool>,
    /// When it was claimed.
    pub claimed_at: Option<DateTime<Utc>>,
    /// When it entered `pending_acceptance`.
    pub pending_acceptance_at: Option<DateTime<Utc>>,
    /// Claim: who asked (`source`: "api" unless the claimer said).
    pub claim_source: Option<String>,
    /// Claim: the avatar given to the agent (an https URL).
    pub profile_image: Option<String>,
    /// Claim: the flat string map given to the agent.
    pub claim_metadata: Option<serde_json::Value>,
    /// The agent's word on the provision: `created`, `joined` or `pending_acceptance`.
    pub provision_status: Option<String>,
    /// What its `/pool/health` last said it runs: `version` (`runtime/convos-platform/
    /// pool-server/index.ts:359`).
    pub runtime_version: Option<String>,
    /// And `runtime` (`openclaw` or `hermes`).
    pub runtime_name: Option<String>,
    /// The shape (runtime) it belongs to: the image it runs, the claims it serves, the
    /// settings it is sized by (migration V16).
    pub shape: String,
    /// The claim lease's end while `claiming`.
    pub claim_expires_at: Option<DateTime<Utc>>,
    /// Last deployment status the tick saw (Railway's word, verbatim).
    pub deployment_status: Option<String>,
    /// When the last health check ran.
    pub last_health_at: Option<DateTime<Utc>>,
    /// Its result.
    pub last_health_ok: Option<bool>,
    /// Teardown attempts so far.
    pub teardown_attempts: i32,
    /// Earliest time of the next teardown attempt.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Last error seen while creating or tearing down.
    pub last_error: Option<String>,
    /// A creation or teardown holds the row until then.
    pub worker_lease_until: Option<DateTime<Utc>>,
    /// An operator asked to move this agent to the current image.
    pub redeploy_requested_at: Option<DateTime<Utc>>,
    /// The marker its project was created with: 1 the old form (adopted by V12), 2 the pool id.
    pub project_marker_form: i16,
    /// The saga steps completed, in order.
    pub completed_steps: Vec<CreationStep>,
    /// A step whose remote call may have happened without being journaled (set before the
    /// call, cleared with the journal entry).
    pub step_in_flight: Option<CreationStep>,
    /// The park or wake step about to be tried, if one is (see [`TierStep`]).
    pub tier_step: Option<TierStep>,
    /// When it was parked.
    pub parked_at: Option<DateTime<Utc>>,
    /// Wakes that failed in a row.
    pub wake_failures: i32,
}

/// A park or wake step whose remote call may have happened without its outcome being written:
/// set before the call, cleared with the outcome, looked up before it is redone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierStep {
    /// `deploymentRemove` of the agent's deployment (parking).
    Remove,
    /// The wake's one deploy.
    Deploy,
}

impl TierStep {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Remove => "remove",
            Self::Deploy => "deploy",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Remove, Self::Deploy].into_iter().find(|t| t.as_str() == s)
    }
}

impl Agent {
    /// The agent's name: the same string for its Railway project, OpenRouter key and inbox.
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.id)
    }

    /// The first stored secret of this row that no key will ever open (tampered with, or
    /// copied from another row or column), if any: such an agent is quarantined.
    pub fn tampered_secret(&self) -> Option<&crate::SecretError> {
        self.unreadable_secrets.iter().find(|e| e.is_tampered())
    }

    /// True when the step has been journaled.
    pub fn has_completed(&self, step: CreationStep) -> bool {
        self.completed_steps.contains(&step)
    }

    /// True when the agent's Railway project was not created by this pool for it: a legacy
    /// agent of the shared project, or an agent adopted from the Node pool (its project is
    /// recorded, but no `project` step of this pool's saga made it). Such an agent is torn
    /// down service by service; its project is never deleted.
    pub fn project_not_ours(&self) -> bool {
        self.legacy || (self.project_id.is_some() && !self.has_completed(CreationStep::Project))
    }

    /// Whether the agent may be moved to a new image: idle, and not a legacy agent of the
    /// shared project. The one rule; [`crate::Store::request_redeploy`] writes it in SQL for
    /// "every idle agent", and a test keeps the two in step.
    pub fn is_redeployable(&self) -> bool {
        self.status == AgentStatus::Idle && !self.legacy
    }
}

/// A step of the creation saga, journaled once its remote effect exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreationStep {
    /// Per-agent OpenRouter key.
    OpenRouterKey,
    /// Per-agent AgentMail inbox.
    AgentMailInbox,
    /// Railway project.
    Project,
    /// Environment named like the pool's.
    Environment,
    /// Service (no source yet), with registry credentials.
    Service,
    /// Variables, set without deploying.
    Variables,
    /// CPU and memory limits.
    Limits,
    /// The `/data` volume.
    Volume,
    /// Public domain.
    Domain,
    /// Image source, registry credentials, sleep off, restart policy.
    Instance,
    /// The one deploy.
    Deploy,
}

impl CreationStep {
    /// Every step, in saga order. The project comes first: it is the step that waits for
    /// Railway's per-workspace throttle, and a creation waiting for its turn should hold
    /// nothing that costs money (a key, an inbox) meanwhile.
    pub const ALL: [CreationStep; 11] = [
        Self::Project,
        Self::Environment,
        Self::OpenRouterKey,
        Self::AgentMailInbox,
        Self::Service,
        Self::Variables,
        Self::Limits,
        Self::Volume,
        Self::Domain,
        Self::Instance,
        Self::Deploy,
    ];

    /// The journaled name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenRouterKey => "openrouter_key",
            Self::AgentMailInbox => "agentmail_inbox",
            Self::Project => "project",
            Self::Environment => "environment",
            Self::Service => "service",
            Self::Variables => "variables",
            Self::Limits => "limits",
            Self::Instance => "instance",
            Self::Volume => "volume",
            Self::Domain => "domain",
            Self::Deploy => "deploy",
        }
    }

    /// Parses a journaled name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The agent column that holds this step's remote id, if it has one.
    pub(crate) fn id_column(self) -> Option<&'static str> {
        match self {
            Self::OpenRouterKey => Some("openrouter_key_hash"),
            Self::AgentMailInbox => Some("agentmail_inbox_id"),
            Self::Project => Some("railway_project_id"),
            Self::Environment => Some("railway_environment_id"),
            Self::Service => Some("railway_service_id"),
            Self::Volume => Some("railway_volume_id"),
            Self::Domain => Some("railway_domain"),
            Self::Deploy => Some("railway_deployment_id"),
            Self::Variables | Self::Limits | Self::Instance => None,
        }
    }
}

impl std::fmt::Display for CreationStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a claimer asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The agent's display name.
    pub agent_name: String,
    /// Its instructions.
    pub instructions: String,
    /// A conversation to join instead of creating one.
    pub join_url: Option<String>,
    /// Who asks (`source`; "api" unless the claimer said).
    pub source: String,
    /// The avatar to give the agent (an https URL, checked by the caller).
    pub profile_image: Option<String>,
    /// A flat string map to give the agent (checked by the caller).
    pub metadata: Option<serde_json::Value>,
    /// How long the claimer may take to provision before the agent is presumed lost.
    pub lease: std::time::Duration,
    /// Makes a repeated request return the first answer.
    pub idempotency_key: Option<String>,
    /// A claim that waits: its place in the queue (only the head may take an agent).
    pub ticket: Option<crate::QueueTicket>,
    /// Who claims: the name of the caller's API key (never the key). It is recorded on the
    /// claim's event and scopes the idempotency key: the same key from two callers is two
    /// claims.
    pub claimant: String,
    /// A fingerprint of the request's fields, kept with the idempotency key so a repeat with
    /// different fields is told apart from a true repeat.
    pub request_hash: String,
    /// How long an idempotency key is kept; after that it is pruned and may be used again.
    pub idempotency_ttl: std::time::Duration,
    /// Agents never handed out (`PROTECTED_INSTANCES`).
    pub protected: Vec<String>,
    /// The shape (runtime) whose agent the claim takes; it waits in that shape's queue.
    pub shape: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_parsed_from_nanoid_text_only() {
        assert!(AgentId::parse("abcdef012345").is_ok());
        assert!(AgentId::parse("V1StGXR8_Z5j").is_ok(), "a Node-era nanoid(12)");
        for bad in ["", "a b", "a\u{0}b", "ünïcode", "a/b", &"x".repeat(65)] {
            assert!(AgentId::parse(bad).is_err(), "{bad:?}");
        }
        let random = AgentId::random();
        assert!(random.is_generated());
        assert_eq!(AgentId::parse(random.as_str()), Ok(random));
        assert!(!AgentId::parse("V1StGXR8_Z5j").unwrap().is_generated());
    }

    #[test]
    fn an_invalid_id_never_deserializes() {
        assert!(serde_json::from_str::<AgentId>("\"abc\"").is_ok());
        assert!(serde_json::from_str::<AgentId>("\"a b\"").is_err());
    }
}
