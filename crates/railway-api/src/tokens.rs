//! The token pool: any token for most calls, a rested one for `projectCreate`.
//!
//! Railway's current throttle on `projectCreate` is per workspace (see `pacing.rs`), and more
//! tokens do not raise it; an older form of the message is per user ("Only one project can be
//! created per user every 30s"). For that one, the throttled token rests and creation moves to
//! the next token.

use std::sync::Mutex;
use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;

/// Index of a token in the pool (never the token itself, so it can be logged).
pub type TokenIndex = usize;

#[derive(Debug)]
struct Rotation {
    next: usize,
    resting_until: Vec<Option<Instant>>,
}

/// The configured tokens.
pub(crate) struct TokenPool {
    tokens: Vec<SecretString>,
    rotation: Mutex<Rotation>,
}

impl TokenPool {
    pub(crate) fn new(tokens: Vec<SecretString>) -> Self {
        let n = tokens.len();
        Self {
            tokens,
            rotation: Mutex::new(Rotation {
                next: 0,
                resting_until: vec![None; n],
            }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn token(&self, index: TokenIndex) -> &SecretString {
        &self.tokens[index % self.tokens.len()]
    }

    /// Any token, round robin.
    pub(crate) fn any(&self) -> TokenIndex {
        let mut r = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        let i = r.next % self.tokens.len().max(1);
        r.next = r.next.wrapping_add(1);
        i
    }

    /// A token that is not resting after a throttle, or how long until one is.
    pub(crate) fn rested(&self) -> Result<TokenIndex, Duration> {
        let mut r = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let n = self.tokens.len().max(1);
        for k in 0..n {
            let i = (r.next + k) % n;
            if r.resting_until[i].is_none_or(|until| until <= now) {
                r.next = i + 1;
                return Ok(i);
            }
        }
        let soonest = r.resting_until.iter().flatten().min().copied().unwrap_or(now);
        Err(soonest.saturating_duration_since(now))
    }

    /// Rests a token after a throttle answer.
    pub(crate) fn rest(&self, index: TokenIndex, cooldown: Duration) {
        let mut r = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = r.resting_until.get_mut(index) {
            *slot = Some(Instant::now() + cooldown);
        }
    }
}
