//! The TURN state machines' self-test on an emulated Cortex-M4: a `turn-core`
//! client and server, both `no_std` and heap-free, talk to each other in memory
//! through the whole life of an allocation: the 401 round, Allocate,
//! CreatePermission, ChannelBind, data relayed both ways, a wrong password
//! refused, a stale nonce recovered, and expiry. Each step prints over semihosting;
//! the exit status says whether all passed.
#![no_std]
#![no_main]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use stun_core::credentials::{Algorithm, Key};
use turn_core::client::{Client, ClientConfig, ClientEvent, State};
use turn_core::server::{
    BindError, Config, Host, Outgoing, PEER_HEADROOM, PeerBuffer, QuotaError, RelayHandle,
    Server, Slot,
};
use turn_core::{FiveTuple, Instant, Transport, UnixTime};

const REALM: &str = "causeway";

/// The board's side of the server: one user, up to four relay ports.
struct BoardHost {
    password: &'static str,
    bound: heapless::Vec<(RelayHandle, SocketAddr), 4>,
    rng: u32,
    allocations: u16,
}

impl Host for BoardHost {
    fn long_term_key(&mut self, username: &str, realm: &str, a: Algorithm) -> Option<Key> {
        (username == "board").then(|| Key::derive(a, username, realm, self.password))
    }
    fn is_relay(&mut self, local: SocketAddr) -> bool {
        self.bound.iter().any(|b| b.1 == local)
    }
    fn bind_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError> {
        if self.bound.iter().any(|b| b.1 == local) {
            return Err(BindError::InUse);
        }
        self.bound
            .push((handle, local))
            .map_err(|_| BindError::Unavailable)
    }
    fn close_relay(&mut self, handle: RelayHandle, _: SocketAddr) {
        self.bound.retain(|b| b.0 != handle);
    }
    fn acquire_quota(&mut self, _: &str) -> Result<(), QuotaError> {
        self.allocations += 1;
        Ok(())
    }
    fn release_quota(&mut self, _: &str) {
        self.allocations -= 1;
    }
    fn reserve_port(&mut self, _: [u8; 8], _: SocketAddr, _: Instant) -> Result<(), BindError> {
        Err(BindError::Unavailable)
    }
    fn claim_port(&mut self, _: &[u8; 8], _: RelayHandle, _: Instant) -> Option<SocketAddr> {
        None
    }
    fn expire_reservations(&mut self, _: Instant) {}
    fn random(&mut self, buf: &mut [u8]) {
        // xorshift: fine for a self-test; a board uses its hardware RNG.
        for b in buf {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 17;
            self.rng ^= self.rng << 5;
            *b = self.rng as u8;
        }
    }
}

type BoardServer<'s> = Server<&'s mut [Slot<4, 4>], 4, 4>;

struct Run<'s> {
    server: BoardServer<'s>,
    host: BoardHost,
    client: Client<4, 4>,
    tuple: FiveTuple,
    now: Instant,
    /// Datagrams the server relayed to the peer.
    to_peer: heapless::Vec<heapless::Vec<u8, 64>, 8>,
}

impl Run<'_> {
    /// The wall clock: a board with a real-time clock would read it; here it is
    /// a fixed distance from the monotonic clock.
    fn wall(&self) -> UnixTime {
        UnixTime(1_764_000_000 + self.now.as_secs())
    }

    /// Delivers everything queued until quiet.
    fn pump(&mut self) {
        let mut out = [0u8; 512];
        let mut reply = [0u8; 512];
        while let Some(t) = self.client.poll_transmit(self.now, &mut out) {
            let n = t.len;
            match self.server.handle_client(
                self.now,
                self.wall(),
                &mut self.host,
                self.tuple,
                &out[..n],
                &mut reply,
            ) {
                Outgoing::Client { bytes, .. } => {
                    let _ = self.client.handle_input(self.now, t.destination, bytes);
                }
                Outgoing::Peer { bytes, .. } => {
                    let mut v = heapless::Vec::new();
                    let _ = v.extend_from_slice(bytes);
                    let _ = self.to_peer.push(v);
                }
                Outgoing::Nothing(_) => {}
            }
        }
    }

    fn wait_for(&mut self, want: fn(&ClientEvent) -> bool) -> Option<ClientEvent> {
        self.pump();
        while let Some(e) = self.client.poll_event() {
            if want(&e) || matches!(e, ClientEvent::Failed { .. }) {
                return Some(e);
            }
        }
        None
    }
}

fn check(name: &str, ok: bool, failures: &mut u32) {
    hprintln!("[{}] {}", if ok { "PASS" } else { "FAIL" }, name);
    if !ok {
        *failures += 1;
    }
}

#[entry]
fn main() -> ! {
    let mut failures = 0;
    let mut slots = [Slot::<4, 4>::EMPTY, Slot::EMPTY, Slot::EMPTY, Slot::EMPTY];
    let mut cfg = Config::new(REALM);
    cfg.relay_v4 = Some(Ipv4Addr::new(10, 0, 0, 1));
    cfg.external_v4 = Some(Ipv4Addr::new(203, 0, 113, 1));
    let server = match Server::new(cfg, &mut slots[..], [7; 32]) {
        Ok(s) => s,
        Err(_) => {
            hprintln!("[FAIL] server configuration");
            debug::exit(debug::EXIT_FAILURE);
            loop {}
        }
    };
    let host = BoardHost {
        password: "firmware",
        bound: heapless::Vec::new(),
        rng: 0x1234_5678,
        allocations: 0,
    };
    let server_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 3478);
    let client_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 40000);
    let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 5000);
    let Ok(ccfg) = ClientConfig::new(server_addr, "board", "firmware") else {
        debug::exit(debug::EXIT_FAILURE);
        loop {}
    };
    let mut run = Run {
        server,
        host,
        client: Client::with_tables(ccfg, [3; 32]),
        tuple: FiveTuple {
            client: client_addr,
            server: server_addr,
            transport: Transport::Udp,
            socket: 0,
        },
        now: Instant::from_secs(1),
        to_peer: heapless::Vec::new(),
    };

    // Allocate, through the 401 round.
    let _ = run.client.allocate(run.now);
    let e = run.wait_for(|e| matches!(e, ClientEvent::Allocated { .. }));
    check(
        "allocate with the 401 round",
        matches!(e, Some(ClientEvent::Allocated { .. })),
        &mut failures,
    );
    check(
        "relayed address is the advertised one",
        run.client.relayed().map(|a| a.ip()) == Some(server_addr.ip()),
        &mut failures,
    );

    // Permission and channel.
    let _ = run.client.create_permission(run.now, peer.ip());
    let e = run.wait_for(|e| matches!(e, ClientEvent::PermissionCreated(_)));
    check(
        "create permission",
        matches!(e, Some(ClientEvent::PermissionCreated(_))),
        &mut failures,
    );
    let _ = run.client.bind_channel(run.now, peer);
    let e = run.wait_for(|e| matches!(e, ClientEvent::ChannelBound { .. }));
    check(
        "bind channel",
        matches!(
            e,
            Some(ClientEvent::ChannelBound {
                channel: 0x4000,
                ..
            })
        ),
        &mut failures,
    );

    // Data to the peer, by ChannelData.
    let mut out = [0u8; 128];
    let mut reply = [0u8; 128];
    if let Ok(t) = run.client.send_to(peer, b"to the peer", &mut out) {
        let wall = run.wall();
        if let Outgoing::Peer { bytes, .. } = run.server.handle_client(
            run.now,
            wall,
            &mut run.host,
            run.tuple,
            &out[..t.len],
            &mut reply,
        )
        {
            let _ = run
                .to_peer
                .push(heapless::Vec::from_slice(bytes).unwrap_or_default());
        }
    }
    check(
        "data relayed to the peer",
        run.to_peer.iter().any(|d| d.as_slice() == b"to the peer"),
        &mut failures,
    );

    // Data from the peer, wrapped in place, back to the client.
    let relay = run.host.bound.first().map(|b| b.0);
    let mut buf = [0u8; PEER_HEADROOM + 64];
    buf[PEER_HEADROOM..PEER_HEADROOM + 13].copy_from_slice(b"from the peer");
    let mut got = false;
    if let Some(relay) = relay
        && let Ok(mut datagram) = PeerBuffer::new(&mut buf, 13)
        && let Outgoing::Client { bytes, .. } =
            run.server.handle_peer(run.now, &mut run.host, relay, peer, &mut datagram)
        && let Some(rx) = run.client.handle_input(run.now, server_addr, bytes)
    {
        got = rx.peer == peer && bytes.get(rx.data) == Some(&b"from the peer"[..]);
    }
    check("data relayed from the peer", got, &mut failures);

    // A client with a wrong password is refused and changes nothing.
    let before = run.server.allocation_count();
    let Ok(bad_cfg) = ClientConfig::new(server_addr, "board", "not-firmware") else {
        loop {}
    };
    let mut bad = Client::<4, 4>::with_tables(bad_cfg, [9; 32]);
    let bad_tuple = FiveTuple {
        client: SocketAddr::new(client_addr.ip(), 40001),
        ..run.tuple
    };
    let _ = bad.allocate(run.now);
    for _ in 0..3 {
        while let Some(t) = bad.poll_transmit(run.now, &mut out) {
            let wall = run.wall();
            if let Outgoing::Client { bytes, .. } = run.server.handle_client(
                run.now,
                wall,
                &mut run.host,
                bad_tuple,
                &out[..t.len],
                &mut reply,
            ) {
                let _ = bad.handle_input(run.now, t.destination, bytes);
            }
        }
    }
    check(
        "wrong password refused (401), no state",
        bad.state() == State::Failed && run.server.allocation_count() == before,
        &mut failures,
    );

    // Ten minutes later, with the client refreshing on its own and nonces going
    // stale on the way, everything is still there.
    for _ in 0..120 {
        run.now = run.now.plus_secs(5);
        run.client.handle_timeout(run.now);
        run.server.handle_timeout(run.now, &mut run.host);
        run.pump();
    }
    check(
        "refreshed across stale nonces for 10 minutes",
        run.server.allocation_count() == 1 && run.client.state() == State::Allocated,
        &mut failures,
    );

    // Without refreshes, the allocation expires and its relay is released.
    for _ in 0..800 {
        run.now = run.now.plus_secs(1);
        run.server.handle_timeout(run.now, &mut run.host);
    }
    check(
        "expiry releases the allocation and its relay",
        run.server.allocation_count() == 0
            && run.host.bound.is_empty()
            && run.host.allocations == 0,
        &mut failures,
    );

    if failures == 0 {
        hprintln!("selftest: all passed");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("selftest: {} failed", failures);
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("[FAIL] panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
