//! The TLS thread: connections accepted on a TLS listener (port 443) are opened
//! here, not on the packet threads, so a burst of TLS handshakes (each a
//! signature, milliseconds of CPU with an RSA key) never delays relayed media.
//!
//! A worker accepts, counts the source, and sends the stream here. This thread
//! demultiplexes the opening (TLS or plain; inside TLS, TURN or HTTP), runs the
//! handshake, and then gives a TURN connection back to the worker that accepted it
//! (which owns its allocation's shard), hands an HTTP one to the web proxy, or
//! closes it. A connection that has not finished its opening by the deadline fixed
//! when it was accepted is closed, however its bytes trickle in.

use crate::adapters::std::prelude::*;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use log::debug;
use mio::{Events, Interest, Poll, Token, Waker};

use proxy_core::runtime::Proxy;

use super::conn::{Conn, Opening, UNTRUSTED_PROXY};
use super::proxied::ProxyRead;
use super::sources::Sources;

const WAKER: Token = Token(usize::MAX);

/// A worker's inbox for TURN connections the TLS thread opened.
#[derive(Clone)]
pub(crate) struct Inbox {
    pub(crate) tx: mpsc::Sender<Conn>,
    pub(crate) waker: Arc<Waker>,
}

/// A connection for the TLS thread, and the worker it goes back to.
pub(crate) struct Incoming {
    pub(crate) conn: Conn,
    pub(crate) worker: usize,
}

/// Where workers send the connections of TLS listeners.
#[derive(Clone)]
pub(crate) struct Handshakes {
    tx: mpsc::Sender<Incoming>,
    waker: Arc<Waker>,
}

impl Handshakes {
    /// Sends `incoming` to the TLS thread.
    pub(crate) fn send(&self, incoming: Incoming) {
        if self.tx.send(incoming).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Wakes the thread (to see the shutdown flag).
    pub(crate) fn wake(&self) {
        let _ = self.waker.wake();
    }
}

/// What the TLS listeners serve: the server's TLS configuration and the web
/// proxy HTTP connections go to. A reload replaces it; connections opened
/// before keep what they started with.
#[derive(Clone)]
pub(crate) struct Front {
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) proxy: Option<Arc<Proxy>>,
}

/// The TLS thread's state.
struct Thread {
    poll: Poll,
    rx: mpsc::Receiver<Incoming>,
    front: Arc<std::sync::RwLock<Front>>,
    inboxes: Vec<Inbox>,
    conns: Vec<Option<Incoming>>,
    free: Vec<usize>,
    shutdown: Arc<AtomicBool>,
    /// Per-source counts, for clients a load balancer names.
    sources: Arc<Sources>,
}

/// Starts the TLS thread; `inboxes[i]` is worker `i`'s.
pub(crate) fn spawn(
    front: Arc<std::sync::RwLock<Front>>,
    inboxes: Vec<Inbox>,
    shutdown: Arc<AtomicBool>,
    sources: Arc<Sources>,
) -> io::Result<(Handshakes, std::thread::JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let mut thread = Thread {
        poll,
        rx,
        front,
        inboxes,
        conns: Vec::new(),
        free: Vec::new(),
        shutdown,
        sources,
    };
    let handle = std::thread::Builder::new()
        .name("turn-tls".into())
        .spawn(move || thread.run())?;
    Ok((Handshakes { tx, waker }, handle))
}

impl Thread {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        while !self.shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            let next = self
                .conns
                .iter()
                .flatten()
                .filter_map(|c| c.conn.deadline)
                .min()
                .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, Some(next))
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("TLS thread: event loop failed: {e}");
                return;
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.take_new();
                } else {
                    self.on_conn(ev.token().0);
                }
            }
            self.expire(Instant::now());
        }
    }

    fn take_new(&mut self) {
        while let Ok(mut incoming) = self.rx.try_recv() {
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut incoming.conn.link.sock, Token(idx), interest)
                .is_err()
            {
                self.free.push(idx);
                continue;
            }
            if let Some(slot) = self.conns.get_mut(idx) {
                *slot = Some(incoming);
            }
            // Its first bytes may already be waiting.
            self.on_conn(idx);
        }
    }

    fn release(&mut self, idx: usize) -> Option<Incoming> {
        let mut incoming = self.conns.get_mut(idx).and_then(Option::take)?;
        let _ = self
            .poll
            .registry()
            .deregister(&mut incoming.conn.link.sock);
        self.free.push(idx);
        Some(incoming)
    }

    fn on_conn(&mut self, idx: usize) {
        let Some(Some(incoming)) = self.conns.get_mut(idx) else {
            return;
        };
        if incoming.conn.proxy_pending {
            let from = incoming.conn.tuple.client;
            match incoming
                .conn
                .read_proxy_header(Instant::now(), &self.sources)
            {
                ProxyRead::Wait => return,
                ProxyRead::Done(client) => debug!("tcp {from}: PROXY header: client {client:?}"),
                ProxyRead::Close(why) => {
                    log::info!("tcp {from} (load balancer): {why}");
                    self.release(idx);
                    return;
                }
            }
        }
        let front = self.front.read().unwrap_or_else(|e| e.into_inner()).clone();
        let outcome = incoming.conn.open(Instant::now(), &front.tls);
        match outcome {
            Opening::Wait => {}
            Opening::Turn => {
                if let Some(Incoming { conn, worker }) = self.release(idx)
                    && let Some(inbox) = self.inboxes.get(worker)
                    && inbox.tx.send(conn).is_ok()
                {
                    let _ = inbox.waker.wake();
                }
            }
            Opening::Http => {
                if let Some(Incoming { conn, .. }) = self.release(idx) {
                    let peer = conn.tuple.client;
                    let (link, buffered, sni) = conn.into_parts();
                    if let Some(p) = &front.proxy {
                        p.hand_off(link, buffered, sni, peer);
                    }
                }
            }
            Opening::Close(why) if why == UNTRUSTED_PROXY => {
                if let Some(Incoming { conn, .. }) = self.release(idx) {
                    log::info!("tcp {}: {why}", conn.tuple.client);
                }
            }
            Opening::Close(why) => {
                if let Some(Incoming { conn, .. }) = self.release(idx) {
                    debug!(
                        "{} {}: {why}",
                        conn.tuple.transport.name(),
                        conn.tuple.client
                    );
                }
            }
        }
    }

    /// Closes the connections whose opening deadline passed.
    fn expire(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let late = self
                .conns
                .get(idx)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.conn.deadline.is_some_and(|d| now >= d));
            if late && let Some(Incoming { conn, .. }) = self.release(idx) {
                debug!(
                    "{} {}: closed: no TLS handshake and first message in time (tcp.handshake_timeout)",
                    conn.tuple.transport.name(),
                    conn.tuple.client
                );
            }
        }
    }
}
