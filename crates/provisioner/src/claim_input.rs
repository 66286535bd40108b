//! What a claimer sends, as the real clients send it: the Node pool's `POST /api/pool/claim`
//! at the pinned commit (pool/src/index.ts:950-994) and the convos landing page, which sends
//! only `{joinUrl, source}` (dashboard/src/app/api/claim/route.ts:7-15).
//!
//! Bad input is refused with the field it concerns, before any agent is touched. No empty
//! value ever reaches an agent: the runtime's pool server answers 400 to an empty
//! `agentName` or `instructions` (runtime/convos-platform/pool-server/index.ts:430-437), so an
//! empty or blank one is taken as missing and gets the Node pool's default (index.ts:979-980).

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ProvisionError, Result};
use crate::shape::{Shape, Shapes};

/// Longest agent name accepted.
pub const MAX_AGENT_NAME: usize = 200;
/// Longest instructions accepted.
pub const MAX_INSTRUCTIONS: usize = 32 * 1024;
/// Longest join URL accepted.
pub const MAX_JOIN_URL: usize = 2048;
/// Longest profile image URL accepted.
pub const MAX_PROFILE_IMAGE: usize = 2048;
/// Longest `source` accepted.
pub const MAX_SOURCE: usize = 64;
/// Most entries of `metadata`.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Largest `metadata`, keys and values together, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

/// The name an agent gets when the claim gives none (pool/src/index.ts:979).
pub const DEFAULT_AGENT_NAME: &str = "Assistant";
/// The instructions an agent gets when the claim gives none (pool/src/index.ts:980).
pub const DEFAULT_INSTRUCTIONS: &str = "You are a helpful AI assistant.";
/// The `source` of a claim that names none (pool/src/index.ts:984).
pub const DEFAULT_SOURCE: &str = "api";
/// Longest `runtime` accepted.
pub const MAX_RUNTIME: usize = 64;

/// What a claimer sends. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimInput {
    /// The agent's display name ("Assistant" when missing or blank).
    #[serde(default)]
    pub agent_name: String,
    /// Its instructions (the Node pool's default when missing or blank).
    #[serde(default)]
    pub instructions: String,
    /// A conversation to join instead of creating one.
    #[serde(default)]
    pub join_url: Option<String>,
    /// Who asks: "landing", "ios", … ("api" when missing).
    #[serde(default)]
    pub source: Option<String>,
    /// The agent's avatar: an https URL.
    #[serde(default)]
    pub profile_image: Option<String>,
    /// A flat map of strings given to the agent (at most 32 entries and 4096 bytes).
    #[serde(default)]
    pub metadata: Option<Value>,
    /// The runtime asked for: one of the pool's shapes (the default shape when missing; the
    /// Node pool's claims carry it, PR #1022).
    #[serde(default)]
    pub runtime: Option<String>,
}

/// A claim as it goes to the agent: defaults applied, every field checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedClaim {
    /// Never empty.
    pub agent_name: String,
    /// Never empty.
    pub instructions: String,
    /// An https URL.
    pub join_url: Option<String>,
    /// Never empty.
    pub source: String,
    /// An https URL.
    pub profile_image: Option<String>,
    /// A flat string map.
    pub metadata: Option<Value>,
    /// The runtime asked for, trimmed and not empty (`None`: the default shape). Whether the
    /// pool serves it is [`pick_shape`]'s to say.
    pub runtime: Option<String>,
}

/// The shape a claim asked for: the default without `runtime`; an unknown one is a 400
/// naming `runtime` and the runtimes served, before any agent is touched.
pub fn pick_shape<'a>(shapes: &'a Shapes, runtime: Option<&str>) -> Result<&'a Shape> {
    shapes
        .pick(runtime)
        .map_err(|unknown| ProvisionError::InvalidRequest {
            field: "runtime",
            message: format!(
                "unknown runtime {:?}; this pool serves {}",
                short(&unknown),
                shapes.names().join(", ")
            ),
        })
}

fn invalid<T>(field: &'static str, message: impl Into<String>) -> Result<T> {
    Err(ProvisionError::InvalidRequest {
        field,
        message: message.into(),
    })
}

/// The host of an `https://` URL without whitespace or control characters, if it is one.
fn https_host(url: &str) -> Option<&str> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    url.strip_prefix("https://")
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .filter(|h| !h.is_empty())
}

impl ClaimInput {
    /// Checks the request and applies the defaults; production refuses dev join URLs and the
    /// other way round (pool/src/index.ts:970-975).
    pub fn check(&self, production: bool) -> Result<CheckedClaim> {
        let name = self.agent_name.trim();
        let agent_name = if name.is_empty() { DEFAULT_AGENT_NAME } else { name };
        if agent_name.chars().count() > MAX_AGENT_NAME {
            return invalid(
                "agentName",
                format!("must be at most {MAX_AGENT_NAME} characters"),
            );
        }
        if agent_name.chars().any(char::is_control) {
            return invalid("agentName", "must not contain control characters");
        }
        // PostgreSQL cannot store a NUL byte in text.
        if self.instructions.contains('\0') {
            return invalid("instructions", "must not contain NUL characters");
        }
        if self.instructions.len() > MAX_INSTRUCTIONS {
            return invalid(
                "instructions",
                format!("must be at most {MAX_INSTRUCTIONS} bytes"),
            );
        }
        let instructions = if self.instructions.trim().is_empty() {
            DEFAULT_INSTRUCTIONS.to_string()
        } else {
            self.instructions.clone()
        };
        let join_url = match self.join_url.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                if url.len() > MAX_JOIN_URL {
                    return invalid("joinUrl", format!("must be at most {MAX_JOIN_URL} characters"));
                }
                let Some(host) = https_host(url) else {
                    return invalid("joinUrl", "must be an https:// URL without control characters");
                };
                if production && host == "dev.convos.org" {
                    return invalid("joinUrl", "dev.convos.org links cannot be joined from production");
                }
                if !production && host == "popup.convos.org" {
                    return invalid(
                        "joinUrl",
                        "popup.convos.org links can only be joined from production",
                    );
                }
                Some(url.to_string())
            }
        };
        let source = match self.source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => DEFAULT_SOURCE.to_string(),
            Some(s) if s.len() > MAX_SOURCE => {
                return invalid("source", format!("must be at most {MAX_SOURCE} bytes"));
            }
            Some(s) if s.chars().any(char::is_control) => {
                return invalid("source", "must not contain control characters");
            }
            Some(s) => s.to_string(),
        };
        let profile_image = match self.profile_image.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(url) if url.len() > MAX_PROFILE_IMAGE => {
                return invalid(
                    "profileImage",
                    format!("must be at most {MAX_PROFILE_IMAGE} characters"),
                );
            }
            Some(url) if https_host(url).is_none() => {
                return invalid("profileImage", "must be an https:// URL");
            }
            Some(url) => Some(url.to_string()),
        };
        let metadata = match &self.metadata {
            None | Some(Value::Null) => None,
            Some(value) => Some(check_metadata(value)?),
        };
        let runtime = match self.runtime.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            None => None,
            Some(r) if r.len() > MAX_RUNTIME || r.chars().any(char::is_control) => {
                return invalid(
                    "runtime",
                    format!(
                        "unknown runtime {:?}: at most {MAX_RUNTIME} bytes, no control characters",
                        short(r)
                    ),
                );
            }
            Some(r) => Some(r.to_string()),
        };
        Ok(CheckedClaim {
            agent_name: agent_name.to_string(),
            instructions,
            join_url,
            source,
            profile_image,
            metadata,
            runtime,
        })
    }
}

/// `metadata`: an object of strings, at most [`MAX_METADATA_ENTRIES`] entries and
/// [`MAX_METADATA_BYTES`] bytes of keys and values, no NUL (PostgreSQL's jsonb refuses it).
fn check_metadata(value: &Value) -> Result<Value> {
    let Some(map) = value.as_object() else {
        return invalid("metadata", "must be an object of strings");
    };
    if map.len() > MAX_METADATA_ENTRIES {
        return invalid(
            "metadata",
            format!("must have at most {MAX_METADATA_ENTRIES} entries"),
        );
    }
    let mut bytes = 0;
    for (key, v) in map {
        let Some(text) = v.as_str() else {
            return invalid(
                "metadata",
                format!("{:?} must be a string (the map is flat)", short(key)),
            );
        };
        if key.is_empty() || key.contains('\0') || text.contains('\0') {
            return invalid("metadata", "keys must not be empty; nothing may contain NUL");
        }
        bytes += key.len() + text.len();
    }
    if bytes > MAX_METADATA_BYTES {
        return invalid("metadata", format!("must be at most {MAX_METADATA_BYTES} bytes"));
    }
    Ok(value.clone())
}

fn short(text: &str) -> String {
    text.chars().take(40).filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(r: Result<CheckedClaim>) -> Option<&'static str> {
        match r {
            Err(ProvisionError::InvalidRequest { field, .. }) => Some(field),
            _ => None,
        }
    }

    fn input(name: &str, join: Option<&str>) -> ClaimInput {
        ClaimInput {
            agent_name: name.into(),
            instructions: "be kind".into(),
            join_url: join.map(str::to_string),
            ..ClaimInput::default()
        }
    }

    #[test]
    fn the_landing_pages_claim_gets_the_node_pools_defaults() {
        let landing: ClaimInput = serde_json::from_value(
            json!({"joinUrl": "https://dev.convos.org/v2?i=abc", "source": "landing"}),
        )
        .unwrap();
        let checked = landing.check(false).unwrap();
        assert_eq!(checked.agent_name, "Assistant");
        assert_eq!(checked.instructions, "You are a helpful AI assistant.");
        assert_eq!(checked.source, "landing");
        let empty = input("", None).check(false).unwrap();
        assert_eq!(empty.source, "api");
        let blank = ClaimInput {
            instructions: "  ".into(),
            ..input(" ", None)
        };
        let blank = blank.check(false).unwrap();
        assert_eq!(
            (blank.agent_name.as_str(), blank.instructions.as_str()),
            (DEFAULT_AGENT_NAME, DEFAULT_INSTRUCTIONS),
            "no empty value reaches an agent"
        );
    }

    #[test]
    fn claim_requests_are_validated_field_by_field() {
        assert!(input("Ada", None).check(false).is_ok());
        assert_eq!(
            field(input(&"x".repeat(201), None).check(false)),
            Some("agentName")
        );
        assert_eq!(field(input("a\u{0}b", None).check(false)), Some("agentName"));
        assert_eq!(
            field(input("Ada", Some("http://dev.convos.org/x")).check(false)),
            Some("joinUrl")
        );
        assert_eq!(
            field(input("Ada", Some("not a url")).check(false)),
            Some("joinUrl")
        );
        let mut long = input("Ada", None);
        long.instructions = "x".repeat(MAX_INSTRUCTIONS + 1);
        assert_eq!(field(long.check(false)), Some("instructions"));
        let mut nul = input("Ada", None);
        nul.instructions = "a\0b".into();
        assert_eq!(
            field(nul.check(false)),
            Some("instructions"),
            "found by schemathesis: NUL reached Postgres"
        );
        assert_eq!(
            field(input("Ada", Some("https://x.org/\0")).check(false)),
            Some("joinUrl")
        );
    }

    #[test]
    fn join_urls_follow_the_environment_rules() {
        assert_eq!(
            field(input("Ada", Some("https://dev.convos.org/v2?i=1")).check(true)),
            Some("joinUrl")
        );
        assert!(
            input("Ada", Some("https://dev.convos.org/v2?i=1"))
                .check(false)
                .is_ok()
        );
        assert_eq!(
            field(input("Ada", Some("https://popup.convos.org/v2?i=1")).check(false)),
            Some("joinUrl")
        );
        assert!(
            input("Ada", Some("https://popup.convos.org/v2?i=1"))
                .check(true)
                .is_ok()
        );
    }

    #[test]
    fn profile_images_metadata_and_runtimes_are_checked_and_named() {
        let with = |change: &dyn Fn(&mut ClaimInput)| {
            let mut i = input("Ada", None);
            change(&mut i);
            i.check(false)
        };
        assert!(with(&|i| i.profile_image = Some("https://img.example/a.png".into())).is_ok());
        for bad in [
            "http://img.example/a.png",
            "javascript:alert(1)",
            "https://",
            "https://a b",
        ] {
            assert_eq!(
                field(with(&|i| i.profile_image = Some(bad.into()))),
                Some("profileImage"),
                "{bad}"
            );
        }
        assert!(with(&|i| i.metadata = Some(json!({"plan": "pro", "ref": "x"}))).is_ok());
        for bad in [
            json!(["a"]),
            json!("flat"),
            json!({"nested": {"a": "b"}}),
            json!({"n": 1}),
            json!({"": "x"}),
        ] {
            assert_eq!(
                field(with(&|i| i.metadata = Some(bad.clone()))),
                Some("metadata"),
                "{bad}"
            );
        }
        let many: serde_json::Map<String, Value> = (0..=MAX_METADATA_ENTRIES)
            .map(|n| (format!("k{n}"), json!("v")))
            .collect();
        assert_eq!(
            field(with(&|i| i.metadata = Some(Value::Object(many.clone())))),
            Some("metadata")
        );
        let big = json!({"k": "x".repeat(MAX_METADATA_BYTES)});
        assert_eq!(field(with(&|i| i.metadata = Some(big.clone()))), Some("metadata"));
        assert!(with(&|i| i.runtime = Some("openclaw".into())).is_ok());
        assert_eq!(
            with(&|i| i.runtime = Some(" hermes ".into()))
                .unwrap()
                .runtime
                .as_deref(),
            Some("hermes")
        );
        assert_eq!(
            field(with(&|i| i.runtime = Some("x".repeat(65)))),
            Some("runtime")
        );
        let image = |r: &str| crate::ImageRef {
            repository: r.into(),
            tag: "staging".into(),
        };
        let shapes = Shapes::new(
            vec![
                Shape::new("openclaw", image("a/o")),
                Shape::new("hermes", image("a/h")),
            ],
            Some("hermes"),
        )
        .unwrap();
        assert_eq!(pick_shape(&shapes, None).unwrap().name, "hermes");
        assert_eq!(pick_shape(&shapes, Some("openclaw")).unwrap().name, "openclaw");
        let refused = pick_shape(&shapes, Some("claude")).unwrap_err();
        assert!(
            matches!(&refused, ProvisionError::InvalidRequest { field: "runtime", message }
                if message.contains("\"claude\"") && message.contains("openclaw, hermes")),
            "{refused:?}"
        );
    }
}
