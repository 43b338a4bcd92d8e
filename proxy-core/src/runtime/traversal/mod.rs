//! The traversal: the web bridge is inside, the edge in a DMZ that may not open
//! connections inward, so the inside dials out (the Expressway-C and -E roles
//! of the reference deployment).
//!
//! A [`Connector`] (inside) keeps a pool of TLS connections open to the edge's
//! traversal port, each registered for one join URL; the edge
//! ([`TraversalListener`]) checks both ends' certificates (pinned SHA-256
//! [`Fingerprint`]s; the connector may trust a CA for the edge instead) and
//! holds the registered connections in a [`TunnelPool`]. A join URL whose
//! [`Upstream`](super::Upstream) is [`Upstream::traversal`](super::Upstream::traversal)
//! is served through it: the edge's web proxy does everything it does for a
//! direct web bridge (allow list, limits, timers, header hygiene,
//! `X-Forwarded-For` naming the browser) and writes the request into a
//! connection from the pool instead of dialling; the connector, seeing bytes
//! arrive on it, dials the web bridge and splices the two, and opens another
//! connection to keep its pool full.
//!
//! One TLS connection per tunnel, pre-opened, rather than streams over one
//! multiplexed connection: no head-of-line blocking between browsers, TCP's
//! own flow control per tunnel (no stream window to tune, which cut frp's
//! throughput tenfold), and no handshake on a browser's path when the pool is
//! ready; each tunnel costs a socket at each end and a TLS session.
//!
//! The wire, after the TLS handshake (ALPN [`ALPN`]): the connector sends
//! `CAUSEWAY-TUNNEL/1 JOIN-HOST\r\n`; the edge answers `OK\r\n`, or
//! `NO REASON\r\n` and closes. Then the connection waits; the first bytes the
//! edge sends are a browser's request. A connector that stops says `BYE\r\n`
//! on its waiting connections (the edge takes them no more) and serves what
//! the edge sent before it heard.

mod connector;
mod edge;
mod pipe;
mod probe;
pub mod trust;

pub use connector::{Connector, ConnectorSettings, ConnectorStatus, EdgeTrust};
pub use edge::{ConnectorIdentity, TraversalListener};
pub use probe::Probe;
pub use trust::Fingerprint;

use crate::runtime::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::runtime::side::Meter;
use std::time::{Duration, Instant, SystemTime};

/// The ALPN protocol of a traversal connection.
pub const ALPN: &[u8] = b"causeway-tunnel/1";

/// The registration line's first word.
pub(crate) const HELLO: &str = "CAUSEWAY-TUNNEL/1";

/// What a stopping connector says on each ready connection: the edge (which
/// never hears a connector speak otherwise) takes it no more.
pub(crate) const BYE: &str = "BYE";

/// How long a stopping connector still serves a request the edge sent before
/// it heard [`BYE`].
pub(crate) const BYE_GRACE: Duration = Duration::from_secs(5);

/// The longest registration line.
pub(crate) const LINE_MAX: usize = 300;

/// How long the TLS handshake and the registration may take, either end.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keepalive of idle tunnels (both ends): a connection a firewall dropped
/// silently is found within a minute or so.
pub(crate) fn keepalive<'a, S>(sock: &'a S)
where
    socket2::SockRef<'a>: From<&'a S>,
{
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    let _ = socket2::SockRef::from(sock).set_tcp_keepalive(&ka);
}

/// A registered connection, waiting for a browser.
pub(crate) struct Tunnel {
    pub(crate) sock: TcpStream,
    pub(crate) tls: rustls::ServerConnection,
    pub(crate) connector: usize,
    /// Where its bytes are counted (its join URL and connector's).
    pub(crate) meter: Arc<Meter>,
}

impl Tunnel {
    /// Whether it is still open and quiet (a connector never speaks first).
    fn alive(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.sock.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Called when a connection arrives.
type Wake = Box<dyn Fn() + Send + Sync>;

/// What the edge knows of one connector for one join URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelStatus {
    /// The join URL.
    pub host: String,
    /// The connector's name (from the edge's configuration).
    pub connector: String,
    /// Connections ready now.
    pub idle: usize,
    /// Connections handed to browsers so far.
    pub used: u64,
    /// When the last connection registered.
    pub last_registered: Option<SystemTime>,
    /// The last refusal of this connector at this edge (why, when): a join URL
    /// it may not serve, a bad registration; connectors whose certificate is
    /// not pinned are counted under the name `(not pinned)`.
    pub last_refusal: Option<(String, SystemTime)>,
    /// Bytes sent through its connections toward the web bridge.
    pub bytes_to_bridge: u64,
    /// Bytes received through them from the web bridge.
    pub bytes_from_bridge: u64,
}

/// The name refusals of unknown connectors are kept under.
pub(crate) const UNKNOWN: &str = "(not pinned)";

#[derive(Default)]
struct Inner {
    /// Per join URL, ready connections, oldest first.
    idle: HashMap<String, VecDeque<Tunnel>>,
    /// Per join URL and connector, what status shows, and its bytes.
    seen: Vec<(TunnelStatus, Arc<Meter>)>,
}

/// The edge's registered connections, per join URL; the web proxy takes one
/// for each browser connection to a join URL served by connectors.
#[derive(Default)]
pub struct TunnelPool {
    inner: Mutex<Inner>,
    /// Called when a connection arrives (wakes the proxies' loops waiting).
    arrivals: Mutex<Vec<(usize, Wake)>>,
    /// The connectors' names, by index.
    names: Mutex<Vec<String>>,
}

impl std::fmt::Debug for TunnelPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelPool")
            .field("status", &self.status())
            .finish()
    }
}

impl TunnelPool {
    /// Where each join URL and connector stands: connections ready, used, and
    /// when one last registered.
    pub fn status(&self) -> Vec<TunnelStatus> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .seen
            .iter()
            .map(|(s, m)| TunnelStatus {
                bytes_to_bridge: m.to_bridge.load(Ordering::Relaxed),
                bytes_from_bridge: m.from_bridge.load(Ordering::Relaxed),
                ..s.clone()
            })
            .collect()
    }

    /// Connections ready for `host` now.
    pub fn ready(&self, host: &str) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.idle.get(host).map_or(0, VecDeque::len)
    }

    pub(crate) fn name(&self, connector: usize) -> String {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.get(connector).cloned().unwrap_or_default()
    }

    pub(crate) fn set_names(&self, names: Vec<String>) {
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = names;
    }

    /// Calls `wake` (once per `id`) when a connection arrives.
    pub(crate) fn on_arrival(&self, id: usize, wake: Wake) {
        let mut a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if !a.iter().any(|(i, _)| *i == id) {
            a.push((id, wake));
        }
    }

    /// The status of `host` and connector `name` and its meter, added if new.
    fn entry<'a>(
        seen: &'a mut Vec<(TunnelStatus, Arc<Meter>)>,
        host: &str,
        name: &str,
    ) -> Option<&'a mut (TunnelStatus, Arc<Meter>)> {
        let known = seen
            .iter()
            .any(|(s, _)| s.host == host && s.connector == name);
        if !known {
            let status = TunnelStatus {
                host: host.to_string(),
                connector: name.to_string(),
                idle: 0,
                used: 0,
                last_registered: None,
                last_refusal: None,
                bytes_to_bridge: 0,
                bytes_from_bridge: 0,
            };
            seen.push((status, Arc::default()));
        }
        seen.iter_mut()
            .find(|(s, _)| s.host == host && s.connector == name)
    }

    /// Notes a refusal of connector `name` (for `host`, empty when unknown).
    pub(crate) fn refused(&self, name: &str, host: &str, why: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, _)) = TunnelPool::entry(&mut inner.seen, host, name) {
            s.last_refusal = Some((why.to_string(), SystemTime::now()));
        }
    }

    /// Keeps a connection of connector number `connector`, registered for
    /// `host`.
    pub(crate) fn put(
        &self,
        host: &str,
        connector: usize,
        sock: TcpStream,
        tls: rustls::ServerConnection,
    ) {
        let name = self.name(connector);
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let meter = match TunnelPool::entry(&mut inner.seen, host, &name) {
                Some((s, m)) => {
                    s.idle += 1;
                    s.last_registered = Some(SystemTime::now());
                    m.clone()
                }
                None => Arc::default(),
            };
            let t = Tunnel {
                sock,
                tls,
                connector,
                meter,
            };
            inner.idle.entry(host.to_string()).or_default().push_back(t);
        }
        let arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        for (_, wake) in arrivals.iter() {
            wake();
        }
    }

    /// A live connection for `host`, the longest waiting first (so several
    /// connectors share the load); dead ones found on the way are dropped.
    pub(crate) fn take(&self, host: &str, _now: Instant) -> Option<Tunnel> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { idle, seen } = &mut *inner;
        let queue = idle.get_mut(host)?;
        while let Some(t) = queue.pop_front() {
            let name = names.get(t.connector).cloned().unwrap_or_default();
            let alive = t.alive();
            if let Some((s, _)) = TunnelPool::entry(seen, host, &name) {
                s.idle = s.idle.saturating_sub(1);
                s.used += u64::from(alive);
            }
            if alive {
                return Some(t);
            }
        }
        None
    }
}

/// A pause before the `attempt`-th reconnection (from 0): doubling from half
/// a second to thirty, each drawn at random in its upper half, so connectors
/// that lost the edge together do not come back together.
pub(crate) fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling = 500u64.saturating_mul(1 << attempt.min(6)).min(30_000);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(ceiling / 2 + random % (ceiling / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_with_jitter() {
        for attempt in 0..12 {
            let ceiling = (500u64 << attempt.min(6)).min(30_000);
            let d = backoff(attempt).as_millis() as u64;
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d}");
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| backoff(6)).collect();
        assert!(draws.len() > 1, "no jitter");
    }
}
