//! Railway's rate limits as the simulator enforces them: sliding windows per token, and the
//! stricter edge limit for requests without a query string.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Limits;

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// Per-token limit: JSON 429 with rate-limit headers.
    Token { retry_after: u64, limit: usize },
    /// Edge limit: HTML 429 without rate-limit headers.
    Edge { retry_after: u64 },
}

#[derive(Debug, Default)]
struct Window {
    second: VecDeque<Instant>,
    hour: VecDeque<Instant>,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while self.second.front().is_some_and(|t| *t + SECOND <= now) {
            self.second.pop_front();
        }
        while self.hour.front().is_some_and(|t| *t + HOUR <= now) {
            self.hour.pop_front();
        }
    }
}

/// Per-token and edge counters.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    tokens: BTreeMap<String, Window>,
    edge: Window,
    edge_blocked_until: Option<Instant>,
    /// Highest count of one token's requests in any one-second window.
    pub max_in_one_second: usize,
}

/// Rate-limit headers to send with an answer: the token's hourly window (Railway sends
/// `X-RateLimit-Limit`, `-Remaining` and `-Reset`; shared docs/railway-api.md, Limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    pub limit: usize,
    pub remaining: usize,
    /// Seconds until the window's oldest request ages out, when `remaining` grows again (the
    /// window slides: there is no fixed hour at which it resets whole).
    pub reset_secs: u64,
}

impl RateLimiter {
    /// Counts a request; `Err` when it must be refused. `Ok(None)`: no headers to send, the
    /// hourly limit is off (`requests_per_hour` 0, a test's setting: Railway always has one).
    pub(crate) fn admit(
        &mut self,
        limits: &Limits,
        token: &str,
        has_query: bool,
        now: Instant,
    ) -> Result<Option<Headers>, Limited> {
        if !has_query {
            if let Some(until) = self.edge_blocked_until
                && until > now
            {
                return Err(Limited::Edge {
                    retry_after: (until - now).as_secs().max(1),
                });
            }
            self.edge.prune(now);
            self.edge.second.push_back(now);
            if limits.edge_requests_per_second > 0 && self.edge.second.len() > limits.edge_requests_per_second
            {
                self.edge_blocked_until = Some(now + limits.edge_block);
                return Err(Limited::Edge {
                    retry_after: limits.edge_block.as_secs().max(1),
                });
            }
        }
        let window = self.tokens.entry(token.to_string()).or_default();
        window.prune(now);
        window.second.push_back(now);
        window.hour.push_back(now);
        self.max_in_one_second = self.max_in_one_second.max(window.second.len());
        if limits.requests_per_second > 0 && window.second.len() > limits.requests_per_second {
            let oldest = window.second[window.second.len() - limits.requests_per_second - 1];
            let wait = (oldest + SECOND).saturating_duration_since(now);
            return Err(Limited::Token {
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                limit: limits.requests_per_second,
            });
        }
        if limits.requests_per_hour > 0 && window.hour.len() > limits.requests_per_hour {
            let oldest = window.hour[window.hour.len() - limits.requests_per_hour - 1];
            let wait = (oldest + HOUR).saturating_duration_since(now);
            return Err(Limited::Token {
                retry_after: wait.as_secs().max(1),
                limit: limits.requests_per_hour,
            });
        }
        if limits.requests_per_hour == 0 {
            return Ok(None);
        }
        let reset = window.hour.front().map_or(Duration::ZERO, |oldest| {
            (*oldest + HOUR).saturating_duration_since(now)
        });
        Ok(Some(Headers {
            limit: limits.requests_per_hour,
            remaining: limits.requests_per_hour.saturating_sub(window.hour.len()),
            reset_secs: reset.as_secs_f64().ceil() as u64,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_hour: usize) -> Limits {
        Limits {
            requests_per_hour: per_hour,
            ..Limits::default()
        }
    }

    #[test]
    fn an_hourly_limit_that_is_off_sends_no_headers() {
        let mut limiter = RateLimiter::default();
        let now = Instant::now();
        assert_eq!(limiter.admit(&limits(0), "t", true, now), Ok(None));
    }

    #[test]
    fn reset_is_the_time_until_the_oldest_request_of_the_window_ages_out() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        let first = limiter.admit(&limits(100), "t", true, start).unwrap().unwrap();
        assert_eq!((first.remaining, first.reset_secs), (99, 3600));
        let later = start + Duration::from_secs(600);
        let second = limiter.admit(&limits(100), "t", true, later).unwrap().unwrap();
        assert_eq!((second.remaining, second.reset_secs), (98, 3000));
        // Once the first has aged out, the second is the oldest.
        let after = start + HOUR + Duration::from_secs(1);
        let third = limiter.admit(&limits(100), "t", true, after).unwrap().unwrap();
        assert_eq!((third.remaining, third.reset_secs), (98, 599));
    }
}
