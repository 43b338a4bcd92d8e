//! The TURN server (RFC 8656): a sans-IO state machine over a fixed-capacity
//! allocation table.
//!
//! # Driving it
//! - [`Server::handle_client`] with every packet a client sends to a listener (a
//!   UDP datagram, or one frame cut from a TCP/TLS stream with
//!   [`stun_core::demux::stream_frame`]). It returns an [`Outgoing`]: a reply to
//!   send back on the same 5-tuple, data to send from a relay socket to a peer, or
//!   nothing (with the [`Refusal`] to log), borrowing the packet or the reply.
//! - [`Server::handle_peer`] with every datagram a relay socket receives, in a
//!   [`PeerBuffer`] (room before and after it), so the server can wrap it in a
//!   ChannelData or Data indication header in place. It returns the same
//!   [`Outgoing`]: what to send to the client, borrowing the buffer.
//! - [`Server::poll_timeout`] says when [`Server::handle_timeout`] must next be
//!   called; it expires allocations, permissions, channels and reservations.
//! - [`Server::poll_event`] yields allocations created and deleted, for logs.
//!
//! The [`Host`] passed to these calls binds and closes relay sockets, looks up
//! users' keys, counts quotas, and supplies random bytes.
//!
//! # Example
//! A server with one user, and turn-core's [`Client`](crate::client::Client)
//! allocating on it, in memory: every packet one side writes, the other handles.
//! (The `std`, `smoltcp` and `embassy-net` adapters do this over real sockets.)
//!
//! ```
//! use core::net::SocketAddr;
//! use turn_core::client::{Client, ClientConfig, ClientEvent};
//! use turn_core::credentials::{Algorithm, Key};
//! use turn_core::server::{
//!     BindError, Config, Host, Outgoing, QuotaError, RelayHandle, Server, Slot,
//! };
//! use turn_core::{FiveTuple, Instant, Transport, UnixTime};
//!
//! /// One user, relay sockets that always bind, no quota, a poor random source.
//! struct Memory;
//! impl Host for Memory {
//!     fn long_term_key(&mut self, user: &str, realm: &str, a: Algorithm) -> Option<Key> {
//!         (user == "alice").then(|| Key::derive(a, user, realm, "s3cret"))
//!     }
//!     fn bind_relay(&mut self, _: RelayHandle, _: SocketAddr) -> Result<(), BindError> {
//!         Ok(())
//!     }
//!     fn close_relay(&mut self, _: RelayHandle, _: SocketAddr) {}
//!     fn is_relay(&mut self, _: SocketAddr) -> bool { false }
//!     fn acquire_quota(&mut self, _: &str) -> Result<(), QuotaError> { Ok(()) }
//!     fn release_quota(&mut self, _: &str) {}
//!     fn random(&mut self, buf: &mut [u8]) { buf.fill(7) } // use a real one
//! }
//!
//! let listener: SocketAddr = "192.0.2.1:3478".parse().unwrap();
//! let mut cfg = Config::new("example");
//! cfg.relay_v4 = Some("192.0.2.1".parse().unwrap());
//! let mut server = Server::new(cfg, [Slot::<8, 8>::EMPTY; 16], [1; 32]).unwrap();
//!
//! let mut client = Client::new(ClientConfig::new(listener, "alice", "s3cret").unwrap(), [2; 32]);
//! let tuple = FiveTuple {
//!     client: "198.51.100.7:50000".parse().unwrap(),
//!     server: listener,
//!     transport: Transport::Udp,
//!     socket: 0,
//! };
//! let (now, unix) = (Instant::from_secs(0), UnixTime(1_800_000_000));
//! client.allocate(now).unwrap();
//! let (mut request, mut reply) = ([0u8; 1500], [0u8; 1500]);
//! // Two rounds: the first Allocate draws a 401 with the realm and a nonce.
//! for _ in 0..2 {
//!     let t = client.poll_transmit(now, &mut request).unwrap();
//!     let packet = &request[..t.len];
//!     match server.handle_client(now, unix, &mut Memory, tuple, packet, &mut reply) {
//!         Outgoing::Client { bytes, .. } => {
//!             let _ = client.handle_input(now, t.destination, bytes);
//!         }
//!         Outgoing::Peer { .. } | Outgoing::Nothing(_) => {}
//!     }
//! }
//! let allocated = core::iter::from_fn(|| client.poll_event())
//!     .find(|e| matches!(e, ClientEvent::Allocated { .. }));
//! assert!(allocated.is_some());
//! assert!(server.has_allocation(&tuple));
//! ```
//!
//! # Memory
//! Storage is the caller's: `S` holds [`Slot`]s (one allocation each, with up to
//! `P` permissions and `C` channel bindings inline, and two entries of the table's
//! index). `size_of::<Slot<P, C>>()` is the state per allocation; the README gives
//! it for the sizes the std server uses.
//!
//! # Errors
//! Every refusal maps to the error code RFC 8656 lists (see [`Refusal::code`]). A
//! request that fails authentication changes no state; neither does any malformed
//! packet.

mod allocate;
mod allocation;
mod auth;
#[cfg(feature = "std")]
pub(crate) use auth::quota_user;
pub mod bandwidth;
mod config;
mod host;
pub mod image;
mod local;
mod nonce;
mod output;
mod permissions;
pub mod policy;
mod ratelimit;
mod reason;
mod refusal;
mod relay;
mod requests;
mod respond;
#[cfg(feature = "std")]
mod storage;
mod table;
pub mod tcp;

use core::net::SocketAddr;

use stun_core::demux::{self, PacketKind};
use stun_core::{AttributeType, Class, Message, Method, ParseError, classic};

pub use allocation::{Allocation, RelaySocket, Traffic};
pub use bandwidth::{Bandwidth, MIN_BURST, TokenBucket};
pub use config::{
    CHANNEL_COOLDOWN_SECS, CHANNEL_LIFETIME_SECS, Config, ConfigError, PERMISSION_LIFETIME_SECS,
    REALM_MAX, RESERVATION_LIFETIME_SECS, SECRET_MAX, SECRETS_MAX, SOFTWARE_MAX, Secret,
    USERNAME_MAX,
};
pub use host::{BindError, ChannelRoute, Host, QuotaError, RelayFamily, RelayHandle};
pub use image::{IMAGE_VERSION, ImageError};
pub use local::{LocalQuota, Reservations};
pub(crate) use nonce::{Nonces, SecurityFeatures};
pub(crate) use output::{ClientOutput, PeerOutput};
pub use output::{Counters, EndReason, Event, Outgoing};
pub(crate) use ratelimit::RateLimiter;
pub use reason::{Group, REASONS, Reason, RefusalCounts};
pub use refusal::{BadRequest, DRAINING_PHRASE, Refusal};
pub use relay::{BufferTooSmall, PEER_HEADROOM, PEER_TAILROOM, PeerBuffer};
#[cfg(feature = "std")]
pub use storage::GROW_MIN;
pub use table::Slot;
pub use tcp::{BIND_TIMEOUT_SECS, CONNECT_TIMEOUT_SECS, ConnectionId, ConnectionTraffic};

use crate::rng::{self, Random};
use crate::{FiveTuple, Instant, UnixTime};

/// The TURN server. See the module docs for how to drive it.
///
/// `T` is how many peer TCP connections of TCP allocations (RFC 6062) it holds
/// at once; with the default, 0, it relays UDP only and answers an Allocate for
/// TCP with 442 (see [`tcp`]).
pub struct Server<S, const P: usize, const C: usize, const T: usize = 0> {
    cfg: Config,
    nonces: Nonces,
    table: table::Table<S, P, C>,
    limiter: RateLimiter,
    random: Random,
    next_sweep: Option<Instant>,
    /// When the last EVEN-PORT reservation handed out expires: sweeps go on
    /// until then even with no allocation left, so the host's port is released.
    reservations_until: Option<Instant>,
    events: heapless::Deque<Event, 16>,
    counters: Counters,
    /// Draining: no new allocations, and none lives past this.
    draining_until: Option<Instant>,
    /// What was relayed over the last second, against the capacity.
    throughput: bandwidth::Throughput,
    /// The peer TCP connections of TCP allocations.
    connections: tcp::Connections<T>,
}

impl<S, const P: usize, const C: usize, const T: usize> core::fmt::Debug for Server<S, P, C, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("realm", &self.cfg.realm)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<S, const P: usize, const C: usize> Server<S, P, C>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// A server over the caller's storage: one [`Slot`] per allocation it can
    /// hold (the table's index lives in the slots too). `secret` must come from a
    /// secure random source: it keys nonces, transaction ids and the table's
    /// hash. Fails on a bad configuration or empty storage.
    ///
    /// The server's relay and advertised addresses join the peer policy's own
    /// addresses here, so relaying to them is refused (but to live relayed
    /// addresses) whatever the allow list says.
    ///
    /// It relays UDP only; [`Server::with_tcp`] makes one that takes TCP
    /// allocations too.
    pub fn new(cfg: Config, slots: S, secret: [u8; 32]) -> Result<Self, ConfigError> {
        Self::with_tcp(cfg, slots, secret)
    }
}

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// [`Server::new`] for a server that also takes TCP allocations (RFC 6062),
    /// holding up to `T` peer TCP connections at once, if its host offers TCP
    /// relays ([`Host::listen_relay`]).
    pub fn with_tcp(mut cfg: Config, slots: S, secret: [u8; 32]) -> Result<Self, ConfigError> {
        cfg.validate()?;
        if slots.as_ref().is_empty() || slots.as_ref().len() >= (u32::MAX / 2) as usize {
            return Err(ConfigError {
                field: "storage",
                problem: "need at least one slot (and fewer than 2^31)",
            });
        }
        for ip in cfg.relay_ips().into_iter().flatten() {
            if !cfg.policy.add_own(ip) {
                return Err(ConfigError {
                    field: "policy.own",
                    problem: "more own addresses than the policy holds",
                });
            }
        }
        let table_key = rng::derive(&secret, b"table");
        let limiter_key = rng::derive(&secret, b"limiter");
        let word =
            |k: [u8; 32]| u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
        let features = SecurityFeatures {
            password_algorithms: !cfg.password_algorithms.is_empty(),
            username_anonymity: cfg.userhash,
        };
        Ok(Server {
            nonces: Nonces::new(
                rng::derive(&secret, b"nonce"),
                cfg.nonce_lifetime_secs,
                features,
            ),
            limiter: RateLimiter::new(
                cfg.unauth_burst,
                cfg.unauth_per_sec,
                cfg.unauth_global_per_sec,
                cfg.unauth_verified_per_sec,
                word(limiter_key),
            ),
            cfg,
            table: table::Table::new(slots, word(table_key)),
            random: Random::new(rng::derive(&secret, b"tid")),
            next_sweep: None,
            reservations_until: None,
            events: heapless::Deque::new(),
            counters: Counters::default(),
            draining_until: None,
            throughput: bandwidth::Throughput::default(),
            connections: tcp::Connections::new(),
        })
    }

    /// Takes a new configuration without dropping anything: allocations,
    /// permissions, channels and nonces live on (nonces under the same secret).
    /// What it changes applies from the next request: credentials' secrets, the
    /// peer policy (for new permissions), lifetimes, budgets, the alternate
    /// server, relay ports and addresses (for new allocations). A configuration
    /// [`Server::new`] would refuse is refused, and the running one kept.
    pub fn reconfigure(&mut self, mut cfg: Config) -> Result<(), ConfigError> {
        cfg.validate()?;
        for ip in cfg.relay_ips().into_iter().flatten() {
            if !cfg.policy.add_own(ip) {
                return Err(ConfigError {
                    field: "policy.own",
                    problem: "more own addresses than the policy holds",
                });
            }
        }
        self.nonces.reconfigure(
            cfg.nonce_lifetime_secs,
            SecurityFeatures {
                password_algorithms: !cfg.password_algorithms.is_empty(),
                username_anonymity: cfg.userhash,
            },
        );
        self.limiter.set_rates(
            cfg.unauth_burst,
            cfg.unauth_per_sec,
            cfg.unauth_global_per_sec,
            cfg.unauth_verified_per_sec,
        );
        self.cfg = cfg;
        Ok(())
    }

    /// Drains the server: from now on an Allocate gets 300 to the alternate
    /// server (or 508), and no allocation is refreshed past `until`; existing
    /// allocations relay as before until they end.
    pub fn drain(&mut self, until: Instant) {
        self.draining_until = Some(until);
    }

    /// When the drain ends, if draining.
    pub fn draining_until(&self) -> Option<Instant> {
        self.draining_until
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters over the server's life.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live allocations.
    pub fn allocation_count(&self) -> usize {
        self.table.len()
    }

    /// How many allocations the storage holds.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Whether the 5-tuple holds an allocation (a stream connection's limits widen
    /// once it does).
    pub fn has_allocation(&self, tuple: &FiveTuple) -> bool {
        self.table.find(tuple).is_some()
    }

    /// Every live allocation, for status pages.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation<P, C>> {
        self.table.iter().map(|(_, a)| a)
    }

    /// Handles a packet from a client: what to send, and where. `out` receives
    /// a reply (1500 bytes is plenty; a reply that does not fit is dropped); the
    /// answer borrows it, or `packet` for data relayed to a peer.
    pub fn handle_client<'a>(
        &mut self,
        now: Instant,
        unix: UnixTime,
        host: &mut impl Host,
        tuple: FiveTuple,
        packet: &'a [u8],
        out: &'a mut [u8],
    ) -> Outgoing<'a> {
        let output = self.client_output(now, unix, host, tuple, packet, out);
        let out: &'a [u8] = out;
        output.outgoing(tuple, packet, out)
    }

    fn client_output(
        &mut self,
        now: Instant,
        unix: UnixTime,
        host: &mut impl Host,
        tuple: FiveTuple,
        packet: &[u8],
        out: &mut [u8],
    ) -> ClientOutput {
        let legacy = self.cfg.legacy_channels;
        let output = match (demux::classify(packet), packet.first()) {
            (PacketKind::ChannelData, _) => self.client_channel_data(now, host, &tuple, packet),
            (_, Some(0x50..=0x7F)) if legacy => self.client_channel_data(now, host, &tuple, packet),
            (PacketKind::Stun, _) => self.client_stun(now, unix, host, &tuple, packet, out),
            _ => ClientOutput::Drop(Some(Refusal::NotTurn)),
        };
        if let ClientOutput::Drop(Some(why))
        | ClientOutput::Reply {
            refusal: Some(why), ..
        } = &output
        {
            self.counters.count(why.reason());
            // The allocation's own record counts what an operator acts on.
            if why.reason().group() != reason::Group::Challenge
                && let Some(slot) = self.table.find(&tuple)
                && let Some(a) = self.table.get_mut(slot)
            {
                a.traffic.refused += 1;
            }
        }
        output
    }

    fn client_stun(
        &mut self,
        now: Instant,
        unix: UnixTime,
        host: &mut impl Host,
        tuple: &FiveTuple,
        packet: &[u8],
        out: &mut [u8],
    ) -> ClientOutput {
        if classic::is_classic(packet) {
            return self.classic(tuple, packet, out);
        }
        let msg = match Message::new_checked(packet) {
            Ok(m) => m,
            Err(e) => return ClientOutput::Drop(Some(Refusal::Malformed(e))),
        };
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            return ClientOutput::Drop(Some(Refusal::BadFingerprint));
        }
        match (msg.class(), msg.method()) {
            (Class::Indication, Method::SEND) => self.send_indication(now, host, tuple, &msg),
            (Class::Request, _) => self.request(now, unix, host, tuple, &msg, out),
            _ => ClientOutput::Drop(Some(Refusal::UnexpectedMessage)),
        }
    }

    /// A packet without the magic cookie: an RFC 3489 Binding is answered with
    /// MAPPED-ADDRESS (or 420 for what this server cannot honour) when
    /// `classic_stun` is on; anything else is dropped.
    fn classic(&mut self, tuple: &FiveTuple, packet: &[u8], out: &mut [u8]) -> ClientOutput {
        if !self.cfg.classic_stun {
            return ClientOutput::Drop(Some(Refusal::ClassicOff));
        }
        match classic::respond(packet, tuple.client, out) {
            classic::Answer::Mapped(len) => ClientOutput::Reply { len, refusal: None },
            classic::Answer::Refused { len, attribute } => ClientOutput::Reply {
                len,
                refusal: Some(Refusal::UnknownAttribute(AttributeType::new(attribute))),
            },
            classic::Answer::Drop => {
                ClientOutput::Drop(Some(Refusal::Malformed(ParseError::BadMagicCookie {
                    found: packet
                        .get(4..8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u32::from_be_bytes),
                })))
            }
        }
    }

    /// When [`Self::handle_timeout`] must next be called, if anything can expire.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Expires what is due at `now`: allocations (closing their relay sockets and
    /// releasing their quota), permissions and channel bindings, and asks the host
    /// to expire reservations.
    ///
    /// Each allocation that ends queues an [`Event::Ended`] (a usage record's
    /// worth). A sweep ends no more allocations than the event queue has room
    /// for, and asks to be called again at once ([`Server::poll_timeout`] says
    /// `now`) for the rest, so a host that reads events after each call loses
    /// none when a whole meeting's allocations expire together. A host that
    /// reads none (its queue full before the sweep) still sees every
    /// allocation end, the oldest events dropped.
    pub fn handle_timeout(&mut self, now: Instant, host: &mut impl Host) {
        if self.cfg.capacity_bytes_per_sec.is_some() {
            let _ = self.over_capacity(now);
        }
        if self.next_sweep.is_none_or(|t| now < t) {
            return;
        }
        let read = !self.events.is_full();
        let mut deferred = false;
        for slot in 0..self.table.capacity() {
            if read && self.events.is_full() {
                deferred = true;
                break;
            }
            let (expired, relay_gone) = match self.table.get_mut(slot) {
                Some(a) if now >= a.expires => (true, None),
                Some(a) => {
                    a.prune(now);
                    // One relayed address of a dual allocation may end first.
                    let gone = a
                        .relays
                        .iter()
                        .position(|r| r.is_some_and(|r| now >= r.expires));
                    (false, gone)
                }
                None => (false, None),
            };
            if expired {
                self.end_allocation(slot, host, EndReason::Expired);
            } else if let Some(which) = relay_gone {
                self.end_relay(slot, which, host);
            }
        }
        self.expire_connections(now, host);
        host.expire_reservations(now);
        self.schedule(now);
        if deferred {
            self.next_sweep = Some(now);
        }
    }

    /// Sets the next sweep a second from `now`, or none if nothing can expire.
    fn schedule(&mut self, now: Instant) {
        let reserved = self.reservations_until.is_some_and(|t| now <= t);
        self.next_sweep = if self.table.len() > 0 || reserved {
            Some(now.plus_millis(1000))
        } else {
            None
        };
    }

    /// Tells the server that the TCP or TLS connection of `tuple` closed: its
    /// allocation, if any, is deleted at once.
    pub fn connection_closed(&mut self, tuple: &FiveTuple, host: &mut impl Host) {
        if let Some(slot) = self.table.find(tuple) {
            self.end_allocation(slot, host, EndReason::ConnectionClosed);
        }
    }

    /// Ends every allocation (the server stops): relay sockets closed, quotas
    /// released, an [`Event::Ended`] with [`EndReason::Stopped`] for each (read
    /// them with [`Server::poll_event`] as it goes: `each` is called after every
    /// allocation ended, so a host with more allocations than events queued
    /// loses none).
    pub fn stop(&mut self, host: &mut impl Host, mut each: impl FnMut(&mut Self)) {
        for slot in 0..self.table.capacity() {
            if self.table.get_mut(slot).is_some() {
                self.end_allocation(slot, host, EndReason::Stopped);
                each(self);
            }
        }
    }

    /// The next event for the log, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: Event) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    /// Whether the last second's traffic, plus what one more allocation may
    /// send, passes the configured capacity.
    pub(crate) fn over_capacity(&mut self, now: Instant) -> bool {
        let c = &self.counters;
        let total = c.to_peer_bytes.saturating_add(c.from_peer_bytes);
        let rate = self.throughput.sample(now, total);
        let Some(capacity) = self.cfg.capacity_bytes_per_sec else {
            return false;
        };
        let one = self
            .cfg
            .allocation_bandwidth
            .map_or(0, |b| 2 * u64::from(b.bytes_per_sec));
        rate.saturating_add(one) > capacity
    }

    /// Tells the host the routes of the allocation in `slot`'s live channels, with
    /// when each must stop (see [`ChannelRoute`]).
    pub(crate) fn announce_routes(&self, slot: usize, host: &mut impl Host, now: Instant) {
        let (Some(a), Some(generation)) = (self.table.get(slot), self.table.generation(slot))
        else {
            return;
        };
        if a.tuple.transport != crate::Transport::Udp || self.cfg.meters_packets() {
            return;
        }
        for c in a.channels.iter().filter(|c| c.is_live(now)) {
            // Relay to relay stays in userspace; so does any peer on an IP kept
            // per transport address but a local peer entry's (whose
            // permission is then its own port's).
            let local = self.cfg.policy.allows_local(c.peer.addr());
            if self.cfg.is_relay_ip(c.peer.ip())
                || (!local && self.cfg.policy.names_local_ip(c.peer.ip()))
            {
                continue;
            }
            let port = if local { c.peer.port() } else { 0 };
            let Some(permission) = a
                .permissions
                .iter()
                .find(|p| p.ip == c.peer.ip() && p.port == port)
            else {
                continue;
            };
            let Some((family, relay)) = a.relay_for(&c.peer.ip(), now) else {
                continue;
            };
            host.route(&ChannelRoute {
                tuple: a.tuple,
                handle: RelayHandle {
                    slot: slot as u32,
                    generation,
                    family,
                },
                channel: c.number,
                relay: relay.local,
                peer: c.peer.addr(),
                until: c.expires.min(permission.expires).min(relay.expires),
            });
        }
    }

    /// The relay socket address `addr` names, if it is a live relayed address of
    /// this server (on a relay or advertised IP, bound right now on any shard).
    pub(crate) fn live_relay(&self, host: &mut impl Host, addr: SocketAddr) -> Option<SocketAddr> {
        let local = self.cfg.relay_local(addr)?;
        host.is_relay(local).then_some(local)
    }

    /// Ends one relayed address (`which`: 0 IPv4, 1 IPv6) of the allocation in
    /// `slot`; the allocation ends with its last one.
    pub(crate) fn end_relay(&mut self, slot: usize, which: usize, host: &mut impl Host) {
        let Some(generation) = self.table.generation(slot) else {
            return;
        };
        let last = self
            .table
            .get(slot)
            .is_some_and(|a| a.relays().count() <= 1);
        if last {
            self.end_allocation(slot, host, EndReason::Released);
            return;
        }
        let Some(a) = self.table.get_mut(slot) else {
            return;
        };
        if let Some(r) = a.relays.get_mut(which).and_then(Option::take)
            && let Some(family) = RelayFamily::at(which)
        {
            let handle = RelayHandle {
                slot: slot as u32,
                generation,
                family,
            };
            host.close_relay(handle, r.local);
        }
        a.update_expiry();
    }

    /// Closes the relay sockets of `a`, taken out of `slot` at `generation`,
    /// and releases its quota.
    fn let_go(&self, slot: usize, generation: u32, a: &Allocation<P, C>, host: &mut impl Host) {
        for (which, r) in a.relays.iter().enumerate() {
            if let (Some(r), Some(family)) = (r, RelayFamily::at(which)) {
                let handle = RelayHandle {
                    slot: slot as u32,
                    generation,
                    family,
                };
                host.close_relay(handle, r.local);
            }
        }
        host.release_quota(auth::quota_user(&self.cfg, &a.username));
    }

    /// Removes the allocation in `slot`, closes its relays and peer TCP
    /// connections (their traffic joins its record) and releases its quota.
    fn end_allocation(&mut self, slot: usize, host: &mut impl Host, reason: EndReason) {
        let Some(generation) = self.table.generation(slot) else {
            return;
        };
        self.close_connections_of(slot, generation, host);
        let Some(a) = self.table.remove(slot) else {
            return;
        };
        self.let_go(slot, generation, &a, host);
        self.counters.allocations_ended += 1;
        self.push_event(Event::Ended {
            tuple: a.tuple,
            username: a.username,
            reason,
            traffic: a.traffic,
            started: a.created,
            relayed: a.relays.map(|r| r.map(|r| r.advertised)),
        });
    }
}
