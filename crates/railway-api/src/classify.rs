//! The one table that says what Railway meant by an error message.
//!
//! Railway's gateway answers HTTP 200 for nearly every refusal, and `extensions.code` is
//! `INTERNAL_SERVER_ERROR` for throttles, "not found", "not authorized", validation errors and
//! "already exists" alike; "Problem processing request" carries no code at all, only a
//! `traceId`. So the code says little and the message says what happened: rows are matched
//! against the lowercased message first (first match wins), the code is the fallback, and a
//! message nobody has seen before is [`ErrorKind::Unknown`] — treated as "may have applied".
//!
//! Sources for the rows (public code of teams that run against the live API):
//! - alchemy-run/distilled `packages/railway/src/errors.ts` (`RAILWAY_ERROR_MATCHERS`, the code
//!   map, "Problem processing request" with a top-level `traceId` and no extensions);
//! - jamesprnich/terraform-provider-railway `internal/provider/helpers.go`
//!   (`isCreationCooldown`, `isCreationRateLimited`, `isRedeployNotReady`, `isNotFoundOrGone`)
//!   and `resource_cooldown_retry_test.go` (the exact throttle messages);
//! - alchemy-run/alchemy `packages/alchemy/src/Railway/ServiceDomain.ts` ("ServiceInstance not
//!   found" and "Failed to create service domain" while a new service fans out).

use std::time::Duration;

/// Who a throttle applies to, which decides whether another token helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottleScope {
    /// The whole workspace ("This workspace allows 1 project per 30 seconds"): no other token
    /// in the workspace may try before it opens.
    Workspace,
    /// One user, i.e. one token ("per user every 30s"): another user's token may try.
    User,
    /// A burst of one kind of creation ("You are creating volumes too quickly").
    Operation,
}

/// What an error means, as far as a caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Refused for now; the same request succeeds once `retry_after` has passed.
    Throttled {
        /// Who is throttled.
        scope: ThrottleScope,
        /// When to try again.
        retry_after: Duration,
    },
    /// A passing failure (a brand-new service not yet everywhere, a build in progress, the
    /// gateway's "Problem processing request"): retry the same step after a moment.
    Transient,
    /// The thing asked for does not exist, or is gone.
    NotFound,
    /// The thing to create exists already (possibly made by an earlier attempt).
    AlreadyExists,
    /// The token may not do this ("Not Authorized"). On a delete this can also mean the
    /// resource is already gone: Railway answers so for deleted projects.
    Unauthorized,
    /// The request is wrong (validation, bad input, limits of the plan).
    Invalid,
    /// A message not in the table: it may have applied; look before redoing.
    Unknown,
}

/// Whether the request may have changed anything on Railway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The request never reached Railway (connection refused, DNS failure, budget closed).
    NotSent,
    /// Railway answered and refused: nothing was applied.
    Refused,
    /// Railway may have applied it (timeout, broken connection, 5xx, an unknown message): look
    /// the resource up before creating it again.
    MayHaveApplied,
}

/// How long a throttle lasts when its message names no interval (distilled waits 31 s).
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(31);

/// "Whoa there pal! … Try again in a sec": a short burst limit.
const BURST_THROTTLE_WAIT: Duration = Duration::from_secs(3);

enum Meaning {
    Throttled(ThrottleScope, Duration),
    Transient { may_have_applied: bool },
    NotFound,
    AlreadyExists,
    Unauthorized,
    Invalid,
}

struct Row {
    /// Only for this operation (`None`: any).
    operation: Option<&'static [&'static str]>,
    /// Substrings of the lowercased message; any one matches.
    contains: &'static [&'static str],
    meaning: Meaning,
}

/// Operations that touch a service instance right after `serviceCreate`: Railway fans the
/// instance out to its environments asynchronously, and until it lands these answer
/// "ServiceInstance not found" (alchemy `ServiceDomain.ts`; terraform retries
/// `serviceInstanceLimitsUpdate` on not-found for 15 s).
const FRESH_INSTANCE_OPERATIONS: &[&str] = &[
    "serviceDomainCreate",
    "serviceInstanceLimitsUpdate",
    "serviceInstanceUpdate",
    "variableCollectionUpsert",
    "volumeCreate",
];

/// The table, in order: the first row that matches decides.
const ROWS: &[Row] = &[
    // Throttles (terraform `isCreationCooldown`, `isCreationRateLimited`; distilled matchers).
    Row {
        operation: None,
        contains: &["creating projects too quickly", "project per "],
        meaning: Meaning::Throttled(ThrottleScope::Workspace, DEFAULT_THROTTLE_WAIT),
    },
    Row {
        operation: None,
        contains: &["project can be created per user"],
        meaning: Meaning::Throttled(ThrottleScope::User, DEFAULT_THROTTLE_WAIT),
    },
    Row {
        operation: None,
        contains: &["environment can be created per user"],
        meaning: Meaning::Throttled(ThrottleScope::User, DEFAULT_THROTTLE_WAIT),
    },
    Row {
        operation: None,
        contains: &["creating environments too quickly"],
        meaning: Meaning::Throttled(ThrottleScope::Workspace, DEFAULT_THROTTLE_WAIT),
    },
    Row {
        operation: None,
        contains: &["too quickly", "whoa there pal", "try again in a sec"],
        meaning: Meaning::Throttled(ThrottleScope::Operation, BURST_THROTTLE_WAIT),
    },
    Row {
        operation: None,
        contains: &["rate limit", "too many requests"],
        meaning: Meaning::Throttled(ThrottleScope::User, BURST_THROTTLE_WAIT),
    },
    // Passing failures. "Problem processing request" is the gateway's generic failure: it may
    // or may not have applied.
    Row {
        operation: None,
        contains: &["problem processing request"],
        meaning: Meaning::Transient {
            may_have_applied: true,
        },
    },
    Row {
        operation: None,
        contains: &["failed to create service domain", "please try again"],
        meaning: Meaning::Transient {
            may_have_applied: false,
        },
    },
    Row {
        operation: None,
        contains: &["cannot redeploy yet", "wait for the original deployment"],
        meaning: Meaning::Transient {
            may_have_applied: false,
        },
    },
    Row {
        operation: Some(FRESH_INSTANCE_OPERATIONS),
        contains: &["serviceinstance not found", "service instance not found"],
        meaning: Meaning::Transient {
            may_have_applied: false,
        },
    },
    Row {
        operation: Some(&["serviceInstanceLimitsUpdate"]),
        contains: &["not found"],
        meaning: Meaning::Transient {
            may_have_applied: false,
        },
    },
    // Refusals.
    Row {
        operation: None,
        contains: &[
            "not authorized",
            "project token not found",
            "unauthorized",
            "forbidden",
        ],
        meaning: Meaning::Unauthorized,
    },
    Row {
        operation: None,
        contains: &["already exists", "already in use", "can only have one volume"],
        meaning: Meaning::AlreadyExists,
    },
    Row {
        operation: None,
        contains: &["not found", "does not exist", "doesn't exist", "could not find"],
        meaning: Meaning::NotFound,
    },
    Row {
        operation: None,
        contains: &[
            "invalid",
            "must be",
            "must not",
            "is required",
            "at most",
            "expected",
            "can't",
            "cannot",
            "limit reached",
            "not allowed",
        ],
        meaning: Meaning::Invalid,
    },
];

/// The interval a throttle message names: "per 30 seconds", "every 30s", "in 5 seconds".
fn named_interval(message: &str) -> Option<Duration> {
    let words: Vec<&str> = message.split_whitespace().collect();
    for (i, word) in words.iter().enumerate() {
        let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        // "30s" in one word.
        if let Some(n) = word.strip_suffix('s').and_then(|n| n.parse::<u64>().ok())
            && i > 0
            && matches!(words[i - 1], "every" | "per" | "in")
        {
            return Some(Duration::from_secs(n));
        }
        // "30 seconds".
        if let Ok(n) = word.parse::<u64>()
            && words.get(i + 1).is_some_and(|unit| {
                unit.trim_matches(|c: char| !c.is_ascii_alphabetic())
                    .starts_with("second")
            })
        {
            return Some(Duration::from_secs(n));
        }
    }
    None
}

/// Classifies one GraphQL error of `operation`: the message first, then the code.
pub(crate) fn classify(operation: &str, message: &str, code: Option<&str>) -> (ErrorKind, Delivery) {
    let lower = message.to_ascii_lowercase();
    for row in ROWS {
        if row.operation.is_some_and(|ops| !ops.contains(&operation)) {
            continue;
        }
        if !row.contains.iter().any(|needle| lower.contains(needle)) {
            continue;
        }
        return match row.meaning {
            Meaning::Throttled(scope, default) => (
                ErrorKind::Throttled {
                    scope,
                    retry_after: named_interval(&lower).unwrap_or(default),
                },
                Delivery::Refused,
            ),
            Meaning::Transient { may_have_applied } => (
                ErrorKind::Transient,
                if may_have_applied {
                    Delivery::MayHaveApplied
                } else {
                    Delivery::Refused
                },
            ),
            Meaning::NotFound => (ErrorKind::NotFound, Delivery::Refused),
            Meaning::AlreadyExists => (ErrorKind::AlreadyExists, Delivery::Refused),
            Meaning::Unauthorized => (ErrorKind::Unauthorized, Delivery::Refused),
            Meaning::Invalid => (ErrorKind::Invalid, Delivery::Refused),
        };
    }
    match code {
        Some("BAD_USER_INPUT" | "GRAPHQL_VALIDATION_FAILED" | "GRAPHQL_PARSE_FAILED" | "BAD_REQUEST") => {
            (ErrorKind::Invalid, Delivery::Refused)
        }
        Some("UNAUTHENTICATED" | "UNAUTHORIZED" | "FORBIDDEN") => {
            (ErrorKind::Unauthorized, Delivery::Refused)
        }
        Some(c) if c == "NOT_FOUND" || c.ends_with("_NOT_FOUND") => (ErrorKind::NotFound, Delivery::Refused),
        Some("RATE_LIMITED" | "TOO_MANY_REQUESTS") => (
            ErrorKind::Throttled {
                scope: ThrottleScope::User,
                retry_after: BURST_THROTTLE_WAIT,
            },
            Delivery::Refused,
        ),
        // INTERNAL_SERVER_ERROR, no code, or a code nobody documented: we cannot know.
        _ => (ErrorKind::Unknown, Delivery::MayHaveApplied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISE: Option<&str> = Some("INTERNAL_SERVER_ERROR");

    fn kind(operation: &str, message: &str, code: Option<&str>) -> ErrorKind {
        classify(operation, message, code).0
    }

    fn throttled(scope: ThrottleScope, secs: u64) -> ErrorKind {
        ErrorKind::Throttled {
            scope,
            retry_after: Duration::from_secs(secs),
        }
    }

    #[test]
    fn throttle_messages_name_their_scope_and_interval() {
        assert_eq!(
            kind(
                "projectCreate",
                "You are creating projects too quickly. This workspace allows 1 project per 30 seconds. Try again shortly.",
                ISE
            ),
            throttled(ThrottleScope::Workspace, 30)
        );
        assert_eq!(
            kind(
                "projectCreate",
                "You are creating projects too quickly. This workspace allows 1 project per 5 seconds. Try again shortly.",
                ISE
            ),
            throttled(ThrottleScope::Workspace, 5)
        );
        assert_eq!(
            kind(
                "projectCreate",
                "Only one project can be created per user every 30s",
                ISE
            ),
            throttled(ThrottleScope::User, 30)
        );
        assert_eq!(
            kind(
                "environmentCreate",
                "Whoa there pal! Only one environment can be created per user every 30s. Try again in a sec",
                None
            ),
            throttled(ThrottleScope::User, 30)
        );
        assert_eq!(
            kind(
                "environmentCreate",
                "only one environment can be created per user every 30s",
                None
            ),
            throttled(ThrottleScope::User, 30)
        );
        assert_eq!(
            kind(
                "environmentCreate",
                "You are creating environments too quickly",
                ISE
            ),
            throttled(ThrottleScope::Workspace, 31)
        );
        assert_eq!(
            kind(
                "volumeCreate",
                "Whoa there pal! You are creating volumes too quickly. Try again in a sec",
                ISE
            ),
            throttled(ThrottleScope::Operation, 3)
        );
        for message in [
            "Only one project can be created per user every 30s",
            "Whoa there pal! You are creating volumes too quickly",
        ] {
            assert_eq!(classify("projectCreate", message, ISE).1, Delivery::Refused);
        }
    }

    #[test]
    fn passing_failures_are_transient_and_problem_processing_may_have_applied() {
        assert_eq!(
            classify("volumeCreate", "Problem processing request", None),
            (ErrorKind::Transient, Delivery::MayHaveApplied)
        );
        assert_eq!(
            classify(
                "serviceDomainCreate",
                "Failed to create service domain, please try again",
                ISE
            ),
            (ErrorKind::Transient, Delivery::Refused)
        );
        assert_eq!(
            classify(
                "variableCollectionUpsert",
                "Cannot redeploy yet, please wait for the original deployment to finish building",
                ISE
            ),
            (ErrorKind::Transient, Delivery::Refused)
        );
        assert_eq!(
            kind("serviceDomainCreate", "ServiceInstance not found", ISE),
            ErrorKind::Transient
        );
        assert_eq!(
            kind("serviceInstanceLimitsUpdate", "Service instance not found", ISE),
            ErrorKind::Transient
        );
    }

    #[test]
    fn not_found_is_not_found_except_on_a_fresh_instance() {
        assert_eq!(kind("project", "Project not found", ISE), ErrorKind::NotFound);
        assert_eq!(
            kind("deploymentRedeploy", "Deployment not found", ISE),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind("serviceDelete", "ServiceInstance not found", ISE),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind("volumeDelete", "Volume does not exist", ISE),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn refusals_are_told_apart_by_message_although_the_code_is_the_same() {
        assert_eq!(
            classify("projectDelete", "Not Authorized", ISE),
            (ErrorKind::Unauthorized, Delivery::Refused)
        );
        assert_eq!(
            kind("apiToken", "Project Token not found", ISE),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind(
                "serviceCreate",
                "A service named \"x\" already exists in this project",
                ISE
            ),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            kind("volumeCreate", "A service can only have one volume", ISE),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            kind("projectCreate", "Invalid project name", ISE),
            ErrorKind::Invalid
        );
        assert_eq!(
            kind("projectCreate", "Project name must be at most 32 characters", ISE),
            ErrorKind::Invalid
        );
    }

    #[test]
    fn the_code_is_only_a_fallback_and_unknown_messages_may_have_applied() {
        assert_eq!(
            classify("serviceCreate", "something new", Some("BAD_USER_INPUT")),
            (ErrorKind::Invalid, Delivery::Refused)
        );
        assert_eq!(
            kind("serviceCreate", "something new", Some("UNAUTHENTICATED")),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind("serviceCreate", "something new", Some("SERVICE_NOT_FOUND")),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify("serviceCreate", "Internal server error", ISE),
            (ErrorKind::Unknown, Delivery::MayHaveApplied)
        );
        assert_eq!(
            classify("serviceCreate", "Kaboom", None),
            (ErrorKind::Unknown, Delivery::MayHaveApplied)
        );
    }

    #[test]
    fn intervals_are_read_from_the_message() {
        assert_eq!(
            named_interval("1 project per 30 seconds"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            named_interval("per user every 30s."),
            Some(Duration::from_secs(30))
        );
        assert_eq!(named_interval("try again shortly"), None);
        assert_eq!(named_interval("try again in a sec"), None);
    }
}
