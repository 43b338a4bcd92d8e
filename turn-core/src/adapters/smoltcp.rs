//! The TURN server on smoltcp: a UDP listener socket and `R` relay sockets from the
//! caller's `SocketSet`, moved to and from the [`Server`] after each
//! `Interface::poll`. Nothing is allocated; the sockets' buffers are the caller's.
//!
//! ```text
//! loop {
//!     let (now, unix) = ...;                           // the caller's clocks
//!     iface.poll(smol_now, &mut device, &mut sockets);
//!     turn.process(now, unix, &mut sockets);
//!     iface.poll(smol_now, &mut device, &mut sockets); // send what TURN queued
//!     wait until min(iface.poll_delay(..), turn.poll_at())
//! }
//! ```
//!
//! Over smoltcp's loopback device (a board passes its Ethernet driver), with a
//! client socket on the same interface asking the server for its address:
//!
//! ```
//! use smoltcp::iface::{Config, Interface, SocketSet};
//! use smoltcp::phy::{Loopback, Medium};
//! use smoltcp::socket::udp;
//! use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
//! use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
//! use turn_core::adapters::{Local, User, smoltcp::SmoltcpTurn};
//! use turn_core::server::{Server, Slot};
//! use turn_core::{Instant, UnixTime};
//!
//! let mut device = Loopback::new(Medium::Ip);
//! let t0 = smoltcp::time::Instant::from_millis(0);
//! let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, t0);
//! iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap());
//! let socket = || {
//!     let buf = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
//!     udp::Socket::new(buf(), buf())
//! };
//! let mut sockets = SocketSet::new(vec![]);
//! let mut listener = socket();
//! listener.bind(3478).unwrap();
//! let listener = sockets.add(listener);
//! let relays = [sockets.add(socket()), sockets.add(socket())];
//!
//! let mut cfg = turn_core::server::Config::new("example");
//! cfg.relay_v4 = Some("127.0.0.1".parse().unwrap());
//! let server = Server::new(cfg, [Slot::<4, 4>::EMPTY; 2], [1; 32]).unwrap();
//! let users = [User::new("alice", "example", "s3cret")];
//! let host = Local { users: &users, per_user: 2, total: 2, rng: |b: &mut [u8]| b.fill(7) };
//! let local = "127.0.0.1:3478".parse().unwrap();
//! let mut turn = SmoltcpTurn::new(server, listener, local, relays, host);
//!
//! // A STUN client beside it sends a Binding request.
//! let mut client = socket();
//! client.bind(50000).unwrap();
//! let client = sockets.add(client);
//! let mut req = [0u8; 20];
//! let tid = TransactionId::new([9; 12]);
//! let n = MessageBuilder::new(&mut req, MessageType::new(Method::BINDING, Class::Request), tid)
//!     .unwrap()
//!     .finish();
//! let to = (IpAddress::v4(127, 0, 0, 1), 3478);
//! sockets.get_mut::<udp::Socket>(client).send_slice(&req[..n], to).unwrap();
//! // Each poll moves packets one hop through the loopback: out, in, back.
//! for _ in 0..4 {
//!     iface.poll(t0, &mut device, &mut sockets);
//!     turn.process(Instant::from_millis(0), UnixTime(1_800_000_000), &mut sockets);
//! }
//! let mut answer = [0u8; 128];
//! let (len, _) = sockets.get_mut::<udp::Socket>(client).recv_slice(&mut answer).unwrap();
//! let response = Message::new_checked(&answer[..len]).unwrap();
//! assert_eq!(response.class(), Class::Success);
//! assert_eq!(response.transaction_id(), tid);
//! ```

use core::net::SocketAddr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::IpListenEndpoint;

use super::{Local, Parts, RelaySockets, Slot};
use crate::server::{Outgoing, PeerBuffer, Server, Slot as TableSlot};
use crate::{FiveTuple, Instant, Transport, UnixTime};

/// Largest datagram handled.
pub const MTU: usize = 1500;

struct SmolSockets<'x, 's, const R: usize> {
    set: &'x mut SocketSet<'s>,
    handles: &'x [SocketHandle; R],
}

impl<const R: usize> RelaySockets for SmolSockets<'_, '_, R> {
    fn bind(&mut self, slot: usize, local: SocketAddr) -> bool {
        let Some(h) = self.handles.get(slot) else {
            return false;
        };
        let s = self.set.get_mut::<udp::Socket>(*h);
        s.close();
        s.bind(IpListenEndpoint {
            addr: Some(local.ip().into()),
            port: local.port(),
        })
        .is_ok()
    }

    fn unbind(&mut self, slot: usize) {
        if let Some(h) = self.handles.get(slot) {
            self.set.get_mut::<udp::Socket>(*h).close();
        }
    }
}

/// The TURN server over smoltcp UDP sockets.
pub struct SmoltcpTurn<'u, S, G, const P: usize, const C: usize, const R: usize> {
    server: Server<S, P, C>,
    listener: SocketHandle,
    local: SocketAddr,
    relay_sockets: [SocketHandle; R],
    parts: Parts<'u, G, R>,
    rx: [u8; super::RX],
    tx: [u8; MTU],
}

impl<'u, S, G, const P: usize, const C: usize, const R: usize> SmoltcpTurn<'u, S, G, P, C, R>
where
    S: AsRef<[TableSlot<P, C>]> + AsMut<[TableSlot<P, C>]>,
    G: FnMut(&mut [u8]),
{
    /// Runs `server` on `listener` (a UDP socket the caller bound to `local`, for
    /// example port 3478), with `relays` (unbound UDP sockets) for relayed
    /// addresses, and `host` for credentials, quotas and randomness.
    pub fn new(
        server: Server<S, P, C>,
        listener: SocketHandle,
        local: SocketAddr,
        relays: [SocketHandle; R],
        host: Local<'u, G>,
    ) -> Self {
        SmoltcpTurn {
            server,
            listener,
            local,
            relay_sockets: relays,
            parts: Parts::new(host, local),
            rx: [0; super::RX],
            tx: [0; MTU],
        }
    }

    /// The TURN server, for status.
    pub fn server(&self) -> &Server<S, P, C> {
        &self.server
    }

    /// When [`Self::process`] must run again at the latest.
    #[must_use]
    pub fn poll_at(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }

    /// Moves every datagram waiting on the listener and the relay sockets through
    /// the server, queues what it answers, and runs its timers. `now` is the
    /// monotonic clock, `unix` the wall clock (for time-limited credentials and
    /// nonces; a board without one passes what it has). Returns the number of
    /// datagrams handled.
    pub fn process(&mut self, now: Instant, unix: UnixTime, set: &mut SocketSet<'_>) -> usize {
        let mut handled = 0;
        // Clients.
        loop {
            let (n, endpoint) = {
                let l = set.get_mut::<udp::Socket>(self.listener);
                if !l.can_recv() {
                    break;
                }
                match l.recv_slice(&mut self.rx) {
                    Ok((n, meta)) => (n, meta.endpoint),
                    Err(_) => break,
                }
            };
            handled += 1;
            let tuple = FiveTuple {
                client: endpoint.into(),
                server: self.local,
                transport: Transport::Udp,
                socket: 0,
            };
            let mut host = self.parts.host(SmolSockets {
                set: &mut *set,
                handles: &self.relay_sockets,
            });
            let packet = self.rx.get(..n).unwrap_or(&[]);
            let output =
                self.server
                    .handle_client(now, unix, &mut host, tuple, packet, &mut self.tx);
            match output {
                Outgoing::Client { bytes, refusal, .. } => {
                    #[cfg(feature = "defmt")]
                    if let Some(r) = refusal {
                        defmt::info!("turn: refused {}: {}", r.code(), defmt::Debug2Format(&r));
                    }
                    let _ = refusal;
                    let _ = set
                        .get_mut::<udp::Socket>(self.listener)
                        .send_slice(bytes, endpoint);
                }
                Outgoing::Peer {
                    relay, peer, bytes, ..
                } => {
                    if let Some(h) = self
                        .parts
                        .slot_of(relay)
                        .and_then(|i| self.relay_sockets.get(i))
                    {
                        let _ = set
                            .get_mut::<udp::Socket>(*h)
                            .send_slice(bytes, smoltcp::wire::IpEndpoint::from(peer));
                    }
                }
                Outgoing::Nothing(_) => {}
            }
        }
        // Peers.
        for i in 0..R {
            let Some(Slot {
                bound: Some((handle, _)),
                reserved: false,
            }) = self.parts.slots.get(i).copied()
            else {
                continue;
            };
            let Some(h) = self.relay_sockets.get(i).copied() else {
                continue;
            };
            loop {
                let (n, peer) = {
                    let s = set.get_mut::<udp::Socket>(h);
                    if !s.can_recv() {
                        break;
                    }
                    let dst = PeerBuffer::receive_area(&mut self.rx);
                    match s.recv_slice(dst) {
                        Ok((n, meta)) => (n, meta.endpoint),
                        Err(_) => break,
                    }
                };
                handled += 1;
                let Ok(mut datagram) = PeerBuffer::new(&mut self.rx, n) else {
                    continue;
                };
                let out = {
                    let mut host = self.parts.host(SmolSockets {
                        set: &mut *set,
                        handles: &self.relay_sockets,
                    });
                    self.server
                        .handle_peer(now, &mut host, handle, peer.into(), &mut datagram)
                };
                if let Outgoing::Client { tuple, bytes, .. } = out {
                    let _ = set
                        .get_mut::<udp::Socket>(self.listener)
                        .send_slice(bytes, smoltcp::wire::IpEndpoint::from(tuple.client));
                }
            }
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            let mut host = self.parts.host(SmolSockets {
                set,
                handles: &self.relay_sockets,
            });
            self.server.handle_timeout(now, &mut host);
        }
        #[cfg(feature = "defmt")]
        while let Some(e) = self.server.poll_event() {
            defmt::info!("turn: {}", defmt::Debug2Format(&e));
        }
        handled
    }
}
