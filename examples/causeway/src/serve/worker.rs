//! One worker: an event loop over its own listening sockets, TCP clients and relay
//! sockets, driving its own shard of the TURN server.
//!
//! The packet path allocates nothing: datagrams are received in batches
//! (recvmmsg, with GRO where the kernel has it) into buffers made at start, peer
//! datagrams land after [`PEER_HEADROOM`] bytes so the core wraps them in place,
//! and replies are written into a buffer made at start.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use log::{debug, info, warn};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use quinn_udp::{RecvMeta, UdpSocketState};
use stun_core::Message;
use stun_core::attributes::Username;
use stun_core::escape::Escaped;
use turn_core::server::{
    ClientOutput, EndReason, Event, PEER_HEADROOM, PeerOutput, Refusal, Server, Slot,
};
use turn_core::{FiveTuple, Instant, Transport};

use super::handshake::{Handshakes, Inbox, Incoming};
use super::host::WorkerHost;
use super::limiter::LogLimiter;
use super::relays::{FIRST_RELAY, Relays};
use super::shared::Shared;
use super::status::{AllocationStatus, WorkerStatus};
use super::tcp::{Conn, ReadState, Stage};

/// Permissions per allocation.
pub(crate) const PERMISSIONS: usize = 16;
/// Channel bindings per allocation.
pub(crate) const CHANNELS: usize = 16;
/// The TURN shard a worker runs.
pub(crate) type Turn = Server<Vec<Slot<PERMISSIONS, CHANNELS>>, Vec<u32>, PERMISSIONS, CHANNELS>;

const WAKER: Token = Token(0);
const FIRST_LISTENER: usize = 1;
const FIRST_CONN: usize = 1 << 20;
/// Datagrams per receive call.
const BATCH: usize = if quinn_udp::BATCH_SIZE < 32 {
    quinn_udp::BATCH_SIZE
} else {
    32
};
/// Room per received datagram: a whole GRO train of up to 64 KiB.
const SLOT: usize = 1 << 16;
/// A peer receive slot: headroom for the TURN header, a GRO train, and slack
/// for padding.
const PSLOT: usize = PEER_HEADROOM + SLOT + 8;
/// How often idle connections are swept and status is published.
const TICK: Duration = Duration::from_secs(1);

/// A UDP listener and its batch-receive state.
pub(crate) struct UdpListener {
    pub(crate) sock: UdpSocket,
    pub(crate) state: UdpSocketState,
    pub(crate) local: SocketAddr,
}

/// The sockets one worker listens on.
#[derive(Default)]
pub(crate) struct Listeners {
    pub(crate) udp: Vec<UdpListener>,
    pub(crate) tcp: Vec<TcpListener>,
    /// TLS listeners (port 443: TURN over TLS or TCP, and the web proxy).
    pub(crate) tls: Vec<TcpListener>,
}

/// An event loop and everything it owns.
pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    waker: Arc<Waker>,
    udp: Vec<UdpListener>,
    /// TCP listeners; `true` for TLS listeners, whose connections the TLS thread
    /// opens.
    tcp: Vec<(TcpListener, SocketAddr, bool)>,
    /// The TLS thread, when there are TLS listeners.
    handshakes: Option<Handshakes>,
    /// TURN connections the TLS thread opened, back to this worker.
    inbox: std::sync::mpsc::Receiver<Conn>,
    inbox_tx: std::sync::mpsc::Sender<Conn>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// TCP connections by (client, server) address, to reach a TCP client.
    conn_index: HashMap<(SocketAddr, SocketAddr), usize>,
    relays: Relays,
    turn: Turn,
    shared: Arc<Shared>,
    shutdown: Arc<AtomicBool>,
    logs: LogLimiter,
    rx: Vec<u8>,
    peer_rx: Vec<u8>,
    tx: Vec<u8>,
}

impl Worker {
    pub(crate) fn new(
        id: usize,
        listeners: Listeners,
        turn: Turn,
        shared: Arc<Shared>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut token = FIRST_LISTENER;
        let mut udp = Vec::new();
        for mut l in listeners.udp {
            poll.registry()
                .register(&mut l.sock, Token(token), Interest::READABLE)?;
            token += 1;
            udp.push(l);
        }
        let mut tcp = Vec::new();
        let tagged = listeners
            .tcp
            .into_iter()
            .map(|l| (l, false))
            .chain(listeners.tls.into_iter().map(|l| (l, true)));
        for (mut l, is_tls) in tagged {
            poll.registry()
                .register(&mut l, Token(token), Interest::READABLE)?;
            token += 1;
            let local = l.local_addr()?;
            tcp.push((l, local, is_tls));
        }
        let (inbox_tx, inbox) = std::sync::mpsc::channel();
        Ok(Worker {
            id,
            poll,
            waker,
            udp,
            tcp,
            handshakes: None,
            inbox,
            inbox_tx,
            conns: Vec::new(),
            free: Vec::new(),
            conn_index: HashMap::new(),
            relays: Relays::default(),
            turn,
            shared,
            shutdown,
            logs: LogLimiter::new(20, StdInstant::now()),
            rx: vec![0; BATCH * SLOT],
            peer_rx: vec![0; BATCH * PSLOT],
            tx: vec![0; 2048],
        })
    }

    /// Wakes the worker from another thread (to stop it).
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Where the TLS thread sends this worker's TURN connections back.
    pub(crate) fn inbox(&self) -> Inbox {
        Inbox {
            tx: self.inbox_tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Sends the connections of TLS listeners to `h`.
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
                    self.take_inbox();
                    continue;
                }
                if t >= FIRST_RELAY {
                    self.on_relay(t - FIRST_RELAY);
                } else if t >= FIRST_CONN {
                    self.on_conn(t - FIRST_CONN);
                } else if t - FIRST_LISTENER < self.udp.len() {
                    self.on_udp(t - FIRST_LISTENER);
                } else {
                    self.on_accept(t - FIRST_LISTENER - self.udp.len());
                }
            }
            let now = self.shared.clock.now();
            if self.turn.poll_timeout().is_some_and(|t| t <= now) {
                let mut host = WorkerHost {
                    shared: &self.shared,
                    relays: &mut self.relays,
                    registry: self.poll.registry(),
                };
                self.turn.handle_timeout(now, &mut host);
            }
            self.log_events();
            let std_now = StdInstant::now();
            if std_now >= next_tick {
                self.sweep_idle(std_now);
                self.publish(now);
                next_tick = std_now + TICK;
            }
        }
        debug!("worker {} stopped", self.id);
    }

    /// Datagrams on UDP listener `i`: STUN requests, indications and ChannelData.
    fn on_udp(&mut self, i: usize) {
        loop {
            let Some(l) = self.udp.get(i) else { return };
            let mut meta = [RecvMeta::default(); BATCH];
            let n = {
                let mut slots = self.rx.chunks_mut(SLOT);
                let mut iov: [IoSliceMut<'_>; BATCH] =
                    std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
                match l.state.recv((&l.sock).into(), &mut iov, &mut meta) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    // Interrupted, or an ICMP error from an earlier send: read on.
                    Err(_) => continue,
                }
            };
            let local = l.local;
            let now = self.shared.clock.now();
            for (k, m) in meta.iter().take(n).enumerate() {
                let tuple = FiveTuple {
                    client: m.addr,
                    server: local,
                    transport: Transport::Udp,
                };
                let stride = m.stride.max(1);
                let mut off = 0;
                while off < m.len {
                    let end = (off + stride).min(m.len);
                    let start = k * SLOT;
                    self.client_packet(now, tuple, Some(i), start + off..start + end, None);
                    off = end;
                }
            }
            if n < BATCH {
                // Fewer than asked: the queue was empty; edge-triggered readiness
                // will report the next datagram.
                return;
            }
        }
    }

    /// One packet from a client, found at `range` of `self.rx` (TCP frames are
    /// copied there first). `udp` names the listener it came on, if UDP; a TCP
    /// connection passes its write queue as `tcp_out`.
    fn client_packet(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        udp: Option<usize>,
        range: std::ops::Range<usize>,
        tcp_out: Option<&mut Vec<u8>>,
    ) {
        let Worker {
            turn,
            relays,
            shared,
            poll,
            rx,
            tx,
            logs,
            udp: listeners,
            ..
        } = self;
        let Some(packet) = rx.get(range) else { return };
        let mut host = WorkerHost {
            shared,
            relays,
            registry: poll.registry(),
        };
        match turn.handle_client(now, &mut host, tuple, packet, tx) {
            ClientOutput::Reply { len, refusal } => {
                if let Some(why) = refusal {
                    log_refusal(logs, &tuple, packet, why);
                }
                let reply = tx.get(..len).unwrap_or(&[]);
                if let Some(wbuf) = tcp_out {
                    wbuf.extend_from_slice(reply);
                } else if let Some(l) = udp.and_then(|i| listeners.get(i)) {
                    let _ = l.sock.send_to(reply, tuple.client);
                }
            }
            ClientOutput::Relay {
                relay, peer, data, ..
            } => {
                if let (Some(r), Some(bytes)) = (relays.get(relay), packet.get(data)) {
                    // A full socket buffer drops the datagram, as the network would.
                    let _ = r.sock.send_to(bytes, peer);
                }
            }
            ClientOutput::Drop(Some(why)) => log_refusal(logs, &tuple, packet, why),
            ClientOutput::Drop(None) => {}
        }
    }

    /// Datagrams from peers on relay socket `i`: wrapped in place and sent to the
    /// allocation's client.
    fn on_relay(&mut self, i: usize) {
        loop {
            let Some(r) = self.relays.by_index(i) else {
                return;
            };
            let handle = r.handle;
            let mut meta = [RecvMeta::default(); BATCH];
            let n = {
                let mut slots = self.peer_rx.chunks_mut(PSLOT);
                let mut iov: [IoSliceMut<'_>; BATCH] = std::array::from_fn(|_| {
                    let slot = slots.next().unwrap_or_default();
                    let end = slot.len().saturating_sub(8);
                    IoSliceMut::new(
                        slot.get_mut(PEER_HEADROOM.min(end)..end)
                            .unwrap_or_default(),
                    )
                });
                match r.state.recv((&r.sock).into(), &mut iov, &mut meta) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    // Interrupted, or an ICMP error from an earlier send (they
                    // surface here): read on.
                    Err(_) => continue,
                }
            };
            let now = self.shared.clock.now();
            // Taken out for the loop so the slots and the server can both be
            // borrowed; a Vec moves without copying or allocating.
            let mut rx = std::mem::take(&mut self.peer_rx);
            for (m, slot) in meta.iter().take(n).zip(rx.chunks_mut(PSLOT)) {
                for_each_datagram(slot, m.len, m.stride, |slot, len| {
                    self.peer_datagram(now, handle, m.addr, slot, len);
                });
            }
            self.peer_rx = rx;
            if n < BATCH {
                return;
            }
        }
    }

    /// One peer datagram of `len` bytes at `buf[PEER_HEADROOM..]`.
    fn peer_datagram(
        &mut self,
        now: Instant,
        handle: turn_core::server::RelayHandle,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) {
        let mut host = WorkerHost {
            shared: &self.shared,
            relays: &mut self.relays,
            registry: self.poll.registry(),
        };
        match self
            .turn
            .handle_peer(now, &mut host, handle, peer, buf, len)
        {
            PeerOutput::Forward { tuple, data } => {
                let Some(bytes) = buf.get(data) else { return };
                if tuple.transport == Transport::Udp {
                    if let Some(l) = self.udp.iter().find(|l| l.local == tuple.server) {
                        let _ = l.sock.send_to(bytes, tuple.client);
                    }
                } else {
                    queue_tcp(
                        self.poll.registry(),
                        &mut self.conns,
                        &self.conn_index,
                        &tuple,
                        bytes,
                    );
                }
            }
            PeerOutput::Drop => {}
        }
    }

    fn on_accept(&mut self, i: usize) {
        loop {
            let Some((listener, local, is_tls)) = self.tcp.get(i) else {
                return;
            };
            let (local, is_tls) = (*local, *is_tls);
            let (stream, peer) = match listener.accept() {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("tcp accept failed: {e}");
                    return;
                }
            };
            if self.conn_index.len() >= self.shared.cfg.tcp.max_connections {
                if let Some(s) = self.logs.allow(StdInstant::now()) {
                    info!(
                        "tcp {peer}: refused: {} connections already open on worker {} \
                         (tcp.max_connections){}",
                        self.conn_index.len(),
                        self.id,
                        note(s)
                    );
                }
                continue;
            }
            let Some(slot) = self.shared.sources.acquire(peer.ip()) else {
                if let Some(s) = self.logs.allow(StdInstant::now()) {
                    info!(
                        "tcp {peer}: refused: {} connections already open from {} \
                         (tcp.max_per_source){}",
                        self.shared.cfg.tcp.max_per_source,
                        peer.ip(),
                        note(s)
                    );
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tuple = FiveTuple {
                client: peer,
                server: local,
                transport: Transport::Tcp,
            };
            let now = StdInstant::now();
            let deadline = now + Duration::from_secs(self.shared.cfg.tcp.handshake_timeout_secs);
            if is_tls {
                let conn = Conn::new(stream, tuple, Stage::Opening, now, deadline, Some(slot));
                if let Some(h) = &self.handshakes {
                    h.send(Incoming {
                        conn,
                        worker: self.id,
                    });
                }
                continue;
            }
            let conn = Conn::new(stream, tuple, Stage::Turn, now, deadline, Some(slot));
            self.adopt(conn);
            debug!("tcp {peer}: connected");
        }
    }

    /// Takes the TURN connections the TLS thread opened.
    fn take_inbox(&mut self) {
        while let Ok(conn) = self.inbox.try_recv() {
            let idx = self.adopt(conn);
            // What came with its opening may hold whole frames already.
            if let Some(idx) = idx {
                self.on_conn(idx);
            }
        }
    }

    /// Registers a TURN connection with this loop; its index.
    fn adopt(&mut self, mut conn: Conn) -> Option<usize> {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = Interest::READABLE;
        if self
            .poll
            .registry()
            .register(&mut conn.link.sock, Token(FIRST_CONN + idx), interest)
            .is_err()
        {
            self.free.push(idx);
            return None;
        }
        conn.wants_write = false;
        self.conn_index
            .insert((conn.tuple.client, conn.tuple.server), idx);
        self.conns[idx] = Some(conn);
        Some(idx)
    }

    fn on_conn(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let now_std = StdInstant::now();
        let now = self.shared.clock.now();
        if conn.stage == Stage::Opening {
            // Openings are the TLS thread's; one never reaches a worker.
            self.close(idx, conn);
            return;
        }
        let tuple = conn.tuple;
        // Each frame is copied into the receive buffer and handled there, as a UDP
        // datagram is; replies go to this connection's write queue.
        let mut state = conn.read_frames(now_std, |frame, wbuf| {
            if let Some(dst) = self.rx.get_mut(..frame.len()) {
                dst.copy_from_slice(frame);
                self.client_packet(now, tuple, None, 0..frame.len(), Some(wbuf));
            }
        });
        if state == ReadState::Open && !conn.flush() {
            state = ReadState::Closed("write error");
        }
        if let ReadState::Closed(why) = state {
            debug!("tcp {}: {why}", tuple.client);
            self.close(idx, conn);
            return;
        }
        conn.allocated = self.turn.has_allocation(&tuple);
        update_interest(self.poll.registry(), idx, &mut conn);
        self.conns[idx] = Some(conn);
    }

    /// Takes connection `idx` out of this loop: no more events, index or slot.
    fn release(&mut self, idx: usize, conn: &mut Conn) {
        let _ = self.poll.registry().deregister(&mut conn.link.sock);
        self.conn_index
            .remove(&(conn.tuple.client, conn.tuple.server));
        self.free.push(idx);
    }

    fn close(&mut self, idx: usize, mut conn: Conn) {
        self.release(idx, &mut conn);
        let mut host = WorkerHost {
            shared: &self.shared,
            relays: &mut self.relays,
            registry: self.poll.registry(),
        };
        self.turn.connection_closed(&conn.tuple, &mut host);
    }

    /// Closes connections idle past `tcp.idle_timeout_secs` that hold no allocation
    /// (an allocation keeps its connection as long as it lives), and those whose
    /// first message has not come by their deadline.
    fn sweep_idle(&mut self, now: StdInstant) {
        let limit = Duration::from_secs(self.shared.cfg.tcp.idle_timeout_secs);
        for idx in 0..self.conns.len() {
            let why = self.conns[idx].as_ref().and_then(|c| {
                if c.deadline.is_some_and(|d| now >= d) {
                    Some("no first message in time (tcp.handshake_timeout_secs)")
                } else if now.saturating_duration_since(c.last_active) > limit
                    && !self.turn.has_allocation(&c.tuple)
                {
                    Some("idle without an allocation (tcp.idle_timeout_secs)")
                } else {
                    None
                }
            });
            if let Some(why) = why
                && let Some(conn) = self.conns[idx].take()
            {
                debug!("tcp {}: closed: {why}", conn.tuple.client);
                self.close(idx, conn);
            }
        }
    }

    /// Logs allocations created and ended.
    fn log_events(&mut self) {
        while let Some(e) = self.turn.poll_event() {
            match e {
                Event::Allocated {
                    tuple,
                    username,
                    relayed,
                    lifetime,
                } => info!(
                    "{} {}: allocation for `{}` relayed at {relayed} ({lifetime} s)",
                    tuple.transport.name(),
                    tuple.client,
                    Escaped::new(&username)
                ),
                Event::Ended {
                    tuple,
                    username,
                    reason,
                    traffic,
                } => info!(
                    "{} {}: allocation of `{}` ended ({}): relayed {} packets / {} bytes \
                     to peers, {} / {} from peers",
                    tuple.transport.name(),
                    tuple.client,
                    Escaped::new(&username),
                    match reason {
                        EndReason::Expired => "expired",
                        EndReason::Released => "released by the client",
                        EndReason::ConnectionClosed => "connection closed",
                    },
                    traffic.to_peer_packets,
                    traffic.to_peer_bytes,
                    traffic.from_peer_packets,
                    traffic.from_peer_bytes
                ),
            }
        }
        if let Some((addr, e)) = self.relays.last_error.take() {
            warn!("cannot bind a relay socket on {addr}: {e} (check relay_ip and relay_range)");
        }
    }

    /// Publishes this worker's status for the admin interface.
    fn publish(&mut self, now: Instant) {
        let status = WorkerStatus {
            worker: self.id,
            counters: *self.turn.counters(),
            capacity: self.turn.capacity(),
            allocations: self
                .turn
                .allocations()
                .map(|a| AllocationStatus::of(a, now))
                .collect(),
        };
        let mut all = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.get_mut(self.id) {
            *slot = status;
        }
    }
}

/// Queues `bytes` for the TCP client of `tuple` and writes what the socket takes.
fn queue_tcp(
    registry: &Registry,
    conns: &mut [Option<Conn>],
    index: &HashMap<(SocketAddr, SocketAddr), usize>,
    tuple: &FiveTuple,
    bytes: &[u8],
) {
    let Some(&idx) = index.get(&(tuple.client, tuple.server)) else {
        return;
    };
    let Some(Some(conn)) = conns.get_mut(idx) else {
        return;
    };
    if conn.queue(bytes) {
        let _ = conn.flush();
        update_interest(registry, idx, conn);
    }
}

/// Asks for writability while replies are queued, and stops asking after.
fn update_interest(registry: &Registry, idx: usize, conn: &mut Conn) {
    let want = conn.has_pending_write();
    if want != conn.wants_write {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let _ = registry.reregister(&mut conn.link.sock, Token(FIRST_CONN + idx), interest);
        conn.wants_write = want;
    }
}

/// One log line for a refused client, naming the user and what to check.
fn log_refusal(logs: &mut LogLimiter, tuple: &FiveTuple, packet: &[u8], why: Refusal) {
    let notable = why.is_notable();
    if !notable && !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let Some(suppressed) = logs.allow(StdInstant::now()) else {
        return;
    };
    let (method, user) = match Message::new_checked(packet) {
        Ok(m) => (
            m.method().to_string(),
            m.attribute::<Username>()
                .ok()
                .flatten()
                .map(|u| u.0.to_string()),
        ),
        Err(_) => ("packet".to_string(), None),
    };
    let user = user
        .map(|u| format!(" user `{}`", Escaped::new(&u)))
        .unwrap_or_default();
    let line = format!(
        "{} {}{user} {method}: {why}{}",
        tuple.transport.name(),
        tuple.client,
        note(suppressed)
    );
    if notable {
        info!("{line}");
    } else {
        debug!("{line}");
    }
}

/// " (N similar lines suppressed)" when N > 0.
fn note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} similar lines suppressed)")
    }
}

/// Hands each datagram of a GRO train received at `slot[PEER_HEADROOM..][..len]`
/// (`stride` bytes each, the last maybe shorter; one datagram when `stride` is 0)
/// to `f`, at `slot[PEER_HEADROOM..]`. `f` may write the headroom and the 3
/// bytes after the datagram (TURN padding): the datagrams after it are kept.
fn for_each_datagram(
    slot: &mut [u8],
    len: usize,
    stride: usize,
    mut f: impl FnMut(&mut [u8], usize),
) {
    let stride = if stride == 0 { len } else { stride };
    let mut off = 0;
    while off < len {
        let seg = (off + stride).min(len) - off;
        if off > 0 {
            // Later datagrams have no headroom: move each to the front.
            let from = PEER_HEADROOM + off;
            if from + seg > slot.len() {
                return;
            }
            slot.copy_within(from..from + seg, PEER_HEADROOM);
        }
        // The 3 bytes after it may hold the start of a datagram not seen yet.
        let after = PEER_HEADROOM + seg..PEER_HEADROOM + seg + 3;
        let kept: Option<[u8; 3]> = if off + seg < len {
            slot.get(after.clone()).and_then(|b| b.try_into().ok())
        } else {
            None
        };
        f(slot, seg);
        if let (Some(kept), Some(b)) = (kept, slot.get_mut(after)) {
            b.copy_from_slice(&kept);
        }
        off += seg;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A GRO train of datagrams 0..n of `stride` bytes (the last `last` bytes),
    /// each filled with its index.
    fn train(stride: usize, sizes: &[usize]) -> (Vec<u8>, usize) {
        let mut slot = vec![0xee; PEER_HEADROOM + 64 + 8];
        let mut at = PEER_HEADROOM;
        for (i, &n) in sizes.iter().enumerate() {
            assert!(n <= stride);
            slot[at..at + n].fill(i as u8);
            at += n;
        }
        (slot, at - PEER_HEADROOM)
    }

    #[test]
    fn every_datagram_of_a_gro_train_survives_padding_writes() {
        for stride in 1..=9 {
            for last in 1..=stride {
                let sizes = [stride, stride, stride, last];
                let (mut slot, len) = train(stride, &sizes);
                let mut seen = Vec::new();
                for_each_datagram(&mut slot, len, stride, |s, n| {
                    seen.push(s[PEER_HEADROOM..PEER_HEADROOM + n].to_vec());
                    // What the TURN server may write: its header and padding.
                    s[..PEER_HEADROOM].fill(0xaa);
                    s[PEER_HEADROOM + n..PEER_HEADROOM + n + 3].fill(0xbb);
                });
                let want: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| vec![i as u8; n])
                    .collect();
                assert_eq!(seen, want, "stride {stride}, last {last}");
            }
        }
    }

    #[test]
    fn no_stride_is_one_datagram() {
        let (mut slot, len) = train(5, &[5]);
        let mut seen = Vec::new();
        for_each_datagram(&mut slot, len, 0, |s, n| {
            seen.push(s[PEER_HEADROOM..PEER_HEADROOM + n].to_vec())
        });
        assert_eq!(seen, vec![vec![0u8; 5]]);
    }
}
