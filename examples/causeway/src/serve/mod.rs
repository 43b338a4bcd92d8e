//! `causeway serve`: binds the listeners, runs one worker per core, each with its
//! own shard of the TURN server, serves the admin interface, and stops everything
//! on SIGINT or SIGTERM.
//!
//! Each worker owns UDP and TCP listening sockets bound with SO_REUSEPORT to the
//! same addresses, so the kernel spreads clients across cores by their address and
//! port; a client's allocation, its relay socket and its traffic all stay on one
//! worker, and the workers share nothing on the packet path. Quotas and the status
//! page are shared, touched only when allocations come and go and once a second.

mod capacity;
mod handshake;
mod host;
mod limiter;
mod net;
mod relays;
mod shared;
mod sources;
mod status;
mod tcp;
mod worker;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::info;
use proxy_core::route::Site;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use turn_core::server::{self as turn, Slot};

use crate::config::{Config, Resolved};
use crate::proxy::Proxy;

/// Why the server could not start or keep running.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// A listener could not be bound.
    Bind {
        /// "udp", "tcp" or "admin".
        transport: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Anything else at start (event loop, signals, threads, randomness).
    Setup(&'static str, io::Error),
    /// The TURN core refused the configuration.
    Config(turn::ConfigError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind {
                transport,
                addr,
                source,
            } => write!(
                f,
                "cannot listen on {transport} {addr}: {source} (is another server, such as \
                 coturn, already on this port?)"
            ),
            ServeError::Setup(what, e) => write!(f, "cannot {what}: {e}"),
            ServeError::Config(e) => write!(f, "configuration refused: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// The TURN core's configuration from ours.
fn turn_config(cfg: &Config, r: &Resolved) -> turn::Config {
    let mut t = turn::Config::new(&cfg.realm);
    t.software.clear();
    let _ = t.software.push_str(&cfg.software);
    let _ = t
        .shared_secret
        .extend_from_slice(cfg.shared_secret.as_bytes());
    t.nonce_lifetime_secs = cfg.nonce_lifetime;
    t.max_lifetime_secs = cfg.max_lifetime;
    let (v4, v6) = cfg.relay_ips();
    t.relay_v4 = v4;
    t.relay_v6 = v6;
    for ip in &cfg.external_ip {
        match ip {
            IpAddr::V4(a) => t.external_v4 = Some(*a),
            IpAddr::V6(a) => t.external_v6 = Some(*a),
        }
    }
    t.port_min = r.port_min;
    t.port_max = r.port_max;
    t.alternate_server = cfg.alternate_server;
    t.legacy_channels = cfg.legacy_channels;
    t.unauth_burst = cfg.limits.unauth_burst;
    t.unauth_per_sec = cfg.limits.unauth_per_sec;
    t.unauth_global_per_sec = cfg.limits.unauth_total_per_sec;
    t.unauth_verified_per_sec = cfg.limits.unauth_verified_per_sec;
    // Relay sockets set DF (IP_PMTUDISC_PROBE, by quinn-udp), so DONT-FRAGMENT holds.
    t.dont_fragment = true;
    // The credential database answers USERHASH lookups.
    t.userhash = true;
    for c in &r.allow {
        let _ = t.policy.allow.push(*c);
    }
    for c in &r.deny {
        let _ = t.policy.deny.push(*c);
    }
    for ip in own_addresses(cfg) {
        if !t.policy.add_own(ip) {
            log::warn!("more own addresses than the peer policy holds; {ip} is not among them");
        }
    }
    t
}

/// The addresses of this server that peers may never be: every listener, the
/// admin interface and the redirect listener, and, when one of them listens on a
/// wildcard, every address of the host's interfaces. (The core adds the relay and
/// advertised addresses itself.)
fn own_addresses(cfg: &Config) -> Vec<IpAddr> {
    let listeners: Vec<SocketAddr> = cfg
        .listen
        .iter()
        .chain(&cfg.tls_listen)
        .chain(std::iter::once(&cfg.admin))
        .chain(cfg.http_redirect.iter())
        .copied()
        .collect();
    let mut own: Vec<IpAddr> = listeners.iter().map(SocketAddr::ip).collect();
    if listeners.iter().any(|a| a.ip().is_unspecified()) {
        match if_addrs::get_if_addrs() {
            Ok(ifs) => own.extend(ifs.iter().map(|i| i.ip())),
            Err(e) => log::warn!(
                "cannot list the host's addresses ({e}): deny them as peers with deny_peer"
            ),
        }
    }
    own.retain(|ip| !ip.is_unspecified());
    own.sort();
    own.dedup();
    own
}

/// Draws a password for the demo user.
fn demo_password() -> Result<String, ServeError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| {
        ServeError::Setup("read the OS random source", io::Error::other(e.to_string()))
    })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Runs the server until SIGINT or SIGTERM.
pub(crate) fn run(cfg: Config, resolved: Resolved) -> Result<(), ServeError> {
    let threads = cfg.worker_threads();
    let tcfg = turn_config(&cfg, &resolved);
    tcfg.validate().map_err(ServeError::Config)?;

    let mut users = resolved.users.clone();
    let mut demo = None;
    if cfg.demo_user {
        let pass = demo_password()?;
        users.push(("demo".into(), pass.clone()));
        demo = Some(pass);
    }

    // Bind everything before spawning anything, so a bad address stops the start.
    // The first socket of each address fixes its port (which matters for port 0);
    // the others join it with SO_REUSEPORT.
    let mut listeners: Vec<worker::Listeners> = (0..threads).map(|_| Default::default()).collect();
    let mut bound = Vec::new();
    for &addr in &cfg.listen {
        let mut actual = addr;
        for l in listeners.iter_mut() {
            let udp = net::bind_udp(actual).map_err(|source| ServeError::Bind {
                transport: "udp",
                addr: actual,
                source,
            })?;
            actual = udp
                .local_addr()
                .map_err(|e| ServeError::Setup("read a local address", e))?;
            let state = quinn_udp::UdpSocketState::new((&udp).into())
                .map_err(|e| ServeError::Setup("set up batched UDP receive", e))?;
            l.udp.push(worker::UdpListener {
                sock: udp,
                state,
                local: actual,
            });
        }
        for l in listeners.iter_mut() {
            let tcp = net::bind_tcp(actual).map_err(|source| ServeError::Bind {
                transport: "tcp",
                addr: actual,
                source,
            })?;
            l.tcp.push(tcp);
        }
        bound.push(actual);
    }
    let mut tls_bound = Vec::new();
    for &addr in &cfg.tls_listen {
        let mut actual = addr;
        for l in listeners.iter_mut() {
            let tcp = net::bind_tcp(actual).map_err(|source| ServeError::Bind {
                transport: "tls",
                addr: actual,
                source,
            })?;
            actual = tcp
                .local_addr()
                .map_err(|e| ServeError::Setup("read a local address", e))?;
            l.tls.push(tcp);
        }
        tls_bound.push(actual);
    }
    let redirect = match cfg.http_redirect {
        Some(a) => Some(
            std::net::TcpListener::bind(a).map_err(|source| ServeError::Bind {
                transport: "http",
                addr: a,
                source,
            })?,
        ),
        None => None,
    };
    let redirect_addr = redirect.as_ref().and_then(|l| l.local_addr().ok());
    let proxy = resolved.tls.clone().map(|tls| {
        let mut upstreams = Vec::new();
        let mut sites = Vec::new();
        let mut rules = resolved.rules.clone();
        let port = tls_bound.first().map_or(443, |a| a.port());
        for r in rules.iter_mut().filter(|r| r.port == 0) {
            r.port = port;
        }
        for (host, up) in &resolved.sites {
            // Join URLs live as long as the process: leaked once, at start, so
            // requests are routed without building a table each time.
            let host: &'static str = Box::leak(host.clone().into_boxed_str());
            sites.push(Site {
                host,
                upstream: upstreams.len(),
            });
            upstreams.push(up.clone());
        }
        if !sites.is_empty() && cfg.web_bridge_rules {
            // The rule each web bridge gets: prefix `/`, the five methods, https and wss.
            rules.push(proxy_core::allow::Rule::web_bridge_default(port));
        }
        // Without web bridges that speak TLS, a client configuration that trusts
        // nothing: it is never asked to connect.
        let client_tls = match resolved.client_tls.clone() {
            Some(c) => Ok(c),
            None => crate::proxy::tls::client_config(None),
        };
        client_tls.map(|client_tls| {
            (
                tls,
                Arc::new(Proxy {
                    sites,
                    upstreams,
                    rules,
                    port,
                    client_tls,
                    deadlines: cfg.http.deadlines(),
                    send_stall: std::time::Duration::from_secs(cfg.http.send_timeout_secs),
                    upstream_timeout_ms: 60_000,
                    threads: crate::proxy::ThreadLimit::new(4096),
                }),
            )
        })
    });
    let proxy = proxy
        .transpose()
        .map_err(|e| ServeError::Setup("set up TLS toward web bridges", io::Error::other(e)))?;
    let admin = std::net::TcpListener::bind(cfg.admin).map_err(|source| ServeError::Bind {
        transport: "admin",
        addr: cfg.admin,
        source,
    })?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| ServeError::Setup("read a local address", e))?;

    let quota_total = match cfg.quota.total {
        Some(t) => t,
        None => {
            let c = capacity::measure(&cfg, &resolved, threads);
            info!("quota.total not set: {c}");
            c.total
        }
    };
    let cfg_http_redirect = redirect_addr;
    let realm = cfg.realm.clone();
    let shared = Arc::new(shared::Shared::new(cfg, &users, threads, quota_total));
    // Each shard holds its share of the total with room for uneven hashing.
    let slots = (quota_total.div_ceil(threads) * 5 / 4 + 64).min(quota_total.max(64));
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut wakers = Vec::new();
    let mut handles = Vec::new();
    // One secret keys the nonces of every worker, so a nonce verifies wherever the
    // kernel steers the client's next packet.
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| {
        ServeError::Setup("read the OS random source", io::Error::other(e.to_string()))
    })?;
    let mut workers = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let shard = worker::Turn::new(
            tcfg.clone(),
            vec![Slot::EMPTY; slots],
            vec![0u32; slots * 2],
            secret,
        )
        .map_err(ServeError::Config)?;
        let w = worker::Worker::new(i, l, shard, shared.clone(), shutdown.clone())
            .map_err(|e| ServeError::Setup("create an event loop", e))?;
        wakers.push(w.waker());
        workers.push(w);
    }
    // TLS listeners' connections are opened on their own thread.
    let mut tls_thread = None;
    if let Some((tls, p)) = &proxy {
        let inboxes = workers.iter().map(worker::Worker::inbox).collect();
        let (h, handle) = handshake::spawn(tls.clone(), Some(p.clone()), inboxes, shutdown.clone())
            .map_err(|e| ServeError::Setup("start the TLS thread", e))?;
        for w in &mut workers {
            w.set_handshakes(h.clone());
        }
        tls_thread = Some((h, handle));
    }
    for (i, w) in workers.into_iter().enumerate() {
        let handle = std::thread::Builder::new()
            .name(format!("causeway-{i}"))
            .spawn(move || w.run())
            .map_err(|e| ServeError::Setup("spawn a worker thread", e))?;
        handles.push(handle);
    }
    if let Some(listener) = redirect {
        let sites = proxy
            .as_ref()
            .map(|(_, p)| p.sites.clone())
            .unwrap_or_default();
        std::thread::Builder::new()
            .name("causeway-http".into())
            .spawn(move || crate::proxy::serve_redirect(listener, sites))
            .map_err(|e| ServeError::Setup("spawn the redirect thread", e))?;
    }
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("causeway-admin".into())
            .spawn(move || status::serve_admin(admin, shared))
            .map_err(|e| ServeError::Setup("spawn the admin thread", e))?;
    }

    // Handlers go in before "ready", so a signal sent on seeing it is caught.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| ServeError::Setup("install signal handlers", e))?;
    for a in &bound {
        // On stdout, for scripts and tests that start the server on port 0.
        println!("causeway: listening on udp {a} and tcp {a}");
    }
    for a in &tls_bound {
        println!("causeway: listening on tls {a} (TURN over TLS/TCP and the web proxy)");
    }
    if let Some(a) = cfg_http_redirect {
        println!("causeway: redirecting http {a} to https");
    }
    println!("causeway: admin on http://{admin_addr}/status and /metrics");
    if let Some(pass) = &demo {
        println!("causeway: demo user `demo`, password `{pass}`, realm `{realm}`");
    }
    println!("causeway: ready");
    info!(
        "serving TURN on {} address(es) with {threads} worker(s) of {slots} allocations each; \
         stop with Ctrl-C",
        bound.len()
    );

    if let Some(sig) = signals.forever().next() {
        info!("signal {sig} received: stopping");
    }
    shutdown.store(true, Ordering::SeqCst);
    for w in &wakers {
        let _ = w.wake();
    }
    if let Some((h, handle)) = tls_thread {
        h.wake();
        let _ = handle.join();
    }
    for h in handles {
        let _ = h.join();
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_come_from_the_configuration() {
        let mut cfg = Config {
            listen: vec!["10.0.0.5:3478".parse().unwrap()],
            tls_listen: vec!["10.0.0.7:443".parse().unwrap()],
            admin: "10.0.0.8:4455".parse().unwrap(),
            http_redirect: Some("10.0.0.9:80".parse().unwrap()),
            ..Config::default()
        };
        let own = own_addresses(&cfg);
        for ip in ["10.0.0.5", "10.0.0.7", "10.0.0.8", "10.0.0.9"] {
            assert!(own.contains(&ip.parse().unwrap()), "{ip}: {own:?}");
        }
        // A wildcard listener: every address of the host's interfaces.
        cfg.listen = vec!["0.0.0.0:3478".parse().unwrap()];
        let own = own_addresses(&cfg);
        assert!(own.contains(&"127.0.0.1".parse().unwrap()), "{own:?}");
        assert!(own.iter().all(|ip| !ip.is_unspecified()));
    }
}
