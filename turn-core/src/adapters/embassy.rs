//! The TURN server on embassy-net: a UDP listener and `R` relay sockets on an
//! `embassy_net::Stack`, driven by one async task. The sockets and their buffers
//! are the caller's; the adapter only moves datagrams through the [`Server`].
//!
//! A firmware's TURN task (the stack, the random source and the wall clock at
//! boot come from the board; `examples/stm32-turn` is a whole one):
//!
//! ```no_run
//! use embassy_net::Stack;
//! use embassy_net::udp::{PacketMetadata, UdpSocket};
//! use turn_core::adapters::{Local, User, embassy::EmbassyTurn};
//! use turn_core::server::{Config, Server, Slot};
//!
//! /// One socket's buffers.
//! pub struct Buffers {
//!     rx_meta: [PacketMetadata; 8],
//!     rx: [u8; 4096],
//!     tx_meta: [PacketMetadata; 8],
//!     tx: [u8; 4096],
//! }
//!
//! fn socket<'d>(stack: Stack<'d>, b: &'d mut Buffers) -> UdpSocket<'d> {
//!     UdpSocket::new(stack, &mut b.rx_meta, &mut b.rx, &mut b.tx_meta, &mut b.tx)
//! }
//!
//! pub async fn turn_task(
//!     stack: Stack<'_>,
//!     [l, a, b]: &mut [Buffers; 3],
//!     rng: impl FnMut(&mut [u8]),
//!     epoch_ms: u64,
//! ) -> ! {
//!     let mut listener = socket(stack, l);
//!     listener.bind(3478).unwrap();
//!     let mut cfg = Config::new("example");
//!     cfg.relay_v4 = Some("192.168.1.10".parse().unwrap());
//!     let server = Server::new(cfg, [Slot::<4, 4>::EMPTY; 2], [0; 32]).unwrap(); // seed it
//!     let users = [User::new("alice", "example", "s3cret")];
//!     let host = Local { users: &users, per_user: 2, total: 2, rng };
//!     let local = "192.168.1.10:3478".parse().unwrap();
//!     let relays = [socket(stack, a), socket(stack, b)];
//!     EmbassyTurn::new(server, listener, local, relays, host, epoch_ms)
//!         .run()
//!         .await
//! }
//! # fn main() {}
//! ```

use core::future::poll_fn;
use core::net::SocketAddr;
use core::task::Poll;

use embassy_futures::select::{Either, select};
use embassy_net::udp::UdpSocket;
use embassy_net::{IpEndpoint, IpListenEndpoint};

use super::{Local, Parts, RelaySockets, Slot};
use crate::server::{Outgoing, PeerBuffer, Server, Slot as TableSlot};
use crate::{FiveTuple, Instant, Transport, UnixTime};

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
pub struct EmbassyTurn<'d, 'u, S, G, const P: usize, const C: usize, const R: usize> {
    server: Server<S, P, C>,
    listener: UdpSocket<'d>,
    local: SocketAddr,
    relays: [UdpSocket<'d>; R],
    parts: Parts<'u, G, R>,
    epoch_ms: u64,
    rx: [u8; super::RX],
    tx: [u8; MTU],
}

impl<'d, 'u, S, G, const P: usize, const C: usize, const R: usize>
    EmbassyTurn<'d, 'u, S, G, P, C, R>
where
    S: AsRef<[TableSlot<P, C>]> + AsMut<[TableSlot<P, C>]>,
    G: FnMut(&mut [u8]),
{
    /// Runs `server` on `listener` (bound by the caller to `local`, for example
    /// port 3478) with `relays` (unbound sockets) for relayed addresses. Timers run
    /// on `embassy_time::Instant`; `epoch_ms` is the UNIX time in milliseconds when
    /// it was zero, for the wall clock that time-limited credentials and nonces
    /// need (0 if the board has no wall clock and uses only long-term credentials).
    pub fn new(
        server: Server<S, P, C>,
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
            rx: [0; super::RX],
            tx: [0; MTU],
        }
    }

    /// The TURN server, for status.
    pub fn server(&self) -> &Server<S, P, C> {
        &self.server
    }

    /// The monotonic clock and the wall clock.
    fn now(&self) -> (Instant, UnixTime) {
        let ms = embassy_time::Instant::now().as_millis();
        (
            Instant::from_millis(ms),
            UnixTime((self.epoch_ms + ms) / 1000),
        )
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
                    let dst = PeerBuffer::receive_area(rx);
                    if let Poll::Ready(Ok((n, meta))) = sock.poll_recv_from(dst, cx) {
                        return Poll::Ready(Event::Peer(i, n, meta.endpoint));
                    }
                }
                Poll::Pending
            });
            match deadline {
                Some(t) => {
                    let at = embassy_time::Instant::from_millis(t.as_millis());
                    match select(recv, embassy_time::Timer::at(at)).await {
                        Either::First(e) => e,
                        Either::Second(()) => Event::Timer,
                    }
                }
                None => recv.await,
            }
        };
        let (now, unix) = self.now();
        match event {
            Event::Client(n, endpoint) => {
                let tuple = FiveTuple {
                    client: endpoint.into(),
                    server: self.local,
                    transport: Transport::Udp,
                    socket: 0,
                };
                let mut host = self.parts.host(EmbassySockets {
                    socks: &mut self.relays,
                });
                let packet = self.rx.get(..n).unwrap_or(&[]);
                let output =
                    self.server
                        .handle_client(now, unix, &mut host, tuple, packet, &mut self.tx);
                match output {
                    Outgoing::Client { bytes, refusal, .. } => {
                        #[cfg(feature = "defmt")]
                        if let Some(r) = refusal {
                            defmt::info!("turn: refused: {}", defmt::Debug2Format(&r));
                        }
                        let _ = refusal;
                        let _ = self.listener.send_to(bytes, endpoint).await;
                    }
                    Outgoing::Peer {
                        relay, peer, bytes, ..
                    } => {
                        if let Some(sock) =
                            self.parts.slot_of(relay).and_then(|i| self.relays.get(i))
                        {
                            let _ = sock.send_to(bytes, IpEndpoint::from(peer)).await;
                        }
                    }
                    Outgoing::Nothing(_) => {}
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
                let Ok(mut datagram) = PeerBuffer::new(&mut self.rx, n) else {
                    return;
                };
                let out = {
                    let mut host = self.parts.host(EmbassySockets {
                        socks: &mut self.relays,
                    });
                    self.server
                        .handle_peer(now, &mut host, handle, peer.into(), &mut datagram)
                };
                if let Outgoing::Client { tuple, bytes, .. } = out {
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
