//! TCP allocations (RFC 6062): a relayed transport address that is a TCP
//! listener, and peer TCP connections opened from it (Connect) or accepted on
//! it (ConnectionAttempt), each joined to a client data connection by
//! ConnectionBind.
//!
//! The server decides, the host does the I/O:
//! - An Allocate with REQUESTED-TRANSPORT TCP, on a TCP or TLS connection, has
//!   the host listen on the relayed address ([`Host::listen_relay`]). Over UDP
//!   it is 400; with EVEN-PORT, RESERVATION-TOKEN, DONT-FRAGMENT or
//!   ADDITIONAL-ADDRESS-FAMILY it is 400; a server without room for peer
//!   connections (`T` = 0), or a host that offers none, answers 442.
//! - A Connect names a peer the policy allows as it allows a channel's (403
//!   otherwise), with no connection to it yet (446). The host connects from the
//!   relayed address ([`Host::connect_peer`]) and reports the outcome with
//!   [`Server::peer_connected`], which writes the answer: success with
//!   CONNECTION-ID, or 447.
//! - A connection the host accepted on the relayed address is offered with
//!   [`Server::peer_accepted`]: from a peer without a permission (or one the
//!   policy forbids) it is refused and the host closes it; otherwise the
//!   client is told with a ConnectionAttempt indication.
//! - A ConnectionBind on a new TCP or TLS connection, authenticated as the
//!   allocation's user, names a connection waiting for one (400 otherwise);
//!   from then on [`Server::data_connection`] names it and the stream carries
//!   the peer's bytes both ways, relayed by the host without the server.
//! - A connection not bound within [`BIND_TIMEOUT_SECS`] is closed
//!   ([`Host::close_connection`]), and so is every connection of an allocation
//!   that ends; the host reports the bytes each relayed, and they join the
//!   allocation's usage record ([`ConnectionTraffic`]).
//!
//! Send indications, ChannelData and ChannelBind have no place on a TCP
//! allocation: the first two are dropped, the last is 400. Bandwidth limits
//! meter datagrams and do not apply to a data connection's bytes: TCP's own
//! flow control paces them.

use stun_core::attributes::{
    AdditionalAddressFamily, ConnectionId as ConnectionIdAttr, DontFragment, EvenPort,
    ReservationToken,
};
use stun_core::{Attribute, Class, Message, Method};

mod accept;
mod connect;
mod table;

pub(crate) use table::Connections;
use table::{Entry, Stage};

use crate::server::refusal::{BadRequest, Refusal};
use crate::server::{Host, Server, Slot, Traffic};
use crate::{FiveTuple, Instant};

/// How long the host may take to connect to a peer before the Connect fails
/// with 447 (RFC 6062 leaves it to the server; coturn waits as long).
pub const CONNECT_TIMEOUT_SECS: u64 = 30;

/// How long a peer connection waits for its ConnectionBind before it is closed
/// (RFC 6062 §5.3: 30 seconds).
pub const BIND_TIMEOUT_SECS: u64 = 30;

/// Past its connect deadline, how long a connection the host has not reported
/// on is kept before the server forgets it (and asks the host to close it).
const REPORT_GRACE_SECS: u64 = 5;

/// Identifies a peer TCP connection (the CONNECTION-ID attribute). Its top byte
/// is the shard of the server that holds it ([`Server::set_shard`]), so a host
/// running several servers routes a ConnectionBind, which arrives on a new
/// connection, to the right one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectionId(pub u32);

impl ConnectionId {
    /// The shard of the server that holds the connection.
    pub const fn shard(self) -> u8 {
        (self.0 >> 24) as u8
    }

    /// The CONNECTION-ID of a ConnectionBind request, if `packet` is one (a
    /// host with several servers reads it to pick the server).
    pub fn of_bind_request(packet: &[u8]) -> Option<ConnectionId> {
        let msg = Message::new_checked(packet).ok()?;
        if msg.method() != Method::CONNECTION_BIND || msg.class() != Class::Request {
            return None;
        }
        match msg.attribute::<ConnectionIdAttr>() {
            Ok(Some(ConnectionIdAttr(id))) => Some(ConnectionId(id)),
            _ => None,
        }
    }
}

/// What one data connection relayed, reported by the host when it closes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionTraffic {
    /// Bytes from the client sent to the peer.
    pub to_peer_bytes: u64,
    /// Bytes from the peer sent to the client.
    pub from_peer_bytes: u64,
}

impl ConnectionTraffic {
    /// Adds these bytes to an allocation's traffic.
    fn add_to(&self, t: &mut Traffic) {
        t.to_peer_bytes = t.to_peer_bytes.saturating_add(self.to_peer_bytes);
        t.from_peer_bytes = t.from_peer_bytes.saturating_add(self.from_peer_bytes);
    }
}

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// Sets the top byte of the CONNECTION-IDs this server hands out: a host
    /// running several servers (one per thread) gives each its own and sends
    /// a ConnectionBind to the server of [`ConnectionId::shard`].
    pub fn set_shard(&mut self, shard: u8) {
        self.connections.shard = shard;
    }

    /// Peer TCP connections held (connecting, waiting for a ConnectionBind, or
    /// bound).
    pub fn peer_connection_count(&self) -> usize {
        self.connections.len
    }

    /// The peer connection that the stream client of `tuple` was joined to by
    /// its ConnectionBind, if any: from the bind's answer on, the stream
    /// carries that connection's bytes, no longer STUN.
    pub fn data_connection(&self, tuple: &FiveTuple) -> Option<ConnectionId> {
        self.connections
            .entries
            .iter()
            .flatten()
            .find(|e| matches!(e.stage, Stage::Bound(t) if t == *tuple))
            .map(|e| e.id)
    }

    /// Checks an Allocate for TCP (RFC 6062 §5.1): on a stream, without the
    /// attributes a TCP relay cannot honour, on a server with room for peer
    /// connections.
    pub(crate) fn check_tcp_allocate(
        &self,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
    ) -> Result<(), Refusal> {
        if T == 0 || !self.cfg.tcp_allocations {
            return Err(Refusal::UnsupportedTransport(
                stun_core::attributes::RequestedTransport::TCP.protocol,
            ));
        }
        if !tuple.transport.is_stream() {
            return Err(Refusal::BadRequest(BadRequest::TcpRelayOverUdp));
        }
        for t in [
            EvenPort::TYPE,
            ReservationToken::TYPE,
            DontFragment::TYPE,
            AdditionalAddressFamily::TYPE,
        ] {
            if msg.has(t) {
                return Err(Refusal::BadRequest(BadRequest::NotForTcpRelay(t)));
            }
        }
        Ok(())
    }

    /// The host closed connection `id` (either side ended, or it failed):
    /// the server forgets it, and the bytes it relayed join its allocation's
    /// traffic.
    pub fn connection_ended(&mut self, id: ConnectionId, traffic: ConnectionTraffic) {
        if let Some(e) = self.connections.remove(id) {
            self.account(&e, traffic);
        }
    }

    /// Closes every connection of the allocation in `slot`, which is ending:
    /// what they relayed joins its traffic.
    pub(crate) fn close_connections_of(
        &mut self,
        slot: usize,
        generation: u32,
        host: &mut impl Host,
    ) {
        if T == 0 {
            return;
        }
        loop {
            let next = self.connections.of(slot, generation).next().copied();
            let Some(e) = next else {
                break;
            };
            self.connections.remove(e.id);
            let t = host.close_connection(e.id);
            self.account(&e, t);
        }
    }

    /// Closes connections whose ConnectionBind did not come in time, and
    /// forgets those the host never reported on.
    pub(crate) fn expire_connections(&mut self, now: Instant, host: &mut impl Host) {
        if T == 0 || self.connections.len == 0 {
            return;
        }
        for i in 0..T {
            let Some(Some(e)) = self.connections.entries.get(i).copied() else {
                continue;
            };
            let due = match e.stage {
                Stage::Waiting => now >= e.until,
                Stage::Connecting { .. } => now >= e.until.plus_secs(REPORT_GRACE_SECS),
                Stage::Bound(_) => false,
            };
            if due {
                self.connections.remove(e.id);
                let t = host.close_connection(e.id);
                self.account(&e, t);
            }
        }
    }

    /// Counts what connection `e` relayed, in its allocation's traffic (while
    /// it lives) and the server's counters.
    fn account(&mut self, e: &Entry, t: ConnectionTraffic) {
        let c = &mut self.counters;
        c.to_peer_bytes = c.to_peer_bytes.saturating_add(t.to_peer_bytes);
        c.from_peer_bytes = c.from_peer_bytes.saturating_add(t.from_peer_bytes);
        let slot = e.slot as usize;
        if self.table.generation(slot) == Some(e.generation)
            && let Some(a) = self.table.get_mut(slot)
        {
            t.add_to(&mut a.traffic);
        }
    }
}
