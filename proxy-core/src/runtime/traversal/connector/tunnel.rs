//! One connection of the connector through its life on an event loop: the
//! edge's address looked up, TCP and TLS to the edge, the registration, the
//! wait for a browser, the web bridge dialled, the two spliced. Each step
//! moves it as far as its sockets allow and says what happened.

use crate::runtime::prelude::*;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Registry, Token};
use rustls::pki_types::ServerName;

use super::dialing::{DialError, Dialed, Dialing};
use super::{Failed, Shared, Site};
use crate::runtime::Link;
use crate::runtime::dns::{Lookup, Resolver};
use crate::runtime::traversal::pipe::Pipe;
use crate::runtime::traversal::{BYE, HELLO, LINE_MAX};

/// Where a connection is.
#[allow(
    clippy::large_enum_variant,
    reason = "each connection is boxed whole in its loop's table"
)]
pub(super) enum Stage {
    /// Waiting for the resolver: the address of edge number `edge`.
    Resolving { edge: usize },
    /// TCP and TLS to edge number `edge`.
    Opening { dial: Box<Dialing>, edge: usize },
    /// The registration sent; the answer read so far.
    Registering {
        link: Link,
        line: Vec<u8>,
        edge: usize,
    },
    /// Registered: waiting for a browser's first bytes.
    Ready { link: Link },
    /// Said [`BYE`]; serves what the edge sent before it heard.
    Leaving { link: Link },
    /// A browser's first bytes arrived; the web bridge is being dialled
    /// (`dial` is `None` while its name is looked up).
    Bridging {
        edge: Link,
        first: Vec<u8>,
        dial: Option<Box<Dialing>>,
    },
    /// The edge's connection and the web bridge's, spliced.
    Splicing {
        edge: Link,
        bridge: Link,
        up: Pipe,
        down: Pipe,
    },
    /// Closed.
    Gone,
}

/// What a stage counts as, for the pool's accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// On its way to being ready.
    Opening,
    /// Ready at the edge.
    Ready,
    /// Leaving: no longer offered.
    Leaving,
    /// Carrying a browser.
    Active,
    /// Closed.
    Gone,
}

/// What a step did worth the loop's attention besides the stage.
pub(super) enum Outcome {
    /// Nothing.
    Quiet,
    /// The connection to edge number `edge` failed before it was ready.
    OpenFailed(Failed, usize),
    /// A tunnel in use ended: bytes each way, or why it failed.
    Ended(Result<(u64, u64), String>),
}

/// What a step needs from its loop.
pub(super) struct Cx<'a> {
    pub(super) registry: &'a Registry,
    pub(super) shared: &'a Shared,
    pub(super) resolver: &'a Resolver,
    pub(super) scratch: &'a mut [u8],
    pub(super) now: Instant,
}

/// One connection.
pub(super) struct Tunnel {
    /// Its join URL (an index into the connector's sites).
    pub(super) site: usize,
    pub(super) stage: Stage,
    /// When the stage began; while spliced, when a byte last moved.
    pub(super) since: Instant,
}

/// The tokens of connection `index`: its edge side and its web bridge side.
pub(super) fn tokens(index: usize) -> (Token, Token) {
    (Token(index * 2), Token(index * 2 + 1))
}

/// The edge's addresses: a literal at once, a name through the resolver.
fn edge_addrs(target: &str, resolver: &Resolver, now: Instant) -> Lookup {
    if let Ok(a) = target.parse::<SocketAddr>() {
        return Lookup::Ready(vec![a]);
    }
    let parsed = target.rsplit_once(':').and_then(|(h, p)| {
        Some((
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse().ok()?,
        ))
    });
    match parsed {
        Some((host, port)) if !host.is_empty() => resolver.lookup(host, port, now),
        _ => Lookup::Failed(io::Error::new(io::ErrorKind::InvalidInput, "not HOST:PORT")),
    }
}

/// A failure on the edge's connection before it was ready: a TLS refusal
/// (the edge's alert) or the connection's.
fn failed(e: io::Error) -> Failed {
    match e.kind() {
        io::ErrorKind::InvalidData => Failed::Tls(e),
        _ => Failed::Unreachable(e),
    }
}

impl Stage {
    /// What it counts as.
    pub(super) fn kind(&self) -> Kind {
        match self {
            Stage::Resolving { .. } | Stage::Opening { .. } | Stage::Registering { .. } => {
                Kind::Opening
            }
            Stage::Ready { .. } => Kind::Ready,
            Stage::Leaving { .. } => Kind::Leaving,
            Stage::Bridging { .. } | Stage::Splicing { .. } => Kind::Active,
            Stage::Gone => Kind::Gone,
        }
    }
}

impl Tunnel {
    /// A new connection to edge number `edge` for `site`.
    pub(super) fn new(site: usize, edge: usize, now: Instant) -> Tunnel {
        Tunnel {
            site,
            stage: Stage::Resolving { edge },
            since: now,
        }
    }

    /// The event loop saw `token`'s socket ready.
    pub(super) fn readable(&mut self, bridge_side: bool) {
        match &mut self.stage {
            Stage::Registering { link, .. }
            | Stage::Ready { link }
            | Stage::Leaving { link }
            | Stage::Bridging { edge: link, .. } => link.readable(),
            Stage::Splicing { edge, bridge, .. } => {
                if bridge_side {
                    bridge.readable();
                } else {
                    edge.readable();
                }
            }
            _ => {}
        }
    }

    /// Says [`BYE`] on a ready connection: the edge offers it no more.
    pub(super) fn leave(&mut self, now: Instant) {
        let Stage::Ready { mut link } = std::mem::replace(&mut self.stage, Stage::Gone) else {
            return;
        };
        let said = link.write_plain(format!("{BYE}\r\n").as_bytes());
        if said.is_ok() && link.flush().is_ok() {
            self.stage = Stage::Leaving { link };
            self.since = now;
        }
    }

    /// Closes it (a stop, a deadline): both ends told, when open.
    pub(super) fn close(&mut self) {
        match std::mem::replace(&mut self.stage, Stage::Gone) {
            Stage::Registering { mut link, .. }
            | Stage::Ready { mut link }
            | Stage::Leaving { mut link }
            | Stage::Bridging { edge: mut link, .. } => link.close(),
            Stage::Splicing {
                mut edge,
                mut bridge,
                ..
            } => {
                edge.close();
                bridge.close();
            }
            _ => {}
        }
    }

    /// Moves it on as far as its sockets allow.
    pub(super) fn step(&mut self, cx: &mut Cx<'_>, index: usize, site: &Site) -> Outcome {
        let (edge_token, bridge_token) = tokens(index);
        loop {
            let stage = std::mem::replace(&mut self.stage, Stage::Gone);
            let before = stage.kind();
            let (next, outcome) = match stage {
                Stage::Resolving { edge } => {
                    let target = cx.shared.edge(edge);
                    match edge_addrs(target, cx.resolver, cx.now) {
                        Lookup::Wait => (Stage::Resolving { edge }, None),
                        Lookup::Failed(e) => (
                            Stage::Gone,
                            Some(Outcome::OpenFailed(Failed::Unreachable(e), edge)),
                        ),
                        Lookup::Ready(addrs) => {
                            let conn = rustls::ClientConnection::new(
                                cx.shared.tls.clone(),
                                cx.shared.name.clone(),
                            )
                            .map_err(|e| DialError::Tls(io::Error::other(e)));
                            match conn.and_then(|c| {
                                Dialing::start(addrs, Some(c), cx.registry, edge_token)
                            }) {
                                Ok(dial) => (Stage::Opening { dial, edge }, None),
                                Err(e) => {
                                    (Stage::Gone, Some(Outcome::OpenFailed(dial_failed(e), edge)))
                                }
                            }
                        }
                    }
                }
                Stage::Opening { dial, edge } => match dial.step(cx.registry, edge_token) {
                    Dialed::Going(dial) => (Stage::Opening { dial, edge }, Some(Outcome::Quiet)),
                    Dialed::Failed(e) => {
                        (Stage::Gone, Some(Outcome::OpenFailed(dial_failed(e), edge)))
                    }
                    Dialed::Ready(link) => {
                        let mut link = *link;
                        if link.tls.as_ref().and_then(|t| t.handshake_kind())
                            == Some(rustls::HandshakeKind::Resumed)
                        {
                            site.resumed
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        crate::runtime::traversal::keepalive(&link.sock);
                        let hello = format!("{HELLO} {}\r\n", site.host);
                        match link
                            .write_plain(hello.as_bytes())
                            .and_then(|_| link.flush())
                        {
                            Ok(_) => (
                                Stage::Registering {
                                    link,
                                    line: Vec::new(),
                                    edge,
                                },
                                None,
                            ),
                            Err(e) => (Stage::Gone, Some(Outcome::OpenFailed(failed(e), edge))),
                        }
                    }
                },
                Stage::Registering { link, line, edge } => register(cx, link, line, edge),
                Stage::Ready { mut link } => match first_bytes(&mut link, cx.scratch) {
                    Ok(Some(first)) => (bridging(link, first), None),
                    Ok(None) => (Stage::Ready { link }, Some(Outcome::Quiet)),
                    Err(()) => (Stage::Gone, Some(Outcome::Quiet)),
                },
                Stage::Leaving { mut link } => match first_bytes(&mut link, cx.scratch) {
                    Ok(Some(first)) => (bridging(link, first), None),
                    Ok(None) => (Stage::Leaving { link }, Some(Outcome::Quiet)),
                    Err(()) => (Stage::Gone, Some(Outcome::Quiet)),
                },
                Stage::Bridging { edge, first, dial } => {
                    bridge(cx, site, edge, first, dial, bridge_token)
                }
                Stage::Splicing {
                    mut edge,
                    mut bridge,
                    mut up,
                    mut down,
                } => {
                    let moved = match up.pump(&mut edge, &mut bridge, cx.scratch) {
                        Ok(a) => down.pump(&mut bridge, &mut edge, cx.scratch).map(|b| a | b),
                        Err(e) => Err(e),
                    };
                    match moved {
                        Ok(moved) if !(up.done() || down.done()) => {
                            if moved {
                                self.since = cx.now;
                            }
                            (
                                Stage::Splicing {
                                    edge,
                                    bridge,
                                    up,
                                    down,
                                },
                                Some(Outcome::Quiet),
                            )
                        }
                        Ok(_) => {
                            edge.close();
                            bridge.close();
                            (
                                Stage::Gone,
                                Some(Outcome::Ended(Ok((up.carried, down.carried)))),
                            )
                        }
                        Err(e) => {
                            edge.close();
                            bridge.close();
                            (Stage::Gone, Some(Outcome::Ended(Err(e.to_string()))))
                        }
                    }
                }
                Stage::Gone => (Stage::Gone, Some(Outcome::Quiet)),
            };
            if next.kind() != before {
                self.since = cx.now;
            }
            self.stage = next;
            // A stage that changed may go on at once (a registration answered
            // with a request behind it, a bridge dialled and spliced).
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }
}

fn dial_failed(e: DialError) -> Failed {
    match e {
        DialError::Connect(_, e) => Failed::Unreachable(e),
        DialError::Tls(e) => failed(e),
    }
}

/// A browser's first bytes on a ready connection: `Ok(None)` when none yet,
/// `Err` when the edge closed it.
fn first_bytes(link: &mut Link, scratch: &mut [u8]) -> Result<Option<Vec<u8>>, ()> {
    match link.read_plain(scratch) {
        Ok(0) => Err(()),
        Ok(n) => Ok(Some(scratch.get(..n).unwrap_or_default().to_vec())),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(_) => Err(()),
    }
}

fn bridging(edge: Link, first: Vec<u8>) -> Stage {
    Stage::Bridging {
        edge,
        first,
        dial: None,
    }
}

/// Reads the edge's answer to the registration.
fn register(
    cx: &mut Cx<'_>,
    mut link: Link,
    mut line: Vec<u8>,
    edge: usize,
) -> (Stage, Option<Outcome>) {
    loop {
        let n = match link.read_plain(cx.scratch) {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "closed before answering");
                return (
                    Stage::Gone,
                    Some(Outcome::OpenFailed(Failed::Unreachable(e), edge)),
                );
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return (
                    Stage::Registering { link, line, edge },
                    Some(Outcome::Quiet),
                );
            }
            Err(e) => return (Stage::Gone, Some(Outcome::OpenFailed(failed(e), edge))),
        };
        line.extend_from_slice(cx.scratch.get(..n).unwrap_or_default());
        let Some(end) = line.iter().position(|&b| b == b'\n') else {
            if line.len() > LINE_MAX {
                let e = io::Error::other("an answer longer than 300 bytes");
                return (
                    Stage::Gone,
                    Some(Outcome::OpenFailed(Failed::Unreachable(e), edge)),
                );
            }
            continue;
        };
        let rest = line.split_off(end + 1);
        let answer = String::from_utf8_lossy(&line);
        let answer = answer.trim_end_matches(['\r', '\n']);
        if answer != "OK" {
            let reason = answer.strip_prefix("NO ").unwrap_or(answer);
            let why = stun_core::escape::Escaped::new(reason).to_string();
            link.close();
            return (
                Stage::Gone,
                Some(Outcome::OpenFailed(Failed::Refused(why), edge)),
            );
        }
        // A request may follow the answer at once.
        return if rest.is_empty() {
            (Stage::Ready { link }, None)
        } else {
            (bridging(link, rest), None)
        };
    }
}

/// Dials the web bridge for a browser's connection; spliced once it answers.
fn bridge(
    cx: &mut Cx<'_>,
    site: &Site,
    mut edge: Link,
    first: Vec<u8>,
    dial: Option<Box<Dialing>>,
    token: Token,
) -> (Stage, Option<Outcome>) {
    let u = &site.upstream;
    let fail = |mut edge: Link, why: String| {
        edge.close();
        (
            Stage::Gone,
            Some(Outcome::Ended(Err(format!("web bridge {u}: {why}")))),
        )
    };
    let dial = match dial {
        Some(d) => d,
        None => match cx.resolver.lookup(&u.host, u.port, cx.now) {
            Lookup::Wait => {
                return (
                    Stage::Bridging {
                        edge,
                        first,
                        dial: None,
                    },
                    Some(Outcome::Quiet),
                );
            }
            Lookup::Failed(e) => return fail(edge, format!("DNS: {e}")),
            Lookup::Ready(addrs) => {
                let tls = if u.tls {
                    let conn = ServerName::try_from(u.host.clone())
                        .map_err(io::Error::other)
                        .and_then(|name| {
                            rustls::ClientConnection::new(cx.shared.upstream_tls.clone(), name)
                                .map_err(io::Error::other)
                        });
                    match conn {
                        Ok(c) => Some(c),
                        Err(e) => return fail(edge, format!("TLS: {e}")),
                    }
                } else {
                    None
                };
                match Dialing::start(addrs, tls, cx.registry, token) {
                    Ok(d) => d,
                    Err(e) => return fail(edge, e.to_string()),
                }
            }
        },
    };
    match dial.step(cx.registry, token) {
        Dialed::Going(d) => (
            Stage::Bridging {
                edge,
                first,
                dial: Some(d),
            },
            Some(Outcome::Quiet),
        ),
        Dialed::Failed(e) => fail(edge, e.to_string()),
        Dialed::Ready(bridge) => {
            let bridge = *bridge;
            edge.readable();
            (
                Stage::Splicing {
                    edge,
                    bridge,
                    up: Pipe::with(first),
                    down: Pipe::default(),
                },
                None,
            )
        }
    }
}
