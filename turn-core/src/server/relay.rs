//! The data path: Send indications and ChannelData from clients to peers, and peer
//! datagrams back to clients as ChannelData (when a channel is bound) or Data
//! indications, written in place in front of the payload.
//!
//! Relay-to-relay: a peer on one of the server's own relay or advertised IPs is
//! relayed to only while it is a live relayed address, checked on every packet in
//! both directions (a permission is per IP, and must never open the server's
//! listeners or other ports). Such traffic goes to the relay socket's own address,
//! not through a NAT that may not hairpin, and arrives from it: the server shows it
//! to the client under the advertised address the client permitted.

use core::net::SocketAddr;

use stun_core::attributes::{DontFragment, XorPeerAddress};
use stun_core::channel_data::{self, ChannelData};
use stun_core::{AttributeType, Class, HEADER_LEN, Message, MessageBuilder, MessageType, Method};

use super::Outgoing;
use super::refusal::Refusal;
use super::{ClientOutput, Host, PeerOutput, RelayHandle, Server, Slot};
use crate::{FiveTuple, Instant};

/// Bytes a peer's datagram must be preceded by in its [`PeerBuffer`]: room for a
/// Data indication's header, XOR-PEER-ADDRESS (IPv6) and DATA header.
pub const PEER_HEADROOM: usize = HEADER_LEN + 4 + 20 + 4;
/// Bytes that must follow a peer's datagram in its [`PeerBuffer`]: padding to
/// four bytes.
pub const PEER_TAILROOM: usize = 3;

/// A peer's datagram in a buffer with room around it, so the server writes the
/// ChannelData or Data indication header (and padding) for the client in place:
/// [`PEER_HEADROOM`] bytes before it and [`PEER_TAILROOM`] after. A buffer without
/// that room cannot be made into one.
///
/// ```
/// use turn_core::server::{PeerBuffer, PEER_HEADROOM};
/// let mut buf = [0u8; 1600];
/// // Receive a datagram into the part of the buffer meant for it...
/// let area = PeerBuffer::receive_area(&mut buf);
/// area[..5].copy_from_slice(b"hello");
/// // ...and hand it over with its length.
/// let datagram = PeerBuffer::new(&mut buf, 5).unwrap();
/// assert_eq!(datagram.payload(), b"hello");
/// assert!(PeerBuffer::new(&mut [0u8; 40], 5).is_err(), "no headroom");
/// ```
#[derive(Debug)]
pub struct PeerBuffer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

/// A buffer too small for the datagram it holds and the room around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall {
    /// Bytes it must have at least.
    pub required: usize,
}

impl core::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "a peer buffer needs {} bytes", self.required)
    }
}

impl<'b> PeerBuffer<'b> {
    /// The part of `buf` a datagram is received into: after the headroom, before
    /// the tailroom (empty if `buf` is too small for any).
    pub fn receive_area(buf: &mut [u8]) -> &mut [u8] {
        let end = buf.len().saturating_sub(PEER_TAILROOM);
        buf.get_mut(PEER_HEADROOM.min(end)..end).unwrap_or_default()
    }

    /// `buf` holding a datagram of `len` bytes at `PEER_HEADROOM`, with the room
    /// after it.
    pub fn new(buf: &'b mut [u8], len: usize) -> Result<Self, BufferTooSmall> {
        let required = PEER_HEADROOM + len + PEER_TAILROOM;
        if buf.len() < required {
            return Err(BufferTooSmall { required });
        }
        Ok(PeerBuffer { buf, len })
    }

    /// The datagram.
    pub fn payload(&self) -> &[u8] {
        self.buf
            .get(PEER_HEADROOM..PEER_HEADROOM + self.len)
            .unwrap_or_default()
    }

    /// The whole buffer, headroom and tailroom included.
    pub fn as_slice(&self) -> &[u8] {
        self.buf
    }
}

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// A Send indication: relays its DATA to its XOR-PEER-ADDRESS if permitted.
    /// Anything wrong is dropped silently, as RFC 8656 §10.2 requires.
    pub(crate) fn send_indication(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
    ) -> ClientOutput {
        let Some(slot) = self.table.find(tuple) else {
            return ClientOutput::Drop(Some(Refusal::NoAllocation));
        };
        let (Ok(Some(XorPeerAddress(peer))), Some(data)) = (
            msg.attribute::<XorPeerAddress>(),
            msg.raw_attribute(AttributeType::DATA),
        ) else {
            return ClientOutput::Drop(Some(Refusal::IncompleteSend));
        };
        if !self.cfg.dont_fragment && matches!(msg.attribute::<DontFragment>(), Ok(Some(_))) {
            return ClientOutput::Drop(Some(Refusal::DontFragment));
        }
        self.relay_to_peer(now, host, slot, peer, data.value_range())
    }

    /// ChannelData from a client: relays it to the channel's peer.
    pub(crate) fn client_channel_data(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        packet: &[u8],
    ) -> ClientOutput {
        let Ok(cd) = ChannelData::new_checked(packet) else {
            return ClientOutput::Drop(Some(Refusal::BadChannelData));
        };
        let Some(slot) = self.table.find(tuple) else {
            return ClientOutput::Drop(Some(Refusal::NoAllocation));
        };
        let number = cd.channel();
        let Some(peer) = self
            .table
            .get(slot)
            .and_then(|a| a.channel_peer(number, now))
        else {
            return ClientOutput::Drop(Some(Refusal::NoChannel(number)));
        };
        let len = cd.data().len();
        self.relay_to_peer(
            now,
            host,
            slot,
            peer,
            channel_data::HEADER_LEN..channel_data::HEADER_LEN + len,
        )
    }

    /// Relays `data` of the client's packet to `peer`, if permitted.
    fn relay_to_peer(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        slot: usize,
        peer: SocketAddr,
        data: core::ops::Range<usize>,
    ) -> ClientOutput {
        // To one of this server's own relay addresses: a live relayed address only,
        // reached at its socket's own address; on an IP local peer entries name,
        // those entries' ports only.
        let exact = self.exact_ip(peer.ip());
        let destination = if self.cfg.policy.allows_local(peer) || !exact {
            peer
        } else {
            match self.live_relay(host, peer) {
                Some(local) => local,
                None => return ClientOutput::Drop(Some(Refusal::NotLiveRelay(peer))),
            }
        };
        let generation = self.table.generation(slot).unwrap_or(0);
        let Some(a) = self.table.get_mut(slot) else {
            return ClientOutput::Drop(Some(Refusal::NoAllocation));
        };
        if now >= a.expires {
            return ClientOutput::Drop(Some(Refusal::NoAllocation));
        }
        if a.tcp {
            return ClientOutput::Drop(Some(Refusal::TcpAllocation));
        }
        let permitted = if exact {
            a.sends_to_relay(&peer, now)
        } else {
            a.permits(&peer.ip(), now)
        };
        if !permitted {
            return ClientOutput::Drop(Some(Refusal::NoPermission(peer.ip())));
        }
        let Some((family, relay)) = a.relay_for(&destination.ip(), now) else {
            return ClientOutput::Drop(Some(Refusal::PeerFamilyMismatch));
        };
        let from = relay.local;
        let bytes = data.len() as u64;
        if !meter(&self.cfg, host, a, true, now, data.len()) {
            self.counters.bandwidth_dropped += 1;
            return ClientOutput::Drop(Some(Refusal::OverBandwidth));
        }
        a.traffic.to_peer_packets += 1;
        a.traffic.to_peer_bytes += bytes;
        self.counters.to_peer_packets += 1;
        self.counters.to_peer_bytes += bytes;
        ClientOutput::Relay {
            relay: RelayHandle {
                slot: slot as u32,
                generation,
                family,
            },
            from,
            peer: destination,
            own_relay: self.cfg.relay_local(destination),
            data,
        }
    }

    /// Handles a datagram from `peer` received on relay socket `relay`. Wraps it
    /// for the client in place and says what to send: part of the buffer, to
    /// the client of a 5-tuple (or nothing).
    pub fn handle_peer<'a>(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        relay: RelayHandle,
        peer: SocketAddr,
        datagram: &'a mut PeerBuffer<'_>,
    ) -> Outgoing<'a> {
        let output = self.peer_output(now, host, relay, peer, datagram);
        let datagram: &'a PeerBuffer<'_> = datagram;
        output.outgoing(datagram.as_slice())
    }

    fn peer_output(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        relay: RelayHandle,
        peer: SocketAddr,
        datagram: &mut PeerBuffer<'_>,
    ) -> PeerOutput {
        let len = datagram.len;
        let buf = &mut *datagram.buf;
        // From one of this server's own relay IPs: only from a live relayed address,
        // shown under the address the client permitted (the advertised one, or the
        // socket's own); on an IP local peer entries name, from those entries'
        // ports only.
        let peer = if self.cfg.policy.allows_local(peer) || !self.exact_ip(peer.ip()) {
            Some(peer)
        } else {
            match self.live_relay(host, peer) {
                Some(_) => self.permitted_form(relay, peer, now),
                None => None,
            }
        };
        let out = match peer {
            Some(peer) => self.wrap_for_client(host, now, relay, peer, buf, len),
            None => {
                self.peer_refused(relay);
                PeerOutput::Drop
            }
        };
        if out == PeerOutput::Drop {
            self.counters.peer_dropped += 1;
        }
        out
    }

    /// Counts a peer's datagram refused (no permission for it) on the
    /// allocation of `relay`, for its usage record.
    fn peer_refused(&mut self, relay: RelayHandle) {
        let slot = relay.slot as usize;
        if self.table.generation(slot) == Some(relay.generation)
            && let Some(a) = self.table.get_mut(slot)
        {
            a.traffic.peer_refused += 1;
        }
    }

    /// The form of a relayed address `local` that the allocation of `relay`
    /// permitted: its advertised address first, else the socket's own.
    fn permitted_form(
        &self,
        relay: RelayHandle,
        local: SocketAddr,
        now: Instant,
    ) -> Option<SocketAddr> {
        let a = self.table.get(relay.slot as usize)?;
        let advertised = self.cfg.advertised(local);
        [advertised, local]
            .into_iter()
            .find(|f| a.admits_relay(f, now))
    }

    fn wrap_for_client(
        &mut self,
        host: &mut impl Host,
        now: Instant,
        relay: RelayHandle,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> PeerOutput {
        let slot = relay.slot as usize;
        if self.table.generation(slot) != Some(relay.generation) {
            return PeerOutput::Drop;
        }
        let Some(a) = self.table.get_mut(slot) else {
            return PeerOutput::Drop;
        };
        // (A live relayed address was judged by its exact address when its
        // permitted form was found; a local peer is let in by its exact
        // permission.)
        let permitted = if self.cfg.policy.allows_local(peer) {
            a.admits_relay(&peer, now)
        } else {
            self.cfg.is_relay_ip(peer.ip()) || a.permits(&peer.ip(), now)
        };
        if now >= a.expires {
            return PeerOutput::Drop;
        }
        if !permitted {
            a.traffic.peer_refused += 1;
            return PeerOutput::Drop;
        }
        let pad = a.tuple.transport.is_stream();
        let range = if let Some(number) = a.channel_for_peer(&peer, now) {
            let start = PEER_HEADROOM - channel_data::HEADER_LEN;
            match buf
                .get_mut(start..)
                .map(|b| channel_data::encode_in_place(b, number, len, pad))
            {
                Some(Ok(n)) => start..start + n,
                _ => return PeerOutput::Drop,
            }
        } else {
            let xpa_len = if peer.is_ipv4() { 8 } else { 20 };
            let start = PEER_HEADROOM - (HEADER_LEN + 4 + xpa_len + 4);
            let Some(out) = buf.get_mut(start..) else {
                return PeerOutput::Drop;
            };
            let tid = self.random.tid();
            let written = (|| {
                let mut b = MessageBuilder::new(
                    out,
                    MessageType::new(Method::DATA, Class::Indication),
                    tid,
                )?;
                b.add(&XorPeerAddress(peer))?;
                b.add_in_place(AttributeType::DATA, len)?;
                Ok::<usize, stun_core::EncodeError>(b.finish())
            })();
            match written {
                Ok(n) => start..start + n,
                Err(_) => return PeerOutput::Drop,
            }
        };
        if !meter(&self.cfg, host, a, false, now, len) {
            self.counters.bandwidth_dropped += 1;
            return PeerOutput::Drop;
        }
        a.traffic.from_peer_packets += 1;
        a.traffic.from_peer_bytes += len as u64;
        self.counters.from_peer_packets += 1;
        self.counters.from_peer_bytes += len as u64;
        PeerOutput::Forward {
            tuple: a.tuple,
            data: range,
        }
    }
}

/// Charges `bytes` against the allocation's and its user's limits for one
/// direction; `false` (counted in the allocation's traffic) drops the packet.
fn meter<const P: usize, const C: usize>(
    cfg: &super::Config,
    host: &mut impl Host,
    a: &mut super::Allocation<P, C>,
    to_peer: bool,
    now: Instant,
    bytes: usize,
) -> bool {
    let way = usize::from(!to_peer);
    let allocation_ok = cfg.allocation_bandwidth.is_none_or(|rate| {
        a.buckets
            .get_mut(way)
            .is_some_and(|b| b.take(now, rate, bytes))
    });
    let ok = allocation_ok
        && cfg.user_bandwidth.is_none_or(|rate| {
            let user = super::auth::quota_user(cfg, &a.username);
            host.user_bandwidth(user, to_peer, rate, now, bytes)
        });
    if !ok {
        if to_peer {
            a.traffic.to_peer_dropped += 1;
        } else {
            a.traffic.from_peer_dropped += 1;
        }
    }
    ok
}
