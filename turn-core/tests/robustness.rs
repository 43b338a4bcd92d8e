//! No packet, however malformed, panics the server or changes its state; a flood of
//! garbage and unauthenticated requests creates nothing and costs bounded answers.

mod common;

use common::*;
use proptest::prelude::*;
use stun_core::attributes::*;
use stun_core::{Class, MessageBuilder, MessageType, Method, TransactionId};
use turn_core::server::Outgoing;
use turn_core::{Instant, Transport, UnixTime};

// Over TCP there is no reflection to guard against (see `allocate.rs`); the flood
// here is UDP, where the budget of unauthenticated answers applies.

const T0: Instant = Instant::from_secs(1_764_000_000);

fn state(s: &TestServer) -> Vec<(usize, usize, u64, turn_core::Instant)> {
    s.allocations()
        .map(|a| {
            (
                a.permission_count(),
                a.channel_count(),
                a.traffic().to_peer_packets,
                a.expires(),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_packets_change_nothing(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                        header in any::<bool>(), method in 0u16..16) {
        let mut s = server();
        let mut h = FakeHost::new();
        let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
        assert_success(&c.allocate(&mut s, &mut h, T0), &c);
        let before = state(&s);
        let mut pkt = bytes.clone();
        if header {
            // A valid header over random attributes reaches deeper.
            let len = (bytes.len() & !3) as u16;
            let mut b = vec![0u8; 20];
            b[0..2].copy_from_slice(&MessageType::new(Method::new(method).unwrap(), Class::Request).to_wire().to_be_bytes());
            b[2..4].copy_from_slice(&len.to_be_bytes());
            b[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
            b.extend_from_slice(&bytes[..usize::from(len)]);
            pkt = b;
        }
        let mut out = vec![0u8; 1500];
        let o = s.handle_client(T0, UnixTime(T0.as_secs()), &mut h, c.tuple, &pkt, &mut out);
        if let Outgoing::Client { bytes: reply, .. } = o {
            if stun_core::classic::is_classic(&pkt) {
                // An RFC 3489 Binding drawn at random: a classic answer.
                prop_assert!(reply[..2] == [1, 1] || reply[..2] == [1, 0x11]);
            } else {
                let m = stun_core::Message::new_checked(reply).expect("replies parse");
                prop_assert!(m.verify_fingerprint().is_ok());
            }
        }
        prop_assert_eq!(state(&s), before);
        prop_assert_eq!(s.allocation_count(), 1);
        prop_assert_eq!(h.bound.len(), 1);
    }

    #[test]
    fn arbitrary_peer_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), slot in 0u32..20, v6 in any::<bool>(), generation in 0u32..3) {
        let mut s = server();
        let mut h = FakeHost::new();
        let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
        c.allocate(&mut s, &mut h, T0);
        c.permit(&mut s, &mut h, T0, "8.8.8.8:1");
        let family = if v6 { turn_core::server::RelayFamily::Ipv6 } else { turn_core::server::RelayFamily::Ipv4 };
        let handle = turn_core::server::RelayHandle { slot, generation, family };
        let mut buf = vec![0u8; turn_core::server::PEER_HEADROOM + bytes.len() + 3];
        buf[turn_core::server::PEER_HEADROOM..][..bytes.len()].copy_from_slice(&bytes);
        let mut datagram = turn_core::server::PeerBuffer::new(&mut buf, bytes.len()).unwrap();
        let _ = s.handle_peer(T0, &mut h, handle, addr("8.8.8.8:9"), &mut datagram);
        // A buffer without the promised room cannot even be handed over.
        let mut small = vec![0u8; 10];
        prop_assert!(turn_core::server::PeerBuffer::new(&mut small, bytes.len()).is_err());
    }
}

#[test]
fn flood_of_garbage_and_unauthenticated_requests() {
    let mut s = server_with(config(), 64);
    let mut h = FakeHost::new();
    let mut legit = Client::new("198.51.100.200:1", "alice", "wonderland");
    let mut out = vec![0u8; 1500];
    let mut answered = 0usize;
    let mut answered_bytes = 0usize;
    let mut sent_bytes = 0usize;
    for i in 0u32..100_000 {
        let src = format!("192.0.2.{}:{}", i % 250, 1024 + (i % 60_000));
        let t = tuple(&src, Transport::Udp);
        let pkt: Vec<u8> = match i % 4 {
            0 => i.to_be_bytes().repeat(5),
            1 => {
                // Unauthenticated Allocate.
                let mut b = vec![0u8; 64];
                let mut m = MessageBuilder::new(
                    &mut b,
                    MessageType::new(Method::ALLOCATE, Class::Request),
                    TransactionId::new([i as u8; 12]),
                )
                .unwrap();
                m.add(&RequestedTransport::UDP).unwrap();
                let n = m.finish();
                b.truncate(n);
                b
            }
            2 => vec![0x40, 0x00, 0xff, 0xff, 1, 2, 3],
            _ => {
                // Authenticated-looking request with a bogus nonce and MAC.
                let mut b = vec![0u8; 200];
                let mut m = MessageBuilder::new(
                    &mut b,
                    MessageType::new(Method::ALLOCATE, Class::Request),
                    TransactionId::new([7; 12]),
                )
                .unwrap();
                m.add(&RequestedTransport::UDP).unwrap();
                m.add(&Username("alice")).unwrap();
                m.add(&Realm(REALM)).unwrap();
                m.add(&Nonce("00000000000000000000000")).unwrap();
                m.add_message_integrity(b"guess").unwrap();
                let n = m.finish();
                b.truncate(n);
                b
            }
        };
        sent_bytes += pkt.len();
        let now = T0.plus_millis(u64::from(i / 100));
        if let Outgoing::Client { bytes, .. } =
            s.handle_client(now, UnixTime(now.as_secs()), &mut h, t, &pkt, &mut out)
        {
            answered += 1;
            answered_bytes += bytes.len();
        }
        if i % 10_000 == 0 {
            let now = T0.plus_millis(u64::from(i / 100));
            assert_success(&legit.allocate(&mut s, &mut h, now), &legit);
            assert_success(&legit.refresh(&mut s, &mut h, now, 0), &legit);
        }
    }
    assert_eq!(s.allocation_count(), 0, "the flood created no allocation");
    assert!(h.bound.is_empty());
    // Unauthenticated answers are limited: the flood lasts one simulated second,
    // so at most the global burst plus one second of refill (500 + 500) get out.
    assert!(answered <= 1000, "answered {answered}");
    assert!(
        answered_bytes < sent_bytes,
        "answers ({answered_bytes} B) outweigh the flood ({sent_bytes} B)"
    );
}

/// Each packet the server drops in silence says why, in its own words: what an
/// operator reads in a debug line or a by-reason counter names the cause.
#[test]
fn each_silent_drop_names_its_cause() {
    use turn_core::server::Refusal;
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("192.0.2.1:5000", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    assert_success(&c.permit(&mut s, &mut h, T0, "8.8.8.8:1"), &c);

    let indication = |add: &dyn Fn(&mut MessageBuilder<'_>)| {
        let mut buf = vec![0u8; 256];
        let mut b = MessageBuilder::new(
            &mut buf[..],
            MessageType::new(Method::SEND, Class::Indication),
            TransactionId::new([7; 12]),
        )
        .unwrap();
        add(&mut b);
        let n = b.finish();
        buf.truncate(n);
        buf
    };
    let response = {
        let mut buf = vec![0u8; 64];
        let b = MessageBuilder::new(
            &mut buf[..],
            MessageType::new(Method::BINDING, Class::Success),
            TransactionId::new([8; 12]),
        )
        .unwrap();
        let n = b.finish();
        buf.truncate(n);
        buf
    };
    let peer = addr("8.8.8.8:4000");
    let cases: [(&str, Vec<u8>, Refusal); 5] = [
        ("RTP", vec![0x80, 0x60, 0, 1, 0, 0, 0, 0], Refusal::NotTurn),
        ("a STUN response", response, Refusal::UnexpectedMessage),
        (
            "a Send without DATA",
            indication(&|b| b.add(&XorPeerAddress(peer)).unwrap()),
            Refusal::IncompleteSend,
        ),
        (
            "a Send with DONT-FRAGMENT",
            indication(&|b| {
                b.add(&XorPeerAddress(peer)).unwrap();
                b.add(&DontFragment).unwrap();
                b.add(&Data(b"x")).unwrap();
            }),
            Refusal::DontFragment,
        ),
        (
            "ChannelData longer than its packet",
            vec![0x40, 0x00, 0x00, 0x10, 1, 2],
            Refusal::BadChannelData,
        ),
    ];
    for (what, packet, why) in cases {
        let (o, _) = c.send_raw(&mut s, &mut h, T0, &packet);
        assert_eq!(o, Answer::Nothing(Some(why)), "{what}");
    }
    let counts = &s.counters().refusals;
    for r in [
        Refusal::NotTurn,
        Refusal::UnexpectedMessage,
        Refusal::IncompleteSend,
        Refusal::DontFragment,
        Refusal::BadChannelData,
    ] {
        assert_eq!(counts.get(r.reason()), 1, "{r:?}");
    }
}
