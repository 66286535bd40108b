//! What protects the API from its clients: the scoped keys and the server's limits.

use std::time::Duration;

use secrecy::SecretString;

use crate::auth::ClaimKey;

/// The keys besides the admin key, and the server's limits.
#[derive(Clone)]
pub struct SecurityConfig {
    /// `POOL_CLAIM_KEYS`: named keys that may call `POST /api/pool/claim` and nothing else.
    pub claim_keys: Vec<ClaimKey>,
    /// `POOL_METRICS_KEY`: when set, `/metrics` needs `Authorization: Bearer` with it (or the
    /// admin key); when unset, `/metrics` is open (it carries counts only).
    pub metrics_key: Option<SecretString>,
    /// `POOL_METRICS_REFRESH_MS`: how old the database counts `/metrics` serves may be before
    /// they are read again (in the background; a scrape never waits for the database but the
    /// first).
    pub metrics_refresh: Duration,
    /// `POOL_MAX_IN_FLIGHT`: requests of the API (`/api/pool/*`, the bearer keys) handled at
    /// once; one more is shed at once with 503 and `Retry-After` (claims that wait count too).
    /// The other callers have budgets of their own, so they can never take the claims' slots.
    pub max_in_flight: usize,
    /// `POOL_MAX_IN_FLIGHT_PUBLIC`: requests in flight on the routes anyone may call (sign-in,
    /// webhooks, `/readyz`, `/metrics`, …).
    pub max_in_flight_public: usize,
    /// `POOL_MAX_IN_FLIGHT_CONSOLE`: requests in flight on the signed-in console's routes.
    pub max_in_flight_console: usize,
    /// `POOL_MAX_IN_FLIGHT_AGENTS`: requests in flight on the service proxy (`/api/proxy/*`).
    pub max_in_flight_agents: usize,
    /// `POOL_BODY_READ_TIMEOUT_MS`: the time a request's body has to arrive after its headers;
    /// later it is refused (408), whatever route reads it.
    pub body_read_timeout: Duration,
    /// `POOL_PROXY_MAX_BODY`: the largest body of an agent's proxy call (attachments travel
    /// base64-encoded in it; Node's cap was 10 MB).
    pub proxy_max_body: usize,
    /// `POOL_CLAIM_KEY_RATE_PER_MINUTE`: claims one claim key may make a minute (all replicas
    /// together); more are 429.
    pub claim_key_rate_per_minute: u32,
    /// `POOL_HEADER_READ_TIMEOUT_MS`: the time a client has to send a request's headers (also
    /// how long an idle kept-alive connection stays open).
    pub header_read_timeout: Duration,
    /// `POOL_REQUEST_TIMEOUT_MS`: the time every route but the claims has to answer (the API's
    /// claim gets `Prefer: wait`'s maximum plus the provision timeout plus a margin; the
    /// console's launch the provision timeout plus a margin).
    pub request_timeout: Duration,
    /// `POOL_TRUSTED_PROXY_HOPS`: reverse proxies in front of the service that append to
    /// `X-Forwarded-For` (1 on Railway). The client's address (for the sign-in limit) is the
    /// entry that many from the right; with 0 it is the connection's peer and the header is
    /// ignored (it can be forged).
    pub trusted_proxy_hops: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            claim_keys: Vec::new(),
            metrics_key: None,
            metrics_refresh: Duration::from_secs(5),
            max_in_flight: 512,
            max_in_flight_public: 128,
            max_in_flight_console: 64,
            max_in_flight_agents: 64,
            body_read_timeout: Duration::from_secs(10),
            proxy_max_body: 10 * 1024 * 1024,
            claim_key_rate_per_minute: 60,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            trusted_proxy_hops: 0,
        }
    }
}

impl std::fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityConfig")
            .field(
                "claim_keys",
                &self
                    .claim_keys
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("metrics_key", &self.metrics_key.as_ref().map(|_| "***"))
            .field("metrics_refresh", &self.metrics_refresh)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_in_flight_public", &self.max_in_flight_public)
            .field("max_in_flight_console", &self.max_in_flight_console)
            .field("max_in_flight_agents", &self.max_in_flight_agents)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("proxy_max_body", &self.proxy_max_body)
            .field("claim_key_rate_per_minute", &self.claim_key_rate_per_minute)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("trusted_proxy_hops", &self.trusted_proxy_hops)
            .finish()
    }
}
