//! Secrets at rest: every per-agent secret (and every stored claim answer, which carries a
//! gateway token) is sealed with ChaCha20-Poly1305 before it reaches the database.
//!
//! A sealed value is the text `v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`:
//! - `v1` names this format;
//! - the key id is derived from the key itself (the first 12 hex digits of a SHA-256 over it),
//!   so a value says which key opens it and rotation knows what is left under an older key;
//! - the nonce is 12 fresh random bytes per value.
//!
//! The associated data binds each value to where it lives — its table, its column and its row
//! (the agent's id, or the claim's idempotency key) — so a value copied to another agent or
//! another column does not open: it fails with [`SecretProblem::DoesNotDecrypt`], never yields
//! another agent's secret.
//!
//! A stored value without the `v1:` prefix is plaintext left by an earlier version (or written
//! in the explicit plaintext mode): it is read as it is, and [`crate::Store::upkeep_secrets`]
//! seals it under the current key.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;

use crate::StoreError;
use crate::agent::AgentId;

/// The prefix of every sealed value.
const PREFIX: &str = "v1:";

/// Hex digits of a key id.
const KEY_ID_LEN: usize = 12;

/// One 32-byte key. Its bytes never print; only its id does.
pub struct SecretsKey {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretsKey({})", self.id)
    }
}

/// Why text is not a secrets key. Never contains the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecretsKey {
    /// It decodes, but not to 32 bytes.
    #[error(
        "must be 32 random bytes written as base64 (openssl rand -base64 32) or as 64 hex digits; it decodes to {0} bytes"
    )]
    WrongLength(usize),
    /// It is neither base64 nor hex.
    #[error(
        "must be 32 random bytes written as base64 (openssl rand -base64 32) or as 64 hex digits; it is neither"
    )]
    NotEncoded,
}

impl SecretsKey {
    /// Bytes in a key.
    pub const LEN: usize = 32;

    /// Parses a key: 32 bytes as base64 (standard or URL-safe, padded or not) or as 64 hex
    /// digits. Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, InvalidSecretsKey> {
        let text = text.trim();
        let bytes: Zeroizing<Vec<u8>> =
            if text.len() == 2 * Self::LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                Zeroizing::new(
                    (0..Self::LEN)
                        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or_default())
                        .collect(),
                )
            } else {
                let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|engine| engine.decode(text).ok())
                    .ok_or(InvalidSecretsKey::NotEncoded)?;
                Zeroizing::new(decoded)
            };
        let bytes: &[u8; Self::LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| InvalidSecretsKey::WrongLength(bytes.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: &[u8; Self::LEN]) -> Self {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"pool-manager secrets key id\0");
        context.update(bytes);
        let digest = context.finish();
        let id: String = digest.as_ref()[..KEY_ID_LEN / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        #[allow(clippy::expect_used)] // 32 bytes is always a valid ChaCha20-Poly1305 key
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte key");
        Self {
            id,
            key: LessSafeKey::new(unbound),
        }
    }

    /// A fresh random key, as the base64 text `POOL_SECRETS_KEY` takes (tests, tooling).
    pub fn generate_text() -> SecretString {
        let mut bytes = Zeroizing::new([0u8; Self::LEN]);
        rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
        SecretString::from(STANDARD.encode(bytes.as_slice()))
    }

    /// The key's id: 12 hex digits derived from it (safe to print).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys a store seals and opens secrets with.
///
/// - [`SecretsKeys::new`]: values are sealed under the current key; the previous key (after a
///   rotation) only opens values not yet sealed anew.
/// - [`SecretsKeys::plaintext`]: no key; secrets are stored as they are. Only for development,
///   when asked for explicitly (`POOL_ALLOW_PLAINTEXT_SECRETS`).
/// - [`SecretsKeys::default`]: no key and no plaintext: secrets can be read when they are
///   plaintext, but none can be written. A store nobody gave keys to fails closed.
#[derive(Clone, Default)]
pub struct SecretsKeys {
    current: Option<Arc<SecretsKey>>,
    previous: Option<Arc<SecretsKey>>,
    plaintext: bool,
    /// Set once the upkeep found every stored value sealed (`pool_identity.secrets_sealed_at`):
    /// from then on a plaintext value is refused as tampered with. Shared by every clone.
    sealed_only: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for SecretsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKeys")
            .field("current", &self.current_id())
            .field("previous", &self.previous_id())
            .field("plaintext", &self.plaintext)
            .finish()
    }
}

impl SecretsKeys {
    /// Seals under `current`; `previous` (a rotation's old key) also opens.
    pub fn new(current: SecretsKey, previous: Option<SecretsKey>) -> Self {
        let previous = previous.filter(|p| p.id != current.id).map(Arc::new);
        Self {
            current: Some(Arc::new(current)),
            previous,
            plaintext: false,
            sealed_only: Arc::default(),
        }
    }

    /// No key: secrets are written as plaintext (development only, by explicit choice).
    pub fn plaintext() -> Self {
        Self {
            plaintext: true,
            ..Self::default()
        }
    }

    /// The id of the key new values are sealed under.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_deref().map(SecretsKey::id)
    }

    /// The id of the rotation's previous key.
    pub fn previous_id(&self) -> Option<&str> {
        self.previous.as_deref().map(SecretsKey::id)
    }

    /// True when new values are sealed (a current key is set).
    pub fn seals(&self) -> bool {
        self.current.is_some()
    }

    /// True when secrets are stored as plaintext by explicit choice.
    pub fn is_plaintext(&self) -> bool {
        self.plaintext && self.current.is_none()
    }

    /// The ids of every key that opens values.
    pub fn known_ids(&self) -> Vec<String> {
        [self.current_id(), self.previous_id()]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect()
    }

    /// Whether `key_id` names a key these keys hold.
    pub fn knows(&self, key_id: &str) -> bool {
        [self.current_id(), self.previous_id()].contains(&Some(key_id))
    }

    /// Seals `plaintext` for the place `at` (plaintext mode: returns it as it is).
    pub(crate) fn seal(&self, plaintext: &str, at: &Binding) -> Result<String, StoreError> {
        let Some(key) = &self.current else {
            if self.plaintext {
                return Ok(plaintext.to_string());
            }
            return Err(StoreError::Config(format!(
                "cannot store {} of {}: no secrets key is configured (POOL_SECRETS_KEY)",
                at.column,
                at.owner()
            )));
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Config("the system random number generator failed".into()))?;
        let tag_len = CHACHA20_POLY1305.tag_len();
        // Room for the tag up front: growing the buffer would leave a copy of the plaintext
        // behind in freed memory.
        let mut sealed = Zeroizing::new(Vec::with_capacity(NONCE_LEN + plaintext.len() + tag_len));
        sealed.extend_from_slice(&nonce);
        let mut body = Zeroizing::new(Vec::with_capacity(plaintext.len() + tag_len));
        body.extend_from_slice(plaintext.as_bytes());
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(at.associated_data()),
                &mut *body,
            )
            .map_err(|_| StoreError::Config(format!("sealing {} of {} failed", at.column, at.owner())))?;
        sealed.extend_from_slice(&body);
        Ok(format!(
            "{PREFIX}{}:{}",
            key.id,
            URL_SAFE_NO_PAD.encode(sealed.as_slice())
        ))
    }

    /// True once every stored secret was found sealed: plaintext is refused from then on.
    pub fn refuses_plaintext(&self) -> bool {
        self.sealed_only.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refuse plaintext from now on (or not): what `pool_identity.secrets_sealed_at` says.
    pub(crate) fn set_refuse_plaintext(&self, refuse: bool) {
        self.sealed_only.store(
            refuse && self.current.is_some(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Opens a stored value for the place `at`. Plaintext (no `v1:` prefix) is returned as it
    /// is — until every stored value was found sealed ([`Self::refuses_plaintext`]): then a
    /// plaintext value is one someone wrote into the database, and is refused as tampered
    /// with. A sealed value opens only under its own key, in its own place.
    pub(crate) fn open(&self, stored: &str, at: &Binding) -> Result<SecretString, SecretError> {
        let problem = |problem| SecretError {
            owner: at.owner(),
            column: at.column,
            problem,
        };
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            if self.refuses_plaintext() {
                return Err(problem(SecretProblem::Unsealed));
            }
            return Ok(SecretString::from(stored.to_string()));
        };
        let Some((key_id, body)) = rest.split_once(':') else {
            return Err(problem(SecretProblem::Malformed));
        };
        let Some(key) = [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .find(|k| k.id == key_id)
        else {
            let key_id = printable_key_id(key_id);
            return Err(problem(if self.current.is_none() {
                SecretProblem::NoKey { key_id }
            } else {
                SecretProblem::UnknownKey { key_id }
            }));
        };
        let mut bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| problem(SecretProblem::Malformed))?,
        );
        if bytes.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(problem(SecretProblem::Malformed));
        }
        let (nonce, body) = bytes.split_at_mut(NONCE_LEN);
        let does_not_decrypt = || {
            problem(SecretProblem::DoesNotDecrypt {
                key_id: key.id.clone(),
            })
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| does_not_decrypt())?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(at.associated_data()), body)
            .map_err(|_| does_not_decrypt())?;
        let text = std::str::from_utf8(plain).map_err(|_| does_not_decrypt())?;
        Ok(SecretString::from(text.to_string()))
    }

    /// True when a stored value should be sealed anew: it is plaintext or under another key
    /// than the current one (never in plaintext mode, which has no key to seal under).
    pub(crate) fn needs_resealing(&self, stored: &str) -> bool {
        match self.current_id() {
            Some(id) => !is_sealed_under(stored, id),
            None => false,
        }
    }
}

/// True when `stored` is sealed under the key `key_id`.
fn is_sealed_under(stored: &str, key_id: &str) -> bool {
    stored
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix(key_id))
        .is_some_and(|rest| rest.starts_with(':'))
}

/// A key id as read from a stored value: printable and short, whatever was stored.
fn printable_key_id(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(KEY_ID_LEN)
        .collect()
}

/// The key id of a stored value, when it is sealed.
#[cfg(test)]
fn sealed_key_id(stored: &str) -> Option<&str> {
    stored.strip_prefix(PREFIX)?.split_once(':').map(|(id, _)| id)
}

/// Where a secret lives: what its associated data binds it to.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    table: &'static str,
    column: &'static str,
    row: String,
    owner: String,
}

impl Binding {
    /// A column of an agent's row.
    pub(crate) fn agent(id: &AgentId, column: &'static str) -> Self {
        Self {
            table: "agent_metadata",
            column,
            row: id.as_str().to_string(),
            owner: format!("agent {id}"),
        }
    }

    /// The stored answer of the claim that took `agent` under an idempotency key.
    pub(crate) fn claim_answer(agent: &AgentId, key: &str) -> Self {
        Self {
            table: "claim_idempotency_keys",
            column: "response",
            row: format!("{agent}\0{key}"),
            owner: format!(
                "the claim of agent {agent} under idempotency key {:?}",
                key.chars().take(60).collect::<String>()
            ),
        }
    }

    fn associated_data(&self) -> Vec<u8> {
        format!(
            "pool-manager secret v1\0{}.{}\0{}",
            self.table, self.column, self.row
        )
        .into_bytes()
    }

    fn owner(&self) -> String {
        self.owner.clone()
    }
}

/// A stored secret that cannot be read. Names the owner and the column, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column} of {owner} cannot be read: {problem}")]
pub struct SecretError {
    /// Whose secret (`agent <id>`, or a claim's idempotency key).
    pub owner: String,
    /// The column.
    pub column: &'static str,
    /// What is wrong.
    pub problem: SecretProblem,
}

impl SecretError {
    /// True when the value itself is bad (tampered with, copied from elsewhere, truncated):
    /// no key will ever open it. Otherwise a key is missing here, and another replica or a
    /// corrected configuration may read it.
    pub fn is_tampered(&self) -> bool {
        matches!(
            self.problem,
            SecretProblem::DoesNotDecrypt { .. } | SecretProblem::Malformed | SecretProblem::Unsealed
        )
    }
}

/// Why a stored secret cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretProblem {
    /// Its key is here but it does not open: tampered with, or copied from another row or
    /// column.
    #[error(
        "it does not decrypt under key {key_id}: it was tampered with, or copied from another row or column"
    )]
    DoesNotDecrypt {
        /// The key it names.
        key_id: String,
    },
    /// It is sealed under a key this process does not hold.
    #[error(
        "it is sealed under key {key_id}, which is neither POOL_SECRETS_KEY nor POOL_SECRETS_KEY_PREVIOUS"
    )]
    UnknownKey {
        /// The key it names.
        key_id: String,
    },
    /// It is sealed, and this process has no key at all.
    #[error("it is sealed under key {key_id}, and no POOL_SECRETS_KEY is configured")]
    NoKey {
        /// The key it names.
        key_id: String,
    },
    /// It has the sealed prefix but not the shape of a sealed value.
    #[error("it is not a well-formed sealed value")]
    Malformed,
    /// It is plaintext, and every stored value was sealed: someone wrote it there.
    #[error("it is not sealed, and every secret of this pool is: it was written into the database by hand")]
    Unsealed,
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn keys() -> SecretsKeys {
        SecretsKeys::new(SecretsKey::from_bytes(&[7; 32]), None)
    }

    fn id(text: &str) -> AgentId {
        AgentId::parse(text).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_in_its_place_only() {
        let keys = keys();
        let a = id("agentaaaaaaa");
        let b = id("agentbbbbbbb");
        let sealed = keys
            .seal("the secret", &Binding::agent(&a, "gateway_token"))
            .unwrap();
        assert!(sealed.starts_with(&format!("v1:{}:", keys.current_id().unwrap())));
        assert!(!sealed.contains("the secret"));
        let opened = keys.open(&sealed, &Binding::agent(&a, "gateway_token")).unwrap();
        assert_eq!(opened.expose_secret(), "the secret");
        for elsewhere in [
            Binding::agent(&b, "gateway_token"),
            Binding::agent(&a, "agent_api_token"),
            Binding::claim_answer(&a, "agentaaaaaaa"),
        ] {
            let err = keys.open(&sealed, &elsewhere).unwrap_err();
            assert!(err.is_tampered(), "{err}");
            assert!(!err.to_string().contains("the secret"));
        }
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let keys = keys();
        let a = id("agentaaaaaaa");
        let at = Binding::agent(&a, "gateway_token");
        let one = keys.seal("x", &at).unwrap();
        let two = keys.seal("x", &at).unwrap();
        assert_ne!(one, two);
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_errors_never_show_the_text() {
        let hex = "00".repeat(32);
        let b64 = STANDARD.encode([0u8; 32]);
        let a = SecretsKey::parse(&hex).unwrap();
        let b = SecretsKey::parse(&b64).unwrap();
        let c = SecretsKey::parse(b64.trim_end_matches('=')).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(b.id(), c.id());
        assert_eq!(a.id().len(), KEY_ID_LEN);
        let short = STANDARD.encode([1u8; 16]);
        assert_eq!(
            SecretsKey::parse(&short).unwrap_err(),
            InvalidSecretsKey::WrongLength(16)
        );
        let err = SecretsKey::parse("not a key!").unwrap_err();
        assert!(!err.to_string().contains("not a key"));
        let generated = SecretsKey::generate_text();
        assert!(SecretsKey::parse(generated.expose_secret()).is_ok());
    }

    #[test]
    fn plaintext_is_read_as_it_is_and_sealed_anew() {
        let keys = keys();
        let a = id("agentaaaaaaa");
        let at = Binding::agent(&a, "setup_password");
        assert_eq!(
            keys.open("legacy", &at).map(|s| s.expose_secret().to_string()),
            Ok("legacy".to_string())
        );
        assert!(keys.needs_resealing("legacy"));
        let sealed = keys.seal("legacy", &at).unwrap();
        assert!(!keys.needs_resealing(&sealed));
        assert_eq!(sealed_key_id(&sealed), keys.current_id());
    }

    #[test]
    fn unknown_keys_and_broken_values_are_told_apart() {
        let old = SecretsKeys::new(SecretsKey::from_bytes(&[1; 32]), None);
        let new = keys();
        let a = id("agentaaaaaaa");
        let at = Binding::agent(&a, "gateway_token");
        let sealed = old.seal("s", &at).unwrap();
        let err = new.open(&sealed, &at).unwrap_err();
        assert!(matches!(err.problem, SecretProblem::UnknownKey { .. }), "{err}");
        assert!(!err.is_tampered());
        let err = SecretsKeys::default().open(&sealed, &at).unwrap_err();
        assert!(matches!(err.problem, SecretProblem::NoKey { .. }), "{err}");
        let both = SecretsKeys::new(
            SecretsKey::from_bytes(&[7; 32]),
            Some(SecretsKey::from_bytes(&[1; 32])),
        );
        assert!(both.open(&sealed, &at).is_ok());
        assert!(both.needs_resealing(&sealed));
        let mut truncated = sealed.clone();
        truncated.truncate(sealed.len() - 4);
        assert!(both.open(&truncated, &at).unwrap_err().is_tampered());
        assert!(
            both.open("v1:nonsense", &at).unwrap_err().is_tampered(),
            "no key id separator"
        );
    }

    #[test]
    fn without_keys_nothing_is_written_unless_plaintext_was_asked_for() {
        let a = id("agentaaaaaaa");
        let at = Binding::agent(&a, "gateway_token");
        let err = SecretsKeys::default().seal("s", &at).unwrap_err();
        assert!(err.to_string().contains("POOL_SECRETS_KEY"), "{err}");
        assert_eq!(SecretsKeys::plaintext().seal("s", &at).unwrap(), "s");
    }
}
