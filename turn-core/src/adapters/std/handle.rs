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

use super::capacity::Capacity;
use super::events::RelayEvent;
use super::shared::Shared;
use super::stats::{self, Stats};

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

/// Reads a relay's stats from another thread; see [`Relay::stats_handle`].
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
    /// The latest stats of every worker (at most a second old; after the relay
    /// stopped, the last ones).
    pub fn stats(&self) -> Stats {
        let snapshots = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg_attr(not(feature = "xdp"), allow(unused_mut))]
        let mut stats = stats::collect(
            &snapshots,
            self.shared.quota.total(),
            self.shared.events.dropped(),
        );
        drop(snapshots);
        #[cfg(feature = "xdp")]
        if let Some(e) = &self.shared.fast_error {
            stats.kernel = Some(super::KernelStats {
                error: Some(e.clone()),
                ..Default::default()
            });
        }
        #[cfg(feature = "xdp")]
        if let Some(fast) = &self.shared.fast {
            let fast = fast.lock().unwrap_or_else(|e| e.into_inner());
            stats.kernel = Some(fast.stats());
            // Each allocation's traffic, with what the kernel relayed for it.
            let per_client = fast.per_client();
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
    pub(crate) tls: Option<super::handshake::Handshakes>,
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.flag.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Stopper {
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

    /// The latest stats of every worker (at most a second old).
    pub fn stats(&self) -> Stats {
        self.stats_handle().stats()
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
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
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
