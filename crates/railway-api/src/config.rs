//! How to reach Railway and how much of its budget to use.

use std::time::Duration;

use secrecy::SecretString;

/// Railway's public GraphQL endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://backboard.railway.com/graphql/v2";

/// The query string added to an endpoint that has none: Railway's edge limits requests
/// without one far more strictly (about 10/s, with long blocks).
pub const DEFAULT_QUERY_STRING: &str = "source=pool-manager";

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// GraphQL endpoint. A query string is added when it has none.
    pub endpoint: String,
    /// Workspace or account tokens. Calls use any; `projectCreate` moves to another one only
    /// when Railway throttles per user.
    pub tokens: Vec<SecretString>,
    /// Time allowed for one request, answer included.
    pub request_timeout: Duration,
    /// Attempts per call (first try included) for retryable failures.
    pub max_attempts: usize,
    /// First retry delay; doubles each time, with jitter.
    pub retry_min_delay: Duration,
    /// Longest retry delay.
    pub retry_max_delay: Duration,
    /// How long a `projectCreate` throttle lasts when Railway's message names no interval.
    pub project_create_cooldown: Duration,
    /// How long `create_project` waits for its workspace's turn before answering
    /// [`crate::RailwayError::Paced`] (so its caller can renew what it holds and ask again).
    pub project_create_max_wait: Duration,
    /// The request budget.
    pub budget: BudgetConfig,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("tokens", &format_args!("[{} × ***]", self.tokens.len()))
            .field("request_timeout", &self.request_timeout)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults for Railway Pro with the given tokens.
    pub fn new(endpoint: impl Into<String>, tokens: Vec<SecretString>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tokens,
            request_timeout: Duration::from_secs(30),
            max_attempts: 4,
            retry_min_delay: Duration::from_millis(250),
            retry_max_delay: Duration::from_secs(10),
            project_create_cooldown: crate::classify::DEFAULT_THROTTLE_WAIT,
            project_create_max_wait: Duration::from_secs(60),
            budget: BudgetConfig::default(),
            user_agent: concat!("pool-manager/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// The endpoint with a query string (added when missing).
    pub fn endpoint_with_query(&self) -> String {
        if self.endpoint.contains('?') {
            self.endpoint.clone()
        } else {
            format!("{}?{DEFAULT_QUERY_STRING}", self.endpoint)
        }
    }
}

/// Limits the client keeps to, below Railway's own.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// Requests in any one-second window (Railway Pro: 50).
    pub requests_per_second: usize,
    /// Requests in any one-hour window (Railway Pro: 10,000).
    pub requests_per_hour: usize,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Added to each window so requests that arrive a little late at Railway (network
    /// jitter) are still counted in the window the client meant.
    pub window_margin: Duration,
    /// Share of the hourly budget that status reads may use (the rest is kept for claims and
    /// teardowns).
    pub status_share: f64,
    /// Share of the hourly budget that replenishment may use.
    pub replenish_share: f64,
    /// The suspicion reads' bucket: the share of the hourly budget that reads of agents which
    /// failed their health checks may use in any hour (within `status_share`).
    pub suspicion_share: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50,
            requests_per_hour: 10_000,
            max_in_flight: 32,
            window_margin: Duration::from_millis(50),
            status_share: 0.95,
            replenish_share: 0.90,
            // 500 of Pro's 10,000 an hour: 25,000 suspects in batches of 50, while the whole
            // pool's target is 10 % of the budget.
            suspicion_share: 0.05,
        }
    }
}
