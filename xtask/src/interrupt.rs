//! Ctrl-C (SIGINT) and SIGTERM as events a task waits for, so the tasks that start servers (the
//! demo, the test suite's private PostgreSQL) leave through their normal return path and drop
//! every guard instead of dying with a server still running.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Ctrl-C (SIGINT) or SIGTERM. Registered before anything is started: from then on neither
/// kills the process outright.
pub struct Interrupt {
    int: Signal,
    term: Signal,
}

impl Interrupt {
    /// Starts listening; must be called inside the runtime.
    pub fn register() -> Result<Self, String> {
        let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
        Ok(Self {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
        })
    }

    /// Waits for the next interrupt.
    pub async fn received(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
