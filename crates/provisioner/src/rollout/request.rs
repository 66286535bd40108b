//! What a rollout request may ask for: the checks that answer 400 naming the field, before
//! anything is read or written.

use crate::error::{ProvisionError, Result};
use crate::registry::split;

/// The largest batch a rollout may take.
pub const MAX_ROLLOUT_BATCH: i64 = 100;
/// The longest health pause (one hour).
pub const MAX_ROLLOUT_PAUSE_MS: i64 = 3_600_000;

/// Which agents a rollout moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutIncludes {
    /// Idle agents (out of the pool while they upgrade).
    pub idle: bool,
    /// Claimed agents (in place).
    pub claimed: bool,
}

/// A rollout asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRequest {
    /// The runtime (shape).
    pub runtime: String,
    /// `repository:tag` or `repository@sha256:…` in the runtime's repository; `None`: the
    /// image the pool selects for new agents.
    pub image: Option<String>,
    /// `idle`, `claimed` (and `parked`, accepted and ignored: the pool has no parked agents yet).
    pub include: Vec<String>,
    /// Agents down at once after the canary.
    pub batch: i64,
    /// How long an agent must stay healthy.
    pub pause_ms: i64,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ProvisionError {
    ProvisionError::InvalidRequest {
        field,
        message: message.into(),
    }
}

/// What a rollout request's fields mean, or a 400 naming the first bad one.
pub fn validate_rollout(
    request: &RolloutRequest,
    runtime: &str,
    repository: &str,
) -> Result<RolloutIncludes> {
    if request.runtime != runtime {
        return Err(invalid(
            "runtime",
            format!(
                "unknown runtime {:?}; this pool runs {runtime:?}",
                request.runtime
            ),
        ));
    }
    if request.include.is_empty() {
        return Err(invalid("include", "name at least one of \"idle\", \"claimed\""));
    }
    let mut includes = RolloutIncludes {
        idle: false,
        claimed: false,
    };
    for kind in &request.include {
        match kind.as_str() {
            "idle" => includes.idle = true,
            "claimed" => includes.claimed = true,
            // Accepted for the Node pool's callers; the pool has no parked tier yet.
            "parked" => {}
            other => {
                return Err(invalid(
                    "include",
                    format!("{other:?} is not one of \"idle\", \"claimed\", \"parked\""),
                ));
            }
        }
    }
    if !(1..=MAX_ROLLOUT_BATCH).contains(&request.batch) {
        return Err(invalid("batch", format!("must be 1 to {MAX_ROLLOUT_BATCH}")));
    }
    if !(0..=MAX_ROLLOUT_PAUSE_MS).contains(&request.pause_ms) {
        return Err(invalid("pauseMs", format!("must be 0 to {MAX_ROLLOUT_PAUSE_MS}")));
    }
    if let Some(image) = &request.image {
        let Some(parts) = split(image) else {
            return Err(invalid(
                "image",
                format!("{image:?} is not repository:tag or repository@sha256:…"),
            ));
        };
        if format!("{}/{}", parts.host, parts.name) != repository {
            return Err(invalid(
                "image",
                format!("{image:?} is not in the {runtime} runtime's repository {repository}"),
            ));
        }
        let tag_ok = if image.contains('@') {
            parts
                .reference
                .strip_prefix("sha256:")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        } else {
            parts.reference.len() <= 128
                && parts
                    .reference
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                && !parts.reference.starts_with(['.', '-'])
        };
        if !tag_ok {
            return Err(invalid(
                "image",
                format!("{image:?} has no valid tag or sha256 digest"),
            ));
        }
    }
    Ok(includes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RolloutRequest {
        RolloutRequest {
            runtime: "openclaw".into(),
            image: Some("ghcr.io/xmtplabs/convos-agent:sha-bbb".into()),
            include: vec!["idle".into(), "claimed".into()],
            batch: 2,
            pause_ms: 1000,
        }
    }

    fn field(r: &RolloutRequest) -> Option<&'static str> {
        match validate_rollout(r, "openclaw", "ghcr.io/xmtplabs/convos-agent") {
            Err(ProvisionError::InvalidRequest { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn bad_rollouts_are_refused_naming_the_field() {
        assert_eq!(field(&request()), None);
        let with = |f: &dyn Fn(&mut RolloutRequest)| {
            let mut r = request();
            f(&mut r);
            field(&r)
        };
        assert_eq!(with(&|r| r.runtime = "claude".into()), Some("runtime"));
        assert_eq!(with(&|r| r.batch = 0), Some("batch"));
        assert_eq!(with(&|r| r.batch = 101), Some("batch"));
        assert_eq!(with(&|r| r.pause_ms = -1), Some("pauseMs"));
        assert_eq!(with(&|r| r.include = vec![]), Some("include"));
        assert_eq!(with(&|r| r.include = vec!["sleeping".into()]), Some("include"));
        assert_eq!(with(&|r| r.include = vec!["parked".into(), "idle".into()]), None);
        assert_eq!(
            with(&|r| r.image = Some("ghcr.io/evil/agent:latest".into())),
            Some("image")
        );
        assert_eq!(
            with(&|r| r.image = Some("docker.io/xmtplabs/convos-agent:x".into())),
            Some("image")
        );
        assert_eq!(
            with(&|r| r.image = Some("ghcr.io/xmtplabs/convos-agent".into())),
            Some("image")
        );
        assert_eq!(
            with(&|r| r.image = Some("ghcr.io/xmtplabs/convos-agent@sha256:zz".into())),
            Some("image")
        );
        assert_eq!(
            with(&|r| r.image = Some("ghcr.io/xmtplabs/convos-agent@sha256:0a1b".into())),
            None
        );
        assert_eq!(with(&|r| r.image = None), None);
    }
}
