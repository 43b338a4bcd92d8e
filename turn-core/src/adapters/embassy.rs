//! The TURN server on embassy-net: a UDP listener and `R` relay sockets on an
//! `embassy_net::Stack`, driven by one async task. The sockets and their buffers
//! are the caller's; the adapter only moves datagrams through the [`Server`].
//!
//! ```text
//! let mut turn = EmbassyTurn::new(server, listener, local, relays, users, 16, 16, rng, epoch_ms);
//! turn.run().await // never returns
//! ```

use core::future::poll_fn;
use core::net::SocketAddr;
use core::task::Poll;

use embassy_futures::select::{Either, select};
use embassy_net::udp::UdpSocket;
use embassy_net::{IpEndpoint, IpListenEndpoint};

use super::{Local, Parts, RelaySockets, Slot};
use crate::server::{ClientOutput, PEER_HEADROOM, PeerOutput, Server, Slot as TableSlot};
use crate::{FiveTuple, Instant, Transport};

/// Largest datagram handled.
pub const MTU: usize = 1500;

struct EmbassySockets<'x, 'd, const R: usize> {
    socks: &'x mut [UdpSocket<'d>; R],
}

impl<const R: usize> RelaySockets for EmbassySockets<'_, '_, R> {
    fn bind(&mut self, slot: usize, local: SocketAddr) -> bool {
        let Some(s) = self.socks.get_mut(slot) else {
            return false;
        };
        s.close();
        s.bind(IpListenEndpoint {
            addr: Some(local.ip().into()),
            port: local.port(),
        })
        .is_ok()
    }

    fn unbind(&mut self, slot: usize) {
        if let Some(s) = self.socks.get_mut(slot) {
            s.close();
        }
    }
}

enum Event {
    Client(usize, IpEndpoint),
    Peer(usize, usize, IpEndpoint),
    Timer,
}

/// The TURN server over embassy-net UDP sockets.
pub struct EmbassyTurn<'d, 'u, S, I, G, const P: usize, const C: usize, const R: usize> {
    server: Server<S, I, P, C>,
    listener: UdpSocket<'d>,
    local: SocketAddr,
    relays: [UdpSocket<'d>; R],
    parts: Parts<'u, G, R>,
    epoch_ms: u64,
    rx: [u8; PEER_HEADROOM + MTU + 8],
    tx: [u8; MTU],
}

impl<'d, 'u, S, I, G, const P: usize, const C: usize, const R: usize>
    EmbassyTurn<'d, 'u, S, I, G, P, C, R>
where
    S: AsRef<[TableSlot<P, C>]> + AsMut<[TableSlot<P, C>]>,
    I: AsRef<[u32]> + AsMut<[u32]>,
    G: FnMut(&mut [u8]),
{
    /// Runs `server` on `listener` (bound by the caller to `local`, for example
    /// port 3478) with `relays` (unbound sockets) for relayed addresses. `epoch_ms`
    /// is the UNIX time in milliseconds when `embassy_time::Instant` was zero
    /// (0 if the board has no wall clock and uses only long-term credentials).
    pub fn new(
        server: Server<S, I, P, C>,
        listener: UdpSocket<'d>,
        local: SocketAddr,
        relays: [UdpSocket<'d>; R],
        host: Local<'u, G>,
        epoch_ms: u64,
    ) -> Self {
        EmbassyTurn {
            server,
            listener,
            local,
            relays,
            parts: Parts::new(host, local),
            epoch_ms,
            rx: [0; PEER_HEADROOM + MTU + 8],
            tx: [0; MTU],
        }
    }

    /// The TURN server, for status.
    pub fn server(&self) -> &Server<S, I, P, C> {
        &self.server
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.epoch_ms + embassy_time::Instant::now().as_millis())
    }

    /// Serves forever.
    pub async fn run(&mut self) -> ! {
        loop {
            self.step().await;
        }
    }

    /// Waits for one datagram (or a timer) and handles it.
    pub async fn step(&mut self) {
        let deadline = self.server.poll_timeout();
        let event = {
            let listener = &self.listener;
            let relays = &self.relays;
            let slots = &self.parts.slots;
            let rx = &mut self.rx;
            let recv = poll_fn(|cx| {
                if let Poll::Ready(Ok((n, meta))) = listener.poll_recv_from(rx, cx) {
                    return Poll::Ready(Event::Client(n, meta.endpoint));
                }
                for (i, (sock, slot)) in relays.iter().zip(slots.iter()).enumerate() {
                    if slot.bound.is_none() || slot.reserved {
                        continue;
                    }
                    let Some(dst) = rx.get_mut(PEER_HEADROOM..PEER_HEADROOM + MTU) else {
                        continue;
                    };
                    if let Poll::Ready(Ok((n, meta))) = sock.poll_recv_from(dst, cx) {
                        return Poll::Ready(Event::Peer(i, n, meta.endpoint));
                    }
                }
                Poll::Pending
            });
            match deadline {
                Some(t) => {
                    let at = embassy_time::Instant::from_millis(
                        t.as_millis().saturating_sub(self.epoch_ms),
                    );
                    match select(recv, embassy_time::Timer::at(at)).await {
                        Either::First(e) => e,
                        Either::Second(()) => Event::Timer,
                    }
                }
                None => recv.await,
            }
        };
        let now = self.now();
        match event {
            Event::Client(n, endpoint) => {
                let tuple = FiveTuple {
                    client: endpoint.into(),
                    server: self.local,
                    transport: Transport::Udp,
                };
                let mut host = self.parts.host(EmbassySockets {
                    socks: &mut self.relays,
                });
                let packet = self.rx.get(..n).unwrap_or(&[]);
                match self
                    .server
                    .handle_client(now, &mut host, tuple, packet, &mut self.tx)
                {
                    ClientOutput::Reply { len, refusal } => {
                        #[cfg(feature = "defmt")]
                        if let Some(r) = refusal {
                            defmt::info!("turn: refused: {}", defmt::Debug2Format(&r));
                        }
                        let _ = refusal;
                        let _ = self
                            .listener
                            .send_to(self.tx.get(..len).unwrap_or(&[]), endpoint)
                            .await;
                    }
                    ClientOutput::Relay {
                        relay, peer, data, ..
                    } => {
                        if let Some(i) = self.parts.slot_of(relay)
                            && let (Some(sock), Some(bytes)) =
                                (self.relays.get(i), packet.get(data))
                        {
                            let _ = sock.send_to(bytes, IpEndpoint::from(peer)).await;
                        }
                    }
                    ClientOutput::Drop(_) => {}
                }
            }
            Event::Peer(i, n, peer) => {
                let Some(Slot {
                    bound: Some((handle, _)),
                    ..
                }) = self.parts.slots.get(i).copied()
                else {
                    return;
                };
                let out = {
                    let mut host = self.parts.host(EmbassySockets {
                        socks: &mut self.relays,
                    });
                    self.server
                        .handle_peer(now, &mut host, handle, peer.into(), &mut self.rx, n)
                };
                if let PeerOutput::Forward { tuple, data } = out
                    && let Some(bytes) = self.rx.get(data)
                {
                    let _ = self
                        .listener
                        .send_to(bytes, IpEndpoint::from(tuple.client))
                        .await;
                }
            }
            Event::Timer => {
                let mut host = self.parts.host(EmbassySockets {
                    socks: &mut self.relays,
                });
                self.server.handle_timeout(now, &mut host);
            }
        }
        #[cfg(feature = "defmt")]
        while let Some(e) = self.server.poll_event() {
            defmt::info!("turn: {}", defmt::Debug2Format(&e));
        }
    }
}
