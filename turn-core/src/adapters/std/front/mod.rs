//! The front of the TLS listeners (port 443): what arrives there is opened
//! here, on the front threads, not on the packet threads, so a burst of TLS
//! handshakes (each a signature, up to milliseconds of CPU with an RSA key)
//! never delays relayed media.
//!
//! A worker accepts, counts the source, and queues the stream to one of the
//! front threads (`turn-tls-N`, one per core by default), each with an event
//! loop of its own and a bounded queue: when every queue is full the connection
//! is closed at once. A thread reads a load balancer's PROXY header, then
//! demultiplexes the opening (TLS or plain; inside TLS, TURN or HTTP:
//! [`opening`]) and runs the handshake; it gives a TURN connection back to the
//! worker that accepted it (which owns its allocation's shard), hands an HTTP
//! one to the embedder's hook ([`http`]: causeway wires its web proxy there),
//! or closes it.
//!
//! What a ClientHello may cost is bounded before it is answered: a connection
//! past the opening deadline fixed when it was accepted is closed unsigned
//! (however its bytes trickled in, and however long it waited in a queue), and
//! so is a source over its handshake rate (`TcpLimits::tls_handshakes_per_sec`,
//! an IPv6 source counted by its network), which a replayed ClientHello flood
//! from one address cannot pass. Refusals are counted in
//! [`Stats`](super::Stats) and logged at most once a second per thread.
//! Deadlines are kept in a heap: a thread never scans its connections.

use crate::adapters::std::prelude::*;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::{Events, Interest, Poll, Token, Waker};
use stun_core::escape::{Held, LineBudget};

pub(crate) mod http;
pub(crate) mod opening;

use super::clock::Clock;
use super::conn::{ClientConn, UNTRUSTED_PROXY};
use super::proxied::ProxyRead;
use super::sources::Sources;
use crate::server::RateLimiter;
use http::HttpHook;
use opening::Demuxed;

const WAKER: Token = Token(usize::MAX);

/// Connections queued to one TLS thread before a worker closes new ones.
pub(crate) const QUEUE: usize = 1024;

/// A worker's inbox for TURN connections the TLS threads opened.
#[derive(Clone)]
pub(crate) struct Inbox {
    pub(crate) tx: mpsc::Sender<ClientConn>,
    pub(crate) waker: Arc<Waker>,
}

/// A connection for a TLS thread, and the worker it goes back to.
pub(crate) struct Incoming {
    pub(crate) conn: ClientConn,
    pub(crate) worker: usize,
}

/// One TLS thread's queue.
struct Lane {
    tx: mpsc::SyncSender<Incoming>,
    waker: Arc<Waker>,
}

/// What the TLS threads refused, for the stats.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Every queue was full.
    pub(crate) queue_full: AtomicU64,
    /// The source was over its handshake rate.
    pub(crate) over_rate: AtomicU64,
    /// The opening deadline passed before the ClientHello was answered.
    pub(crate) late: AtomicU64,
}

/// Where workers send the connections of TLS listeners.
#[derive(Clone)]
pub(crate) struct Handshakes {
    lanes: Arc<[Lane]>,
    next: Arc<AtomicUsize>,
    refusals: Arc<Refusals>,
}

impl Handshakes {
    /// Queues `incoming` to a TLS thread (the next in turn with room); gives it
    /// back when every queue is full (counted).
    pub(crate) fn send(&self, incoming: Incoming) -> Result<(), Box<Incoming>> {
        let n = self.lanes.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut incoming = incoming;
        for i in 0..n {
            let Some(lane) = self.lanes.get((first + i) % n) else {
                break;
            };
            match lane.tx.try_send(incoming) {
                Ok(()) => {
                    let _ = lane.waker.wake();
                    return Ok(());
                }
                Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                    incoming = back;
                }
            }
        }
        self.refusals.queue_full.fetch_add(1, Ordering::Relaxed);
        Err(Box::new(incoming))
    }

    /// Wakes every thread (to see the shutdown flag).
    pub(crate) fn wake(&self) {
        for lane in self.lanes.iter() {
            let _ = lane.waker.wake();
        }
    }
}

/// What the TLS listeners serve: the server's TLS configuration and the hook
/// HTTP connections go to. A reload replaces it; connections opened before keep
/// what they started with.
#[derive(Clone)]
pub(crate) struct Front {
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) on_http: Option<HttpHook>,
}

/// What every TLS thread shares.
pub(crate) struct Common {
    pub(crate) front: Arc<std::sync::RwLock<Front>>,
    pub(crate) inboxes: Vec<Inbox>,
    pub(crate) shutdown: Arc<AtomicBool>,
    /// Per-source counts, for clients a load balancer names.
    pub(crate) sources: Arc<Sources>,
    /// Handshakes per source.
    pub(crate) rate: Arc<Mutex<RateLimiter>>,
    pub(crate) clock: Clock,
    pub(crate) refusals: Arc<Refusals>,
}

/// One TLS thread's state.
struct Thread {
    poll: Poll,
    rx: mpsc::Receiver<Incoming>,
    common: Arc<Common>,
    conns: Vec<Option<Incoming>>,
    /// Each slot's generation: a deadline in the heap for an older one misses.
    generations: Vec<u64>,
    free: Vec<usize>,
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    logs: LineBudget,
}

/// Starts `threads` TLS threads; `common.inboxes[i]` is worker `i`'s.
pub(crate) fn spawn(
    threads: usize,
    common: Common,
) -> io::Result<(Handshakes, Vec<std::thread::JoinHandle<()>>)> {
    let common = Arc::new(common);
    let mut lanes = Vec::new();
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let mut thread = Thread {
            poll,
            rx,
            common: common.clone(),
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            deadlines: BinaryHeap::new(),
            logs: LineBudget::new(1),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("turn-tls-{i}"))
                .spawn(move || thread.run())?,
        );
        lanes.push(Lane { tx, waker });
    }
    Ok((
        Handshakes {
            lanes: lanes.into(),
            next: Arc::new(AtomicUsize::new(0)),
            refusals: common.refusals.clone(),
        },
        handles,
    ))
}

impl Thread {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        while !self.common.shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            let next = self
                .deadlines
                .peek()
                .map_or(Duration::from_secs(1), |Reverse((d, ..))| {
                    d.saturating_duration_since(now)
                });
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
            // Past its deadline while it waited: closed, nothing spent on it.
            if incoming.conn.deadline.is_some_and(|d| Instant::now() >= d) {
                self.common.refusals.late.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.generations.push(0);
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
            let generation = self.generations.get(idx).copied().unwrap_or(0);
            if let Some(d) = incoming.conn.deadline {
                self.deadlines.push(Reverse((d, idx, generation)));
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
        if let Some(g) = self.generations.get_mut(idx) {
            *g += 1;
        }
        self.free.push(idx);
        Some(incoming)
    }

    /// Logs a refusal a client caused, within this thread's budget.
    fn log_refusal(&mut self, what: std::fmt::Arguments<'_>) {
        if let Some(held) = self.logs.allow(self.common.clock.now().as_millis()) {
            info!("{what}{}", Held(held));
        }
    }

    /// Whether the ClientHello of connection `idx` may be answered now.
    fn may_answer(&mut self, idx: usize, now: Instant) -> Result<(), &'static str> {
        let Some(Some(incoming)) = self.conns.get(idx) else {
            return Err("gone");
        };
        if incoming.conn.deadline.is_some_and(|d| now >= d) {
            self.common.refusals.late.fetch_add(1, Ordering::Relaxed);
            return Err("no TLS handshake in time (tcp.handshake_timeout)");
        }
        let source = incoming.conn.tuple.client.ip();
        let prefix = self.common.sources.v6_prefix();
        let key = proxy_core::source::source_key(source, prefix);
        let allowed = self
            .common
            .rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(key, self.common.clock.now());
        if !allowed {
            self.common
                .refusals
                .over_rate
                .fetch_add(1, Ordering::Relaxed);
            self.log_refusal(format_args!(
                "tls {source}: refused: over the TLS handshakes allowed per second from one \
                 source (tcp.tls_handshakes_per_sec)"
            ));
            return Err("over the handshake rate");
        }
        Ok(())
    }

    fn on_conn(&mut self, idx: usize) {
        let front = self
            .common
            .front
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        loop {
            let Some(Some(incoming)) = self.conns.get_mut(idx) else {
                return;
            };
            if incoming.conn.proxy_pending {
                let from = incoming.conn.tuple.client;
                match incoming
                    .conn
                    .read_proxy_header(Instant::now(), &self.common.sources)
                {
                    ProxyRead::Wait => return,
                    ProxyRead::Done(client) => {
                        debug!("tcp {from}: PROXY header: client {client:?}")
                    }
                    ProxyRead::Close(why) => {
                        self.release(idx);
                        self.log_refusal(format_args!("tcp {from} (load balancer): {why}"));
                        return;
                    }
                }
            }
            let outcome = incoming.conn.open(Instant::now());
            match outcome {
                Demuxed::Wait => return,
                Demuxed::Hello => {
                    let answered = self.may_answer(idx, Instant::now()).and_then(|()| {
                        match self.conns.get_mut(idx) {
                            Some(Some(i)) => i.conn.start_tls(&front.tls),
                            _ => Err("gone"),
                        }
                    });
                    if let Err(why) = answered {
                        if let Some(Incoming { conn, .. }) = self.release(idx) {
                            debug!("tls {}: closed: {why}", conn.tuple.client);
                        }
                        return;
                    }
                    // On to what is inside TLS.
                }
                Demuxed::Turn => {
                    if let Some(Incoming { conn, worker }) = self.release(idx)
                        && let Some(inbox) = self.common.inboxes.get(worker)
                        && inbox.tx.send(conn).is_ok()
                    {
                        let _ = inbox.waker.wake();
                    }
                    return;
                }
                Demuxed::Http => {
                    if let Some(Incoming { conn, .. }) = self.release(idx) {
                        match &front.on_http {
                            Some(hook) => hook(conn.into_accepted()),
                            None => debug!(
                                "{} {}: closed: HTTP on a TLS listener, and nothing serves \
                                 HTTP here (RelayBuilder::on_http)",
                                conn.tuple.transport.name(),
                                conn.tuple.client
                            ),
                        }
                    }
                    return;
                }
                Demuxed::Close(why) if why == UNTRUSTED_PROXY => {
                    if let Some(Incoming { conn, .. }) = self.release(idx) {
                        self.log_refusal(format_args!("tcp {}: {why}", conn.tuple.client));
                    }
                    return;
                }
                Demuxed::Close(why) => {
                    if let Some(Incoming { conn, .. }) = self.release(idx) {
                        debug!(
                            "{} {}: {why}",
                            conn.tuple.transport.name(),
                            conn.tuple.client
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Closes the connections whose opening deadline passed.
    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((deadline, idx, generation))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if self.generations.get(idx) != Some(&generation) {
                continue;
            }
            if let Some(Incoming { conn, .. }) = self.release(idx) {
                debug!(
                    "{} {}: closed: no TLS handshake and first message in time (tcp.handshake_timeout)",
                    conn.tuple.transport.name(),
                    conn.tuple.client
                );
            }
        }
    }
}
