//! What the event loops read: one proxy's configuration (a reload builds
//! another), and the counters every configuration of a runtime shares.

use crate::runtime::prelude::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::allow::Rule;
use crate::route::Site;
use crate::timer::Deadlines;

use super::{MAX_SITES, Upstream, dns, side};

/// Configurations, told apart (the pool keeps connections per configuration).
pub(crate) static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// What the event loops read: everything a connection is served with.
pub(crate) struct Config {
    /// Join URL hosts, each with its web bridge's index in `upstreams`.
    pub(crate) hosts: Vec<(String, usize)>,
    pub(crate) upstreams: Vec<Upstream>,
    pub(crate) rules: Vec<Rule>,
    /// The port browsers reach; `None`: each connection's own.
    pub(crate) port: Option<u16>,
    pub(crate) client_tls: Arc<rustls::ClientConfig>,
    pub(crate) deadlines: Deadlines,
    pub(crate) send_stall: Duration,
    pub(crate) upstream_timeout: Duration,
    pub(crate) pool_per_bridge: usize,
    pub(crate) pool_idle: Duration,
    pub(crate) resolver: Arc<dns::Resolver>,
    pub(crate) counters: Arc<Counters>,
    /// What every queue draws on (the runtime's).
    pub(crate) budget: Arc<side::Budget>,
    /// Which configuration this is.
    pub(crate) generation: u64,
    /// Draining: each new connection's first request gets 503.
    pub(crate) draining: AtomicBool,
}

impl Config {
    /// The join URLs, as proxy-core's routing takes them.
    pub(crate) fn sites(&self) -> heapless::Vec<Site<'_>, MAX_SITES> {
        self.hosts
            .iter()
            .map(|(host, upstream)| Site {
                host,
                upstream: *upstream,
            })
            .take(MAX_SITES)
            .collect()
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Counted by the loops.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tunnels: AtomicUsize,
    pub(crate) tunnels_opened: AtomicU64,
    pub(crate) dialled: AtomicU64,
    pub(crate) reused: AtomicU64,
    pub(crate) retried: AtomicU64,
}

impl Counters {
    pub(crate) fn tunnel_opened(&self) {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        self.tunnels_opened.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn tunnel_closed(&self) {
        self.tunnels.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn dialled(&self) {
        self.dialled.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reused(&self) {
        self.reused.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// What they count now: (tunnels open, opened, bridge connections dialled,
    /// reused, retried).
    pub(crate) fn read(&self) -> (usize, u64, u64, u64, u64) {
        (
            self.tunnels.load(Ordering::Relaxed),
            self.tunnels_opened.load(Ordering::Relaxed),
            self.dialled.load(Ordering::Relaxed),
            self.reused.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
        )
    }
}
