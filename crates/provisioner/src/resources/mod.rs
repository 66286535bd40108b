//! The typed clients of the providers agents use through the pool: OpenRouter (a key per
//! agent, made by the creation saga), AgentMail (an inbox per agent) and Telnyx (a phone number
//! per agent), the last two on the agent's first use through the service proxy.
//!
//! Everything here costs money, so each is made only after a row that knows about it exists,
//! saved at once, and found again by name (keys) or `client_id` (inboxes) when a crash left one
//! unsaved. The organisation's keys live here and never reach an agent.

mod agentmail;
mod openrouter;
mod telnyx;

use std::time::Duration;

pub use agentmail::{AgentMail, AgentMailConfig};
pub use openrouter::{CreatedKey, OpenRouter, OpenRouterConfig};
pub use telnyx::{OrderOutcome, Telnyx, TelnyxConfig};

use crate::outbound::OutboundFailure;

/// Why a resource call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service}: {message}")]
pub struct ResourceError {
    /// `openrouter`, `agentmail` or `telnyx`.
    pub service: &'static str,
    /// What went wrong.
    pub message: String,
    /// A passing failure (no answer, 5xx, 429): worth trying again.
    pub transient: bool,
}

pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn error(service: &'static str, message: impl Into<String>) -> ResourceError {
    ResourceError {
        service,
        message: message.into(),
        transient: false,
    }
}

/// No answer (or a malformed request): transient unless the request itself was wrong.
pub(crate) fn unanswered(service: &'static str, failure: OutboundFailure) -> ResourceError {
    ResourceError {
        service,
        transient: !matches!(failure, OutboundFailure::Invalid(_)),
        message: failure.to_string(),
    }
}

/// An error status: 5xx and 429 pass, the rest are refusals.
pub(crate) fn refused(service: &'static str, status: u16, message: String) -> ResourceError {
    ResourceError {
        service,
        message,
        transient: status >= 500 || status == 429,
    }
}

/// `text` as one path segment: every byte but letters, digits, `-`, `.`, `_`, `~` and `@`
/// percent-encoded, so `/`, `?`, `#` and `%` inside an id can never reach another path (the
/// Node pool interpolated ids raw: `..%2F..%2Fother%40x.org` read another inbox, spec §3.16).
/// Ids made only of dots are refused by the callers before they get here.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_always_one_path_segment() {
        assert_eq!(path_segment("a@b.org"), "a@b.org");
        assert_eq!(
            path_segment("../../other@x.org/messages/m1"),
            "..%2F..%2Fother@x.org%2Fmessages%2Fm1"
        );
        assert_eq!(path_segment("<CAKj0n+x=y@mail>"), "%3CCAKj0n%2Bx%3Dy@mail%3E");
        assert_eq!(path_segment("a?b#c%d"), "a%3Fb%23c%25d");
    }
}
