//! The proxy's own listeners. Plain HTTP on port 80: every request is answered
//! with a 301 to https (the reference redirects 80 to 443) at the configured
//! join URL its Host names (or the first one), never at the Host it sent.
//! Malformed requests get 400, and without any join URL configured, 421. And a
//! TLS listener of the proxy's own, for an embedder with no TLS front (no TURN
//! relay sharing the port): each connection's handshake runs on the event loops.
//!
//! The connections are served by the proxy's event loops like those of port 443
//! (a plain link is answered with the redirect: see the request half of
//! `conn`), under the same limits: a client holding many idle connections open
//! cannot starve the others of redirects, and each has `head_timeout_secs` to
//! send its request.

use crate::runtime::prelude::*;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use log::warn;

use super::Proxy;
use super::link::Link;

/// Takes the connections of a listener (until the process ends, or its
/// [`Accepting`](super::Accepting) stops) and hands each connection to
/// `proxy`'s loops: plain, with the configuration of the proxy that took over
/// last (port 80), or with a TLS session of `tls` and `proxy`'s own.
pub(super) fn serve(
    proxy: &Proxy,
    connections: impl Iterator<Item = io::Result<TcpStream>>,
    tls: Option<&Arc<rustls::ServerConfig>>,
) {
    for stream in connections {
        let s = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors: give closing connections a moment
                // rather than spin on the error.
                if e.raw_os_error().is_some_and(|c| c == 23 || c == 24)
                    || e.kind() == io::ErrorKind::OutOfMemory
                {
                    warn!("web proxy listener: cannot accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        let Ok(peer) = s.peer_addr() else { continue };
        if s.set_nonblocking(true).is_err() {
            continue;
        }
        let _ = s.set_nodelay(true);
        match tls.map(|cfg| rustls::ServerConnection::new(cfg.clone())) {
            None => proxy.hand_off_current(Link::plain(mio::net::TcpStream::from_std(s)), peer),
            Some(Ok(session)) => {
                proxy.hand_off(Link::accepted(s, Some(session)), Vec::new(), None, peer)
            }
            Some(Err(e)) => warn!("https: cannot start a TLS session: {e}"),
        }
    }
}
