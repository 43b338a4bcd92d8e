//! Stream clients on a worker: accepting (plain TCP here; TLS listeners' streams
//! go to the TLS thread and come back opened), reading frames, queueing what is
//! relayed to them, and closing the idle and the late.

use crate::adapters::std::prelude::*;

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant as StdInstant;

use log::{debug, info};
use mio::{Interest, Registry, Token};
use stun_core::escape::Held;

use crate::{FiveTuple, Transport};

use super::super::clock::unix_now;
#[cfg(feature = "tls")]
use super::super::conn::OpeningTicket;
use super::super::conn::{ClientConn, Flow, ReadState, Stage, UNTRUSTED_PROXY};
#[cfg(feature = "tls")]
use super::super::front::Incoming;
use super::super::proxied::ProxyRead;
use super::{FIRST_CONN, Worker};

impl Worker {
    /// Connections waiting on TCP listener `i`.
    pub(super) fn on_accept(&mut self, i: usize) {
        loop {
            let Some(port) = self.tcp.get(i) else {
                return;
            };
            let (local, tls) = (port.local, port.tls);
            let (stream, peer) = match port.listener.accept() {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("tcp accept failed: {e}");
                    return;
                }
            };
            let limits = *self.shared.tcp.read().unwrap_or_else(|e| e.into_inner());
            let balancer = {
                let b = self
                    .shared
                    .balancers
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                super::super::proxied::is_balancer(&b, peer.ip())
            };
            // Connections still opening on the TLS threads count too.
            let open = self.open_conns + self.openings.load(Ordering::Relaxed);
            if open >= limits.max_connections {
                if let Some(s) = self.logs.allow(self.shared.clock.now().as_millis()) {
                    info!(
                        "tcp {peer}: refused: {open} connections already open or opening on \
                         worker {} (tcp.max_connections){}",
                        self.id,
                        Held(s)
                    );
                }
                continue;
            }
            // A balancer's connections count against the clients they carry.
            let slot = if balancer {
                None
            } else if let Some(slot) = self.shared.sources.acquire(peer.ip()) {
                Some(slot)
            } else {
                if let Some(s) = self.logs.allow(self.shared.clock.now().as_millis()) {
                    info!(
                        "tcp {peer}: refused: {} connections already open from {} \
                         (tcp.max_per_source){}",
                        limits.max_per_source,
                        peer.ip(),
                        Held(s)
                    );
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            // On a wildcard listener, the address the client reached.
            let server = if local.ip().is_unspecified() {
                stream.local_addr().unwrap_or(local)
            } else {
                local
            };
            let tuple = FiveTuple {
                client: peer,
                server,
                transport: Transport::Tcp,
                // Set when the connection joins this loop.
                socket: u32::MAX,
            };
            let now = StdInstant::now();
            let deadline = now + limits.handshake_timeout;
            if tls {
                #[cfg(feature = "tls")]
                {
                    let mut conn =
                        ClientConn::new(stream, tuple, Stage::Opening, now, deadline, slot);
                    conn.proxy_pending = balancer;
                    conn.opening = Some(OpeningTicket::take(&self.openings));
                    let incoming = Incoming {
                        conn,
                        worker: self.id,
                    };
                    if let Some(h) = &self.handshakes
                        && h.send(incoming).is_err()
                        && let Some(s) = self.logs.allow(self.shared.clock.now().as_millis())
                    {
                        info!(
                            "tls {peer}: refused: every TLS thread has {} connections queued{}",
                            super::super::front::QUEUE,
                            Held(s)
                        );
                    }
                }
                continue;
            }
            let mut conn = ClientConn::new(stream, tuple, Stage::Turn, now, deadline, slot);
            conn.proxy_pending = balancer;
            self.adopt(conn);
            debug!("tcp {peer}: connected");
        }
    }

    /// Takes the TURN connections the TLS thread opened.
    #[cfg(feature = "tls")]
    pub(super) fn take_inbox(&mut self) {
        while let Ok(conn) = self.inbox.try_recv() {
            // What came with its opening may hold whole frames already.
            if let Some(idx) = self.adopt(conn) {
                self.on_conn(idx);
            }
        }
    }

    /// Registers a TURN connection with this loop; its index, which becomes its
    /// 5-tuple's socket tag.
    pub(super) fn adopt(&mut self, mut conn: ClientConn) -> Option<usize> {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let tag = u32::try_from(idx).ok();
        if tag.is_none()
            || self
                .poll
                .registry()
                .register(
                    &mut conn.link.sock,
                    Token(FIRST_CONN + idx),
                    Interest::READABLE,
                )
                .is_err()
        {
            self.free.push(idx);
            return None;
        }
        conn.tuple.socket = tag.unwrap_or(u32::MAX);
        conn.wants_write = false;
        // Open now, no longer opening.
        conn.opening = None;
        let slot = self.conns.get_mut(idx)?;
        *slot = Some(conn);
        self.open_conns += 1;
        Some(idx)
    }

    /// Reads what connection `idx` sent and writes what waits for it.
    pub(super) fn on_conn(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let now_std = StdInstant::now();
        let now = self.shared.clock.now();
        let unix = unix_now();
        if conn.stage == Stage::Opening {
            // Openings are the TLS thread's; one never reaches a worker.
            self.close(idx, conn);
            return;
        }
        if conn.proxy_pending {
            let from = conn.tuple.client;
            match conn.read_proxy_header(now_std, &self.shared.sources) {
                ProxyRead::Wait => {
                    if let Some(slot) = self.conns.get_mut(idx) {
                        *slot = Some(conn);
                    }
                    return;
                }
                ProxyRead::Done(client) => {
                    debug!("tcp {from}: PROXY header: client {client:?}");
                }
                ProxyRead::Close(why) => {
                    if let Some(s) = self.logs.allow(self.shared.clock.now().as_millis()) {
                        info!("tcp {from} (load balancer): {why}{}", Held(s));
                    }
                    self.close(idx, conn);
                    return;
                }
            }
        }
        let tuple = conn.tuple;
        // A ConnectionBind (RFC 6062) for another worker's shard, or one that
        // made this a data connection.
        let mut bound: Option<Result<crate::server::ConnectionId, usize>> = None;
        // Each frame is handled where the connection read it; replies go to its
        // write queue.
        let mut state = conn.read_frames(now_std, |frame, wbuf| {
            let Some(id) = super::tcp_relay::bind_target(frame) else {
                self.client_packet(now, unix, tuple, frame, Some(wbuf));
                return Flow::Next;
            };
            let shard = usize::from(id.shard());
            if shard != self.id && shard < self.shared.transfers.len() {
                bound = Some(Err(shard));
                return Flow::Hold;
            }
            self.client_packet(now, unix, tuple, frame, Some(wbuf));
            match self.turn.data_connection(&tuple) {
                Some(id) => {
                    bound = Some(Ok(id));
                    Flow::Stop
                }
                None => Flow::Next,
            }
        });
        if state == ReadState::Open && !conn.flush() {
            state = ReadState::Closed("write error");
        }
        if let ReadState::Closed(why) = state {
            if why == UNTRUSTED_PROXY {
                if let Some(s) = self.logs.allow(self.shared.clock.now().as_millis()) {
                    info!(
                        "{} {}: {why}{}",
                        tuple.transport.name(),
                        tuple.client,
                        Held(s)
                    );
                }
            } else {
                debug!("{} {}: {why}", tuple.transport.name(), tuple.client);
            }
            self.close(idx, conn);
            return;
        }
        let Some(mut conn) = self.after_bind(idx, conn, bound) else {
            return;
        };
        conn.allocated = self.turn.has_allocation(&tuple);
        update_interest(self.poll.registry(), idx, &mut conn);
        if let Some(slot) = self.conns.get_mut(idx) {
            *slot = Some(conn);
        }
    }

    /// Takes connection `idx` out of this loop, ends its allocation, and frees
    /// its index and its place in its source's count.
    fn close(&mut self, idx: usize, mut conn: ClientConn) {
        let _ = self.poll.registry().deregister(&mut conn.link.sock);
        self.free.push(idx);
        self.open_conns = self.open_conns.saturating_sub(1);
        let mut host = host_of!(self);
        self.turn.connection_closed(&conn.tuple, &mut host);
    }

    /// Closes connections idle past `tcp.idle_timeout` that hold no allocation (an
    /// allocation keeps its connection as long as it lives), and those whose
    /// first message has not come by their deadline.
    pub(super) fn sweep_idle(&mut self, now: StdInstant) {
        let limit = self
            .shared
            .tcp
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .idle_timeout;
        for idx in 0..self.conns.len() {
            let why = self.conns.get(idx).and_then(Option::as_ref).and_then(|c| {
                if c.deadline.is_some_and(|d| now >= d) {
                    Some("no first message in time (tcp.handshake_timeout)")
                } else if now.saturating_duration_since(c.last_active) > limit
                    && !self.turn.has_allocation(&c.tuple)
                {
                    Some("idle without an allocation (tcp.idle_timeout)")
                } else {
                    None
                }
            });
            if let Some(why) = why
                && let Some(conn) = self.conns.get_mut(idx).and_then(Option::take)
            {
                debug!(
                    "{} {}: closed: {why}",
                    conn.tuple.transport.name(),
                    conn.tuple.client
                );
                self.close(idx, conn);
            }
        }
    }

    /// Queues `bytes` for the stream client of `tuple` (found by its socket tag)
    /// and writes what the socket takes.
    pub(super) fn queue_tcp(&mut self, tuple: &FiveTuple, bytes: &[u8]) {
        let Ok(idx) = usize::try_from(tuple.socket) else {
            return;
        };
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        if conn.tuple.client != tuple.client || conn.tuple.server != tuple.server {
            return;
        }
        if conn.queue(bytes) {
            let _ = conn.flush();
            update_interest(self.poll.registry(), idx, conn);
        }
    }
}

/// Asks for writability while replies are queued, and stops asking after.
fn update_interest(registry: &Registry, idx: usize, conn: &mut ClientConn) {
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
