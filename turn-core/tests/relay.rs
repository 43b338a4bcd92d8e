//! The data path: permissions, channels, Send and Data indications, ChannelData both
//! ways (with TCP padding), and the traps RFC 8656 implementers fall into.

mod common;

use common::*;
use stun_core::attributes::*;
use stun_core::channel_data::ChannelData;
use stun_core::{Class, Message, Method};
use turn_core::server::Refusal;
use turn_core::{Instant, Transport};

const T0: Instant = Instant::from_secs(1_764_000_000);

fn setup(transport: Transport) -> (TestServer, FakeHost, Client, std::net::SocketAddr) {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::with_transport("198.51.100.7:1", "alice", "wonderland", transport);
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    let local = relay_local(&h);
    (s, h, c, local)
}

#[test]
fn send_indication_needs_a_permission() {
    let (mut s, mut h, mut c, local) = setup(Transport::Udp);
    let ind = c.send_indication("8.8.8.8:4000", b"hello peer");
    let (o, _) = c.send_raw(&mut s, &mut h, T0, &ind);
    assert_eq!(
        o,
        Answer::Nothing(Some(Refusal::NoPermission(addr("8.8.8.8:1").ip())))
    );
    // CreatePermission with several peers in one request.
    let r = c.request(&mut s, &mut h, T0, Method::CREATE_PERMISSION, &|b| {
        b.add(&XorPeerAddress(addr("8.8.8.8:1"))).unwrap();
        b.add(&XorPeerAddress(addr("1.1.1.1:1"))).unwrap();
    });
    assert_success(&r, &c);
    let (o, _) = c.send_raw(&mut s, &mut h, T0, &ind);
    let Answer::ToPeer {
        from,
        peer,
        own_relay,
        data,
        ..
    } = o
    else {
        panic!("{o:?}")
    };
    assert_eq!(from, local);
    assert_eq!(peer, addr("8.8.8.8:4000"));
    assert_eq!(own_relay, None, "a peer on the internet");
    assert_eq!(data, b"hello peer");
    let ind2 = c.send_indication("1.1.1.1:53", b"x");
    assert!(matches!(
        c.send_raw(&mut s, &mut h, T0, &ind2).0,
        Answer::ToPeer { .. }
    ));

    // Peer to client without a channel: a Data indication with XOR-PEER-ADDRESS.
    let (tuple, bytes) =
        from_peer(&mut s, &mut h, T0, local, "8.8.8.8:4000", b"hello client").unwrap();
    assert_eq!(tuple, c.tuple);
    let m = Message::new_checked(&bytes[..]).unwrap();
    assert_eq!(m.method(), Method::DATA);
    assert_eq!(m.class(), Class::Indication);
    assert_eq!(
        m.attribute::<XorPeerAddress>().unwrap().unwrap().0,
        addr("8.8.8.8:4000")
    );
    assert_eq!(m.attribute::<Data>().unwrap().unwrap().0, b"hello client");
    // Not from a permitted IP: dropped.
    assert!(from_peer(&mut s, &mut h, T0, local, "9.9.9.9:4000", b"spoof").is_none());
    let a = s.allocations().next().unwrap();
    assert_eq!(a.traffic().to_peer_packets, 2);
    assert_eq!(a.traffic().from_peer_bytes, 12);
}

#[test]
fn channel_data_both_ways_udp_and_tcp_padding() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let (mut s, mut h, mut c, local) = setup(transport);
        assert_success(&c.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:5000"), &c);
        // Client to peer.
        let mut frame = vec![
            0x40, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
        ];
        if transport == Transport::Udp {
            frame.truncate(9);
        }
        let (o, _) = c.send_raw(&mut s, &mut h, T0, &frame);
        let Answer::ToPeer { peer, data, .. } = o else {
            panic!("{o:?}")
        };
        assert_eq!(peer, addr("8.8.8.8:5000"));
        assert_eq!(data, b"hello");
        // Peer to client: ChannelData, padded to 4 over TCP only.
        let (_, bytes) = from_peer(&mut s, &mut h, T0, local, "8.8.8.8:5000", b"howdy").unwrap();
        let cd = ChannelData::new_checked(&bytes[..]).unwrap();
        assert_eq!(cd.channel(), 0x4000);
        assert_eq!(cd.data(), b"howdy");
        let expected = if transport == Transport::Udp { 9 } else { 12 };
        assert_eq!(bytes.len(), expected, "{transport:?}");
        // A datagram from the same IP but another port is not on the channel.
        let (_, bytes) = from_peer(&mut s, &mut h, T0, local, "8.8.8.8:5001", b"x").unwrap();
        assert!(Message::new_checked(&bytes[..]).is_ok());
    }
}

#[test]
fn channel_data_traps() {
    let (mut s, mut h, mut c, _) = setup(Transport::Udp);
    assert_success(&c.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:5000"), &c);
    // Declared length larger than the datagram: dropped.
    let (o, _) = c.send_raw(&mut s, &mut h, T0, &[0x40, 0x00, 0x00, 0x40, 1, 2, 3]);
    assert!(matches!(o, Answer::Nothing(_)));
    // Unbound channel: dropped.
    let (o, _) = c.send_raw(&mut s, &mut h, T0, &[0x40, 0x01, 0x00, 0x01, 1]);
    assert_eq!(o, Answer::Nothing(Some(Refusal::NoChannel(0x4001))));
    // From another 5-tuple: dropped.
    let other = Client::new("198.51.100.8:1", "alice", "wonderland");
    let (o, _) = other.send_raw(&mut s, &mut h, T0, &[0x40, 0x00, 0x00, 0x01, 1]);
    assert_eq!(o, Answer::Nothing(Some(Refusal::NoAllocation)));
    let a = s.allocations().next().unwrap();
    assert_eq!(a.traffic().to_peer_packets, 0);
}

#[test]
fn channel_bind_rules() {
    let (mut s, mut h, mut c, _) = setup(Transport::Udp);
    assert_success(&c.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:5000"), &c);
    // Repeated after a lost response: same channel, same peer: refreshes, succeeds.
    assert_success(
        &c.bind(&mut s, &mut h, T0.plus_secs(1), 0x4000, "8.8.8.8:5000"),
        &c,
    );
    assert_eq!(s.allocations().next().unwrap().channel_count(), 1);
    // Channel to another peer, or peer to another channel: 400.
    assert_eq!(
        c.bind(&mut s, &mut h, T0, 0x4000, "8.8.4.4:5000").code(),
        Some(400)
    );
    assert_eq!(
        c.bind(&mut s, &mut h, T0, 0x4001, "8.8.8.8:5000").code(),
        Some(400)
    );
    // Out of range.
    for ch in [0x3fff, 0x5000, 0x7fff] {
        assert_eq!(
            c.bind(&mut s, &mut h, T0, ch, "8.8.4.4:5000").code(),
            Some(400)
        );
    }
    // Missing attributes.
    let r = c.request(&mut s, &mut h, T0, Method::CHANNEL_BIND, &|b| {
        b.add(&ChannelNumber(0x4005)).unwrap()
    });
    assert_eq!(r.code(), Some(400));
    // Capacity: C channels per allocation, then 508.
    for i in 1..C as u16 {
        let peer = format!("8.8.{i}.1:1000");
        assert_success(&c.bind(&mut s, &mut h, T0, 0x4000 + i, &peer), &c);
    }
    assert_eq!(
        c.bind(&mut s, &mut h, T0, 0x4fff, "9.9.9.9:1").code(),
        Some(508)
    );
}

#[test]
fn permission_capacity_is_all_or_nothing() {
    let (mut s, mut h, mut c, _) = setup(Transport::Udp);
    for i in 0..P as u8 - 1 {
        let peer = format!("8.8.{i}.1:1");
        assert_success(&c.permit(&mut s, &mut h, T0, &peer), &c);
    }
    let r = c.request(&mut s, &mut h, T0, Method::CREATE_PERMISSION, &|b| {
        b.add(&XorPeerAddress(addr("9.9.9.1:1"))).unwrap();
        b.add(&XorPeerAddress(addr("9.9.9.2:1"))).unwrap();
    });
    assert_eq!(r.code(), Some(508));
    assert_eq!(s.allocations().next().unwrap().permission_count(), P - 1);
    // One forbidden peer among allowed ones: 403 and none installed.
    let r = c.request(&mut s, &mut h, T0, Method::CREATE_PERMISSION, &|b| {
        b.add(&XorPeerAddress(addr("9.9.9.1:1"))).unwrap();
        b.add(&XorPeerAddress(addr("127.0.0.1:1"))).unwrap();
    });
    assert_eq!(r.code(), Some(403));
    assert_eq!(s.allocations().next().unwrap().permission_count(), P - 1);
    // IPv6 peer on an IPv4-only allocation: 443.
    let r = c.permit(&mut s, &mut h, T0, "[2001:4860::8888]:1");
    assert_eq!(r.code(), Some(443));
}

#[test]
fn relay_to_relay_is_allowed() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:1", "alice", "wonderland");
    let mut b = Client::new("198.51.100.8:1", "bob", "builder");
    let ra = relayed(&a.allocate(&mut s, &mut h, T0));
    let rb = relayed(&b.allocate(&mut s, &mut h, T0));
    // Each permits the other's advertised relayed address (the server's own IP).
    assert_success(&a.permit(&mut s, &mut h, T0, &rb.to_string()), &a);
    assert_success(&b.permit(&mut s, &mut h, T0, &ra.to_string()), &b);
    // But a channel to the server's own address on a non-relay port is forbidden
    // (and so is every packet to one: see relay_to_relay.rs).
    assert_eq!(
        a.bind(&mut s, &mut h, T0, 0x4000, "203.0.113.5:3478")
            .code(),
        Some(403)
    );
    assert_eq!(
        a.bind(&mut s, &mut h, T0, 0x4001, "10.0.0.5:22").code(),
        Some(403)
    );
}

#[test]
fn legacy_channel_range_when_enabled() {
    let mut cfg = config();
    cfg.legacy_channels = true;
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    c.allocate(&mut s, &mut h, T0);
    assert_success(&c.bind(&mut s, &mut h, T0, 0x7ffe, "8.8.8.8:5000"), &c);
    assert_eq!(
        c.bind(&mut s, &mut h, T0, 0x8000, "8.8.4.4:5000").code(),
        Some(400)
    );
    let (o, _) = c.send_raw(&mut s, &mut h, T0, &[0x7f, 0xfe, 0x00, 0x01, 7]);
    assert!(matches!(o, Answer::ToPeer { .. }), "{o:?}");
    let local = relay_local(&h);
    let (_, bytes) = from_peer(&mut s, &mut h, T0, local, "8.8.8.8:5000", b"x").unwrap();
    assert_eq!(&bytes[..2], &[0x7f, 0xfe]);
}
