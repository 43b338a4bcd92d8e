//! One allocation: its 5-tuple, relayed addresses, owner, key, lifetime,
//! permissions, channel bindings and traffic counters. Sizes are fixed by the const
//! generics `P` (permissions) and `C` (channels).

use crate::server::RelayFamily;
use core::net::{IpAddr, SocketAddr};

use stun_core::TransactionId;

use super::bandwidth::TokenBucket;
use super::config::{CHANNEL_COOLDOWN_SECS, USERNAME_MAX};
use crate::{FiveTuple, Instant};

/// A permission: the peer IP a client may exchange data with, until `expires`.
///
/// For a peer on one of this server's own relay IPs (relay to relay), a
/// permission is for one relayed transport address, not the IP that every
/// allocation of the server shares: `port` is the port the client named (in
/// CreatePermission or ChannelBind) or sent to. Port 0 there (a client that
/// named no port) lets the client send to the IP's live relayed addresses, and
/// each one it sends to becomes a permission of its own; nothing is let in by
/// it. For every other peer `port` is 0 and the whole IP is permitted (RFC 8656
/// §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Permission {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) expires: Instant,
}

/// A peer's transport address as a channel keeps it: its IP and port, 20 bytes
/// where a [`SocketAddr`] takes 32 (an IPv6 address's flow label and scope,
/// which a peer address from XOR-PEER-ADDRESS does not carry, are left out).
/// Sixteen channels a slot make this half a kilobyte less per allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr {
    ip: IpAddr,
    port: u16,
}

impl PeerAddr {
    /// The IP.
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// As a socket address (flow label and scope 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> PeerAddr {
        PeerAddr {
            ip: a.ip(),
            port: a.port(),
        }
    }
}

impl PartialEq<SocketAddr> for PeerAddr {
    /// Same IP and port (a datagram from a link-local peer carries a scope
    /// the client's XOR-PEER-ADDRESS does not).
    fn eq(&self, other: &SocketAddr) -> bool {
        self.port == other.port() && self.ip == other.ip()
    }
}

/// A channel binding. Relaying uses it until `expires`; the number and the peer stay
/// reserved for [`CHANNEL_COOLDOWN_SECS`] after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Channel {
    pub(crate) number: u16,
    pub(crate) peer: PeerAddr,
    pub(crate) expires: Instant,
}

impl Channel {
    pub(crate) fn is_live(&self, now: Instant) -> bool {
        now < self.expires
    }

    pub(crate) fn is_gone(&self, now: Instant) -> bool {
        now >= self.expires.plus_secs(CHANNEL_COOLDOWN_SECS)
    }
}

/// A relay socket: where it is bound, what is advertised for it, and until when
/// it lives (a dual allocation's two relayed addresses are refreshed and deleted
/// separately with REQUESTED-ADDRESS-FAMILY, RFC 8656 §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelaySocket {
    /// The address the socket is bound to (the private side).
    pub local: SocketAddr,
    /// The address sent in XOR-RELAYED-ADDRESS (static NAT's public side).
    pub advertised: SocketAddr,
    /// When this relayed address expires unless refreshed.
    pub expires: Instant,
}

/// Bytes and packets relayed, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Traffic {
    /// Packets from the client relayed to peers.
    pub to_peer_packets: u64,
    /// Payload bytes from the client relayed to peers.
    pub to_peer_bytes: u64,
    /// Packets from peers relayed to the client.
    pub from_peer_packets: u64,
    /// Payload bytes from peers relayed to the client.
    pub from_peer_bytes: u64,
    /// Packets from the client dropped over a bandwidth limit.
    pub to_peer_dropped: u64,
    /// Packets from peers dropped over a bandwidth limit.
    pub from_peer_dropped: u64,
    /// The client's requests on this allocation refused with an error, and its
    /// packets dropped (no permission or channel for them, a peer the policy
    /// forbids), the routine 401 and 438 aside.
    pub refused: u64,
    /// Peers' datagrams to its relayed addresses dropped: no permission for
    /// them (scans, peers the client never permitted).
    pub peer_refused: u64,
}

impl Traffic {
    /// The counters in their order in a state image.
    pub(crate) fn counts(&self) -> [u64; 8] {
        [
            self.to_peer_packets,
            self.to_peer_bytes,
            self.from_peer_packets,
            self.from_peer_bytes,
            self.to_peer_dropped,
            self.from_peer_dropped,
            self.refused,
            self.peer_refused,
        ]
    }

    /// The counters from [`Traffic::counts`]' order.
    pub(crate) fn from_counts(c: [u64; 8]) -> Traffic {
        let [
            to_peer_packets,
            to_peer_bytes,
            from_peer_packets,
            from_peer_bytes,
            to_peer_dropped,
            from_peer_dropped,
            refused,
            peer_refused,
        ] = c;
        Traffic {
            to_peer_packets,
            to_peer_bytes,
            from_peer_packets,
            from_peer_bytes,
            to_peer_dropped,
            from_peer_dropped,
            refused,
            peer_refused,
        }
    }
}

/// An allocation.
#[derive(Debug, Clone)]
pub struct Allocation<const P: usize, const C: usize> {
    pub(crate) tuple: FiveTuple,
    /// IPv4 relay in slot 0, IPv6 relay in slot 1.
    pub(crate) relays: [Option<RelaySocket>; 2],
    pub(crate) username: heapless::String<USERNAME_MAX>,
    pub(crate) created: Instant,
    /// The latest of the relays' expiries: the allocation ends then.
    pub(crate) expires: Instant,
    pub(crate) permissions: heapless::Vec<Permission, P>,
    pub(crate) channels: heapless::Vec<Channel, C>,
    pub(crate) traffic: Traffic,
    /// Bandwidth buckets: to peers, from peers.
    pub(crate) buckets: [TokenBucket; 2],
    /// The Allocate transaction, to answer its retransmissions.
    pub(crate) allocate_tid: TransactionId,
    /// RESERVATION-TOKEN handed out with it, if any.
    pub(crate) token: Option<[u8; 8]>,
    /// Whether a requested IPv6 half of a dual allocation failed (440).
    pub(crate) v6_refused: bool,
    /// Whether its relayed address is a TCP listener (RFC 6062).
    pub(crate) tcp: bool,
}

impl<const P: usize, const C: usize> Allocation<P, C> {
    /// The client's 5-tuple.
    pub fn five_tuple(&self) -> &FiveTuple {
        &self.tuple
    }

    /// The relay sockets (one or two: IPv4 and IPv6).
    pub fn relays(&self) -> impl Iterator<Item = &RelaySocket> {
        self.relays.iter().flatten()
    }

    /// Whether it is a TCP allocation (RFC 6062): its relayed address is a TCP
    /// listener, its data goes on data connections.
    pub fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// The user that created it.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// When it was created.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// When it expires unless refreshed.
    pub fn expires(&self) -> Instant {
        self.expires
    }

    /// Traffic relayed.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Permissions currently installed (live or not yet swept).
    pub fn permission_count(&self) -> usize {
        self.permissions.len()
    }

    /// Channel bindings (live, or cooling down after expiry).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The peers it may relay with: each channel's peer, then each permission
    /// no channel stands for, as an address whose port is 0 when any port of
    /// its IP is let in (as browsers ask), the port of a relayed address of
    /// this server otherwise.
    pub fn peers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let channels = self.channels.iter().map(|c| c.peer.addr());
        let permissions = self
            .permissions
            .iter()
            .filter(|p| {
                !self
                    .channels
                    .iter()
                    .any(|c| c.peer.ip() == p.ip && (p.port == 0 || p.port == c.peer.port()))
            })
            .map(|p| SocketAddr::new(p.ip, p.port));
        channels.chain(permissions)
    }

    /// The live relay for a peer of `ip`'s family at `now`, and its index (0 IPv4,
    /// 1 IPv6).
    pub(crate) fn relay_for(
        &self,
        ip: &IpAddr,
        now: Instant,
    ) -> Option<(RelayFamily, &RelaySocket)> {
        let family = RelayFamily::of(ip);
        self.relays
            .get(family.index())
            .and_then(Option::as_ref)
            .filter(|r| now < r.expires)
            .map(|r| (family, r))
    }

    /// Recomputes the allocation's expiry from its relays'.
    pub(crate) fn update_expiry(&mut self) {
        if let Some(latest) = self.relays().map(|r| r.expires).max() {
            self.expires = latest;
        }
    }

    /// Whether data to or from `ip` (a peer on no relay IP of this server) is
    /// permitted at `now`.
    pub(crate) fn permits(&self, ip: &IpAddr, now: Instant) -> bool {
        // Only a whole-IP permission (port 0): one kept for a transport
        // address never opens its IP's other ports, even once its IP is no
        // longer kept per address (a reload that removed a local peer entry).
        self.permissions
            .iter()
            .any(|p| p.ip == *ip && p.port == 0 && now < p.expires)
    }

    /// Whether data from `peer`, a relayed address of this server, is let in:
    /// only when that very address is permitted.
    pub(crate) fn admits_relay(&self, peer: &SocketAddr, now: Instant) -> bool {
        self.permissions
            .iter()
            .any(|p| p.ip == peer.ip() && p.port != 0 && p.port == peer.port() && now < p.expires)
    }

    /// Whether data to `peer`, a relayed address of this server, may go: that
    /// address is permitted, or the client permitted its IP naming no port. In
    /// the second case the address becomes a permission of its own (room
    /// allowing), so its answers are let in.
    pub(crate) fn sends_to_relay(&mut self, peer: &SocketAddr, now: Instant) -> bool {
        if self.admits_relay(peer, now) {
            return true;
        }
        let Some(open) = self
            .permissions
            .iter()
            .find(|p| p.ip == peer.ip() && p.port == 0 && now < p.expires)
            .map(|p| p.expires)
        else {
            return false;
        };
        self.permissions.retain(|p| now < p.expires);
        let _ = self.permissions.push(Permission {
            ip: peer.ip(),
            port: peer.port(),
            expires: open,
        });
        true
    }

    /// The live channel bound to `peer`, if any.
    pub(crate) fn channel_for_peer(&self, peer: &SocketAddr, now: Instant) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == *peer && c.is_live(now))
            .map(|c| c.number)
    }

    /// The peer of live channel `number`, if any.
    pub(crate) fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.is_live(now))
            .map(|c| c.peer.addr())
    }

    /// Drops expired permissions and channels past their cooldown.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.permissions.retain(|p| now < p.expires);
        self.channels.retain(|c| !c.is_gone(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_keeps_its_peer_in_32_bytes() {
        // A SocketAddr alone is 32 bytes; sixteen channels a slot.
        assert_eq!(core::mem::size_of::<Channel>(), 32);
        assert_eq!(core::mem::size_of::<Permission>(), 32);
    }

    #[test]
    fn a_peer_matches_by_ip_and_port_whatever_its_scope() {
        let bound: SocketAddr = "[fe80::1]:5000".parse().unwrap();
        let peer = PeerAddr::from(bound);
        let from_link: SocketAddr = "[fe80::1%3]:5000".parse().unwrap();
        assert!(peer == from_link);
        assert!(peer != "[fe80::1]:5001".parse::<SocketAddr>().unwrap());
        assert!(peer != "[fe80::2]:5000".parse::<SocketAddr>().unwrap());
        assert_eq!(peer.addr(), bound);
        let v4: SocketAddr = "192.0.2.7:3478".parse().unwrap();
        assert_eq!(PeerAddr::from(v4).addr(), v4);
        assert!(PeerAddr::from(v4) != "[::ffff:192.0.2.7]:3478".parse::<SocketAddr>().unwrap());
    }
}
