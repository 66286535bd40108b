//! Bearer authentication, compared in constant time: the admin key (`POOL_API_KEY`) may do
//! everything; the named claim keys (`POOL_CLAIM_KEYS`) may only claim; the metrics key
//! (`POOL_METRICS_KEY`) may only read `/metrics`. Which route needs which key is the route
//! table's [`Access`]; this module only checks it.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use crate::route_table::Access;

/// Shortest claim key accepted.
pub const MIN_CLAIM_KEY_LEN: usize = 24;
/// Longest claim key name accepted.
pub const MAX_CLAIM_KEY_NAME: usize = 40;

/// A named key that may only claim (`POOL_CLAIM_KEYS`). Its name, never the key, is what
/// events record and what scopes its idempotency keys.
#[derive(Clone)]
pub struct ClaimKey {
    /// The name (`app`, `bot`, …).
    pub name: String,
    /// The bearer key.
    pub key: SecretString,
}

impl std::fmt::Debug for ClaimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimKey")
            .field("name", &self.name)
            .field("key", &"***")
            .finish()
    }
}

/// Who is calling, as far as the API is concerned: the request extension the key check
/// leaves for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin key.
    Admin,
    /// A claim key, by name.
    ClaimKey(String),
}

impl Caller {
    /// The name events record and idempotency keys are scoped by: `admin` or the claim
    /// key's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Admin => pool_provisioner::ADMIN_CLAIMANT,
            Self::ClaimKey(name) => name,
        }
    }
}

/// Parses `POOL_CLAIM_KEYS`: `name=key` pairs separated by commas. Names are 1 to
/// [`MAX_CLAIM_KEY_NAME`] letters, digits, `-`, `_` or `.`, unique, and neither `admin` nor
/// `console` (those name the admin key and the console in events); keys are at least
/// [`MIN_CLAIM_KEY_LEN`] visible ASCII characters, unique, and not the admin key. Problems
/// name the entry by position and name, never a key.
pub fn parse_claim_keys(text: &str, admin_key: &str) -> Result<Vec<ClaimKey>, Vec<String>> {
    let mut keys: Vec<ClaimKey> = Vec::new();
    let mut problems = Vec::new();
    for (i, entry) in text.split(',').map(str::trim).enumerate() {
        let at = i + 1;
        if entry.is_empty() {
            continue;
        }
        let Some((name, key)) = entry.split_once('=') else {
            problems.push(format!("entry {at} is not name=key"));
            continue;
        };
        let (name, key) = (name.trim(), key.trim());
        let name_ok = !name.is_empty()
            && name.len() <= MAX_CLAIM_KEY_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            problems.push(format!(
                "entry {at}: a name is 1 to {MAX_CLAIM_KEY_NAME} letters, digits, '-', '_' or '.'"
            ));
            continue;
        }
        if ["admin", "console"].iter().any(|r| name.eq_ignore_ascii_case(r)) {
            problems.push(format!("entry {at}: the name {name:?} is reserved"));
        }
        if keys.iter().any(|k| k.name.eq_ignore_ascii_case(name)) {
            problems.push(format!("entry {at}: the name {name:?} is used twice"));
        }
        if key.len() < MIN_CLAIM_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            problems.push(format!(
                "entry {at} ({name}): the key must be at least {MIN_CLAIM_KEY_LEN} visible ASCII characters"
            ));
        } else if key == admin_key {
            problems.push(format!(
                "entry {at} ({name}): the key is POOL_API_KEY; give it a key of its own"
            ));
        } else if keys.iter().any(|k| k.key.expose_secret() == key) {
            problems.push(format!("entry {at} ({name}): the key is used twice"));
        }
        keys.push(ClaimKey {
            name: name.to_string(),
            key: SecretString::from(key.to_string()),
        });
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(problems)
    }
}

/// True when `presented` is `expected`, in time that tells neither the key nor its length: the
/// two are compared as SHA-256 digests (`ct_eq` on slices of different lengths returns at once,
/// which showed the key's length). An empty key matches nothing.
pub(crate) fn key_matches(expected: &SecretString, presented: &str) -> bool {
    secret_matches(expected.expose_secret().as_bytes(), presented.as_bytes())
}

/// [`key_matches`] over bytes.
pub(crate) fn secret_matches(expected: &[u8], presented: &[u8]) -> bool {
    let digest = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
    let (a, b) = (digest(expected), digest(presented));
    bool::from(a.as_ref().ct_eq(b.as_ref())) && !expected.is_empty()
}

/// True when `presented` is the admin key.
pub fn is_admin_key(state: &AppState, presented: &str) -> bool {
    key_matches(&state.admin_key, presented)
}

/// The caller a bearer key stands for, if any. Every configured key is compared (no early
/// exit), so the time taken does not tell which one matched.
pub fn caller_of(state: &AppState, presented: &str) -> Option<Caller> {
    let mut found = is_admin_key(state, presented).then_some(Caller::Admin);
    for claim_key in &state.security.claim_keys {
        if key_matches(&claim_key.key, presented) && found.is_none() {
            found = Some(Caller::ClaimKey(claim_key.name.clone()));
        }
    }
    found
}

/// The `Authorization: Bearer …` key, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_of)
}

/// The key of an `Authorization` value of the form `Bearer <key>`.
pub(crate) fn bearer_of(authorization: &str) -> Option<&str> {
    authorization.strip_prefix("Bearer ").map(str::trim)
}

/// Middleware: lets a request through when its bearer key may call a route of `access`.
/// For [`Access::Admin`] and [`Access::Claim`], the [`Caller`] is left in the request's
/// extensions; a claim key on an admin route is 403, anything else without a key 401.
pub(crate) async fn require(
    state: AppState,
    access: Access,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match access {
        // The handler checks an agent's credentials itself (before the body).
        Access::Open | Access::Agent | Access::AgentBody => Ok(next.run(request).await),
        Access::Metrics => {
            if let Some(metrics_key) = &state.security.metrics_key {
                let presented = bearer(request.headers()).unwrap_or("");
                // Both compared, so the time taken does not tell which key was tried.
                let (is_metrics_key, is_admin_key) = (
                    key_matches(metrics_key, presented),
                    is_admin_key(&state, presented),
                );
                if !(is_metrics_key | is_admin_key) {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "Invalid or missing metrics key",
                    ));
                }
            }
            Ok(next.run(request).await)
        }
        Access::Admin | Access::Claim => {
            let caller = bearer(request.headers()).and_then(|key| caller_of(&state, key));
            match caller {
                Some(Caller::ClaimKey(name)) if access != Access::Claim => {
                    tracing::warn!(key = %name, path = %request.uri().path(), "a claim key was used outside the claim route");
                    Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "this key may only claim (POST /api/pool/claim)",
                    ))
                }
                Some(caller) => {
                    request.extensions_mut().insert(caller);
                    Ok(next.run(request).await)
                }
                None => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Invalid or missing API key",
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "the-admin-key-0123456789";

    #[test]
    fn claim_keys_are_named_unique_and_long_and_problems_never_show_a_key() {
        let keys = parse_claim_keys(
            "app=aaaaaaaaaaaaaaaaaaaaaaaa, bot=bbbbbbbbbbbbbbbbbbbbbbbb,",
            ADMIN,
        )
        .unwrap();
        assert_eq!(
            keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            ["app", "bot"]
        );
        assert!(parse_claim_keys("", ADMIN).unwrap().is_empty());
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        for (text, expected) in [
            (format!("app{secret}"), "entry 1 is not name=key"),
            (format!("=x{secret}"), "entry 1: a name is"),
            (format!("a b={secret}"), "entry 1: a name is"),
            (format!("admin={secret}"), "reserved"),
            (format!("Console={secret}"), "reserved"),
            (
                format!("app={secret},APP=other-{secret}"),
                "entry 2: the name \"APP\" is used twice",
            ),
            (
                "app=short-s3cr3t".to_string(),
                "entry 1 (app): the key must be at least 24",
            ),
            (
                format!("app={secret},bot={secret}"),
                "entry 2 (bot): the key is used twice",
            ),
            (format!("app={ADMIN}"), "the key is POOL_API_KEY"),
        ] {
            let problems = parse_claim_keys(&text, ADMIN).unwrap_err();
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} in {problems:?}"
            );
            for p in &problems {
                assert!(!p.contains("s3cr3t") && !p.contains(ADMIN), "a key in {p:?}");
            }
        }
        assert!(format!("{:?}", keys[0]).contains("***"));
        assert!(!format!("{:?}", keys[0]).contains("aaaa"));
    }
}
