//! What the server asks of its environment: the [`Host`] trait, and the handles and
//! errors it speaks in.

use core::net::SocketAddr;

use stun_core::credentials::{Algorithm, Key};

use super::config::USERNAME_MAX;
use crate::{FiveTuple, Instant};

/// Identifies one relay socket: an allocation's slot, its generation (so a handle
/// outliving its allocation misses), and which socket (IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RelayHandle {
    /// Slot index.
    pub slot: u32,
    /// Generation of the slot when the socket was bound.
    pub generation: u32,
    /// Which of the allocation's relay sockets.
    pub family: RelayFamily,
}

/// Which of an allocation's relay sockets (RFC 8656 §7.1: a dual allocation has
/// one of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RelayFamily {
    /// The IPv4 relay socket.
    Ipv4,
    /// The IPv6 relay socket.
    Ipv6,
}

impl RelayFamily {
    /// The relay socket for peers of `ip`'s family.
    pub const fn of(ip: &core::net::IpAddr) -> RelayFamily {
        if ip.is_ipv6() {
            RelayFamily::Ipv6
        } else {
            RelayFamily::Ipv4
        }
    }

    /// Its place in an allocation's pair of relays: 0 for IPv4, 1 for IPv6.
    pub(crate) const fn index(self) -> usize {
        match self {
            RelayFamily::Ipv4 => 0,
            RelayFamily::Ipv6 => 1,
        }
    }

    /// The family at place `index` of the pair.
    pub(crate) const fn at(index: usize) -> Option<RelayFamily> {
        match index {
            0 => Some(RelayFamily::Ipv4),
            1 => Some(RelayFamily::Ipv6),
            _ => None,
        }
    }
}

/// Why the host could not bind a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BindError {
    /// The port is taken; the server tries another.
    InUse,
    /// The address cannot be bound at all (not local, no permission, out of
    /// sockets); the server stops trying.
    Unavailable,
    /// The host keeps no EVEN-PORT reservations (the default of
    /// [`Host::reserve_port`]).
    NotOffered,
}

/// Why the host refused to count another allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QuotaError {
    /// The user has reached its quota (486).
    User,
    /// The server has reached its total (508, or 300 to the alternate server).
    Total,
}

/// A bound channel as a fast path below the server (an XDP program, a NIC) may
/// relay it on its own: ChannelData from the client of `tuple` on `channel` goes
/// to `peer` from the relay socket at `relay`, and datagrams from `peer` to `relay`
/// go to the client in ChannelData on `channel`, until `until`. Only UDP clients'
/// channels, and never a peer that is one of the server's relayed addresses
/// (relay-to-relay is checked per packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelRoute {
    /// The client's 5-tuple (its listener is `tuple.server`).
    pub tuple: FiveTuple,
    /// The relay socket the channel belongs to.
    pub handle: RelayHandle,
    /// The channel number.
    pub channel: u16,
    /// The relay socket's local address.
    pub relay: SocketAddr,
    /// The peer.
    pub peer: SocketAddr,
    /// When relaying must stop unless the server says otherwise: the earliest of
    /// the channel's, its peer permission's and its relayed address's expiry.
    pub until: Instant,
}

/// What the server needs from its environment.
pub trait Host {
    /// The long-term key of `username` in `realm` for the password `algorithm`,
    /// from the local credential database; `None` if there is no such user (or the
    /// database cannot derive that algorithm's key: it may keep MD5 keys only).
    fn long_term_key(&mut self, username: &str, realm: &str, algorithm: Algorithm) -> Option<Key>;

    /// The username whose USERHASH (SHA-256 of `username ":" realm`, RFC 8489
    /// §14.4) is `userhash`. Only asked when the configuration offers username
    /// anonymity; by default there is none.
    fn username_by_hash(
        &mut self,
        userhash: &[u8; 32],
        realm: &str,
    ) -> Option<heapless::String<USERNAME_MAX>> {
        let _ = (userhash, realm);
        None
    }

    /// Opens a relay socket bound to `local`. Its datagrams go to
    /// [`Server::handle_peer`](super::Server::handle_peer) with `handle`.
    fn bind_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError>;

    /// Closes the relay socket bound for `handle`.
    fn close_relay(&mut self, handle: RelayHandle, local: SocketAddr);

    /// Opens the relayed address of a TCP allocation (RFC 6062): a TCP
    /// listener at `local` for `handle`, whose connections go to
    /// [`Server::peer_accepted`](super::Server::peer_accepted); closed with
    /// [`Host::close_relay`]. By default the host offers none, and an
    /// Allocate for TCP gets 442.
    fn listen_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError> {
        let _ = (handle, local);
        Err(BindError::NotOffered)
    }

    /// Starts a TCP connection from `from` (the relayed address of `handle`'s
    /// TCP allocation) to `peer`, and reports its outcome with
    /// [`Server::peer_connected`](super::Server::peer_connected) by `deadline`
    /// at the latest (a failure then). `false` when it cannot even start (the
    /// Connect gets 447 at once). By default the host has no TCP relays.
    fn connect_peer(
        &mut self,
        id: super::ConnectionId,
        handle: RelayHandle,
        from: SocketAddr,
        peer: SocketAddr,
        deadline: Instant,
    ) -> bool {
        let _ = (id, handle, from, peer, deadline);
        false
    }

    /// Closes peer connection `id` and its client data connection, if bound
    /// (its allocation ended, or its ConnectionBind did not come in time), and
    /// returns what it relayed. Not called for a connection the host reported
    /// ended with [`Server::connection_ended`](super::Server::connection_ended).
    fn close_connection(&mut self, id: super::ConnectionId) -> super::ConnectionTraffic {
        let _ = id;
        super::ConnectionTraffic::default()
    }

    /// Whether a relay socket of this server (of any shard, for a sharded host) is
    /// bound at `local` right now. Asked for peers on the server's own relay
    /// addresses, on every packet to or from them, so that relay-to-relay traffic
    /// reaches live allocations and never the server's other ports.
    fn is_relay(&mut self, local: SocketAddr) -> bool;

    /// Whether `ip` is an address of this host that peers may never be, besides
    /// the policy's own list (which has a fixed size): a host with more
    /// addresses than that (every ClusterIP of a Kubernetes node on one
    /// interface) answers for all of them here. Asked when a permission or a
    /// channel is asked for a peer the policy allows, never per packet. By
    /// default none.
    fn is_own_address(&mut self, ip: core::net::IpAddr) -> bool {
        let _ = ip;
        false
    }

    /// Counts a new allocation of `user` against the quotas. `user` is the
    /// username, or the user part of a time-limited one (`expiry:user` counts as
    /// `user`).
    fn acquire_quota(&mut self, user: &str) -> Result<(), QuotaError>;

    /// Releases what [`Host::acquire_quota`] counted.
    fn release_quota(&mut self, user: &str);

    /// Holds port `local` for an EVEN-PORT reservation named `token` until
    /// `expires`: bound, so nothing else takes it, and not read. The host keeps
    /// reservations (not the server) so that every worker of a sharded host can
    /// claim them. By default there are none: an Allocate asking for one is
    /// refused with 508, saying so.
    fn reserve_port(
        &mut self,
        token: [u8; 8],
        local: SocketAddr,
        expires: Instant,
    ) -> Result<(), BindError> {
        let _ = (token, local, expires);
        Err(BindError::NotOffered)
    }

    /// Makes the port held for `token` the relay socket of `handle` and returns its
    /// address; `None` if there is no such reservation, or it expired.
    fn claim_port(
        &mut self,
        token: &[u8; 8],
        handle: RelayHandle,
        now: Instant,
    ) -> Option<SocketAddr> {
        let _ = (token, handle, now);
        None
    }

    /// Releases the reservations whose time has passed.
    fn expire_reservations(&mut self, now: Instant) {
        let _ = now;
    }

    /// A channel route is new or its end moved (a ChannelBind, a CreatePermission
    /// for its peer, a Refresh): a host with a fast path installs or updates it.
    /// Routes end at their `until` by themselves; those of a relay socket are gone
    /// when [`Host::close_relay`] closes it. By default there is no fast path.
    fn route(&mut self, route: &ChannelRoute) {
        let _ = route;
    }

    /// Charges `bytes` of `user`'s traffic (`to_peer`: client to peers, else
    /// peers to the client) against the user's bucket for that direction, with
    /// [`TokenBucket::take`](super::TokenBucket::take) at `rate`; `false` drops
    /// the packet. Asked only when
    /// [`Config::user_bandwidth`](super::Config::user_bandwidth) is set; `user` is
    /// the user part of a time-limited username. A host with several shards
    /// shares the buckets between them. By default no packet is refused.
    fn user_bandwidth(
        &mut self,
        user: &str,
        to_peer: bool,
        rate: super::Bandwidth,
        now: Instant,
        bytes: usize,
    ) -> bool {
        let _ = (user, to_peer, rate, now, bytes);
        true
    }

    /// Fills `buf` from a cryptographically secure random source.
    fn random(&mut self, buf: &mut [u8]);
}
