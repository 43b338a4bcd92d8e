//! What the workers share: the credential store, quotas, the relay sockets
//! bound anywhere, EVEN-PORT reservations, connections per source, the clock,
//! the stats each worker publishes, and the event queue.

use crate::adapters::std::prelude::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};

use crate::Instant;
use crate::server::{Config, QuotaError};

use super::builder::TcpLimits;
use super::clock::Clock;
use super::credentials::Credentials;
use super::events::RelayEvent;
use super::sources::Sources;
use super::stats::WorkerSnapshot;

pub(crate) use super::handoff::{HANDOFF_MAX, Handed, Mailbox};

/// Read-mostly state shared by all workers.
pub(crate) struct Shared {
    pub(crate) tcp: RwLock<TcpLimits>,
    pub(crate) credentials: RwLock<Arc<dyn Credentials>>,
    /// A new TURN configuration for the shards, and its number: each worker
    /// takes it when the number moves past the one it applied.
    pub(crate) config: Mutex<Option<Config>>,
    pub(crate) config_generation: AtomicU64,
    /// When the drain ends, on the relay clock (milliseconds; 0: not draining).
    pub(crate) drain_until_ms: AtomicU64,
    /// When the drain began, on the relay clock (milliseconds).
    pub(crate) drain_started_ms: AtomicU64,
    /// Each worker's last pass of its loop, on the relay clock (milliseconds).
    pub(crate) heartbeats: Vec<AtomicU64>,
    /// Relay sockets bound right now, on any worker.
    pub(crate) live: LiveRelays,
    /// Stream connections per source address.
    pub(crate) sources: Arc<Sources>,
    /// Load balancers whose connections start with a PROXY header.
    pub(crate) balancers: RwLock<Vec<crate::server::policy::Cidr>>,
    /// Every own address (the policy holds only the first few).
    pub(crate) own: RwLock<super::check::OwnAddresses>,
    pub(crate) quota: Quota,
    /// Per-user bandwidth buckets.
    pub(crate) meters: super::meters::UserMeters,
    pub(crate) reservations: Reservations,
    pub(crate) clock: Clock,
    /// The latest snapshot of each worker.
    pub(crate) stats: Mutex<Vec<WorkerSnapshot>>,
    /// Until when (clock ms) the workers list their allocations in their
    /// snapshots: a while after someone last read them.
    pub(crate) listing_until_ms: AtomicU64,
    pub(crate) events: EventQueue,
    /// Each worker's relay-to-relay inbox.
    pub(crate) handoffs: Vec<Mailbox>,
    /// Each worker's queue of connections whose ConnectionBind its shard
    /// answers.
    pub(crate) transfers: Vec<super::tcp_relay::Transfers>,
    /// The steps of a hand-over to another process.
    pub(crate) handover: super::upgrade::control::Control,
    /// TLS handshakes per source, over the TLS threads.
    #[cfg(feature = "tls")]
    pub(crate) tls_rate: Arc<Mutex<crate::server::RateLimiter>>,
    /// What the TLS threads refused.
    #[cfg(feature = "tls")]
    pub(crate) tls_refusals: Arc<super::front::Refusals>,
    /// The kernel fast path, when it is on.
    #[cfg(feature = "xdp")]
    pub(crate) fast: Option<Mutex<super::xdp::FastPath>>,
    /// The fast path as the stats read it.
    #[cfg(feature = "xdp")]
    pub(crate) kernel: Option<Arc<super::xdp::KernelView>>,
    /// Why the fast path asked for did not start.
    #[cfg(feature = "xdp")]
    pub(crate) fast_error: Option<String>,
}

impl Shared {
    pub(crate) fn new(
        tcp: TcpLimits,
        credentials: Arc<dyn Credentials>,
        quota: Quota,
        threads: usize,
        events: Option<SyncSender<RelayEvent>>,
        rate_seed: u64,
    ) -> Shared {
        #[cfg(not(feature = "tls"))]
        let _ = rate_seed;
        Shared {
            tcp: RwLock::new(tcp),
            credentials: RwLock::new(credentials),
            config: Mutex::new(None),
            config_generation: AtomicU64::new(0),
            drain_until_ms: AtomicU64::new(0),
            drain_started_ms: AtomicU64::new(0),
            heartbeats: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            live: LiveRelays::default(),
            sources: Sources::new(tcp.max_per_source, tcp.ipv6_source_prefix),
            balancers: RwLock::new(Vec::new()),
            own: RwLock::default(),
            quota,
            meters: Default::default(),
            reservations: Reservations::default(),
            clock: Clock::new(),
            stats: Mutex::new((0..threads).map(WorkerSnapshot::empty).collect()),
            listing_until_ms: AtomicU64::new(0),
            events: EventQueue {
                tx: events,
                dropped: AtomicU64::new(0),
                taken: std::sync::atomic::AtomicBool::new(false),
            },
            handoffs: (0..threads).map(|_| Mailbox::new()).collect(),
            transfers: (0..threads).map(|_| Default::default()).collect(),
            handover: super::upgrade::control::Control::new(threads),
            #[cfg(feature = "tls")]
            tls_rate: Arc::new(Mutex::new(tls_rate(&tcp, rate_seed))),
            #[cfg(feature = "tls")]
            tls_refusals: Arc::default(),
            #[cfg(feature = "xdp")]
            fast: None,
            #[cfg(feature = "xdp")]
            kernel: None,
            #[cfg(feature = "xdp")]
            fast_error: None,
        }
    }
}

/// The per-source handshake budget of `tcp` (no total budget: the per-source
/// one is what a replayed ClientHello cannot pass).
#[cfg(feature = "tls")]
pub(crate) fn tls_rate(tcp: &TcpLimits, seed: u64) -> crate::server::RateLimiter {
    let (burst, rate) = (tcp.tls_handshake_burst, tcp.tls_handshakes_per_sec);
    crate::server::RateLimiter::new(burst, rate, u32::MAX / 1000, rate, seed)
}

/// The bounded queue of [`RelayEvent`]s: a full queue drops the event (and
/// counts it) rather than ever blocking a worker.
pub(crate) struct EventQueue {
    tx: Option<SyncSender<RelayEvent>>,
    dropped: AtomicU64,
    /// Whether the embedder took the receiving end (only then is waiting for
    /// room worth it).
    pub(crate) taken: std::sync::atomic::AtomicBool,
}

impl EventQueue {
    /// Whether anyone may read events (else they are not built at all).
    pub(crate) fn wanted(&self) -> bool {
        self.tx.is_some()
    }

    pub(crate) fn push(&self, e: RelayEvent) {
        self.push_until(e, std::time::Instant::now());
    }

    /// Pushes `e`, waiting until `until` for room if someone reads the queue:
    /// only where no packet waits on it (a stop ending every allocation at
    /// once, each with its usage record, may fill the queue faster than its
    /// reader empties it).
    pub(crate) fn push_until(&self, mut e: RelayEvent, until: std::time::Instant) {
        let Some(tx) = &self.tx else {
            return;
        };
        let patient = self.taken.load(Ordering::Relaxed);
        loop {
            match tx.try_send(e) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) if patient && std::time::Instant::now() < until => {
                    e = back;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Events dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Which relay ports are bound right now, per family, and by which worker: one
/// atomic load answers the core's relay-to-relay check on the packet path, and
/// tells which worker to hand a relay-to-relay datagram to. Relay sockets bind
/// to one address per family, so the family and the port name them.
pub(crate) struct LiveRelays {
    /// 0: not bound; w + 1: bound by worker w.
    owners: [Box<[AtomicU8]>; 2],
}

impl Default for LiveRelays {
    fn default() -> Self {
        let ports = || (0..=u16::MAX).map(|_| AtomicU8::new(0)).collect();
        LiveRelays {
            owners: [ports(), ports()],
        }
    }
}

impl LiveRelays {
    fn entry(&self, a: SocketAddr) -> Option<&AtomicU8> {
        self.owners
            .get(usize::from(a.is_ipv6()))?
            .get(usize::from(a.port()))
    }

    /// Marks `a` bound by `worker`, or not bound.
    pub(crate) fn set(&self, a: SocketAddr, worker: Option<usize>) {
        if let Some(e) = self.entry(a) {
            let v = worker.map_or(0, |w| u8::try_from(w + 1).unwrap_or(u8::MAX));
            e.store(v, Ordering::Release);
        }
    }

    /// Whether `a` is bound.
    pub(crate) fn contains(&self, a: SocketAddr) -> bool {
        self.owner(a).is_some()
    }

    /// The worker that bound `a`.
    pub(crate) fn owner(&self, a: SocketAddr) -> Option<usize> {
        match self.entry(a)?.load(Ordering::Acquire) {
            0 => None,
            v => Some(usize::from(v) - 1),
        }
    }
}

/// Allocations counted per user and in total, across workers. Touched only when
/// allocations are created or end, never per packet. With no per-user limit (the
/// default: a meeting's browsers share one TURN user), users are not counted.
pub(crate) struct Quota {
    limits: Mutex<(Option<usize>, usize)>,
    counts: Mutex<(usize, HashMap<String, usize>)>,
}

impl Quota {
    /// The total allocations allowed.
    pub(crate) fn total(&self) -> usize {
        self.limits.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    pub(crate) fn new(per_user: Option<usize>, total: usize) -> Quota {
        Quota {
            limits: Mutex::new((per_user, total)),
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    /// New limits: allocations over them stay, new ones wait for room.
    pub(crate) fn set_limits(&self, per_user: Option<usize>, total: usize) {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner()) = (per_user, total);
    }

    pub(crate) fn acquire(&self, user: &str) -> Result<(), QuotaError> {
        let (per_user, max) = *self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let mut g = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *g;
        if *total >= max {
            return Err(QuotaError::Total);
        }
        if let Some(limit) = per_user {
            let n = users.entry(user.to_string()).or_default();
            if *n >= limit {
                return Err(QuotaError::User);
            }
            *n += 1;
        }
        *total += 1;
        Ok(())
    }

    pub(crate) fn release(&self, user: &str) {
        let mut g = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *g;
        // Users were counted when a per-user limit was set; a reload may have
        // lifted it since, so release what was counted either way.
        if let Some(n) = users.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                users.remove(user);
            }
        }
        *total = total.saturating_sub(1);
    }
}

/// Most ports held for EVEN-PORT reservations at once, server-wide: EVEN-PORT
/// cannot drain the relay port pool. Past it, the reservation closest to expiry
/// makes room.
const MAX_RESERVATIONS: usize = 256;

/// Ports held for EVEN-PORT reservations, claimable from any worker (the RTCP
/// allocation that claims one may arrive on another core than the RTP one).
#[derive(Default)]
pub(crate) struct Reservations {
    held: Mutex<HashMap<[u8; 8], (std::net::UdpSocket, std::net::SocketAddr, Instant)>>,
}

impl Reservations {
    pub(crate) fn hold(
        &self,
        token: [u8; 8],
        sock: std::net::UdpSocket,
        local: std::net::SocketAddr,
        expires: Instant,
    ) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= MAX_RESERVATIONS
            && let Some(oldest) = held.iter().min_by_key(|(_, (_, _, e))| *e).map(|(t, _)| *t)
        {
            held.remove(&oldest);
        }
        held.insert(token, (sock, local, expires));
    }

    pub(crate) fn take(
        &self,
        token: &[u8; 8],
        now: Instant,
    ) -> Option<(std::net::UdpSocket, std::net::SocketAddr)> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (sock, local, expires) = held.remove(token)?;
        (now < expires).then_some((sock, local))
    }

    pub(crate) fn expire(&self, now: Instant) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, (_, _, e)| now < *e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_per_user_and_total() {
        let q = Quota::new(Some(2), 3);
        assert!(q.acquire("a").is_ok());
        assert!(q.acquire("a").is_ok());
        assert_eq!(q.acquire("a"), Err(QuotaError::User));
        assert!(q.acquire("b").is_ok());
        assert_eq!(q.acquire("c"), Err(QuotaError::Total));
        q.release("a");
        assert!(q.acquire("c").is_ok());
    }

    #[test]
    fn without_a_per_user_limit_one_user_takes_the_whole_total() {
        let q = Quota::new(None, 1000);
        for _ in 0..1000 {
            q.acquire("meeting").unwrap();
        }
        assert_eq!(q.acquire("meeting"), Err(QuotaError::Total));
        q.release("meeting");
        assert!(q.acquire("other").is_ok());
    }

    #[test]
    fn live_relays_by_family_and_port_with_their_owner() {
        let l = LiveRelays::default();
        let v4: SocketAddr = "10.0.0.5:24001".parse().unwrap();
        let v6: SocketAddr = "[fd00::5]:24001".parse().unwrap();
        l.set(v4, Some(1));
        assert!(l.contains(v4));
        assert_eq!(l.owner(v4), Some(1));
        assert!(!l.contains(v6));
        assert!(!l.contains("10.0.0.5:24002".parse().unwrap()));
        l.set("10.0.0.5:65535".parse().unwrap(), Some(0));
        l.set(v4, None);
        assert!(!l.contains(v4));
        assert_eq!(l.owner("10.0.0.5:65535".parse().unwrap()), Some(0));
    }
}
