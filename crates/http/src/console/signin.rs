//! Console sign-in: the limit on failed attempts, the client's address it counts by, and the
//! hash a session is stored under.
//!
//! **Failed attempts** are counted per client address and over all addresses, in this
//! replica's memory, over a sliding window (a minute by default):
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

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ring::digest::{Context, SHA256};
use secrecy::ExposeSecret;

use super::ConsoleConfig;
use crate::AppState;

/// The longest a lockout lasts, however often an address is locked out.
const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// After this long without a lockout, an address's lockouts start short again.
const STRIKES_FORGOTTEN: Duration = Duration::from_secs(3600);
/// Addresses tracked at most; beyond, new addresses count only towards the global limit.
const MAX_TRACKED: usize = 10_000;

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

#[derive(Debug, Default)]
struct AddressRecord {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    strikes: u32,
    last_strike: Option<Instant>,
}

#[derive(Debug, Default)]
struct Counts {
    addresses: HashMap<Option<IpAddr>, AddressRecord>,
    global: VecDeque<Instant>,
}

/// Failed sign-ins, per client address and over all of them (see the module documentation).
#[derive(Debug)]
pub(crate) struct SignInLimiter {
    per_address: usize,
    global: usize,
    window: Duration,
    counts: Mutex<Counts>,
}

impl SignInLimiter {
    pub(crate) fn new(config: &ConsoleConfig) -> Self {
        Self {
            per_address: config.sign_in_failures_per_address.max(1) as usize,
            global: config.sign_in_failures_global.max(1) as usize,
            window: config.sign_in_window,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget_old(&self, counts: &mut Counts, now: Instant) {
        let window = self.window;
        let old = |at: &Instant| now.saturating_duration_since(*at) >= window;
        while counts.global.front().is_some_and(old) {
            counts.global.pop_front();
        }
        if counts.addresses.len() >= MAX_TRACKED {
            counts.addresses.retain(|_, record| {
                while record.failures.front().is_some_and(old) {
                    record.failures.pop_front();
                }
                let locked = record.locked_until.is_some_and(|until| until > now);
                let remembered = record
                    .last_strike
                    .is_some_and(|at| now.saturating_duration_since(at) < STRIKES_FORGOTTEN);
                !record.failures.is_empty() || locked || remembered
            });
        }
    }

    /// `Err(retry after)` when a sign-in from `client` must be refused now, unchecked.
    pub(crate) fn check(&self, client: ClientAddress, now: Instant) -> Result<(), Duration> {
        let mut counts = self.counts();
        self.forget_old(&mut counts, now);
        if counts.global.len() >= self.global {
            let oldest = counts.global.front().copied().unwrap_or(now);
            return Err((oldest + self.window).saturating_duration_since(now));
        }
        match counts.addresses.get(&client.0).and_then(|r| r.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `client`; may lock it out.
    pub(crate) fn failed(&self, client: ClientAddress, now: Instant) {
        let mut counts = self.counts();
        self.forget_old(&mut counts, now);
        counts.global.push_back(now);
        while counts.global.len() > self.global {
            counts.global.pop_front();
        }
        if counts.addresses.len() >= MAX_TRACKED && !counts.addresses.contains_key(&client.0) {
            return;
        }
        let record = counts.addresses.entry(client.0).or_default();
        let window = self.window;
        while record
            .failures
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            record.failures.pop_front();
        }
        record.failures.push_back(now);
        if record.failures.len() >= self.per_address {
            if record
                .last_strike
                .is_some_and(|at| now.saturating_duration_since(at) >= STRIKES_FORGOTTEN)
            {
                record.strikes = 0;
            }
            let lockout = window
                .saturating_mul(1 << record.strikes.min(16))
                .min(MAX_LOCKOUT);
            record.locked_until = Some(now + lockout);
            record.strikes += 1;
            record.last_strike = Some(now);
            record.failures.clear();
            tracing::warn!(
                client = ?client.0,
                lockout_s = lockout.as_secs(),
                "console sign-in: too many failed attempts from one address; locked out"
            );
        }
    }

    /// A successful sign-in from `client`: its count starts again.
    pub(crate) fn succeeded(&self, client: ClientAddress) {
        self.counts().addresses.remove(&client.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_address: u32, global: u32) -> SignInLimiter {
        SignInLimiter::new(&ConsoleConfig {
            sign_in_failures_per_address: per_address,
            sign_in_failures_global: global,
            ..ConsoleConfig::default()
        })
    }

    fn at(ip: &str) -> ClientAddress {
        ClientAddress(Some(ip.parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()))))
    }

    #[test]
    fn ten_failures_lock_an_address_out_for_the_window_then_longer() {
        let limiter = limiter(10, 100);
        let (a, b) = (at("192.0.2.1"), at("192.0.2.2"));
        let start = Instant::now();
        for i in 0..10 {
            let now = start + Duration::from_secs(i);
            assert_eq!(limiter.check(a, now), Ok(()), "attempt {}", i + 1);
            limiter.failed(a, now);
        }
        let eleventh = start + Duration::from_secs(10);
        assert_eq!(limiter.check(a, eleventh), Err(Duration::from_secs(59)));
        assert_eq!(
            limiter.check(b, eleventh),
            Ok(()),
            "another address is not locked"
        );
        let later = start + Duration::from_secs(70);
        assert_eq!(limiter.check(a, later), Ok(()), "the lockout ends");
        for i in 0..10 {
            limiter.failed(a, later + Duration::from_secs(i));
        }
        assert_eq!(
            limiter.check(a, later + Duration::from_secs(10)),
            Err(Duration::from_secs(119)),
            "the second lockout lasts twice as long"
        );
        limiter.succeeded(a);
        assert_eq!(limiter.check(a, later + Duration::from_secs(11)), Ok(()));
    }

    #[test]
    fn failures_from_many_addresses_stop_every_sign_in_for_the_window() {
        let limiter = limiter(10, 5);
        let start = Instant::now();
        for i in 0..5u8 {
            limiter.failed(at(&format!("198.51.100.{i}")), start);
        }
        assert!(limiter.check(at("203.0.113.9"), start).is_err());
        assert_eq!(
            limiter.check(at("203.0.113.9"), start + Duration::from_secs(60)),
            Ok(())
        );
    }

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
