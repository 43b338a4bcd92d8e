//! The web proxy on std (feature `tls`): HTTPS and WSS from browsers to the web
//! bridges behind it, deciding with this crate's sans-IO functions and doing the
//! I/O and TLS (rustls) here.
//!
//! Connections come from whoever owns the TLS listener: turn-core's std relay
//! demultiplexes port 443 and hands every connection whose opening (inside TLS) is
//! HTTP to [`Proxy::hand_off`]. A few event loops (one per core by default) serve
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
mod admission;
mod conn;
mod dns;
mod engine;
mod link;
mod pool;
mod prelude;
mod redirect;
mod side;
pub mod tls;
mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::allow::Rule;
use crate::route::Site;
use crate::timer::Deadlines;

use admission::Admission;
use engine::{Engine, Handoff};

pub use link::Link;
pub use upstream::{ConnectError, Upstream};

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

/// Configurations, told apart (the pool keeps connections per configuration).
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// What the event loops read: everything a connection is served with.
pub(crate) struct Config {
    /// Join URL hosts, each with its web bridge's index in `upstreams`.
    hosts: Vec<(String, usize)>,
    upstreams: Vec<Upstream>,
    rules: Vec<Rule>,
    port: u16,
    client_tls: Arc<rustls::ClientConfig>,
    deadlines: Deadlines,
    send_stall: Duration,
    upstream_timeout: Duration,
    pool_per_bridge: usize,
    pool_idle: Duration,
    resolver: Arc<dns::Resolver>,
    counters: Arc<Counters>,
    /// What every queue draws on (the runtime's).
    budget: Arc<side::Budget>,
    /// Which configuration this is.
    generation: u64,
    /// Draining: each new connection's first request gets 503.
    draining: AtomicBool,
}

/// Counted by the loops.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    tunnels: AtomicUsize,
    tunnels_opened: AtomicU64,
    dialled: AtomicU64,
    reused: AtomicU64,
    retried: AtomicU64,
}

impl Counters {
    fn tunnel_opened(&self) {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        self.tunnels_opened.fetch_add(1, Ordering::Relaxed);
    }
    fn tunnel_closed(&self) {
        self.tunnels.fetch_sub(1, Ordering::Relaxed);
    }
    fn dialled(&self) {
        self.dialled.fetch_add(1, Ordering::Relaxed);
    }
    fn reused(&self) {
        self.reused.fetch_add(1, Ordering::Relaxed);
    }
    fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
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

impl Config {
    /// The join URLs, as proxy-core's routing takes them.
    fn sites(&self) -> heapless::Vec<Site<'_>, MAX_SITES> {
        self.hosts
            .iter()
            .map(|(host, upstream)| Site {
                host,
                upstream: *upstream,
            })
            .take(MAX_SITES)
            .collect()
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
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

/// Why a proxy cannot be built.
#[derive(Debug)]
pub enum ProxyError {
    /// More join URLs than [`MAX_SITES`], or one twice.
    Sites(String),
    /// TLS toward the web bridges cannot be set up.
    Tls(String),
    /// The event loops cannot be started.
    Loops(std::io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Sites(s) | ProxyError::Tls(s) => f.write_str(s),
            ProxyError::Loops(e) => write!(f, "cannot start the web proxy's event loops: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Builds a [`Proxy`].
#[derive(Debug)]
pub struct ProxyBuilder {
    sites: Vec<(String, Upstream)>,
    rules: Vec<Rule>,
    web_bridge_rules: bool,
    port: u16,
    client_tls: Option<Arc<rustls::ClientConfig>>,
    deadlines: Deadlines,
    send_stall: Duration,
    upstream_timeout: Duration,
    max_connections: Option<usize>,
    max_per_source: usize,
    v6_prefix: u8,
    memory_budget: Option<usize>,
    loops: Option<usize>,
    pool_per_bridge: usize,
    pool_idle: Duration,
    replacing: Option<Arc<Runtime>>,
}

impl Proxy {
    /// A builder with the defaults of the reference deployment: port 443, the
    /// web bridge rule for every site (prefix `/`, GET POST PUT HEAD DELETE, https
    /// and wss), proxy-core's timers, one event loop per core, connections up to
    /// what the open-file limit allows, 8192 from one address (an office NAT),
    /// 64 idle connections per web bridge and loop kept 30 s.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder {
            sites: Vec::new(),
            rules: Vec::new(),
            web_bridge_rules: true,
            port: 443,
            client_tls: None,
            deadlines: Deadlines::default(),
            send_stall: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(60),
            max_connections: None,
            max_per_source: 8192,
            v6_prefix: crate::source::DEFAULT_V6_PREFIX,
            memory_budget: None,
            loops: None,
            pool_per_bridge: 64,
            pool_idle: Duration::from_secs(30),
            replacing: None,
        }
    }

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
        let c = &self.runtime.counters;
        let (refused_at_limit, refused_per_source) = self.runtime.admission.refusals();
        ProxyStats {
            connections: self.runtime.admission.open(),
            tunnels: c.tunnels.load(Ordering::Relaxed),
            tunnels_opened: c.tunnels_opened.load(Ordering::Relaxed),
            refused_at_limit,
            refused_per_source,
            bridge_connections: c.dialled.load(Ordering::Relaxed),
            bridge_reuses: c.reused.load(Ordering::Relaxed),
            bridge_retries: c.retried.load(Ordering::Relaxed),
            queued_bytes: self.runtime.budget.used(),
            memory_budget: self.runtime.budget.limit(),
        }
    }

    /// Answers plain HTTP on `listener` with 301 redirects to https at a
    /// configured join URL, until the process ends (run it on its own thread).
    /// The redirects follow the proxy that [took over](Proxy::take_over) last.
    pub fn serve_redirect(&self, listener: std::net::TcpListener) {
        redirect::serve(self, listener);
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

impl ProxyBuilder {
    /// A join URL `host` (for example `join.example.com`) and the web bridge it
    /// maps to.
    pub fn site(mut self, host: &str, upstream: Upstream) -> Self {
        self.sites.push((host.to_ascii_lowercase(), upstream));
        self
    }

    /// An allow-list rule beyond the web bridge rule (port 0 means the proxy's
    /// port).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Whether each web bridge gets the reference's rule (prefix `/`, the five
    /// methods, https and wss); `false` leaves only [`ProxyBuilder::rule`]s.
    pub fn web_bridge_rules(mut self, on: bool) -> Self {
        self.web_bridge_rules = on;
        self
    }

    /// The TLS port browsers use (443).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// TLS toward the web bridges (see [`tls::client_config`]); without it, https
    /// web bridges cannot be reached.
    pub fn upstream_tls(mut self, cfg: Arc<rustls::ClientConfig>) -> Self {
        self.client_tls = Some(cfg);
        self
    }

    /// Read deadlines for clients.
    pub fn deadlines(mut self, d: Deadlines) -> Self {
        self.deadlines = d;
        self
    }

    /// Longest stall of a write to a browser.
    pub fn send_stall(mut self, d: Duration) -> Self {
        self.send_stall = d;
        self
    }

    /// How long a web bridge may take to answer, and to send each piece.
    pub fn upstream_timeout(mut self, d: Duration) -> Self {
        self.upstream_timeout = d;
        self
    }

    /// Most connections served at once (default: half the open-file limit, which
    /// is raised to its hard limit when the proxy is built, less a reserve: each
    /// connection holds a socket to the browser and one to the web bridge).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Most connections served at once from one address (0: no such limit).
    /// Offices put many browsers behind one address: the default is 8192.
    pub fn max_per_source(mut self, n: usize) -> Self {
        self.max_per_source = n;
        self
    }

    /// The prefix length an IPv6 source is counted by for `max_per_source`
    /// (default 64: a subscriber's network, not one of its addresses).
    pub fn ipv6_source_prefix(mut self, bits: u8) -> Self {
        self.v6_prefix = bits.min(128);
        self
    }

    /// What all its connections may hold for their peers together, in bytes:
    /// queues and TLS buffers (default: a sixteenth of the memory the process
    /// may use, its cgroup's limit or the machine's, at least 64 MiB). Past
    /// it, a connection that holds anything for a peer reads its other side no
    /// more, so browsers that stop reading cannot make the proxy grow past it,
    /// however many they are; a connection that holds nothing may still take
    /// a 4 KiB read (and its bridge's TLS session keep the rest of a 16 KiB
    /// record), so traffic that moves keeps moving: the budget is exceeded by
    /// at most 20 KiB per connection that starts a response once it is spent.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// Event loops serving connections (default: one per core).
    pub fn loops(mut self, n: usize) -> Self {
        self.loops = Some(n.max(1));
        self
    }

    /// Idle web bridge connections kept per web bridge and loop (0: none), each
    /// at most `idle`.
    pub fn bridge_pool(mut self, per_bridge: usize, idle: Duration) -> Self {
        self.pool_per_bridge = per_bridge;
        self.pool_idle = idle;
        self
    }

    /// Builds a proxy that takes over from `old` (a reload): it shares its event
    /// loops (their number stays), its resolver, its counters and its connection
    /// count, with this builder's limits once [`Proxy::take_over`] is called.
    /// Connections `old` serves keep its configuration; new ones get this one.
    pub fn replacing(mut self, old: &Proxy) -> Self {
        self.replacing = Some(old.runtime.clone());
        self
    }

    /// The proxy, its event loops started.
    pub fn build(self) -> Result<Arc<Proxy>, ProxyError> {
        if self.sites.len() > MAX_SITES {
            return Err(ProxyError::Sites(format!("at most {MAX_SITES} join URLs")));
        }
        let mut hosts = Vec::new();
        let mut upstreams = Vec::new();
        for (host, up) in self.sites {
            if hosts.iter().any(|(h, _)| *h == host) {
                return Err(ProxyError::Sites(format!("`{host}` is given twice")));
            }
            hosts.push((host, upstreams.len()));
            upstreams.push(up);
        }
        let mut rules = self.rules;
        for r in rules.iter_mut().filter(|r| r.port == 0) {
            r.port = self.port;
        }
        if !hosts.is_empty() && self.web_bridge_rules {
            rules.push(Rule::web_bridge_default(self.port));
        }
        // Without web bridges that speak TLS, a configuration that trusts nothing:
        // it is never asked to connect.
        let client_tls = match self.client_tls {
            Some(c) => c,
            None => tls::client_config(None).map_err(ProxyError::Tls)?,
        };
        let max = self.max_connections.unwrap_or_else(default_max_connections);
        let budget_bytes = self.memory_budget.unwrap_or_else(default_memory_budget);
        let (resolver, counters, budget) = match &self.replacing {
            Some(r) => (r.resolver.clone(), r.counters.clone(), r.budget.clone()),
            None => (
                Arc::new(dns::Resolver::default()),
                Arc::default(),
                side::Budget::new(budget_bytes),
            ),
        };
        let cfg = Arc::new(Config {
            hosts,
            upstreams,
            rules,
            port: self.port,
            client_tls,
            deadlines: self.deadlines,
            send_stall: self.send_stall,
            upstream_timeout: self.upstream_timeout,
            pool_per_bridge: self.pool_per_bridge,
            pool_idle: self.pool_idle,
            resolver: resolver.clone(),
            counters: counters.clone(),
            budget: budget.clone(),
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            draining: AtomicBool::new(false),
        });
        let runtime = match self.replacing {
            Some(r) => r,
            None => {
                let loops = self.loops.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                });
                Arc::new(Runtime {
                    engine: Engine::start(loops, &resolver).map_err(ProxyError::Loops)?,
                    admission: {
                        let a = Admission::new(max, self.max_per_source);
                        a.set_limits(max, self.max_per_source, self.v6_prefix);
                        a
                    },
                    resolver,
                    counters,
                    budget,
                    current: std::sync::RwLock::new(cfg.clone()),
                })
            }
        };
        Ok(Arc::new(Proxy {
            cfg,
            runtime,
            limits: (max, self.max_per_source, self.v6_prefix),
            budget_bytes,
        }))
    }
}

/// A sixteenth of the memory this process may use: its cgroup's limit, or the
/// machine's memory; at least 64 MiB.
fn default_memory_budget() -> usize {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let memory = cgroup.or(machine).unwrap_or(1 << 30);
    usize::try_from(memory / 16)
        .unwrap_or(usize::MAX)
        .max(64 << 20)
}

/// Half the open-file limit (raised to the hard limit), less a reserve for the
/// rest of the process.
fn default_max_connections() -> usize {
    let nofile = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024);
    usize::try_from(nofile.saturating_sub(512) / 2)
        .unwrap_or(usize::MAX)
        .max(64)
}
