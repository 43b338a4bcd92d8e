//! The TURN server on smoltcp: a UDP listener socket and `R` relay sockets from the
//! caller's `SocketSet`, moved to and from the [`Server`] after each
//! `Interface::poll`. Nothing is allocated; the sockets' buffers are the caller's.
//!
//! ```text
//! loop {
//!     let now = ...;                                   // the caller's clock
//!     iface.poll(smol_now, &mut device, &mut sockets);
//!     turn.process(now, &mut sockets);
//!     iface.poll(smol_now, &mut device, &mut sockets); // send what TURN queued
//!     wait until min(iface.poll_delay(..), turn.poll_at())
//! }
//! ```

use core::net::SocketAddr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::IpListenEndpoint;

use super::{Local, Parts, RelaySockets, Slot};
use crate::server::{ClientOutput, PEER_HEADROOM, PeerOutput, Server, Slot as TableSlot};
use crate::{FiveTuple, Instant, Transport};

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
pub struct SmoltcpTurn<'u, S, I, G, const P: usize, const C: usize, const R: usize> {
    server: Server<S, I, P, C>,
    listener: SocketHandle,
    local: SocketAddr,
    relay_sockets: [SocketHandle; R],
    parts: Parts<'u, G, R>,
    rx: [u8; PEER_HEADROOM + MTU + 8],
    tx: [u8; MTU],
}

impl<'u, S, I, G, const P: usize, const C: usize, const R: usize> SmoltcpTurn<'u, S, I, G, P, C, R>
where
    S: AsRef<[TableSlot<P, C>]> + AsMut<[TableSlot<P, C>]>,
    I: AsRef<[u32]> + AsMut<[u32]>,
    G: FnMut(&mut [u8]),
{
    /// Runs `server` on `listener` (a UDP socket the caller bound to `local`, for
    /// example port 3478), with `relays` (unbound UDP sockets) for relayed
    /// addresses, and `host` for credentials, quotas and randomness.
    pub fn new(
        server: Server<S, I, P, C>,
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
            rx: [0; PEER_HEADROOM + MTU + 8],
            tx: [0; MTU],
        }
    }

    /// The TURN server, for status.
    pub fn server(&self) -> &Server<S, I, P, C> {
        &self.server
    }

    /// When [`Self::process`] must run again at the latest.
    pub fn poll_at(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }

    /// Moves every datagram waiting on the listener and the relay sockets through
    /// the server, queues what it answers, and runs its timers. Returns the number
    /// of datagrams handled.
    pub fn process(&mut self, now: Instant, set: &mut SocketSet<'_>) -> usize {
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
            };
            let mut host = self.parts.host(SmolSockets {
                set: &mut *set,
                handles: &self.relay_sockets,
            });
            let packet = self.rx.get(..n).unwrap_or(&[]);
            match self
                .server
                .handle_client(now, &mut host, tuple, packet, &mut self.tx)
            {
                ClientOutput::Reply { len, refusal } => {
                    #[cfg(feature = "defmt")]
                    if let Some(r) = refusal {
                        defmt::info!("turn: refused {}: {}", r.code(), defmt::Debug2Format(&r));
                    }
                    let _ = refusal;
                    let reply = self.tx.get(..len).unwrap_or(&[]);
                    let _ = set
                        .get_mut::<udp::Socket>(self.listener)
                        .send_slice(reply, endpoint);
                }
                ClientOutput::Relay {
                    relay, peer, data, ..
                } => {
                    if let Some(i) = self.parts.slot_of(relay)
                        && let (Some(h), Some(bytes)) =
                            (self.relay_sockets.get(i), packet.get(data))
                    {
                        let _ = set
                            .get_mut::<udp::Socket>(*h)
                            .send_slice(bytes, smoltcp::wire::IpEndpoint::from(peer));
                    }
                }
                ClientOutput::Drop(_) => {}
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
                    let Some(dst) = self.rx.get_mut(PEER_HEADROOM..PEER_HEADROOM + MTU) else {
                        break;
                    };
                    match s.recv_slice(dst) {
                        Ok((n, meta)) => (n, meta.endpoint),
                        Err(_) => break,
                    }
                };
                handled += 1;
                let out = {
                    let mut host = self.parts.host(SmolSockets {
                        set: &mut *set,
                        handles: &self.relay_sockets,
                    });
                    self.server
                        .handle_peer(now, &mut host, handle, peer.into(), &mut self.rx, n)
                };
                if let PeerOutput::Forward { tuple, data } = out
                    && let Some(bytes) = self.rx.get(data)
                {
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
