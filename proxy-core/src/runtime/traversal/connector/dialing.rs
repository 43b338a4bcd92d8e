//! A connection the connector opens without blocking its loop, to the edge or
//! to a web bridge: each address in turn with a non-blocking connect, then the
//! TLS handshake (if any) driven by events.

use crate::runtime::prelude::*;
use std::io;
use std::net::SocketAddr;

use mio::{Interest, Registry, Token};

use crate::runtime::Link;
use crate::runtime::link::{Handshake, connected};
use crate::runtime::side::TLS_BUFFER;

/// Why a dial failed.
#[derive(Debug)]
pub(super) enum DialError {
    /// No address took the connection (the last one's error).
    Connect(SocketAddr, io::Error),
    /// The TLS handshake failed.
    Tls(io::Error),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Connect(a, e) => write!(f, "{a}: {e}"),
            DialError::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

/// A dial in progress.
pub(super) struct Dialing {
    link: Link,
    addrs: Vec<SocketAddr>,
    at: usize,
    /// The TLS session to start once connected.
    tls: Option<rustls::ClientConnection>,
    connected: bool,
}

/// What a step of a dial came to.
pub(super) enum Dialed {
    /// Still going.
    Going(Box<Dialing>),
    /// Connected, and through TLS if asked.
    Ready(Box<Link>),
    /// Failed.
    Failed(DialError),
}

/// Starts a connect to `addrs[at]`, or the next that can be started.
fn connect_from(
    addrs: &[SocketAddr],
    mut at: usize,
    registry: &Registry,
    token: Token,
) -> Result<(Link, usize), DialError> {
    let mut last = None;
    while let Some(addr) = addrs.get(at).copied() {
        let started = mio::net::TcpStream::connect(addr).and_then(|mut sock| {
            registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
            Ok(sock)
        });
        match started {
            Ok(sock) => return Ok((Link::plain(sock), at)),
            Err(e) => last = Some((addr, e)),
        }
        at += 1;
    }
    Err(match last {
        Some((a, e)) => DialError::Connect(a, e),
        None => DialError::Connect(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            io::Error::new(io::ErrorKind::NotFound, "no address"),
        ),
    })
}

impl Dialing {
    /// Starts dialling `addrs` (in turn), with `tls` once connected.
    pub(super) fn start(
        addrs: Vec<SocketAddr>,
        tls: Option<rustls::ClientConnection>,
        registry: &Registry,
        token: Token,
    ) -> Result<Box<Dialing>, DialError> {
        let (link, at) = connect_from(&addrs, 0, registry, token)?;
        Ok(Box::new(Dialing {
            link,
            addrs,
            at,
            tls,
            connected: false,
        }))
    }

    /// The address being dialled.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addrs
            .get(self.at)
            .copied()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Moves the dial on as far as the socket allows.
    pub(super) fn step(mut self: Box<Self>, registry: &Registry, token: Token) -> Dialed {
        if !self.connected {
            match connected(&self.link.sock) {
                Ok(true) => {}
                Ok(false) => return Dialed::Going(self),
                Err(e) => {
                    if self.at + 1 >= self.addrs.len() {
                        return Dialed::Failed(DialError::Connect(self.addr(), e));
                    }
                    return match connect_from(&self.addrs, self.at + 1, registry, token) {
                        Ok((link, at)) => {
                            self.link = link;
                            self.at = at;
                            Dialed::Going(self)
                        }
                        Err(other) => Dialed::Failed(other),
                    };
                }
            }
            self.connected = true;
            let _ = self.link.sock.set_nodelay(true);
            if let Some(mut tls) = self.tls.take() {
                tls.set_buffer_limit(Some(TLS_BUFFER));
                self.link.tls = Some(rustls::Connection::Client(tls));
            }
        }
        match self.link.handshake() {
            Ok(Handshake::Done) => Dialed::Ready(Box::new(self.link)),
            Ok(Handshake::Going(_)) => Dialed::Going(self),
            Err(e) => Dialed::Failed(DialError::Tls(e)),
        }
    }
}
