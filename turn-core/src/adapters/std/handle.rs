//! A running relay: [`Relay`], the handle [`RelayBuilder::start`](super::RelayBuilder::start)
//! returns (addresses, stats, events, stop), and the two parts of it other
//! threads may hold: [`StatsHandle`] and [`Stopper`].

use crate::adapters::std::prelude::*;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::Waker;

use super::builder::{RelayBuilder, Settings};
use super::capacity::Capacity;
use super::error::StartError;
use super::events::RelayEvent;
use super::shared::Shared;
use super::stats::{self, Stats, WorkerSnapshot};

/// How long workers keep listing their allocations after
/// [`StatsHandle::stats`] was last called.
pub const LISTING_KEPT: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest [`StatsHandle::stats`] waits for workers that were not listing
/// their allocations (a worker lists them at its next pass, woken for it).
pub const LISTING_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Tries `f` every millisecond until it holds or `limit` passes.
fn poll_until(limit: std::time::Duration, f: impl Fn() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A running relay. Dropping it stops it (and waits for its threads).
pub struct Relay {
    pub(crate) local: Vec<SocketAddr>,
    pub(crate) tls_local: Vec<SocketAddr>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: Stopper,
    pub(crate) workers: Vec<JoinHandle<()>>,
    pub(crate) events: Mutex<Option<Receiver<RelayEvent>>>,
    pub(crate) threads: usize,
    pub(crate) capacity: Option<Capacity>,
    /// The settings it runs with (a reload compares and replaces them).
    pub(crate) settings: Mutex<Settings>,
    /// What the TLS listeners serve, when there are any.
    #[cfg(feature = "tls")]
    pub(crate) front: Option<Arc<std::sync::RwLock<super::front::Front>>>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("local", &self.local)
            .field("tls_local", &self.tls_local)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// Reads a relay's stats and probes from another thread (an admin or metrics
/// endpoint); see [`Relay::stats_handle`].
#[derive(Clone)]
pub struct StatsHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsHandle").finish_non_exhaustive()
    }
}

impl StatsHandle {
    /// Whether the relay takes new allocations: not draining.
    pub fn is_ready(&self) -> bool {
        self.shared.drain_until_ms.load(Ordering::Acquire) == 0
    }

    /// Whether every worker went round its loop within the last 3 seconds (a
    /// worker wakes at least once a second).
    pub fn is_healthy(&self) -> bool {
        let now = self.shared.clock.now().as_millis();
        self.shared
            .heartbeats
            .iter()
            .all(|b| now.saturating_sub(b.load(Ordering::Relaxed)) < 3000)
    }

    /// The latest stats of every worker with every allocation (at most a
    /// second old; after the relay stopped, the last ones).
    ///
    /// Workers list their allocations only while someone reads them: for
    /// [`LISTING_KEPT`] after the last call. A call after a longer quiet wakes
    /// them and waits for their lists (one pass of their loops), so a relay
    /// nobody inspects spends neither memory nor time on copies of its
    /// allocations. [`StatsHandle::summary`] reads the counters alone.
    pub fn stats(&self) -> Stats {
        self.list_allocations();
        self.collect(true)
    }

    /// The latest stats of every worker without the allocations (at most a
    /// second old): the counters, what each worker holds, the totals; cheap
    /// at any number of allocations.
    pub fn summary(&self) -> Stats {
        self.collect(false)
    }

    /// Asks the workers to list their allocations for a while, and when they
    /// were not, waits until they have (or [`LISTING_WAIT`] passed).
    fn list_allocations(&self) {
        let now = self.shared.clock.now().as_millis();
        let kept = LISTING_KEPT.as_millis() as u64;
        self.shared
            .listing_until_ms
            .store(now.saturating_add(kept), Ordering::Release);
        let listed = || {
            let s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.iter().all(WorkerSnapshot::lists)
        };
        if listed() {
            return;
        }
        for m in &self.shared.handoffs {
            m.wake();
        }
        let _ = poll_until(LISTING_WAIT, listed);
    }

    /// The snapshots as one [`Stats`], with their allocations or without.
    fn collect(&self, allocations: bool) -> Stats {
        let snapshots = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg_attr(not(any(feature = "xdp", feature = "tls")), allow(unused_mut))]
        let mut stats = stats::collect(
            &snapshots,
            allocations,
            self.shared.quota.total(),
            self.shared.events.dropped(),
        );
        drop(snapshots);
        #[cfg(feature = "tls")]
        {
            let r = &self.shared.tls_refusals;
            stats.tls_refused = super::TlsRefused {
                queue_full: r.queue_full.load(Ordering::Relaxed),
                over_rate: r.over_rate.load(Ordering::Relaxed),
                late: r.late.load(Ordering::Relaxed),
            };
        }
        #[cfg(feature = "xdp")]
        if let Some(e) = &self.shared.fast_error {
            stats.kernel = Some(super::KernelStats {
                error: Some(e.clone()),
                ..Default::default()
            });
        }
        // Read from the fast path's own handles: never the lock the workers take
        // to install routes.
        #[cfg(feature = "xdp")]
        if let Some(kernel) = &self.shared.kernel {
            stats.kernel = Some(kernel.stats());
            // Each allocation's traffic, with what the kernel relayed for it.
            let per_client = kernel.per_client();
            for a in &mut stats.allocations {
                if let Some(c) = per_client.get(&(a.tuple.client, a.tuple.server)) {
                    a.traffic.to_peer_packets += c[0];
                    a.traffic.to_peer_bytes += c[1];
                    a.traffic.from_peer_packets += c[2];
                    a.traffic.from_peer_bytes += c[3];
                }
            }
        }
        stats
    }
}

/// Stops a relay from another thread (a signal handler's, a control task's).
#[derive(Clone)]
pub struct Stopper {
    pub(crate) flag: Arc<AtomicBool>,
    pub(crate) wakers: Vec<Arc<Waker>>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<super::front::Handshakes>,
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.flag.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Stopper {
    /// Wakes every thread (to take a reload or a drain now, not at its next tick).
    pub(crate) fn wake_all(&self) {
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// Tells every thread of the relay to stop (they finish the batch in hand).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
        #[cfg(feature = "tls")]
        if let Some(h) = &self.tls {
            h.wake();
        }
    }
}

impl Relay {
    /// The UDP and TCP listeners' addresses, as bound (a port 0 asked for is the
    /// port the system gave).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The TLS listeners' addresses, as bound.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_local
    }

    /// Worker threads running.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Allocations allowed in all.
    pub fn quota_total(&self) -> usize {
        self.shared.quota.total()
    }

    /// What bounded the total of allocations, when it was measured (it was not
    /// set).
    pub fn capacity(&self) -> Option<&Capacity> {
        self.capacity.as_ref()
    }

    /// The latest stats of every worker with every allocation (see
    /// [`StatsHandle::stats`]).
    pub fn stats(&self) -> Stats {
        self.stats_handle().stats()
    }

    /// The latest stats of every worker without the allocations (see
    /// [`StatsHandle::summary`]).
    pub fn summary(&self) -> Stats {
        self.stats_handle().summary()
    }

    /// A handle that reads the stats from another thread (an admin or metrics
    /// endpoint), without holding the relay.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            shared: self.shared.clone(),
        }
    }

    /// The receiving end of the event queue, the first time it is asked for
    /// (`None` after, or when the queue was turned off with a size of 0).
    pub fn take_events(&self) -> Option<Receiver<RelayEvent>> {
        let rx = self.events.lock().unwrap_or_else(|e| e.into_inner()).take();
        if rx.is_some() {
            self.shared.events.taken.store(true, Ordering::Relaxed);
        }
        rx
    }

    /// Detaches the kernel fast path from every interface (to compare, or to rule
    /// it out while troubleshooting): userspace relays everything from then on.
    /// Nothing happens without one.
    #[cfg(feature = "xdp")]
    pub fn detach_fast_path(&self) {
        if let Some(fast) = &self.shared.fast {
            fast.lock().unwrap_or_else(|e| e.into_inner()).detach();
        }
    }

    #[cfg(feature = "xdp")]
    /// Attaches the kernel fast path again after a detach (a hand-over that
    /// failed after this relay let its program go).
    pub(crate) fn reattach_fast_path(&self) {
        let xdp = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .xdp
            .clone();
        if let Some(fast) = &self.shared.fast
            && let Err(e) = fast.lock().unwrap_or_else(|e| e.into_inner()).attach(&xdp)
        {
            log::warn!("kernel fast path off after a failed hand-over: {e}");
        }
    }

    /// Takes new settings, credentials and (with `tls`) TLS configuration and
    /// HTTP hook from `builder`, without a restart: allocations, permissions,
    /// channels and open connections live on. What changes applies from the next
    /// request (or connection): secrets and users, the peer policy, lifetimes,
    /// budgets, quotas, TCP limits, the alternate server, the certificate, the
    /// HTTP hook. Listeners, relay addresses and ports, worker
    /// threads and the kernel fast path stay as started: changing them is
    /// refused, naming the field. A refused reload changes nothing.
    pub fn reload(&self, builder: RelayBuilder) -> Result<(), StartError> {
        let mut parts = builder.into_parts()?;
        let own = super::check::check(&mut parts)?;
        let mut running = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        let new = &parts.settings;
        // The running listeners are as bound: a port 0 asked for again is theirs.
        let same = |bound: &[SocketAddr], asked: &[SocketAddr]| {
            bound.len() == asked.len()
                && bound
                    .iter()
                    .zip(asked)
                    .all(|(b, a)| b.ip() == a.ip() && (a.port() == 0 || a.port() == b.port()))
        };
        let fixed = [
            ("listen", !same(&running.listen, &new.listen)),
            ("tls_listen", !same(&running.tls_listen, &new.tls_listen)),
            ("threads", running.threads != new.threads),
            (
                "tcp.tls_threads",
                running.tcp.tls_threads != new.tcp.tls_threads,
            ),
            ("turn.relay_v4", running.turn.relay_v4 != new.turn.relay_v4),
            ("turn.relay_v6", running.turn.relay_v6 != new.turn.relay_v6),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, changed)| *changed) {
            return Err(StartError::Settings {
                field,
                problem: "cannot change while running: restart to change it".into(),
            });
        }
        #[cfg(feature = "xdp")]
        if running.xdp != new.xdp {
            return Err(StartError::Settings {
                field: "xdp",
                problem: "cannot change while running: restart to change it".into(),
            });
        }
        #[cfg(feature = "tls")]
        if let Some(front) = &self.front {
            let mut f = front.write().unwrap_or_else(|e| e.into_inner());
            if let Some(tls) = &parts.front.tls {
                f.tls = tls.clone();
            }
            f.on_http = parts.front.on_http.clone();
        }
        let shared = &self.shared;
        *shared
            .credentials
            .write()
            .unwrap_or_else(|e| e.into_inner()) = parts.credentials;
        *shared.tcp.write().unwrap_or_else(|e| e.into_inner()) = new.tcp;
        shared
            .sources
            .set_limits(new.tcp.max_per_source, new.tcp.ipv6_source_prefix);
        #[cfg(feature = "tls")]
        shared
            .tls_rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_rates(
                new.tcp.tls_handshake_burst,
                new.tcp.tls_handshakes_per_sec,
                u32::MAX / 1000,
                new.tcp.tls_handshakes_per_sec,
            );
        *shared.balancers.write().unwrap_or_else(|e| e.into_inner()) = new.proxy_protocol.clone();
        *shared.own.write().unwrap_or_else(|e| e.into_inner()) = own;
        let total = new.total.unwrap_or_else(|| shared.quota.total());
        shared.quota.set_limits(new.per_user, total);
        let cfg = super::meters::for_shard(&new.turn, shared.heartbeats.len());
        *shared.config.lock().unwrap_or_else(|e| e.into_inner()) = Some(cfg);
        shared.config_generation.fetch_add(1, Ordering::AcqRel);
        let (listen, tls_listen) = (running.listen.clone(), running.tls_listen.clone());
        *running = parts.settings;
        running.listen = listen;
        running.tls_listen = tls_listen;
        self.stop.wake_all();
        Ok(())
    }

    /// Drains the relay: no new allocations from now on (300 to the alternate
    /// server, or 508), no allocation refreshed past `within` from now; what exists
    /// relays on. Stop the relay when [`Relay::drained`] says so, or at the
    /// deadline. An HTTP server behind [`RelayBuilder::on_http`] is the
    /// embedder's to drain.
    pub fn drain(&self, within: std::time::Duration) {
        let until = self
            .shared
            .clock
            .now()
            .plus_millis(u64::try_from(within.as_millis()).unwrap_or(u64::MAX));
        // 0 means "not draining": a drain at the clock's first millisecond ends
        // one millisecond later.
        let ms = until.as_millis().max(1);
        let first = self
            .shared
            .drain_until_ms
            .compare_exchange(0, ms, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.shared
                .drain_started_ms
                .store(self.shared.clock.now().as_millis(), Ordering::Release);
        }
        self.stop.wake_all();
    }

    /// Whether it is draining.
    pub fn is_draining(&self) -> bool {
        self.shared.drain_until_ms.load(Ordering::Acquire) != 0
    }

    /// Whether a drain is over: its deadline passed, or no allocation is left
    /// (as the stats say, which are at most a second old: so not before the
    /// drain is two seconds old).
    pub fn drained(&self) -> bool {
        let until = self.shared.drain_until_ms.load(Ordering::Acquire);
        let started = self.shared.drain_started_ms.load(Ordering::Acquire);
        let now = self.shared.clock.now().as_millis();
        until != 0 && (now >= until || (now >= started + 2000 && self.summary().in_use() == 0))
    }

    /// Whether it takes new allocations (for a readiness probe): not draining.
    pub fn is_ready(&self) -> bool {
        self.stats_handle().is_ready()
    }

    /// Whether every worker went round its loop within the last 3 seconds (for a
    /// liveness probe; a worker wakes at least once a second).
    pub fn is_healthy(&self) -> bool {
        self.stats_handle().is_healthy()
    }

    /// A handle that stops the relay from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Tells the relay to stop; [`Relay::join`] then returns.
    pub fn shutdown(&self) {
        self.stop.stop();
    }

    /// Waits until the relay stops (after [`Relay::shutdown`] or a
    /// [`Stopper`]).
    pub fn join(mut self) {
        self.wait();
    }

    fn wait(&mut self) {
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.stop();
        self.wait();
    }
}
