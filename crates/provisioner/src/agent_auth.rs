//! The agents' own credentials: how an agent proves who it is when it calls the pool.
//!
//! Every agent is given its id (`INSTANCE_ID`) and its gateway token (`GATEWAY_TOKEN`). The
//! Node pool at the runtime's pinned commit accepts exactly that pair, as
//! `Authorization: Bearer <instanceId>:<gatewayToken>` on the service proxy
//! (`pool/src/middleware/instanceAuth.ts:30-62`) and as `{instanceId, gatewayToken}` in the JSON
//! body of `/api/pool/credits-*` (`pool/src/index.ts:426-528`). A pair is good when the row
//! exists and its (sealed) gateway token is the one presented; the comparison is over SHA-256
//! digests, so neither the token's content nor its length shows in the time it takes, and an
//! unknown id costs the same comparison as a known one. Unlike Node's
//! (`instanceAuth.ts:23-26,51-56`: a positive cache of five minutes, never invalidated), there
//! is no cache: a torn-down agent's token stops working at once (an archived row keeps no
//! secret).

use pool_store::{Agent, AgentId, AgentStatus};
use secrecy::ExposeSecret;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};

/// A digest of a token, for comparisons that take the same time whatever the token.
fn digest(token: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, token)
}

/// True when `presented` is `expected`, in time independent of both (and of their lengths).
pub fn tokens_match(expected: &[u8], presented: &[u8]) -> bool {
    let (a, b) = (digest(expected), digest(presented));
    // Equal-length digests: the comparison runs over all 32 bytes either way.
    #[allow(deprecated)]
    let same = ring::constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok();
    same && !expected.is_empty()
}

/// A stand-in compared against when the id names no agent, so a miss costs what a hit costs.
const NO_AGENT: &[u8] = b"no agent has this token: the comparison only spends the same time";

impl Provisioner {
    /// The agent whose credentials these are: its id (`INSTANCE_ID`) and gateway token
    /// (`GATEWAY_TOKEN`). Any status with a readable token is accepted (an archived agent
    /// keeps none); what an agent in a given status may do is its caller's decision.
    ///
    /// Errors: [`ProvisionError::AgentCredentials`] for an id that names no agent, a malformed
    /// id, or a wrong token — one answer for all three (Node: 403 "Invalid instance ID or
    /// token", `instanceAuth.ts:59-62`); [`ProvisionError::Store`] when the database fails.
    pub async fn authenticate_agent(&self, instance_id: &str, gateway_token: &str) -> Result<Agent> {
        let agent = match AgentId::parse(instance_id) {
            Ok(id) => self.inner.store.agent(&id).await?,
            Err(_) => None,
        };
        let expected = agent
            .as_ref()
            .filter(|a| a.status != AgentStatus::Deleted)
            .and_then(|a| a.secrets.as_ref())
            .map(|s| s.gateway_token.expose_secret().as_bytes().to_vec());
        let good = match &expected {
            Some(token) => tokens_match(token, gateway_token.as_bytes()),
            None => {
                let _ = tokens_match(NO_AGENT, gateway_token.as_bytes());
                false
            }
        };
        match agent {
            Some(agent) if good => Ok(agent),
            _ => Err(ProvisionError::AgentCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal_and_never_when_empty() {
        assert!(tokens_match(b"abc", b"abc"));
        assert!(!tokens_match(b"abc", b"abd"));
        assert!(!tokens_match(b"abc", b"abcd"));
        assert!(!tokens_match(b"abc", b""));
        assert!(!tokens_match(b"", b""));
    }
}
