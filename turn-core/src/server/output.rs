//! What the server's calls return: what to send where ([`Outgoing`], one answer
//! for a client's packet and for a peer's datagram, borrowing the bytes, which
//! every adapter sends the same way), events for logs, and counters. Inside, the
//! server decides in ranges ([`ClientOutput`], [`PeerOutput`]) and hands out the
//! bytes they name.

use core::net::SocketAddr;
use core::ops::Range;

use super::config::USERNAME_MAX;
use super::refusal::Refusal;
use super::{RelayHandle, Traffic};
use crate::FiveTuple;

/// What to do with a client's packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a reply or relayed data must be sent"]
pub(crate) enum ClientOutput {
    /// Nothing to send; the refusal says why, if there is one to log.
    Drop(Option<Refusal>),
    /// Send `out[..len]` back to the client on the same 5-tuple. `refusal` is set
    /// when it is an error response.
    Reply {
        /// Bytes written into `out`.
        len: usize,
        /// Why the request was refused, for an error response.
        refusal: Option<Refusal>,
    },
    /// Send `packet[data]` from the relay socket `relay` (bound to `from`) to `peer`.
    Relay {
        /// The relay socket.
        relay: RelayHandle,
        /// Its local address.
        from: SocketAddr,
        /// The peer.
        peer: SocketAddr,
        /// When the peer is one of this server's own relay sockets (relay to
        /// relay, a meeting server's calls): that socket's bound address, so the
        /// host can deliver it without the kernel.
        own_relay: Option<SocketAddr>,
        /// The payload's range in the packet.
        data: Range<usize>,
    },
}

/// What to do with a peer's datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "relayed data must be sent"]
pub(crate) enum PeerOutput {
    /// Drop it (no permission, no allocation).
    Drop,
    /// Send `buf[data]` to the client of `tuple` (from its listener).
    Forward {
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// The range of the buffer to send (a ChannelData or Data indication).
        data: Range<usize>,
    },
}

/// Why an allocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EndReason {
    /// Its lifetime ran out.
    Expired,
    /// The client deleted it (Refresh with LIFETIME 0).
    Released,
    /// Its TCP or TLS connection closed (RFC 8656 §3.1).
    ConnectionClosed,
    /// The server stopped with it still live (a drain cut at its deadline, or a
    /// stop).
    Stopped,
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An allocation was created.
    Allocated {
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// The user.
        username: heapless::String<USERNAME_MAX>,
        /// Advertised relayed address (the first one).
        relayed: SocketAddr,
        /// Lifetime granted, seconds.
        lifetime: u64,
    },
    /// An allocation ended: a usage record's worth.
    Ended {
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// The user.
        username: heapless::String<USERNAME_MAX>,
        /// Why.
        reason: EndReason,
        /// What it relayed (and refused).
        traffic: Traffic,
        /// When it was created.
        started: crate::Instant,
        /// Its advertised relayed addresses (IPv4, IPv6) when it ended.
        relayed: [Option<SocketAddr>; 2],
    },
}

/// Counters over the server's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Allocations created.
    pub allocations_created: u64,
    /// Allocations ended.
    pub allocations_ended: u64,
    /// Requests refused with an error response worth an operator's attention
    /// (not the routine 401 challenge or 438 stale nonce).
    pub refused: u64,
    /// Routine rounds of authentication: 401 challenges and 438 stale nonces.
    pub challenges: u64,
    /// Client packets dropped in silence (no allocation, permission or channel
    /// for them, malformed, over a budget or limit).
    pub dropped: u64,
    /// Every refusal by kind (the three counts above, in detail).
    pub refusals: super::RefusalCounts,
    /// Packets relayed client to peer.
    pub to_peer_packets: u64,
    /// Bytes relayed client to peer.
    pub to_peer_bytes: u64,
    /// Packets relayed peer to client.
    pub from_peer_packets: u64,
    /// Bytes relayed peer to client.
    pub from_peer_bytes: u64,
    /// Peer datagrams dropped (no permission or allocation).
    pub peer_dropped: u64,
    /// Packets dropped over a bandwidth limit, both ways.
    pub bandwidth_dropped: u64,
}

impl Counters {
    /// Counts a refusal of kind `reason`, in its group and by itself.
    pub fn count(&mut self, reason: super::Reason) {
        use super::Group;
        let group = match reason.group() {
            Group::Challenge => &mut self.challenges,
            Group::Refused => &mut self.refused,
            Group::Dropped => &mut self.dropped,
        };
        *group = group.saturating_add(1);
        self.refusals.add(reason);
    }

    /// Adds `other`'s counts to these (the sum of several shards).
    pub fn merge(&mut self, other: &Counters) {
        self.allocations_created += other.allocations_created;
        self.allocations_ended += other.allocations_ended;
        self.refused += other.refused;
        self.challenges += other.challenges;
        self.dropped += other.dropped;
        self.refusals.merge(&other.refusals);
        self.to_peer_packets += other.to_peer_packets;
        self.to_peer_bytes += other.to_peer_bytes;
        self.from_peer_packets += other.from_peer_packets;
        self.from_peer_bytes += other.from_peer_bytes;
        self.peer_dropped += other.peer_dropped;
        self.bandwidth_dropped += other.bandwidth_dropped;
    }
}

/// The bytes an output says to send, and where: what every adapter does after
/// calling the server, whatever its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reply or relayed data must be sent"]
pub enum Outgoing<'a> {
    /// To the client of `tuple`, from the socket it talks to (`tuple.socket`).
    Client {
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// What to send.
        bytes: &'a [u8],
        /// Why a request was refused, when this is an error response.
        refusal: Option<Refusal>,
    },
    /// From relay socket `relay` (bound to `from`) to `peer`.
    Peer {
        /// The relay socket.
        relay: RelayHandle,
        /// The relay socket's local address.
        from: SocketAddr,
        /// The peer.
        peer: SocketAddr,
        /// When the peer is one of this server's own relay sockets (relay to
        /// relay, a meeting server's calls): that socket's bound address, so the
        /// host can deliver it without the kernel.
        own_relay: Option<SocketAddr>,
        /// What to send.
        bytes: &'a [u8],
    },
    /// Nothing; why, when there is a reason worth logging.
    Nothing(Option<Refusal>),
}

impl ClientOutput {
    /// The bytes to send: a reply from `out`, or relayed data from `packet` (the
    /// client's packet, for the client of `tuple`).
    #[inline]
    pub(crate) fn outgoing<'a>(
        &self,
        tuple: FiveTuple,
        packet: &'a [u8],
        out: &'a [u8],
    ) -> Outgoing<'a> {
        match self {
            ClientOutput::Reply { len, refusal } => match out.get(..*len) {
                Some(bytes) => Outgoing::Client {
                    tuple,
                    bytes,
                    refusal: *refusal,
                },
                None => Outgoing::Nothing(Some(Refusal::OutputTooSmall)),
            },
            ClientOutput::Relay {
                relay,
                from,
                peer,
                own_relay,
                data,
            } => match packet.get(data.clone()) {
                Some(bytes) => Outgoing::Peer {
                    relay: *relay,
                    from: *from,
                    peer: *peer,
                    own_relay: *own_relay,
                    bytes,
                },
                None => Outgoing::Nothing(None),
            },
            ClientOutput::Drop(why) => Outgoing::Nothing(*why),
        }
    }
}

impl PeerOutput {
    /// The bytes to send to the client, from `buf` (the peer buffer the server
    /// wrapped the datagram in).
    #[inline]
    pub(crate) fn outgoing<'a>(&self, buf: &'a [u8]) -> Outgoing<'a> {
        match self {
            PeerOutput::Forward { tuple, data } => match buf.get(data.clone()) {
                Some(bytes) => Outgoing::Client {
                    tuple: *tuple,
                    bytes,
                    refusal: None,
                },
                None => Outgoing::Nothing(None),
            },
            PeerOutput::Drop => Outgoing::Nothing(None),
        }
    }
}
