//! Console sign-in: the limit on failed attempts, the client's address it counts by, and the
//! hash a session is stored under.
//!
//! **Failed attempts** are counted per client address and over all addresses, in Postgres —
//! one count for every replica (a count in each replica's memory let a guesser that reaches N
//! replicas try N times as often) — over a sliding window (a minute by default):
//! - one address with [`ConsoleConfig::sign_in_failures_per_address`] (10) failures within the
//!   window is locked out for the window, then for twice as long at its next lockout within an
//!   hour, and so on up to an hour; while locked out, its attempts are refused with 429 and
//!   `Retry-After` *before* the key is compared, so even the right key is refused;
//! - [`ConsoleConfig::sign_in_failures_global`] (100) failures within the window from all
//!   addresses together refuse every sign-in until the window has room again (a guesser with
//!   many addresses gets that many guesses a minute, no more). Sessions already signed in and
//!   the bearer API are not affected.
//!
//! IPv6 addresses are counted by their /64 (one host usually has a whole /64). A success
//! clears its address's count. Each failure is logged at `warn` with the address, never with
//! what was tried.
//!
//! **Sessions** are stored as `SHA-256("pool-console-session" ‖ key fingerprint ‖ token)`,
//! where the key fingerprint is a SHA-256 of the admin key and the console password. The
//! database holds no token and nothing derived from the keys alone; when `POOL_API_KEY` or
//! `POOL_ADMIN_PASSWORD` changes, every session's hash changes with it and no session is found:
//! rotating the key signs everyone out.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ring::digest::{Context, SHA256};
use secrecy::ExposeSecret;

use crate::AppState;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of the credentials sessions are bound to.
fn key_fingerprint(state: &AppState) -> ring::digest::Digest {
    let mut context = Context::new(&SHA256);
    context.update(b"pool-console-keys\0");
    context.update(state.admin_key.expose_secret().as_bytes());
    context.update(b"\0");
    if let Some(password) = &state.console.admin_password {
        context.update(password.expose_secret().as_bytes());
    }
    context.finish()
}

/// The signature of a console notice (see `back`): hex HMAC-SHA-256 under a key bound to the
/// console's credentials.
pub(crate) fn notice_signature(state: &AppState, notice: &str) -> String {
    let mut context = Context::new(&SHA256);
    context.update(b"pool-console-notice\0");
    context.update(key_fingerprint(state).as_ref());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, context.finish().as_ref());
    hex(ring::hmac::sign(&key, notice.as_bytes()).as_ref())
}

/// True when `signature` is `notice`'s.
pub(crate) fn notice_is_signed(state: &AppState, notice: &str, signature: &str) -> bool {
    crate::auth::secret_matches(notice_signature(state, notice).as_bytes(), signature.as_bytes())
}

/// What a session token is stored (and looked up) as: hex SHA-256, bound to the keys.
pub(crate) fn session_hash(state: &AppState, token: &str) -> String {
    let mut context = Context::new(&SHA256);
    context.update(b"pool-console-session\0");
    context.update(key_fingerprint(state).as_ref());
    context.update(token.as_bytes());
    hex(context.finish().as_ref())
}

/// The client's address, as the sign-in limit counts it: the connection's peer, or with
/// `POOL_TRUSTED_PROXY_HOPS = n` the n-th `X-Forwarded-For` entry from the right (each proxy
/// appends the address it was reached from; entries further left are the client's own word).
/// `None` when neither is known (a router called without [`crate::serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddress(pub(crate) Option<IpAddr>);

impl ClientAddress {
    pub(crate) fn of(headers: &HeaderMap, peer: Option<IpAddr>, trusted_hops: usize) -> Self {
        if trusted_hops == 0 {
            return Self(peer.map(normalize));
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let chosen = entries
            .iter()
            .rev()
            .nth(trusted_hops - 1)
            .or(entries.first())
            .and_then(|e| e.parse::<IpAddr>().ok());
        Self(chosen.or(peer).map(normalize))
    }
}

/// IPv4-mapped addresses as IPv4; IPv6 by its /64.
fn normalize(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl ClientAddress {
    /// The address as the sign-in limit stores it (`unknown` when there is none).
    pub(crate) fn key(&self) -> String {
        self.0.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    }
}

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self::of(&parts.headers, peer, state.security.trusted_proxy_hops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_comes_from_the_trusted_hop_and_ipv6_counts_by_its_64() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7".parse().unwrap_or_else(|_| unreachable!()),
        );
        let peer: Option<IpAddr> = "10.0.0.1".parse().ok();
        assert_eq!(
            ClientAddress::of(&headers, peer, 0).0,
            peer,
            "the header is ignored"
        );
        assert_eq!(
            ClientAddress::of(&headers, peer, 1).0,
            "203.0.113.7".parse().ok(),
            "the entry the proxy appended, not the client's own"
        );
        assert_eq!(ClientAddress::of(&HeaderMap::new(), peer, 1).0, peer);
        let v6: Option<IpAddr> = "2001:db8:1:2:3:4:5:6".parse().ok();
        assert_eq!(
            ClientAddress::of(&HeaderMap::new(), v6, 0).0,
            "2001:db8:1:2::".parse().ok()
        );
    }
}
