//! The web proxy on std (feature `tls`): HTTPS and WSS from browsers to the web
//! bridges behind it, deciding with this crate's sans-IO functions and doing the
//! I/O and TLS (rustls) here.
//!
//! Connections come from whoever owns the TLS listener: turn-core's std relay
//! demultiplexes port 443 and hands every connection whose opening (inside TLS) is
//! HTTP to [`Proxy::hand_off`]. Each connection gets a thread that reads requests,
//! answers each exactly once (refused, redirected, or forwarded with its body
//! streamed both ways without buffering it whole), and, after a valid 101, relays
//! the WebSocket until either side closes. [`Proxy::serve_redirect`] answers plain
//! HTTP on port 80 with redirects to https.
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
mod io;
mod link;
mod prelude;
mod redirect;
mod session;
mod stream;
pub mod tls;
mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use log::{debug, warn};

use crate::allow::Rule;
use crate::route::Site;
use crate::timer::Deadlines;

pub use link::Link;
pub use upstream::{ConnectError, Upstream};

/// Most join URLs one proxy serves.
pub const MAX_SITES: usize = 64;

/// The web proxy: join URLs and their web bridges, the allow list, timers.
pub struct Proxy {
    /// Join URL hosts, each with its web bridge's index in `upstreams`.
    hosts: Vec<(String, usize)>,
    upstreams: Vec<Upstream>,
    rules: Vec<Rule>,
    port: u16,
    client_tls: Arc<rustls::ClientConfig>,
    deadlines: Deadlines,
    send_stall: Duration,
    upstream_timeout: Duration,
    threads: Arc<ThreadLimit>,
    /// Draining: each new connection's first request gets 503.
    draining: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("hosts", &self.hosts)
            .field("upstreams", &self.upstreams)
            .field("port", &self.port)
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
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Sites(s) | ProxyError::Tls(s) => f.write_str(s),
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
    max_connections: usize,
}

impl Proxy {
    /// A builder with the defaults of the reference deployment: port 443, the
    /// web bridge rule for every site (prefix `/`, GET POST PUT HEAD DELETE, https
    /// and wss), proxy-core's timers, 4096 connections at once.
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
            max_connections: 4096,
        }
    }

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

    /// The join URL hosts, in the order given.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|(h, _)| h.as_str())
    }

    /// Takes over a connection whose opening is HTTP: `link` (with its TLS
    /// session, if any), the plaintext already read, and the SNI the handshake
    /// negotiated. It is served on its own thread; past the connection limit it
    /// is closed at once (and logged).
    pub fn hand_off(
        self: &Arc<Self>,
        link: Link,
        buffered: Vec<u8>,
        sni: Option<String>,
        peer: SocketAddr,
    ) {
        let proxy = self.clone();
        let what = format!("https {peer}");
        self.threads.spawn("web-proxy", &what, move || {
            session::serve(&proxy, link, buffered, sni, peer);
        });
    }

    /// Drains the proxy: connections it serves go on (WebSocket tunnels included);
    /// a new connection's first request gets 503 and the connection closes.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether it is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Connections it serves now (WebSocket tunnels included).
    pub fn connections(&self) -> usize {
        self.threads.active.load(Ordering::SeqCst)
    }

    /// Answers plain HTTP on `listener` with 301 redirects to https at a
    /// configured join URL, until the process ends (run it on its own thread).
    pub fn serve_redirect(&self, listener: std::net::TcpListener) {
        redirect::serve(listener, self.hosts.clone());
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

    /// Most connections served at once.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The proxy.
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
        Ok(Arc::new(Proxy {
            hosts,
            upstreams,
            rules,
            port: self.port,
            client_tls,
            deadlines: self.deadlines,
            send_stall: self.send_stall,
            upstream_timeout: self.upstream_timeout,
            threads: ThreadLimit::new(self.max_connections),
            draining: std::sync::atomic::AtomicBool::new(false),
        }))
    }
}

/// A cap on connection threads: each connection served holds a place until it
/// ends, and one that finds no place is closed at once.
pub(crate) struct ThreadLimit {
    active: AtomicUsize,
    max: usize,
}

impl ThreadLimit {
    /// At most `max` at once.
    pub(crate) fn new(max: usize) -> Arc<ThreadLimit> {
        Arc::new(ThreadLimit {
            active: AtomicUsize::new(0),
            max,
        })
    }

    /// Runs `serve` on a new thread named `name` if a place is free. Says in the
    /// log, under `what`, why it did not.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        name: &str,
        what: &dyn std::fmt::Display,
        serve: impl FnOnce() + Send + 'static,
    ) {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.active.fetch_sub(1, Ordering::SeqCst);
            warn!("{what}: refused: {} connections already open", self.max);
            return;
        }
        let limit = self.clone();
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .stack_size(256 * 1024)
            .spawn(move || {
                serve();
                limit.active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.active.fetch_sub(1, Ordering::SeqCst);
            debug!("{what}: cannot start a thread: {e}");
        }
    }
}

#[cfg(test)]
mod test {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::ThreadLimit;

    #[test]
    fn a_full_thread_limit_refuses_until_a_place_frees() {
        let limit = ThreadLimit::new(1);
        let (release, wait) = mpsc::channel::<()>();
        let (ran, ran_rx) = mpsc::channel::<u8>();
        let first = ran.clone();
        limit.spawn("t", &"first", move || {
            first.send(1).unwrap();
            let _ = wait.recv();
        });
        assert_eq!(ran_rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        let second = ran.clone();
        limit.spawn("t", &"second", move || second.send(2).unwrap());
        assert!(
            ran_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "refused while full"
        );
        release.send(()).unwrap();
        // The first thread's place frees once it returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let third = ran.clone();
            limit.spawn("t", &"third", move || third.send(3).unwrap());
            if ran_rx.recv_timeout(Duration::from_millis(50)) == Ok(3) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never freed");
        }
    }
}
