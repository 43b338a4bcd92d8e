//! Building a [`Proxy`]: its join URLs and web bridges, the allow list, timers,
//! limits and pool, checked once, with the defaults of the reference deployment;
//! and why a build fails.

use crate::runtime::prelude::*;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::allow::Rule;
use crate::timer::Deadlines;

use super::admission::Admission;
use super::config::{Config, GENERATIONS};
use super::engine::Engine;
use super::{MAX_SITES, Proxy, ProxySettings, Runtime, Upstream, dns, side, tls};

/// Builds a [`Proxy`]: [`ProxySettings`] changed one setter at a time.
#[derive(Debug)]
pub struct ProxyBuilder {
    s: ProxySettings,
    replacing: Option<Arc<Runtime>>,
}

impl Proxy {
    /// A builder with the defaults of the reference deployment
    /// ([`ProxySettings::default`]).
    pub fn builder() -> ProxyBuilder {
        Proxy::with_settings(ProxySettings::default())
    }

    /// A builder starting from `settings` (a deployment's, read from its
    /// configuration), which the setters then change.
    pub fn with_settings(settings: ProxySettings) -> ProxyBuilder {
        ProxyBuilder {
            s: settings,
            replacing: None,
        }
    }
}

/// Why a proxy cannot be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// More join URLs than [`MAX_SITES`].
    TooManySites,
    /// A join URL given twice.
    DuplicateSite(String),
    /// TLS toward the web bridges cannot be set up.
    Tls(super::tls::TlsError),
    /// The event loops cannot be started.
    Loops(std::io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::TooManySites => write!(f, "at most {MAX_SITES} join URLs"),
            ProxyError::DuplicateSite(host) => write!(f, "`{host}` is given twice"),
            ProxyError::Tls(e) => write!(f, "TLS toward the web bridges: {e}"),
            ProxyError::Loops(e) => write!(f, "cannot start the web proxy's event loops: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Loops(e) => Some(e),
            ProxyError::Tls(e) => Some(e),
            ProxyError::TooManySites | ProxyError::DuplicateSite(_) => None,
        }
    }
}

impl ProxyBuilder {
    /// A join URL `host` (for example `join.example.com`) and the web bridge it
    /// maps to.
    pub fn site(mut self, host: &str, upstream: Upstream) -> Self {
        self.s.sites.push((host.to_ascii_lowercase(), upstream));
        self
    }

    /// An allow-list rule beyond the web bridge rule (port 0 means the proxy's
    /// port).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.s.rules.push(rule);
        self
    }

    /// Whether each web bridge gets the reference's rule (prefix `/`, the five
    /// methods, https and wss); `false` leaves only [`ProxyBuilder::rule`]s.
    pub fn web_bridge_rules(mut self, on: bool) -> Self {
        self.s.web_bridge_rules = on;
        self
    }

    /// The TLS port browsers reach, when a NAT or a load balancer maps it to
    /// another on this host (the Host header names this one). By default each
    /// connection's own: the port of the listener it arrived on.
    pub fn port(mut self, port: u16) -> Self {
        self.s.port = Some(port);
        self
    }

    /// TLS toward the web bridges (see [`tls::client_config`]); without it, https
    /// web bridges cannot be reached.
    pub fn upstream_tls(mut self, cfg: Arc<rustls::ClientConfig>) -> Self {
        self.s.upstream_tls = Some(cfg);
        self
    }

    /// Read deadlines for clients.
    pub fn deadlines(mut self, d: Deadlines) -> Self {
        self.s.deadlines = d;
        self
    }

    /// Longest stall of a write to a browser.
    pub fn send_stall(mut self, d: Duration) -> Self {
        self.s.send_stall = d;
        self
    }

    /// How long a web bridge may take to answer, and to send each piece.
    pub fn upstream_timeout(mut self, d: Duration) -> Self {
        self.s.upstream_timeout = d;
        self
    }

    /// Most connections served at once (default: half the open-file limit, which
    /// is raised to its hard limit when the proxy is built, less a reserve: each
    /// connection holds a socket to the browser and one to the web bridge).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.s.max_connections = Some(n);
        self
    }

    /// Most connections served at once from one address (0: no such limit).
    /// Offices put many browsers behind one address: the default is 8192.
    pub fn max_per_source(mut self, n: usize) -> Self {
        self.s.max_per_source = n;
        self
    }

    /// The prefix length an IPv6 source is counted by for `max_per_source`
    /// (default 64: a subscriber's network, not one of its addresses).
    pub fn ipv6_source_prefix(mut self, bits: u8) -> Self {
        self.s.ipv6_source_prefix = bits.min(128);
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
        self.s.memory_budget = Some(bytes);
        self
    }

    /// Event loops serving connections (default: one per core).
    pub fn loops(mut self, n: usize) -> Self {
        self.s.event_loops = Some(n.max(1));
        self
    }

    /// Idle web bridge connections kept per web bridge and loop (0: none), each
    /// at most `idle`.
    pub fn bridge_pool(mut self, per_bridge: usize, idle: Duration) -> Self {
        self.s.bridge_keepalive = per_bridge;
        self.s.bridge_keepalive_idle = idle;
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
        let ProxyBuilder { s, replacing } = self;
        if s.sites.len() > MAX_SITES {
            return Err(ProxyError::TooManySites);
        }
        let mut hosts = Vec::new();
        let mut upstreams = Vec::new();
        for (host, up) in s.sites {
            let host = host.to_ascii_lowercase();
            if hosts.iter().any(|(h, _)| *h == host) {
                return Err(ProxyError::DuplicateSite(host));
            }
            hosts.push((host, upstreams.len()));
            upstreams.push(up);
        }
        let mut rules = s.rules;
        if let Some(port) = s.port {
            for r in rules.iter_mut().filter(|r| r.port == 0) {
                r.port = port;
            }
        }
        if !hosts.is_empty() && s.web_bridge_rules {
            rules.push(Rule::web_bridge_default(s.port.unwrap_or(0)));
        }
        // Without web bridges that speak TLS, a configuration that trusts nothing:
        // it is never asked to connect.
        let client_tls = match s.upstream_tls {
            Some(c) => c,
            None => tls::client_config(None).map_err(ProxyError::Tls)?,
        };
        let max = s.max_connections.unwrap_or_else(default_max_connections);
        let budget_bytes = s.memory_budget.unwrap_or_else(default_memory_budget);
        let (resolver, counters, budget) = match &replacing {
            Some(r) => (r.resolver.clone(), r.counters.clone(), r.budget.clone()),
            None => (
                Arc::new(dns::Resolver::default()),
                Arc::default(),
                side::Budget::new(budget_bytes),
            ),
        };
        // Connections arriving for a join URL served by connectors wake the
        // loops, as the resolver's answers do.
        for pool in upstreams.iter().filter_map(|u| u.tunnels.as_ref()) {
            let r = Arc::downgrade(&resolver);
            let id = Arc::as_ptr(&resolver) as usize;
            pool.on_arrival(
                id,
                Box::new(move || {
                    if let Some(r) = r.upgrade() {
                        r.poke();
                    }
                }),
            );
        }
        let cfg = Arc::new(Config {
            hosts,
            upstreams,
            rules,
            port: s.port,
            client_tls,
            deadlines: s.deadlines,
            send_stall: s.send_stall,
            upstream_timeout: s.upstream_timeout,
            pool_per_bridge: s.bridge_keepalive,
            pool_idle: s.bridge_keepalive_idle,
            resolver: resolver.clone(),
            counters: counters.clone(),
            budget: budget.clone(),
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            draining: AtomicBool::new(false),
        });
        let runtime = match replacing {
            Some(r) => r,
            None => {
                let loops = s.event_loops.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                });
                Arc::new(Runtime {
                    engine: Engine::start(loops, &resolver).map_err(ProxyError::Loops)?,
                    admission: {
                        let a = Admission::new(max, s.max_per_source);
                        a.set_limits(max, s.max_per_source, s.ipv6_source_prefix);
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
            limits: (max, s.max_per_source, s.ipv6_source_prefix),
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
