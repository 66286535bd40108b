//! A TLS client session store that keeps one ticket per host, for a client that talks to a
//! fleet of hosts (the pool's agents, each at a name of its own).
//!
//! rustls' own `ClientSessionMemoryCache` is bounded by a count of tickets across every host
//! and keeps up to 8 per host (`rustls-0.23.46/src/client/handy.rs:45,89-92`): sized 16,384 it
//! holds 2,048 hosts, and a client that walks more hosts than that in the same order every
//! interval evicts each host's tickets before it comes back to it, so no handshake is ever
//! resumed past 2,048 agents. This store keeps one ticket per server name (the newest one the
//! server sent: a resumption takes it, and the resumed handshake brings fresh ones), up to a
//! number of hosts sized to the fleet; when full, the host stored longest ago goes first — in
//! a fleet walked every interval that is a host that left it, never one still checked.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;

#[derive(Debug, Default)]
struct Host {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: Option<Tls13ClientSessionValue>,
    /// When this host was last stored into (the eviction order).
    stored: u64,
}

#[derive(Debug, Default)]
struct Hosts {
    by_name: HashMap<ServerName<'static>, Host>,
    /// Hosts by when they were last stored into.
    order: BTreeMap<u64, ServerName<'static>>,
    next: u64,
}

/// One TLS ticket per host, for up to a fleet's worth of hosts (see the [module docs](self)).
#[derive(Debug)]
pub struct PerHostSessions {
    capacity: AtomicUsize,
    hosts: Mutex<Hosts>,
}

impl PerHostSessions {
    /// A store for up to `hosts` hosts (at least one).
    pub fn new(hosts: usize) -> Self {
        Self {
            capacity: AtomicUsize::new(hosts.max(1)),
            hosts: Mutex::default(),
        }
    }

    /// Sizes the store to a fleet of `hosts` hosts (at least one); a smaller size forgets the
    /// hosts stored longest ago at the next store.
    pub fn resize(&self, hosts: usize) {
        self.capacity.store(hosts.max(1), Ordering::Relaxed);
    }

    /// Hosts it keeps a ticket for at most.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Hosts remembered now.
    pub fn len(&self) -> usize {
        self.lock().by_name.len()
    }

    /// True when no host is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hosts holding a ticket now (a handshake to them would be resumed).
    pub fn tickets(&self) -> usize {
        self.lock()
            .by_name
            .values()
            .filter(|h| h.tls13.is_some() || h.tls12.is_some())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hosts> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes what is stored for `name`, making room first when it is new and the store is
    /// full, and marking it as stored now.
    fn store(&self, name: ServerName<'static>, change: impl FnOnce(&mut Host)) {
        let mut hosts = self.lock();
        let hosts = &mut *hosts;
        let stamp = hosts.next;
        hosts.next += 1;
        if let Some(host) = hosts.by_name.get_mut(&name) {
            hosts.order.remove(&host.stored);
            host.stored = stamp;
            change(host);
            hosts.order.insert(stamp, name);
            return;
        }
        while hosts.by_name.len() >= self.capacity() {
            let Some((_, oldest)) = hosts.order.pop_first() else {
                break;
            };
            hosts.by_name.remove(&oldest);
        }
        let mut host = Host {
            stored: stamp,
            ..Host::default()
        };
        change(&mut host);
        hosts.by_name.insert(name.clone(), host);
        hosts.order.insert(stamp, name);
    }
}

impl ClientSessionStore for PerHostSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.store(server_name, |h| h.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock()
            .by_name
            .get(&server_name.to_owned())
            .and_then(|h| h.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.store(server_name, |h| h.tls12 = Some(value));
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.lock()
            .by_name
            .get(&server_name.to_owned())
            .and_then(|h| h.tls12.clone())
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        if let Some(h) = self.lock().by_name.get_mut(server_name) {
            h.tls12 = None;
        }
    }

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: Tls13ClientSessionValue) {
        // The newest ticket replaces the one before: one per host.
        self.store(server_name, |h| h.tls13 = Some(value));
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.lock()
            .by_name
            .get_mut(server_name)
            .and_then(|h| h.tls13.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: usize) -> ServerName<'static> {
        ServerName::try_from(format!("agent-{i}.example")).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_full_store_forgets_the_host_stored_longest_ago() {
        let store = PerHostSessions::new(3);
        for i in 0..3 {
            store.set_kx_hint(name(i), NamedGroup::X25519);
        }
        // Host 0 stored again: host 1 is now the oldest.
        store.set_kx_hint(name(0), NamedGroup::secp256r1);
        store.set_kx_hint(name(3), NamedGroup::X25519);
        assert_eq!(store.len(), 3);
        assert_eq!(store.kx_hint(&name(0)), Some(NamedGroup::secp256r1));
        assert_eq!(store.kx_hint(&name(1)), None, "the oldest went");
        assert_eq!(store.kx_hint(&name(2)), Some(NamedGroup::X25519));
        assert_eq!(store.kx_hint(&name(3)), Some(NamedGroup::X25519));
    }

    #[test]
    fn a_walk_in_the_same_order_keeps_every_host_of_a_fleet_it_is_sized_for() {
        let store = PerHostSessions::new(10_000);
        for _round in 0..3 {
            for i in 0..10_000 {
                store.set_kx_hint(name(i), NamedGroup::X25519);
            }
        }
        assert_eq!(store.len(), 10_000);
        assert!((0..10_000).all(|i| store.kx_hint(&name(i)).is_some()));
    }
}
