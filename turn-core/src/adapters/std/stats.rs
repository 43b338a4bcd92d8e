//! What the relay reports: [`Stats`], a snapshot of every worker's counters and
//! allocations, and the per-user sums an operator asks for.
//!
//! Snapshots are plain data. Once a second each worker refills its published
//! snapshot in place under the lock (reusing its buffer: nothing is formatted
//! and, once warm, nothing is allocated on the packet threads; one list a
//! worker, not one it fills and one it shows).
//! [`Relay::stats`](super::Relay::stats) copies the published ones out;
//! formatting (JSON, Prometheus) is for the caller's thread.

use crate::adapters::std::prelude::*;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::FiveTuple;
use crate::server::{Allocation, Counters, Traffic, USERNAME_MAX};

/// A username as the core holds it.
pub type Username = heapless::String<USERNAME_MAX>;

/// Most peers an allocation's stats name.
pub const PEERS_SHOWN: usize = 8;

/// One allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationStats {
    /// The worker that holds it.
    pub worker: usize,
    /// Its user (for time-limited credentials, the whole `expiry:user`).
    pub username: Username,
    /// The client's 5-tuple.
    pub tuple: FiveTuple,
    /// Its relayed addresses as advertised (one per family).
    pub relayed: heapless::Vec<SocketAddr, 2>,
    /// The addresses its relay sockets are bound to (which interface): the
    /// same as `relayed` without static NAT.
    pub relayed_local: heapless::Vec<SocketAddr, 2>,
    /// Its first peers (see [`Allocation::peers`]: port 0 for a permission of
    /// any port); `peer_count` says how many there are in all.
    pub peers: heapless::Vec<SocketAddr, PEERS_SHOWN>,
    /// How many peers it has.
    pub peer_count: usize,
    /// Lifetime left.
    pub expires_in: Duration,
    /// Permissions installed.
    pub permissions: usize,
    /// Channels bound.
    pub channels: usize,
    /// What it relayed.
    pub traffic: Traffic,
}

impl AllocationStats {
    pub(crate) fn of<const P: usize, const C: usize>(
        worker: usize,
        a: &Allocation<P, C>,
        now: crate::Instant,
    ) -> Self {
        let mut username = Username::new();
        // Same capacity as the core's: it fits.
        let _ = username.push_str(a.username());
        AllocationStats {
            worker,
            username,
            tuple: *a.five_tuple(),
            relayed: a.relays().map(|r| r.advertised).collect(),
            relayed_local: a.relays().map(|r| r.local).collect(),
            peers: a.peers().take(PEERS_SHOWN).collect(),
            peer_count: a.peers().count(),
            expires_in: Duration::from_millis(a.expires().millis_since(now)),
            permissions: a.permission_count(),
            channels: a.channel_count(),
            traffic: *a.traffic(),
        }
    }
}

/// One worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Its index.
    pub worker: usize,
    /// Its TURN shard's counters since start.
    pub counters: Counters,
    /// Allocations its shard holds now.
    pub allocations: usize,
    /// Allocations its shard can hold.
    pub capacity: usize,
    /// Allocations its shard's table has room for now: it starts small and
    /// grows by a quarter when full, up to [`WorkerStats::capacity`], so
    /// memory follows what is held.
    pub slots: usize,
    /// TCP and TLS clients connected to it.
    pub connections: usize,
    /// Relay-to-relay datagrams it took from other relay sockets of this server
    /// directly, without the kernel.
    pub handed_off: u64,
    /// Datagrams it sent to UDP clients, and the system calls that took
    /// (sendmmsg across clients, GSO for runs to one client).
    pub client_datagrams: u64,
    /// See [`WorkerStats::client_datagrams`].
    pub client_sends: u64,
    /// Datagrams its UDP relay sockets sent to peers, and the system calls
    /// that took (GSO for a client's run of one size to one peer).
    pub peer_datagrams: u64,
    /// See [`WorkerStats::peer_datagrams`].
    pub peer_sends: u64,
}

/// One user's allocations and traffic, summed over its allocations in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserStats {
    /// Allocations in use.
    pub allocations: usize,
    /// Traffic of those allocations.
    pub traffic: Traffic,
}

/// A snapshot of the relay, at most a second old.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Each worker.
    pub workers: Vec<WorkerStats>,
    /// Every allocation in use (empty in a summary: see
    /// [`StatsHandle::summary`](super::StatsHandle::summary)).
    pub allocations: Vec<AllocationStats>,
    /// Allocations allowed in all.
    pub quota_total: usize,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// TLS openings closed unanswered, by why.
    pub tls_refused: TlsRefused,
    /// What the kernel fast path relayed, when it is on. Its packets are in
    /// [`Stats::totals`] and in each allocation's traffic too.
    #[cfg(feature = "xdp")]
    pub kernel: Option<super::KernelStats>,
}

/// TLS openings the TLS threads closed without answering their ClientHello.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsRefused {
    /// Every TLS thread's queue was full.
    pub queue_full: u64,
    /// The source was over `tcp.tls_handshakes_per_sec`.
    pub over_rate: u64,
    /// The opening deadline passed first (`tcp.handshake_timeout`).
    pub late: u64,
}

impl Stats {
    /// Allocations in use.
    pub fn in_use(&self) -> usize {
        self.workers.iter().map(|w| w.allocations).sum()
    }

    /// The counters summed over the workers.
    pub fn totals(&self) -> Counters {
        let mut t = Counters::default();
        for c in self.workers.iter().map(|w| &w.counters) {
            t.merge(c);
        }
        #[cfg(feature = "xdp")]
        if let Some(k) = &self.kernel {
            t.to_peer_packets += k.to_peer_packets;
            t.to_peer_bytes += k.to_peer_bytes;
            t.from_peer_packets += k.from_peer_packets;
            t.from_peer_bytes += k.from_peer_bytes;
        }
        t
    }

    /// Allocations and traffic per user, by username.
    pub fn users(&self) -> BTreeMap<&str, UserStats> {
        let mut users: BTreeMap<&str, UserStats> = BTreeMap::new();
        for a in &self.allocations {
            let u = users.entry(a.username.as_str()).or_default();
            u.allocations += 1;
            u.traffic.to_peer_packets += a.traffic.to_peer_packets;
            u.traffic.to_peer_bytes += a.traffic.to_peer_bytes;
            u.traffic.from_peer_packets += a.traffic.from_peer_packets;
            u.traffic.from_peer_bytes += a.traffic.from_peer_bytes;
        }
        users
    }
}

/// What a worker publishes: its summary and, while they are read, its
/// allocations.
#[derive(Debug, Default)]
pub(crate) struct WorkerSnapshot {
    pub(crate) worker: WorkerStats,
    pub(crate) allocations: Vec<AllocationStats>,
    /// Whether `allocations` lists them (else it is empty).
    pub(crate) listed: bool,
    /// Whether the worker runs: one that stopped publishes no more.
    pub(crate) running: bool,
}

impl WorkerSnapshot {
    pub(crate) fn empty(worker: usize) -> Self {
        WorkerSnapshot {
            worker: WorkerStats {
                worker,
                ..WorkerStats::default()
            },
            allocations: Vec::new(),
            listed: false,
            running: false,
        }
    }

    /// Whether its allocations are as recent as its summary (or will not be).
    pub(crate) fn lists(&self) -> bool {
        self.listed || !self.running
    }
}

/// The published snapshots as one [`Stats`], with their allocations or
/// without.
pub(crate) fn collect(
    snapshots: &[WorkerSnapshot],
    allocations: bool,
    quota_total: usize,
    dropped: u64,
) -> Stats {
    Stats {
        workers: snapshots.iter().map(|s| s.worker).collect(),
        allocations: snapshots
            .iter()
            .filter(|_| allocations)
            .flat_map(|s| s.allocations.iter().cloned())
            .collect(),
        quota_total,
        events_dropped: dropped,
        tls_refused: TlsRefused::default(),
        #[cfg(feature = "xdp")]
        kernel: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    fn alloc(user: &str, to_peer: u64) -> AllocationStats {
        AllocationStats {
            worker: 0,
            username: Username::try_from(user).unwrap(),
            tuple: FiveTuple {
                client: "198.51.100.1:5000".parse().unwrap(),
                server: "192.0.2.1:3478".parse().unwrap(),
                transport: Transport::Udp,
                socket: 0,
            },
            relayed: heapless::Vec::new(),
            relayed_local: heapless::Vec::new(),
            peers: heapless::Vec::new(),
            peer_count: 0,
            expires_in: Duration::from_secs(600),
            permissions: 1,
            channels: 1,
            traffic: Traffic {
                to_peer_bytes: to_peer,
                to_peer_packets: 1,
                ..Traffic::default()
            },
        }
    }

    #[test]
    fn users_and_totals_sum_over_workers_and_allocations() {
        let mut a = WorkerSnapshot::empty(0);
        a.worker.allocations = 2;
        a.worker.counters.to_peer_bytes = 300;
        a.allocations = vec![alloc("meeting", 100), alloc("meeting", 200)];
        let mut b = WorkerSnapshot::empty(1);
        b.worker.allocations = 1;
        b.worker.counters.to_peer_bytes = 5;
        b.allocations = vec![alloc("callbridge", 5)];
        let s = collect(&[a, b], true, 1000, 3);
        assert_eq!(s.in_use(), 3);
        assert_eq!(s.totals().to_peer_bytes, 305);
        let users = s.users();
        assert_eq!(users["meeting"].allocations, 2);
        assert_eq!(users["meeting"].traffic.to_peer_bytes, 300);
        assert_eq!(users["callbridge"].traffic.to_peer_packets, 1);
        assert_eq!(s.events_dropped, 3);
    }
}
