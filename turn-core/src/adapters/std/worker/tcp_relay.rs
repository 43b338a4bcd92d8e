//! TCP allocations (RFC 6062) on a worker's loop: peers' connections accepted
//! on relayed addresses and offered to the shard, connections to peers
//! finished (or failed) and reported, ConnectionBinds routed to the worker
//! whose shard holds their connection, data connections joined to their peer
//! connections, and the bytes pumped between them.

use crate::adapters::std::prelude::*;

use std::io;
use std::time::Instant as StdInstant;

use log::{debug, info};
use mio::net::TcpStream;
use stun_core::escape::Held;

use crate::FiveTuple;
use crate::server::{ConnectionId, ConnectionTraffic, Outgoing};

use super::super::conn::ClientConn;
use super::super::tcp_relay::{Entry, Pipe};
use super::Worker;

/// Most peer connections taken off one relayed address's listener per event.
const ACCEPT_BATCH: usize = 64;

impl Worker {
    /// An event on TCP relay token `t` (relative to the first).
    pub(super) fn on_tcp_relay(&mut self, t: usize) {
        let i = t / 2;
        match self.tcp_relays.get_mut(i) {
            Some(Entry::Listener { .. }) => self.accept_peers(i),
            Some(Entry::Pipe(p)) if p.connecting.is_some() => self.finish_connect(i),
            Some(Entry::Pipe(_)) => self.pump(i),
            None => {}
        }
    }

    /// Peers' connections on the relayed address of entry `i`: each offered to
    /// the shard, which tells the client (ConnectionAttempt) or refuses it.
    fn accept_peers(&mut self, i: usize) {
        let mut accepted: Vec<(TcpStream, std::net::SocketAddr)> = Vec::new();
        let Some(Entry::Listener { sock, handle, .. }) = self.tcp_relays.get_mut(i) else {
            return;
        };
        let handle = *handle;
        while accepted.len() < ACCEPT_BATCH {
            match sock.accept() {
                Ok(c) => accepted.push(c),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!("tcp relay accept failed: {e}");
                    break;
                }
            }
        }
        let now = self.shared.clock.now();
        let more = accepted.len() == ACCEPT_BATCH;
        for (stream, peer) in accepted {
            let _ = stream.set_nodelay(true);
            let mut tx = core::mem::take(&mut self.tx);
            let offered = {
                let mut host = host_of!(self);
                match self
                    .turn
                    .peer_accepted(now, &mut host, handle, peer, &mut tx)
                {
                    Ok((id, Outgoing::Client { tuple, bytes, .. })) => {
                        Some((id, tuple, bytes.to_vec()))
                    }
                    Ok(_) => None,
                    Err(why) => {
                        debug!("tcp relay: connection from {peer} refused: {why}");
                        None
                    }
                }
            };
            self.tx = tx;
            let Some((id, control, attempt)) = offered else {
                continue;
            };
            let pipe = Pipe::new(id, stream, None);
            if let Err(e) = self.tcp_relays.add_pipe(self.poll.registry(), pipe) {
                debug!("tcp relay: connection from {peer} dropped: {e}");
                self.turn.connection_ended(id, ConnectionTraffic::default());
                continue;
            }
            self.queue_tcp(&control, &attempt);
        }
        if more {
            // Edge-triggered: what is left would not wake the loop again.
            self.accept_peers(i);
        }
    }

    /// A connection to a peer became writable: connected, or failed.
    fn finish_connect(&mut self, i: usize) {
        let Some(Entry::Pipe(p)) = self.tcp_relays.get_mut(i) else {
            return;
        };
        let failed = match p.peer.take_error() {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => match p.peer.peer_addr() {
                Ok(_) => false,
                // Not yet: another event comes when it is.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => true,
            },
        };
        let id = p.id;
        if failed {
            self.connect_failed(id);
            return;
        }
        p.connecting = None;
        self.report_connect(id, true);
        // Bytes the peer sent at once wait for the bind.
        self.pump(i);
    }

    /// Connection `id` to a peer failed (refused, unreachable, late): closed,
    /// and the Connect answered with 447.
    fn connect_failed(&mut self, id: ConnectionId) {
        let _ = self.tcp_relays.close(self.poll.registry(), id);
        self.report_connect(id, false);
    }

    /// Tells the shard how connection `id` to a peer went, and sends the
    /// Connect's answer to the client.
    fn report_connect(&mut self, id: ConnectionId, connected: bool) {
        let now = self.shared.clock.now();
        let mut tx = core::mem::take(&mut self.tx);
        let answer = {
            let mut host = host_of!(self);
            match self
                .turn
                .peer_connected(now, &mut host, id, connected, &mut tx)
            {
                Outgoing::Client {
                    tuple,
                    bytes,
                    refusal,
                } => Some((tuple, bytes.to_vec(), refusal)),
                _ => None,
            }
        };
        self.tx = tx;
        if let Some((tuple, bytes, refusal)) = answer {
            if let Some(why) = refusal
                && let Some(s) = self.logs.allow(now.as_millis())
            {
                info!(
                    "{} {}: Connect: {why}{}",
                    tuple.transport.name(),
                    tuple.client,
                    Held(s)
                );
            }
            self.queue_tcp(&tuple, &bytes);
        }
    }

    /// Connections to peers past their deadline fail.
    pub(super) fn sweep_connects(&mut self, now: StdInstant) {
        for id in self.tcp_relays.late(now) {
            self.connect_failed(id);
        }
    }

    /// Moves the bytes of entry `i` both ways; closes it when done, and tells
    /// the shard what it relayed.
    pub(super) fn pump(&mut self, i: usize) {
        let Some(Entry::Pipe(p)) = self.tcp_relays.get_mut(i) else {
            return;
        };
        if p.pump() {
            return;
        }
        let id = p.id;
        let traffic = self.tcp_relays.close(self.poll.registry(), id);
        self.turn.connection_ended(id, traffic);
    }

    /// After a frame of `conn` was handled: a ConnectionBind for another
    /// worker's shard goes there, one this shard bound makes the connection a
    /// data connection. Returns the connection if it stays here as it was.
    pub(super) fn after_bind(
        &mut self,
        idx: usize,
        mut conn: ClientConn,
        bound: Option<Result<ConnectionId, usize>>,
    ) -> Option<ClientConn> {
        let Some(bound) = bound else {
            return Some(conn);
        };
        // It leaves this loop's connections either way.
        let _ = self.poll.registry().deregister(&mut conn.link.sock);
        self.free.push(idx);
        self.open_conns = self.open_conns.saturating_sub(1);
        match bound {
            Ok(id) => {
                let tuple: FiveTuple = conn.tuple;
                if self.tcp_relays.bind(self.poll.registry(), id, conn) {
                    debug!(
                        "{} {}: data connection of {id:?}",
                        tuple.transport.name(),
                        tuple.client
                    );
                    if let Some(i) = self.tcp_relays.index_of(id) {
                        self.pump(i);
                    }
                } else {
                    self.turn.connection_ended(id, ConnectionTraffic::default());
                }
            }
            Err(shard) => {
                conn.halted = false;
                let queued = self
                    .shared
                    .transfers
                    .get(shard)
                    .is_some_and(|t| t.push(conn));
                if !queued {
                    debug!("ConnectionBind for worker {shard} dropped: its queue is full");
                }
            }
        }
        None
    }

    /// Connections other workers sent here for their ConnectionBind.
    pub(super) fn take_transfers(&mut self) {
        let Some(t) = self.shared.transfers.get(self.id) else {
            return;
        };
        for conn in t.take() {
            if let Some(idx) = self.adopt(conn) {
                self.on_conn(idx);
            }
        }
    }
}

/// The shard a ConnectionBind request in `frame` is for, cheaply: only a
/// frame whose type is a ConnectionBind request is parsed.
pub(super) fn bind_target(frame: &[u8]) -> Option<ConnectionId> {
    if frame.get(..2) != Some(&[0x00, 0x0B]) {
        return None;
    }
    ConnectionId::of_bind_request(frame)
}
