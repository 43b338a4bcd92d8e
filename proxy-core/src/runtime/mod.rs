//! The web proxy on std (feature `tls`): HTTPS and WSS from browsers to the web
//! bridges behind it, deciding with this crate's sans-IO functions and doing the
//! I/O and TLS (rustls) here.
//!
//! Connections come from a TLS listener of the proxy's own
//! ([`Proxy::serve_tls`]), or from a front that owns the port and hands over
//! every connection whose opening is HTTP ([`Proxy::hand_off`]: turn-core's std
//! relay, sharing port 443 with TURN, wired through its `on_http` hook). A few
//! event loops (one per core by default) serve
//! them all, each connection a state machine: requests read and judged one after
//! another, each answered exactly once (refused, redirected, or forwarded with its
//! body streamed both ways through bounded queues), and after a valid 101 the
//! WebSocket relayed until either side closes. Web bridges are dialled without
//! blocking a loop, and their connections are kept for the next request (a pool
//! per loop and web bridge). Connections are limited in total and per source
//! address ([`ProxyBuilder::max_connections`], [`ProxyBuilder::max_per_source`]);
//! refusals are counted ([`Proxy::stats`]) and logged once per ten seconds.
//!
//! Memory: an idle WebSocket tunnel holds its two TLS sessions, two sockets and
//! the connection's state, with no buffer kept beyond what rustls keeps; queues
//! are allocated while bytes wait and freed once drained.
//! [`Proxy::serve_redirect`] answers plain HTTP on port 80 with redirects to https.
//!
//! ```no_run
//! use proxy_core::runtime::{Proxy, Upstream, tls};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let proxy = Proxy::builder()
//!     .site("join.example.com", Upstream::parse("https://webbridge.internal:443")?)
//!     .upstream_tls(tls::client_config(Some("internal-ca.pem".as_ref()))?)
//!     .build()?;
//! // Give it the HTTP connections of a TLS listener (turn-core's relay does).
//! # let _ = proxy;
//! # Ok(())
//! # }
//! ```

use prelude::*;
mod accepting;
mod admission;
mod builder;
mod config;
mod conn;
mod dns;
mod engine;
mod link;
mod listener;
mod pool;
mod prelude;
mod settings;
mod side;
pub mod tls;
pub mod traversal;
mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use admission::Admission;
use config::{Config, Counters};
use engine::{Engine, Handoff};

pub use accepting::Accepting;
pub use builder::{ProxyBuilder, ProxyError};
pub use link::Link;
pub use settings::ProxySettings;
pub use upstream::{ConnectError, Upstream, UpstreamError};

/// Most join URLs one proxy serves.
pub const MAX_SITES: usize = 64;

/// The web proxy: join URLs and their web bridges, the allow list, timers, and
/// the event loops serving its connections.
pub struct Proxy {
    cfg: Arc<Config>,
    runtime: Arc<Runtime>,
    /// Its connection limits: total, per source, and an IPv6 source's prefix.
    limits: (usize, usize, u8),
    /// What its queues may hold in all.
    budget_bytes: usize,
}

/// What a reload's proxy takes over from the one it replaces: the loops, the
/// connection count and limits, the resolver, the counters, and which
/// configuration port 80's redirects follow.
struct Runtime {
    admission: Arc<Admission>,
    engine: Engine,
    resolver: Arc<dns::Resolver>,
    counters: Arc<Counters>,
    budget: Arc<side::Budget>,
    /// The configuration of the proxy that took over last.
    current: std::sync::RwLock<Arc<Config>>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

/// What the proxy has done, for metrics ([`Proxy::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Browser connections served now (WebSocket tunnels included).
    pub connections: usize,
    /// WebSocket tunnels open now.
    pub tunnels: usize,
    /// WebSocket tunnels opened so far.
    pub tunnels_opened: u64,
    /// Connections refused because `max_connections` were open.
    pub refused_at_limit: u64,
    /// Connections refused because `max_per_source` were open from their address.
    pub refused_per_source: u64,
    /// Connections made to web bridges.
    pub bridge_connections: u64,
    /// Requests sent on a kept-alive web bridge connection instead of a new one.
    pub bridge_reuses: u64,
    /// Requests sent again on a new connection after a kept-alive one failed
    /// before answering (GET, HEAD and OPTIONS without a body only).
    pub bridge_retries: u64,
    /// Bytes held for browsers and web bridges now, over all connections: in
    /// the queues and in the TLS sessions (records not yet sent, plaintext not
    /// yet read).
    pub queued_bytes: usize,
    /// What they may hold together ([`ProxyBuilder::memory_budget`]).
    pub memory_budget: usize,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("hosts", &self.cfg.hosts)
            .field("upstreams", &self.cfg.upstreams)
            .field("port", &self.cfg.port)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// The join URL hosts, in the order given.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.cfg.hosts.iter().map(|(h, _)| h.as_str())
    }

    /// Takes over a connection whose opening is HTTP: `link` (with its TLS
    /// session, if any), the plaintext already read, and the SNI the handshake
    /// negotiated. One of the event loops serves it; past a connection limit it
    /// is closed at once (counted, and logged with the others refused in the
    /// same ten seconds).
    pub fn hand_off(&self, link: Link, buffered: Vec<u8>, sni: Option<String>, peer: SocketAddr) {
        let Ok(ticket) = self.runtime.admission.admit(peer.ip(), Instant::now()) else {
            return;
        };
        self.runtime.engine.hand_off(Handoff {
            cfg: self.cfg.clone(),
            link,
            buffered,
            sni,
            peer,
            ticket,
        });
    }

    /// Drains the proxy: connections it serves go on (WebSocket tunnels included);
    /// a new connection's first request gets 503 and the connection closes.
    pub fn drain(&self) {
        self.cfg.draining.store(true, Ordering::SeqCst);
    }

    /// Whether it is draining.
    pub fn is_draining(&self) -> bool {
        self.cfg.is_draining()
    }

    /// Connections it serves now (WebSocket tunnels included).
    pub fn connections(&self) -> usize {
        self.runtime.admission.open()
    }

    /// Event loops serving its connections.
    pub fn loops(&self) -> usize {
        self.runtime.engine.len()
    }

    /// What it has done so far.
    pub fn stats(&self) -> ProxyStats {
        let (tunnels, tunnels_opened, dialled, reused, retried) = self.runtime.counters.read();
        let (refused_at_limit, refused_per_source) = self.runtime.admission.refusals();
        ProxyStats {
            connections: self.runtime.admission.open(),
            tunnels,
            tunnels_opened,
            refused_at_limit,
            refused_per_source,
            bridge_connections: dialled,
            bridge_reuses: reused,
            bridge_retries: retried,
            queued_bytes: self.runtime.budget.used(),
            memory_budget: self.runtime.budget.limit(),
        }
    }

    /// Answers plain HTTP on `listener` with 301 redirects to https at a
    /// configured join URL, until the process ends (run it on its own thread).
    /// The redirects follow the proxy that [took over](Proxy::take_over) last.
    pub fn serve_redirect(&self, listener: std::net::TcpListener) {
        listener::serve(self, listener.incoming(), None);
    }

    /// [`serve_redirect`](Self::serve_redirect) until `connections` ends (an
    /// [`Accepting`] whose flag is set: the listener moved to another
    /// process).
    pub fn serve_redirect_from(&self, connections: Accepting) {
        listener::serve(self, connections, None);
    }

    /// Serves HTTPS on a TLS listener of the proxy's own, until the process
    /// ends (run it on its own thread): for an embedder with no TLS front of
    /// its own (turn-core's relay is one: it hands over what it demultiplexes,
    /// and runs handshakes on threads of its own). Each handshake runs on the
    /// event loops, under the connection limits; the Host must name the
    /// listener's port unless [`ProxyBuilder::port`] says another.
    ///
    /// ```no_run
    /// use std::net::TcpListener;
    /// use proxy_core::runtime::{Proxy, Upstream, tls};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let proxy = Proxy::builder()
    ///     .site("join.example.com", Upstream::parse("https://webbridge.internal:443")?)
    ///     .upstream_tls(tls::client_config(Some("internal-ca.pem".as_ref()))?)
    ///     .build()?;
    /// let front = tls::server_config("front.pem".as_ref(), "front.key".as_ref(), &["join.example.com"])?;
    /// proxy.serve_tls(TcpListener::bind("0.0.0.0:443")?, front);
    /// # Ok(())
    /// # }
    /// ```
    pub fn serve_tls(&self, listener: std::net::TcpListener, tls: Arc<rustls::ServerConfig>) {
        listener::serve(self, listener.incoming(), Some(&tls));
    }

    /// Makes this proxy, built [replacing](ProxyBuilder::replacing) another,
    /// the current one of their shared runtime: its connection limits apply to
    /// every connection from now on, and port 80's redirects follow its join
    /// URLs. Building one changes nothing until this is called, so a reload
    /// refused after the build leaves the running proxy as it was.
    pub fn take_over(&self) {
        let (max, per_source, v6_prefix) = self.limits;
        self.runtime
            .admission
            .set_limits(max, per_source, v6_prefix);
        self.runtime.budget.set_limit(self.budget_bytes);
        *self
            .runtime
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = self.cfg.clone();
    }

    /// Hands a connection to the loops with the configuration of the proxy that
    /// took over last (port 80's redirects).
    fn hand_off_current(&self, link: Link, peer: SocketAddr) {
        let Ok(ticket) = self.runtime.admission.admit(peer.ip(), Instant::now()) else {
            return;
        };
        let cfg = self
            .runtime
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.runtime.engine.hand_off(Handoff {
            cfg,
            link,
            buffered: Vec::new(),
            sni: None,
            peer,
            ticket,
        });
    }
}
