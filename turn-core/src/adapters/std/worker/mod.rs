//! One worker: an event loop over its own listening sockets, TCP clients and relay
//! sockets, driving its own shard of the TURN server.
//!
//! The packet path allocates nothing: datagrams are received in batches
//! (recvmmsg, with GRO where the kernel has it) into buffers made at start
//! ([`udp`]), peer datagrams land after the core's headroom so it wraps them in
//! place, and replies are written into a buffer made at start. Stream clients
//! are in [`tcp`]; log lines and events in [`report`].

/// The core's host over a worker's fields (borrowed one by one, so the shard
/// itself stays free to call).
macro_rules! host_of {
    ($w:expr) => {
        $crate::adapters::std::host::WorkerHost {
            worker: $w.id,
            shared: &$w.shared,
            relays: &mut $w.relays,
            registry: $w.poll.registry(),
            random: &mut $w.random,
            inherited: None,
            tcp: &mut $w.tcp_relays,
        }
    };
}

mod handover;
mod outbox;
mod peer_run;
mod report;
mod tcp;
mod tcp_relay;
mod udp;

use crate::adapters::std::prelude::*;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use log::debug;
use mio::net::TcpListener;
use mio::{Events, Poll, Token, Waker};

use crate::rng::Random;
use crate::server::{Outgoing, PEER_HEADROOM, Server, Slot};
use crate::{FiveTuple, Instant, Transport, UnixTime};

use super::conn::ClientConn;
#[cfg(feature = "tls")]
use super::front::{Handshakes, Inbox};
use super::host::WorkerHost;
use super::relays::{FIRST_RELAY, Relays};
use super::shared::{Handed, Shared};
use super::stats::{AllocationStats, WorkerStats};
use super::tcp_relay::{FIRST_TCP_RELAY, TcpRelays};
use stun_core::escape::LineBudget;

pub(crate) use udp::UdpListener;

/// Permissions per allocation.
pub(crate) const PERMISSIONS: usize = 16;
/// Channel bindings per allocation.
pub(crate) const CHANNELS: usize = 16;
/// Peer TCP connections of TCP allocations (RFC 6062) per worker.
pub(crate) const PEER_CONNECTIONS: usize = 256;
/// The TURN shard a worker runs.
pub(crate) type Turn =
    Server<Vec<Slot<PERMISSIONS, CHANNELS>>, PERMISSIONS, CHANNELS, PEER_CONNECTIONS>;

const WAKER: Token = Token(0);
pub(super) const FIRST_LISTENER: usize = 1;
const FIRST_CONN: usize = 1 << 20;
/// How often idle connections are swept and stats are published.
const TICK: Duration = Duration::from_secs(1);

/// The sockets one worker listens on.
#[derive(Default)]
pub(crate) struct Listeners {
    pub(crate) udp: Vec<UdpListener>,
    pub(crate) tcp: Vec<TcpListener>,
    /// TLS listeners (TURN over TLS or TCP, and the web proxy).
    #[cfg(feature = "tls")]
    pub(crate) tls: Vec<TcpListener>,
}

/// A TCP listener, its address, and whether the TLS thread opens its connections.
struct TcpPort {
    listener: TcpListener,
    local: std::net::SocketAddr,
    tls: bool,
}

/// An event loop and everything it owns.
pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    waker: Arc<Waker>,
    udp: Vec<UdpListener>,
    /// What waits to go out of each UDP listener (same index).
    outboxes: Vec<outbox::Outbox>,
    /// Datagrams to peers gathered while they come as a run.
    peer_run: peer_run::PeerRun,
    tcp: Vec<TcpPort>,
    /// The TLS thread, when there are TLS listeners.
    #[cfg(feature = "tls")]
    handshakes: Option<Handshakes>,
    /// TURN connections the TLS thread opened, back to this worker.
    #[cfg(feature = "tls")]
    inbox: std::sync::mpsc::Receiver<ClientConn>,
    #[cfg(feature = "tls")]
    inbox_tx: std::sync::mpsc::Sender<ClientConn>,
    /// Stream clients by index: the index is their 5-tuple's `socket` tag.
    conns: Vec<Option<ClientConn>>,
    free: Vec<usize>,
    open_conns: usize,
    /// This worker's connections still opening on the TLS threads.
    openings: Arc<std::sync::atomic::AtomicUsize>,
    relays: Relays,
    /// TCP allocations' listeners and peer connections.
    tcp_relays: TcpRelays,
    turn: Turn,
    random: Random,
    shared: Arc<Shared>,
    shutdown: Arc<AtomicBool>,
    /// Once the relay stops: until when usage records wait for room in the
    /// event queue.
    stopping: Option<std::time::Instant>,
    logs: LineBudget,
    /// Lines for packets dropped unanswered (a Send indication or ChannelData
    /// toward what cannot be reached): one each ten seconds, with the count.
    dropped_logs: LineBudget,
    rx: Vec<u8>,
    peer_rx: Vec<u8>,
    tx: Vec<u8>,
    /// A relay-to-relay datagram taken from the hand-off queue.
    handed: Handed,
    /// Relay-to-relay datagrams delivered from the hand-off queue.
    handed_off: u64,
    /// The configuration generation this shard runs.
    generation: u64,
    /// The last hand-over step carried out.
    handover_seen: u64,
    /// While a hand-over waits: the relayed addresses taken out of the loop.
    paused: Option<Vec<std::net::SocketAddr>>,
    /// Handed over: no listener left, stream clients served to their end.
    moved: bool,
    /// The most allocations the shard's table may grow to hold.
    max_slots: usize,
    /// Whether its last published snapshot listed its allocations.
    listing: bool,
}

impl Worker {
    pub(crate) fn new(
        id: usize,
        listeners: Listeners,
        (turn, max_slots): (Turn, usize),
        seed: [u8; 32],
        shared: Arc<Shared>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut token = FIRST_LISTENER;
        let mut udp = Vec::new();
        for mut l in listeners.udp {
            poll.registry()
                .register(&mut l.sock, Token(token), mio::Interest::READABLE)?;
            token += 1;
            udp.push(l);
        }
        let mut tcp = Vec::new();
        let plain = listeners.tcp.into_iter().map(|l| (l, false));
        #[cfg(feature = "tls")]
        let plain = plain.chain(listeners.tls.into_iter().map(|l| (l, true)));
        for (mut listener, tls) in plain {
            poll.registry()
                .register(&mut listener, Token(token), mio::Interest::READABLE)?;
            token += 1;
            let local = listener.local_addr()?;
            tcp.push(TcpPort {
                listener,
                local,
                tls,
            });
        }
        #[cfg(feature = "tls")]
        let (inbox_tx, inbox) = std::sync::mpsc::channel();
        let outboxes = udp.iter().map(|_| outbox::Outbox::new()).collect();
        Ok(Worker {
            id,
            poll,
            waker,
            udp,
            outboxes,
            peer_run: peer_run::PeerRun::new(),
            tcp,
            #[cfg(feature = "tls")]
            handshakes: None,
            #[cfg(feature = "tls")]
            inbox,
            #[cfg(feature = "tls")]
            inbox_tx,
            conns: Vec::new(),
            free: Vec::new(),
            open_conns: 0,
            openings: Arc::default(),
            relays: Relays::default(),
            tcp_relays: TcpRelays::default(),
            turn,
            max_slots,
            listing: false,
            random: Random::new(seed),
            shared,
            shutdown,
            stopping: None,
            logs: LineBudget::new(20),
            dropped_logs: LineBudget::per(1, 10_000),
            rx: vec![0; udp::BATCH * udp::SLOT],
            peer_rx: vec![0; udp::BATCH * udp::PSLOT],
            tx: vec![0; 2048],
            handed: Handed {
                to: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                from: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                len: 0,
                data: [0; super::shared::HANDOFF_MAX],
            },
            handed_off: 0,
            generation: 0,
            handover_seen: 0,
            paused: None,
            moved: false,
        })
    }

    /// Wakes the worker from another thread (to stop it).
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Where the TLS thread sends this worker's TURN connections back.
    #[cfg(feature = "tls")]
    pub(crate) fn inbox(&self) -> Inbox {
        Inbox {
            tx: self.inbox_tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Sends the connections of TLS listeners to `h`.
    #[cfg(feature = "tls")]
    pub(crate) fn set_handshakes(&mut self, h: Handshakes) {
        self.handshakes = Some(h);
    }

    /// Runs until the shutdown flag is set.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = StdInstant::now() + TICK;
        while !self.shutdown.load(Ordering::Relaxed) {
            let mut deadline = next_tick;
            if let Some(t) = self.turn.poll_timeout() {
                deadline = deadline.min(self.shared.clock.to_std(t));
            }
            let timeout = deadline.saturating_duration_since(StdInstant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("worker {}: event loop failed: {e}", self.id);
                return;
            }
            for ev in events.iter() {
                let t = ev.token().0;
                if t == WAKER.0 {
                    #[cfg(feature = "tls")]
                    self.take_inbox();
                    self.take_handoffs();
                    self.take_transfers();
                } else if t >= FIRST_RELAY {
                    self.on_relay(t - FIRST_RELAY);
                } else if t >= FIRST_TCP_RELAY {
                    self.on_tcp_relay(t - FIRST_TCP_RELAY);
                } else if t >= FIRST_CONN {
                    self.on_conn(t - FIRST_CONN);
                } else if t - FIRST_LISTENER < self.udp.len() {
                    self.on_udp(t - FIRST_LISTENER);
                } else {
                    self.on_accept(t - FIRST_LISTENER - self.udp.len());
                }
            }
            // What this worker handed to itself in the batches above.
            self.take_handoffs();
            self.flush_outboxes();
            self.peer_run.flush(&self.relays);
            let now = self.shared.clock.now();
            self.operate(now);
            if self.turn.poll_timeout().is_some_and(|t| t <= now) {
                let mut host = host_of!(self);
                self.turn.handle_timeout(now, &mut host);
            }
            self.report_events();
            let std_now = StdInstant::now();
            if std_now >= next_tick {
                self.sweep_idle(std_now);
                self.sweep_connects(std_now);
                self.publish(now);
                next_tick = std_now + TICK;
            } else if !self.listing && self.listing_wanted(now) {
                // Someone reads the allocations and waits for this list.
                self.publish(now);
            }
        }
        self.stopped();
        self.stop_allocations();
        debug!("worker {} stopped", self.id);
    }

    /// One packet from a client: a datagram where recvmmsg put it, or a TCP or
    /// TLS frame where its connection read it (neither is copied). A TCP
    /// connection passes its write queue as `tcp_out`; a UDP reply goes out of
    /// the listener `tuple.socket` names.
    fn client_packet(
        &mut self,
        now: Instant,
        unix: UnixTime,
        tuple: FiveTuple,
        packet: &[u8],
        tcp_out: Option<&mut Vec<u8>>,
    ) {
        let Worker {
            turn,
            relays,
            shared,
            poll,
            tx,
            logs,
            dropped_logs,
            udp: listeners,
            outboxes,
            peer_run,
            random,
            id,
            tcp_relays,
            max_slots,
            ..
        } = self;
        // A look while a slot is free; a longer table when none is.
        turn.make_room(*max_slots);
        let mut host = WorkerHost {
            worker: *id,
            shared,
            relays,
            registry: poll.registry(),
            random,
            inherited: None,
            tcp: tcp_relays,
        };
        let out = turn.handle_client(now, unix, &mut host, tuple, packet, tx);
        match out {
            Outgoing::Client { bytes, refusal, .. } => {
                if let Some(why) = refusal {
                    report::refused(logs, shared, *id, &tuple, packet, why);
                }
                if let Some(wbuf) = tcp_out {
                    wbuf.extend_from_slice(bytes);
                } else if let Some((l, o)) = udp::listener_at(listeners, outboxes, &tuple) {
                    o.push(l, tuple.client, bytes);
                }
            }
            Outgoing::Peer {
                relay,
                peer,
                own_relay,
                bytes,
                ..
            } => {
                if let Some(r) = relays.get(relay) {
                    if own_relay.is_some() {
                        // What this socket sent before goes first.
                        peer_run.flush(relays);
                    }
                    // To another relay socket of this server: handed to the worker
                    // that owns it, without the kernel, when it fits.
                    let handed = own_relay.is_some_and(|to| {
                        shared.live.owner(to).is_some_and(|owner| {
                            shared
                                .handoffs
                                .get(owner)
                                .is_some_and(|h| h.push(to, r.local, bytes, owner != *id))
                        })
                    });
                    if !handed {
                        // A full socket buffer drops it, as the network would.
                        peer_run.push(relays, relay, peer, bytes);
                    }
                }
            }
            Outgoing::Nothing(Some(why)) => {
                report::refused(dropped_logs, shared, *id, &tuple, packet, why)
            }
            Outgoing::Nothing(None) => {}
        }
    }

    /// What an operator asked of the relay since the last pass: a new
    /// configuration, a drain; and this worker's heartbeat.
    fn operate(&mut self, now: Instant) {
        if let Some(beat) = self.shared.heartbeats.get(self.id) {
            beat.store(now.as_millis(), Ordering::Relaxed);
        }
        let generation = self.shared.config_generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            let cfg = self
                .shared
                .config
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(cfg) = cfg
                && let Err(e) = self.turn.reconfigure(cfg)
            {
                // Checked before it was published: cannot happen.
                log::error!("worker {}: new configuration refused: {e}", self.id);
            }
        }
        self.hand_over_step();
        let drain = self.shared.drain_until_ms.load(Ordering::Acquire);
        if drain != 0 && self.turn.draining_until().is_none() {
            self.turn.drain(Instant::from_millis(drain));
        }
    }

    /// Sends what waits in the listeners' outboxes.
    fn flush_outboxes(&mut self) {
        for (l, o) in self.udp.iter().zip(&mut self.outboxes) {
            if !o.is_empty() {
                o.flush(l);
            }
        }
    }

    /// Relay-to-relay datagrams handed to this worker: each delivered to its relay
    /// socket's allocation as if it had come through the kernel.
    fn take_handoffs(&mut self) {
        let handoff = self.id;
        let now = self.shared.clock.now();
        let mut slot = core::mem::take(&mut self.peer_rx);
        loop {
            let got = self
                .shared
                .handoffs
                .get(handoff)
                .is_some_and(|h| h.pop(&mut self.handed));
            if !got {
                break;
            }
            let (to, from, len) = (self.handed.to, self.handed.from, self.handed.len);
            let Some(handle) = self.relays.by_local(to).map(|r| r.handle) else {
                continue;
            };
            let (Some(dst), Some(src)) = (
                slot.get_mut(PEER_HEADROOM..PEER_HEADROOM + len),
                self.handed.data.get(..len),
            ) else {
                continue;
            };
            dst.copy_from_slice(src);
            self.handed_off += 1;
            self.peer_datagram(now, handle, from, &mut slot, len);
        }
        self.peer_rx = slot;
    }

    /// Whether someone reads the allocations (see `StatsHandle::stats`).
    fn listing_wanted(&self, now: Instant) -> bool {
        self.shared.listing_until_ms.load(Ordering::Acquire) > now.as_millis()
    }

    /// Publishes this worker's stats: its summary and, while someone reads
    /// them, its allocations, refilled in place in the published list under
    /// the lock (one list a worker, its capacity reused; a reader copies
    /// them under the same lock); when nobody does, the list is let go.
    fn publish(&mut self, now: Instant) {
        let listing = self.listing_wanted(now);
        let id = self.id;
        let summary = WorkerStats {
            worker: id,
            counters: *self.turn.counters(),
            allocations: self.turn.allocation_count(),
            capacity: self.max_slots,
            slots: self.turn.capacity(),
            connections: self.open_conns + self.tcp_relays.bound,
            handed_off: self.handed_off,
            client_datagrams: self.outboxes.iter().map(|o| o.datagrams).sum(),
            client_sends: self.outboxes.iter().map(|o| o.syscalls).sum(),
            peer_datagrams: self.peer_run.datagrams,
            peer_sends: self.peer_run.sends,
        };
        let mut all = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.get_mut(id) {
            slot.worker = summary;
            if listing {
                slot.allocations.clear();
                slot.allocations.extend(
                    self.turn
                        .allocations()
                        .map(|a| AllocationStats::of(id, a, now)),
                );
            } else {
                slot.allocations = Vec::new();
            }
            slot.listed = listing;
            slot.running = true;
        }
        drop(all);
        self.listing = listing;
    }

    /// Says this worker publishes no more (readers wait for it no longer).
    fn stopped(&mut self) {
        let mut all = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.get_mut(self.id) {
            slot.running = false;
        }
    }
}

/// Whether a 5-tuple's transport is a stream (its socket tag is a connection).
fn is_stream(tuple: &FiveTuple) -> bool {
    tuple.transport != Transport::Udp
}
