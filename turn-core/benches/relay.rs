//! Per-packet cost of the TURN server's state machine: ChannelData relayed each
//! way, a Send indication, and an authenticated CreatePermission.
//!
//! Run: `cargo bench -p turn-core --bench relay`

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use stun_core::attributes::*;
use stun_core::credentials::{Algorithm, Key, long_term_key};
use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use turn_core::server::{
    BindError, Config, Host, Outgoing, PEER_HEADROOM, PeerBuffer, QuotaError, RelayHandle, Server,
    Slot,
};
use turn_core::{FiveTuple, Instant, Transport, UnixTime};

struct BenchHost {
    relay: Option<RelayHandle>,
    rng: u64,
}

impl Host for BenchHost {
    fn long_term_key(&mut self, u: &str, r: &str, a: Algorithm) -> Option<Key> {
        Some(Key::derive(a, u, r, "secret"))
    }
    fn is_relay(&mut self, _: SocketAddr) -> bool {
        false
    }
    fn bind_relay(&mut self, h: RelayHandle, _: SocketAddr) -> Result<(), BindError> {
        self.relay = Some(h);
        Ok(())
    }
    fn close_relay(&mut self, _: RelayHandle, _: SocketAddr) {}
    fn acquire_quota(&mut self, _: &str) -> Result<(), QuotaError> {
        Ok(())
    }
    fn release_quota(&mut self, _: &str) {}
    fn reserve_port(&mut self, _: [u8; 8], _: SocketAddr, _: Instant) -> Result<(), BindError> {
        Err(BindError::Unavailable)
    }
    fn claim_port(&mut self, _: &[u8; 8], _: RelayHandle, _: Instant) -> Option<SocketAddr> {
        None
    }
    fn expire_reservations(&mut self, _: Instant) {}
    fn random(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.rng = self.rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            *b = (self.rng >> 33) as u8;
        }
    }
}

type BenchServer = Server<Vec<Slot<16, 16>>, 16, 16>;

fn request(
    method: Method,
    nonce: Option<&str>,
    key: &[u8],
    add: impl Fn(&mut MessageBuilder<'_>),
) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId::new([3; 12]),
    )
    .unwrap();
    add(&mut b);
    if let Some(n) = nonce {
        b.add(&Username("alice")).unwrap();
        b.add(&Realm("TANDBERG")).unwrap();
        b.add(&Nonce(n)).unwrap();
        b.add_message_integrity(key).unwrap();
    }
    b.add_fingerprint().unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

fn relay(c: &mut Criterion) {
    let mut cfg = Config::new("TANDBERG");
    cfg.relay_v4 = Some("10.0.0.5".parse().unwrap());
    let mut s: BenchServer = Server::new(cfg, vec![Slot::EMPTY; 1024], [9; 32]).unwrap();
    let mut h = BenchHost {
        relay: None,
        rng: 1,
    };
    let now = Instant::from_secs(1_764_000_000);
    let tuple = FiveTuple {
        client: "198.51.100.7:50000".parse().unwrap(),
        server: "203.0.113.5:3478".parse().unwrap(),
        transport: Transport::Udp,
        socket: 0,
    };
    let key = long_term_key("alice", "TANDBERG", "secret");
    let mut out = vec![0u8; 1500];
    let alloc = |n| {
        request(Method::ALLOCATE, n, &key, |b| {
            b.add(&RequestedTransport::UDP).unwrap()
        })
    };
    let first = alloc(None);
    let Outgoing::Client { bytes: reply, .. } = s.handle_client(
        now,
        UnixTime(now.as_secs()),
        &mut h,
        tuple,
        &first,
        &mut out,
    ) else {
        panic!()
    };
    let nonce = Message::new_checked(reply)
        .unwrap()
        .attribute::<Nonce>()
        .unwrap()
        .unwrap()
        .0
        .to_string();
    let _ = s.handle_client(
        now,
        UnixTime(now.as_secs()),
        &mut h,
        tuple,
        &alloc(Some(&nonce)),
        &mut out,
    );
    let peer: SocketAddr = "8.8.8.8:5000".parse().unwrap();
    let bind = request(Method::CHANNEL_BIND, Some(&nonce), &key, |b| {
        b.add(&ChannelNumber(0x4000)).unwrap();
        b.add(&XorPeerAddress(peer)).unwrap();
    });
    assert!(matches!(
        s.handle_client(now, UnixTime(now.as_secs()), &mut h, tuple, &bind, &mut out),
        Outgoing::Client { refusal: None, .. }
    ));
    let handle = h.relay.unwrap();

    let mut cd = vec![0x40, 0x00, 0x00, 160];
    cd.extend_from_slice(&[0xab; 160]);
    c.bench_function("client ChannelData -> peer (160 B)", |b| {
        b.iter(|| {
            match s.handle_client(
                now,
                UnixTime(now.as_secs()),
                &mut h,
                tuple,
                black_box(&cd),
                &mut out,
            ) {
                Outgoing::Peer { bytes, .. } => bytes.len(),
                o => panic!("{o:?}"),
            }
        })
    });

    let mut buf = vec![0u8; PEER_HEADROOM + 160 + 3];
    c.bench_function("peer -> client ChannelData (160 B)", |b| {
        b.iter(|| {
            match s.handle_peer(
                now,
                &mut h,
                handle,
                peer,
                &mut PeerBuffer::new(black_box(&mut buf), 160).unwrap(),
            ) {
                Outgoing::Client { bytes, .. } => bytes.len(),
                o => panic!("{o:?}"),
            }
        })
    });

    let other: SocketAddr = "8.8.4.4:5000".parse().unwrap();
    let perm = request(Method::CREATE_PERMISSION, Some(&nonce), &key, |b| {
        b.add(&XorPeerAddress(other)).unwrap()
    });
    c.bench_function("authenticated CreatePermission", |b| {
        b.iter(|| {
            match s.handle_client(
                now,
                UnixTime(now.as_secs()),
                &mut h,
                tuple,
                black_box(&perm),
                &mut out,
            ) {
                Outgoing::Client {
                    bytes,
                    refusal: None,
                    ..
                } => bytes.len(),
                o => panic!("{o:?}"),
            }
        })
    });
    c.bench_function("peer -> client Data indication (160 B)", |b| {
        b.iter(|| {
            match s.handle_peer(
                now,
                &mut h,
                handle,
                other,
                &mut PeerBuffer::new(black_box(&mut buf), 160).unwrap(),
            ) {
                Outgoing::Client { bytes, .. } => bytes.len(),
                o => panic!("{o:?}"),
            }
        })
    });
    eprintln!(
        "state per allocation: Slot<16,16> = {} bytes, Slot<8,8> = {} bytes",
        std::mem::size_of::<Slot<16, 16>>(),
        std::mem::size_of::<Slot<8, 8>>()
    );
}

criterion_group!(benches, relay);
criterion_main!(benches);
