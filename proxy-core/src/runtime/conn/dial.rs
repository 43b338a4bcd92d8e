//! Dialling a web bridge without blocking the loop: its name resolved by the
//! proxy's resolver thread, each address tried in turn with a non-blocking
//! connect, then the TLS handshake driven by events. A failure names its cause
//! (DNS, refused, TLS) in the log and the browser gets 502.

use std::io;
use std::net::SocketAddr;

use rustls::pki_types::ServerName;
use stun_core::escape::Escaped;

use super::*;
use crate::response::write_status;
use crate::runtime::dns::Lookup;
use crate::runtime::link::{Handshake, connected};
use crate::runtime::upstream::ConnectError;

/// How far a dial got.
pub(crate) enum Dial {
    /// Waiting for the resolver.
    Resolving,
    /// A TCP connect in progress to `addrs[at]`.
    Connecting {
        addrs: Vec<SocketAddr>,
        at: usize,
        side: Side,
    },
    /// The TLS handshake in progress.
    Handshaking { addr: SocketAddr, side: Side },
    /// Waiting for a connector's connection (the traversal).
    Tunnel,
}

impl Dial {
    /// The error of a dial that ran out of time here.
    pub(crate) fn timed_out(&self) -> ConnectError {
        let e = || io::Error::new(io::ErrorKind::TimedOut, "timed out");
        match self {
            Dial::Resolving => ConnectError::Dns(e()),
            Dial::Connecting { addrs, at, .. } => ConnectError::Refused(
                addrs
                    .get(*at)
                    .copied()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                e(),
            ),
            Dial::Handshaking { .. } => ConnectError::Tls(e()),
            Dial::Tunnel => ConnectError::NoConnector,
        }
    }
}

/// What one step of a dial came to.
enum Dialled {
    /// Still going (moved on, or waiting).
    Going(Dial, bool),
    /// Connected (and through TLS, if the bridge speaks it).
    Ready(Side),
    /// Failed.
    Failed(ConnectError),
}

impl Conn {
    /// Moves the dial on; on success the request starts.
    pub(super) fn connect(
        &mut self,
        cx: &mut Ctx<'_>,
        plan: Box<Plan>,
        dial: Box<Dial>,
        until: Instant,
    ) -> bool {
        let cfg = Arc::clone(&self.cfg);
        let Some(upstream) = cfg.upstreams.get(plan.upstream) else {
            self.phase = Phase::Done;
            return false;
        };
        // The join URL as configured (the pool's key), not the Host header.
        let join = cfg
            .hosts
            .iter()
            .find(|(_, i)| *i == plan.upstream)
            .map_or("", |(h, _)| h.as_str());
        match step(cx, &cfg, upstream, join, *dial) {
            Dialled::Going(dial, progress) => {
                let dial = Box::new(dial);
                self.phase = Phase::Connect { plan, dial, until };
                progress
            }
            Dialled::Ready(side) => {
                let mut plan = plan;
                // A connector's connection waited in a pool, as a kept-alive one
                // does: if it fails before answering, a request that may be
                // sent again goes on another.
                plan.reused |= upstream.tunnels.is_some();
                self.cfg.counters.dialled();
                self.up = Some(Up {
                    index: plan.upstream,
                    side,
                });
                self.start_request(cx, plan);
                true
            }
            Dialled::Failed(e) => {
                self.dial_failed(cx, &plan, e);
                true
            }
        }
    }

    /// Says why in the log, and 502 to the browser.
    pub(super) fn dial_failed(&mut self, cx: &mut Ctx<'_>, plan: &Plan, e: ConnectError) {
        let u = self.cfg.upstreams.get(plan.upstream);
        client_log!(
            cx,
            log::Level::Warn,
            "https {} {}: web bridge connection failed for join URL `{}` ({}): {e}",
            self.peer,
            plan.what,
            Escaped::new(&plan.host),
            u.map_or_else(String::new, ToString::to_string)
        );
        let reason = match e {
            ConnectError::NoConnector => "no connector ready for this join URL",
            _ => "web bridge unreachable",
        };
        let mut out = [0u8; 512];
        let n = write_status(&mut out, 502, reason, true).unwrap_or(0);
        self.answer_and_close(cx, out.get(..n).unwrap_or_default());
    }

    /// 502 to the browser, and the cause in the log.
    pub(super) fn bad_gateway(&mut self, cx: &mut Ctx<'_>, what: &str, cause: &str) {
        client_log!(
            cx,
            log::Level::Warn,
            "https {} {what}: web bridge failed: {cause}",
            self.peer
        );
        self.up = None;
        let mut out = [0u8; 512];
        let n = write_status(&mut out, 502, "web bridge failed", true).unwrap_or(0);
        self.answer_and_close(cx, out.get(..n).unwrap_or_default());
    }
}

/// One step of a dial to `u` for join URL `host`.
fn step(
    cx: &mut Ctx<'_>,
    cfg: &Config,
    u: &crate::runtime::Upstream,
    host: &str,
    dial: Dial,
) -> Dialled {
    if let Some(pool) = &u.tunnels {
        return tunnel(cx, cfg, pool, host);
    }
    match dial {
        Dial::Resolving => match cfg.resolver.lookup(&u.host, u.port, cx.now) {
            Lookup::Ready(addrs) => open(cx, cfg, addrs, 0, None),
            Lookup::Failed(e) => Dialled::Failed(ConnectError::Dns(e)),
            Lookup::Wait => Dialled::Going(Dial::Resolving, false),
        },
        Dial::Connecting {
            addrs,
            at,
            mut side,
        } => {
            let addr = addrs
                .get(at)
                .copied()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            let sock = &side.link.sock;
            match connected(sock) {
                Ok(true) => {}
                Ok(false) => return Dialled::Going(Dial::Connecting { addrs, at, side }, false),
                Err(e) => return open(cx, cfg, addrs, at + 1, Some((addr, e))),
            }
            let _ = sock.set_nodelay(true);
            if !u.tls {
                return Dialled::Ready(side);
            }
            let conn = ServerName::try_from(u.host.clone())
                .map_err(io::Error::other)
                .and_then(|name| {
                    rustls::ClientConnection::new(cfg.client_tls.clone(), name)
                        .map_err(io::Error::other)
                });
            match conn {
                Ok(mut c) => {
                    c.set_buffer_limit(Some(super::super::side::TLS_BUFFER));
                    side.link.tls = Some(rustls::Connection::Client(c));
                    handshake(addr, side)
                }
                Err(e) => Dialled::Failed(ConnectError::Tls(e)),
            }
        }
        Dial::Handshaking { addr, side } => handshake(addr, side),
        Dial::Tunnel => Dialled::Going(Dial::Tunnel, false),
    }
}

/// A connector's connection for `host`, registered with this loop; or wait
/// for one (the pool wakes the loops when one arrives).
fn tunnel(
    cx: &mut Ctx<'_>,
    cfg: &Config,
    pool: &crate::runtime::traversal::TunnelPool,
    host: &str,
) -> Dialled {
    let Some(t) = pool.take(host, cx.now) else {
        return Dialled::Going(Dial::Tunnel, false);
    };
    let mut link = Link::accepted(t.sock, Some(t.tls));
    let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
    if let Err(e) = cx.registry.register(&mut link.sock, cx.up_token, interest) {
        return Dialled::Failed(ConnectError::Tls(e));
    }
    let mut side = Side::new(link, cx.now, cfg.budget.clone());
    side.meter = Some(t.meter);
    Dialled::Ready(side)
}

/// Starts a connect to `addrs[at]` (or the next that can be started); `last`
/// is why the one before failed.
fn open(
    cx: &mut Ctx<'_>,
    cfg: &Config,
    addrs: Vec<SocketAddr>,
    mut at: usize,
    mut last: Option<(SocketAddr, io::Error)>,
) -> Dialled {
    while let Some(addr) = addrs.get(at).copied() {
        match mio::net::TcpStream::connect(addr) {
            Ok(mut sock) => {
                let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
                if let Err(e) = cx.registry.register(&mut sock, cx.up_token, interest) {
                    return Dialled::Failed(ConnectError::Refused(addr, e));
                }
                let side = Side::new(Link::plain(sock), cx.now, cfg.budget.clone());
                return Dialled::Going(Dial::Connecting { addrs, at, side }, true);
            }
            Err(e) => last = Some((addr, e)),
        }
        at += 1;
    }
    match last {
        Some((a, e)) => Dialled::Failed(ConnectError::Refused(a, e)),
        None => Dialled::Failed(ConnectError::Dns(io::Error::new(
            io::ErrorKind::NotFound,
            "no address",
        ))),
    }
}

/// Drives the TLS handshake as far as the socket allows.
fn handshake(addr: SocketAddr, mut side: Side) -> Dialled {
    match side.link.handshake() {
        Ok(Handshake::Done) => Dialled::Ready(side),
        Ok(Handshake::Going(progress)) => {
            Dialled::Going(Dial::Handshaking { addr, side }, progress)
        }
        Err(e) => Dialled::Failed(ConnectError::Tls(e)),
    }
}
