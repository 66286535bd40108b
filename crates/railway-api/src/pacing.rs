//! Pacing of `projectCreate` per workspace.
//!
//! Railway throttles project creation per workspace: "You are creating projects too quickly.
//! This workspace allows 1 project per 30 seconds. Try again shortly." (the exact message in
//! jamesprnich/terraform-provider-railway `resource_cooldown_retry_test.go`). More tokens in
//! one workspace do not raise it, so the client sends one `projectCreate` at a time per
//! workspace, first come first served, at the moment the throttle opens:
//!
//! - a throttle answer closes the workspace for the interval Railway names, and the interval
//!   is remembered;
//! - once an interval is known, a success closes the workspace for that interval too, so the
//!   next creation is sent when it can succeed instead of spending an attempt to be told again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A little past the interval: Railway's window starts when it received the previous
/// request, a little before we saw its answer, so this margin is on the safe side.
const MARGIN: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct GateState {
    open_at: Option<Instant>,
    interval: Option<Duration>,
}

/// One workspace's gate: a fair (first in, first out) turn, and when the throttle opens.
#[derive(Debug, Default)]
struct Gate {
    turn: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<GateState>,
}

impl Gate {
    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The gates of every workspace this client creates projects in.
#[derive(Debug, Default)]
pub(crate) struct ProjectCreatePacer {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// The right to send one `projectCreate` now. Report the outcome on it.
pub(crate) struct Turn {
    gate: Arc<Gate>,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Turn {
    /// The project was created: the next one may go once the known interval has passed.
    pub(crate) fn succeeded(self) {
        let mut state = self.gate.state();
        if let Some(interval) = state.interval {
            state.open_at = Some(Instant::now() + interval + MARGIN);
        }
    }

    /// Railway throttled the workspace for `retry_after`.
    pub(crate) fn throttled(self, retry_after: Duration) {
        let mut state = self.gate.state();
        state.open_at = Some(Instant::now() + retry_after + MARGIN);
        state.interval = Some(retry_after);
    }
}

impl ProjectCreatePacer {
    fn gate(&self, workspace: &str) -> Arc<Gate> {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(workspace.to_string())
            .or_default()
            .clone()
    }

    /// Waits for this workspace's turn, at most `max_wait`. `Err(wait)`: the turn did not come
    /// in time; `wait` is how long until the throttle opens (or `max_wait` when others queue).
    pub(crate) async fn turn(&self, workspace: &str, max_wait: Duration) -> Result<Turn, Duration> {
        let gate = self.gate(workspace);
        let deadline = Instant::now() + max_wait;
        let held = match tokio::time::timeout_at(deadline, gate.turn.clone().lock_owned()).await {
            Ok(held) => held,
            Err(_) => return Err(self.open_in(workspace).unwrap_or(max_wait).max(max_wait)),
        };
        let open_at = gate.state().open_at;
        if let Some(open_at) = open_at
            && open_at > Instant::now()
        {
            if open_at > deadline {
                return Err(open_at.saturating_duration_since(Instant::now()));
            }
            tokio::time::sleep_until(open_at).await;
        }
        Ok(Turn { gate, _held: held })
    }

    /// The interval Railway named in the workspace's last throttle message, if one was seen.
    pub(crate) fn interval(&self, workspace: &str) -> Option<Duration> {
        self.gate(workspace).state().interval
    }

    /// How long until the workspace's throttle opens (`None`: it is open).
    pub(crate) fn open_in(&self, workspace: &str) -> Option<Duration> {
        let gate = self.gate(workspace);
        let open_at = gate.state().open_at?;
        let now = Instant::now();
        (open_at > now).then(|| open_at - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_throttle_closes_the_workspace_and_its_interval_paces_later_creations() {
        let pacer = ProjectCreatePacer::default();
        let start = Instant::now();
        pacer
            .turn("ws", Duration::from_secs(60))
            .await
            .unwrap()
            .succeeded();
        // No interval known yet: the next one may go at once, and is throttled.
        pacer
            .turn("ws", Duration::from_secs(60))
            .await
            .unwrap()
            .throttled(Duration::from_secs(30));
        let turn = pacer.turn("ws", Duration::from_secs(60)).await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(30));
        turn.succeeded();
        let before = Instant::now();
        pacer
            .turn("ws", Duration::from_secs(60))
            .await
            .unwrap()
            .succeeded();
        assert!(
            Instant::now() - before >= Duration::from_secs(30),
            "a success waits the learned interval"
        );
        // Other workspaces are not held up.
        let other = Instant::now();
        pacer
            .turn("other", Duration::from_secs(60))
            .await
            .unwrap()
            .succeeded();
        assert_eq!(Instant::now(), other);
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_that_would_come_too_late_is_refused_with_the_wait() {
        let pacer = ProjectCreatePacer::default();
        pacer
            .turn("ws", Duration::from_secs(60))
            .await
            .unwrap()
            .throttled(Duration::from_secs(30));
        let refused = pacer.turn("ws", Duration::from_secs(5)).await.err().unwrap();
        assert!(refused >= Duration::from_secs(25), "{refused:?}");
        assert!(pacer.open_in("ws").is_some());
    }
}
