//! Connections from a configured TCP load balancer: the PROXY protocol header
//! (v1 or v2, parsed by `proxy-core`) comes first, before TLS or STUN, and names
//! the real client, which then stands in the connection's 5-tuple, so logs,
//! nonces, quotas, per-source limits and the web proxy's forwarding headers all
//! see it. A balancer's connection without a header is closed; a header from any
//! other address is refused (see [`UNTRUSTED_PROXY`](super::conn::UNTRUSTED_PROXY)).

use crate::adapters::std::prelude::*;

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use proxy_core::proxy_protocol::{self, Header, ProxyHeaderError, V2_MAX};

use super::conn::ClientConn;
use super::sources::Sources;
use crate::server::policy::Cidr;

/// What reading a balancer's header came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProxyRead {
    /// Not all of it yet.
    Wait,
    /// Read; the connection is the client's now (`None`: the balancer's own,
    /// a health check).
    Done(Option<SocketAddr>),
    /// Close the connection, for this reason.
    Close(&'static str),
}

/// Whether `peer` is one of the configured load balancers.
pub(crate) fn is_balancer(balancers: &[Cidr], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    balancers.iter().any(|c| c.contains(&peer))
}

impl ClientConn {
    /// Reads the PROXY header off the raw socket; what follows it stays
    /// buffered for the connection's next stage. The client's address replaces
    /// the balancer's, and the connection takes its place in the client's
    /// per-source count.
    pub(crate) fn read_proxy_header(&mut self, now: Instant, sources: &Arc<Sources>) -> ProxyRead {
        loop {
            match proxy_protocol::parse(self.rbuf.get(..self.rlen).unwrap_or_default()) {
                Ok(Header::NeedMore) => {}
                Ok(Header::Proxy { len, source, .. }) => {
                    let source = SocketAddr::new(source.ip().to_canonical(), source.port());
                    let Some(slot) = sources.acquire(source.ip()) else {
                        return ProxyRead::Close(
                            "refused: too many connections from this client (tcp.max_per_source)",
                        );
                    };
                    self.consume(len);
                    self.slot = Some(slot);
                    self.tuple.client = source;
                    return ProxyRead::Done(Some(source));
                }
                Ok(Header::Local { len }) => {
                    self.consume(len);
                    return ProxyRead::Done(None);
                }
                Err(ProxyHeaderError::Missing) => {
                    return ProxyRead::Close(
                        "closed: a load balancer in proxy_protocol_from sent no PROXY header",
                    );
                }
                Err(e) => return ProxyRead::Close(e.as_str()),
            }
            if self.rlen >= V2_MAX || self.rlen >= self.rbuf.len() {
                return ProxyRead::Close("PROXY header too long");
            }
            match self
                .link
                .sock
                .read(self.rbuf.get_mut(self.rlen..V2_MAX).unwrap_or_default())
            {
                Ok(0) => return ProxyRead::Close("closed by peer"),
                Ok(n) => {
                    self.rlen += n;
                    self.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ProxyRead::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ProxyRead::Close("read error"),
            }
        }
    }

    fn consume(&mut self, len: usize) {
        let len = len.min(self.rlen);
        self.rbuf.copy_within(len..self.rlen, 0);
        self.rlen -= len;
        self.proxy_pending = false;
    }
}
