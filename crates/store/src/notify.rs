//! Wake-ups across replicas, with PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! Any replica may announce that something happened ([`Store::notify`]); every replica's
//! [`Listener`] hears it on a connection of its own, outside the pool, and hands it to whoever
//! subscribed. A notification is a hint, never the truth: the listener's connection can drop,
//! and then notifications are missed — so consumers keep their interval as a fallback, and the
//! listener announces [`PoolSignal::Reconnected`] once it is back so they look again.
//!
//! A replica hears each signal once. What it announces itself is handed to its own subscribers
//! at once, in-process, and its listener drops the echo that comes back from PostgreSQL: each
//! notification carries its sender's origin (a random id per [`Store`], made when it
//! connects). Without this, every claim cost the leader two ticks — the local prompt, then its
//! own `NOTIFY` coming back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use crate::{AgentId, Result, Store, StoreConfig};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PoolSignal {
    /// Something the reconciler should act on now (a replenish, a drain, a settings change):
    /// the leader ticks at once.
    TickSoon,
    /// Demand moved (a claim, a claim that waits): the leader sizes the pool soon and creates
    /// what the target asks for — no health checks, no Railway reads, no sweeps.
    SizeSoon,
    /// Railway said something happened to this agent's deployment (a webhook): the leader
    /// reads its status and checks its health at once.
    Look(AgentId),
    /// An agent became idle: claims that wait look again.
    AgentIdle,
    /// The queue of waiting claims changed: its new head looks again.
    QueueMoved,
    /// The listener's connection came back: notifications may have been missed.
    Reconnected,
}

/// The channels every listener listens on.
const CHANNELS: [&str; 5] = ["pool_tick", "pool_size", "pool_look", "pool_idle", "pool_queue"];

impl PoolSignal {
    /// The channel and payload it is sent as (`None`: it is never sent).
    fn message(&self) -> Option<(&'static str, &str)> {
        match self {
            PoolSignal::TickSoon => Some(("pool_tick", "")),
            PoolSignal::SizeSoon => Some(("pool_size", "")),
            PoolSignal::Look(agent) => Some(("pool_look", agent.as_str())),
            PoolSignal::AgentIdle => Some(("pool_idle", "")),
            PoolSignal::QueueMoved => Some(("pool_queue", "")),
            PoolSignal::Reconnected => None,
        }
    }

    fn from_message(channel: &str, payload: &str) -> Option<Self> {
        match channel {
            "pool_tick" => Some(PoolSignal::TickSoon),
            "pool_size" => Some(PoolSignal::SizeSoon),
            "pool_look" => AgentId::parse(payload).ok().map(PoolSignal::Look),
            "pool_idle" => Some(PoolSignal::AgentIdle),
            "pool_queue" => Some(PoolSignal::QueueMoved),
            _ => None,
        }
    }
}

/// The payload as sent: the sender's origin, a space, then the signal's own payload. A
/// payload without a space comes from a replica that predates origins: never ours.
fn with_origin(origin: &str, payload: &str) -> String {
    format!("{origin} {payload}")
}

/// (origin, the signal's own payload).
fn split_origin(payload: &str) -> (Option<&str>, &str) {
    match payload.split_once(' ') {
        Some((origin, rest)) => (Some(origin), rest),
        None => (None, payload),
    }
}

/// One replica's signals: who it is to the others, and its subscribers. Shared by every clone
/// of its [`Store`] and by its [`Listener`].
#[derive(Debug)]
pub(crate) struct Hub {
    origin: String,
    signals: broadcast::Sender<PoolSignal>,
}

impl Hub {
    pub(crate) fn new() -> Self {
        let (signals, _) = broadcast::channel(256);
        Self {
            origin: format!("{:016x}", rand::random::<u64>()),
            signals,
        }
    }
}

impl Store {
    /// Tells every replica that `signal` happened: this one's subscribers at once, the others
    /// through `NOTIFY` (this replica's listener drops the echo).
    pub async fn notify(&self, signal: PoolSignal) -> Result<()> {
        let Some((channel, payload)) = signal.message() else {
            return Ok(());
        };
        let payload = with_origin(&self.hub.origin, payload);
        let _ = self.hub.signals.send(signal);
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await?;
        Ok(())
    }

    /// Who this replica is in its notifications.
    pub fn notify_origin(&self) -> &str {
        &self.hub.origin
    }
}

struct Shared {
    hub: Arc<Hub>,
    connected: AtomicBool,
    /// This replica's own notifications heard back from PostgreSQL, and dropped.
    echoes: AtomicU64,
}

/// One replica's ear: a dedicated connection that `LISTEN`s, reconnecting when it drops.
/// Dropping the last handle stops it.
#[derive(Clone)]
pub struct Listener {
    shared: Arc<Shared>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

/// The longest wait between two connection attempts.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(10);

impl Listener {
    /// Starts listening for `store`'s replica (in the background; [`Self::is_connected`] tells
    /// when it is). Its subscribers hear what this replica announces too, once.
    pub fn start(store: &Store) -> Self {
        let shared = Arc::new(Shared {
            hub: store.hub.clone(),
            connected: AtomicBool::new(false),
            echoes: AtomicU64::new(0),
        });
        let task = tokio::spawn(listen(store.config().clone(), shared.clone()));
        Self {
            shared,
            task: Arc::new(task),
        }
    }

    /// Signals from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PoolSignal> {
        self.shared.hub.signals.subscribe()
    }

    /// This replica's own notifications heard back from PostgreSQL and dropped (its
    /// subscribers had them at once).
    pub fn echoes_ignored(&self) -> u64 {
        self.shared.echoes.load(Ordering::SeqCst)
    }

    /// True while the listening connection is up (when down, notifications are missed).
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }
}

async fn listen(config: StoreConfig, shared: Arc<Shared>) {
    let mut wait = Duration::from_millis(200);
    loop {
        match listen_once(&config, &shared).await {
            Ok(()) => wait = Duration::from_millis(200),
            Err(e) => tracing::warn!(error = %e, "the notification listener could not connect"),
        }
        if shared.connected.swap(false, Ordering::SeqCst) {
            tracing::warn!("the notification listener lost its connection; ticks fall back to the interval");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RECONNECT_WAIT);
    }
}

/// One connection's life: connect, `LISTEN`, forward until it drops.
async fn listen_once(config: &StoreConfig, shared: &Shared) -> Result<()> {
    // The same TLS as the pool's connections (`sslmode` of `DATABASE_URL`).
    let (client, mut connection) = config
        .pg_config()?
        .connect(config.tls_connector()?)
        .await
        .map_err(|e| crate::StoreError::from_connect(e, config))?;
    let (forward, mut messages) = tokio::sync::mpsc::unbounded_channel::<AsyncMessage>();
    // The connection must be polled for the client's queries to progress, and it is what
    // yields the notifications: drive it in a task of its own.
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            match message {
                Ok(message) => {
                    if forward.send(message).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "notification connection ended");
                    return;
                }
            }
        }
    });
    let listens: String = CHANNELS.iter().map(|c| format!("LISTEN {c};")).collect();
    if let Err(e) = client.batch_execute(&listens).await {
        driver.abort();
        return Err(e.into());
    }
    shared.connected.store(true, Ordering::SeqCst);
    let _ = shared.hub.signals.send(PoolSignal::Reconnected);
    tracing::info!("listening for notifications from every replica");
    while let Some(message) = messages.recv().await {
        let AsyncMessage::Notification(n) = message else {
            continue;
        };
        let (origin, payload) = split_origin(n.payload());
        if origin == Some(shared.hub.origin.as_str()) {
            shared.echoes.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        if let Some(signal) = PoolSignal::from_message(n.channel(), payload) {
            let _ = shared.hub.signals.send(signal);
        }
    }
    drop(client);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sent_signal_reads_back_as_itself() {
        let agent = AgentId::parse("abc123def456").unwrap();
        for signal in [
            PoolSignal::TickSoon,
            PoolSignal::SizeSoon,
            PoolSignal::Look(agent),
            PoolSignal::AgentIdle,
            PoolSignal::QueueMoved,
        ] {
            let (channel, payload) = signal.message().unwrap();
            assert!(CHANNELS.contains(&channel), "{channel} is listened on");
            assert_eq!(PoolSignal::from_message(channel, payload), Some(signal));
        }
        assert_eq!(PoolSignal::Reconnected.message(), None);
    }

    #[test]
    fn a_look_at_a_malformed_id_or_an_unknown_channel_is_dropped() {
        assert_eq!(PoolSignal::from_message("pool_look", "not an id; DROP"), None);
        assert_eq!(PoolSignal::from_message("pool_other", ""), None);
    }

    #[test]
    fn the_origin_travels_before_the_payload_and_old_payloads_have_none() {
        let sent = with_origin("00ab", "abc123def456");
        assert_eq!(split_origin(&sent), (Some("00ab"), "abc123def456"));
        assert_eq!(split_origin(&with_origin("00ab", "")), (Some("00ab"), ""));
        // A replica from before origins: a bare agent id, or nothing.
        assert_eq!(split_origin("abc123def456"), (None, "abc123def456"));
        assert_eq!(split_origin(""), (None, ""));
    }
}
