//! Property tests: every attribute survives build → parse → decode unchanged, and no
//! input, however malformed, makes the parsers panic or read out of bounds.

use std::net::{IpAddr, SocketAddr};

mod common;

use common::exercise;
use proptest::prelude::*;
use stun_core::attributes::*;
use stun_core::channel_data::{self, ChannelData};
use stun_core::{
    Attribute, Class, Message, MessageBuilder, MessageType, Method, TransactionId, demux,
};

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..40).prop_map(move |cs| {
        let mut s = String::new();
        for c in cs {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    })
}

/// Builds a message holding `a` (between two other attributes, so offsets vary),
/// parses it, and checks the decoded value equals the original.
fn round_trip<'a, A>(a: &A, tid: [u8; 12], pad: usize) -> Result<(), TestCaseError>
where
    A: for<'b> Attribute<'b> + PartialEq + std::fmt::Debug,
{
    let mut buf = vec![0u8; 70_000];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new(tid),
    )
    .unwrap();
    b.add_raw(AttributeType::new(0x8fff), &vec![7u8; pad])
        .unwrap();
    b.add(a).unwrap();
    b.add(&Software("after")).unwrap();
    b.add_fingerprint().unwrap();
    let len = b.finish();
    let m = Message::new_checked(&buf[..len]).unwrap();
    prop_assert!(m.verify_fingerprint().is_ok());
    let back: A = m.attribute::<A>().unwrap().unwrap();
    prop_assert_eq!(&back, a);
    prop_assert_eq!(m.attribute::<Software>().unwrap(), Some(Software("after")));
    Ok(())
}

/// As [`round_trip`], for attribute types that borrow from the message.
macro_rules! round_trip_borrowed {
    ($value:expr, $ty:ident, $tid:expr, $pad:expr) => {{
        let a = $value;
        let mut buf = vec![0u8; 70_000];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::ALLOCATE, Class::Request),
            TransactionId::new($tid),
        )
        .unwrap();
        b.add_raw(AttributeType::new(0x8fff), &vec![7u8; $pad])
            .unwrap();
        b.add(&a).unwrap();
        b.add_fingerprint().unwrap();
        let len = b.finish();
        let m = Message::new_checked(&buf[..len]).unwrap();
        let back = m.attribute::<$ty>().unwrap().unwrap();
        prop_assert_eq!(back, a);
    }};
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn addresses_round_trip(addr in socket_addr(), tid in any::<[u8; 12]>(), pad in 0usize..7) {
        round_trip(&MappedAddress(addr), tid, pad)?;
        round_trip(&XorMappedAddress(addr), tid, pad)?;
        round_trip(&XorPeerAddress(addr), tid, pad)?;
        round_trip(&XorRelayedAddress(addr), tid, pad)?;
        round_trip(&AlternateServer(addr), tid, pad)?;
        round_trip(&ResponseOrigin(addr), tid, pad)?;
        round_trip(&OtherAddress(addr), tid, pad)?;
    }

    #[test]
    fn numbers_round_trip(a in any::<u32>(), b in any::<u64>(), c in any::<u16>(), d in any::<u8>(),
                          e in any::<bool>(), t in any::<[u8; 8]>(), tid in any::<[u8; 12]>(), pad in 0usize..7) {
        round_trip(&Lifetime(a), tid, pad)?;
        round_trip(&Priority(a), tid, pad)?;
        round_trip(&ConnectionId(a), tid, pad)?;
        {
            // FINGERPRINT must come last, so it is checked on its own.
            let mut buf = [0u8; 64];
            let mut b = MessageBuilder::new(&mut buf, MessageType::new(Method::BINDING, Class::Request), TransactionId::new(tid)).unwrap();
            b.add(&Fingerprint(a)).unwrap();
            let len = b.finish();
            let m = Message::new_checked(&buf[..len]).unwrap();
            prop_assert_eq!(m.attribute::<Fingerprint>().unwrap(), Some(Fingerprint(a)));
        }
        round_trip(&IceControlled(b), tid, pad)?;
        round_trip(&IceControlling(b), tid, pad)?;
        round_trip(&ChannelNumber(c), tid, pad)?;
        round_trip(&RequestedTransport { protocol: d }, tid, pad)?;
        round_trip(&EvenPort { reserve_next: e }, tid, pad)?;
        round_trip(&ReservationToken(t), tid, pad)?;
        round_trip(&DontFragment, tid, pad)?;
        round_trip(&UseCandidate, tid, pad)?;
        round_trip(&Icmp { icmp_type: d, code: d.wrapping_add(1), data: a }, tid, pad)?;
        let fam = if e { AddressFamily::Ipv6 } else { AddressFamily::Ipv4 };
        round_trip(&RequestedAddressFamily(fam), tid, pad)?;
        round_trip(&AdditionalAddressFamily(fam), tid, pad)?;
    }

    #[test]
    fn text_round_trips(user in text(512), long in text(763), domain in text(255),
                        tid in any::<[u8; 12]>(), pad in 0usize..7) {
        round_trip_borrowed!(Username(&user), Username, tid, pad);
        round_trip_borrowed!(Realm(&long), Realm, tid, pad);
        round_trip_borrowed!(Nonce(&long), Nonce, tid, pad);
        round_trip_borrowed!(Software(&long), Software, tid, pad);
        round_trip_borrowed!(AlternateDomain(&domain), AlternateDomain, tid, pad);
    }

    #[test]
    fn codes_and_lists_round_trip(code in 300u16..700, family in any::<u8>(), reason in text(763),
                                  types in proptest::collection::vec(any::<u16>(), 0..20),
                                  algs in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..9)), 0..6),
                                  bytes in proptest::collection::vec(any::<u8>(), 0..1500),
                                  tid in any::<[u8; 12]>(), pad in 0usize..7) {
        round_trip_borrowed!(ErrorCode { code, reason: &reason }, ErrorCode, tid, pad);
        round_trip_borrowed!(AddressErrorCode { family, code, reason: &reason }, AddressErrorCode, tid, pad);
        let types: Vec<AttributeType> = types.into_iter().map(AttributeType::new).collect();
        round_trip_borrowed!(UnknownAttributes::new(&types), UnknownAttributes, tid, pad);
        let algs: Vec<PasswordAlgorithm> = algs.iter().map(|(a, p)| PasswordAlgorithm { algorithm: *a, params: p }).collect();
        round_trip_borrowed!(PasswordAlgorithms::new(&algs), PasswordAlgorithms, tid, pad);
        if let Some(first) = algs.first() {
            round_trip_borrowed!(*first, PasswordAlgorithm, tid, pad);
        }
        round_trip_borrowed!(Data(&bytes), Data, tid, pad);
        let mut hash = [0u8; 32];
        for (h, b) in hash.iter_mut().zip(bytes.iter()) { *h = *b; }
        round_trip_borrowed!(Userhash(&hash), Userhash, tid, pad);
    }

    #[test]
    fn integrity_round_trips(key in proptest::collection::vec(any::<u8>(), 0..100),
                             sha_len in prop_oneof![Just(16usize), Just(20), Just(24), Just(28), Just(32)],
                             payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = vec![0u8; 1024];
        let mut b = MessageBuilder::new(&mut buf, MessageType::new(Method::SEND, Class::Indication), TransactionId::new([1; 12])).unwrap();
        b.add(&Data(&payload)).unwrap();
        b.add_message_integrity(&key).unwrap();
        b.add_message_integrity_sha256_truncated(&key, sha_len).unwrap();
        b.add_fingerprint().unwrap();
        let len = b.finish();
        let m = Message::new_checked(&buf[..len]).unwrap();
        prop_assert!(m.verify_integrity(&key).is_ok());
        prop_assert!(m.verify_integrity_sha256(&key).is_ok());
        prop_assert!(m.verify_fingerprint().is_ok());
        let mut other = key.clone();
        other.push(1);
        prop_assert!(m.verify_integrity(&other).is_err());
        prop_assert!(m.verify_integrity_sha256(&other).is_err());
    }

    #[test]
    fn channel_data_round_trips(ch in 0x4000u16..=0x4fff, data in proptest::collection::vec(any::<u8>(), 0..600), pad in any::<bool>()) {
        let mut buf = vec![0u8; 700];
        let n = channel_data::encode(&mut buf, ch, &data, pad).unwrap();
        prop_assert_eq!(n.is_multiple_of(4), pad || data.len() % 4 == 0);
        let c = ChannelData::new_checked(&buf[..n]).unwrap();
        prop_assert_eq!(c.channel(), ch);
        prop_assert_eq!(c.data(), &data[..]);
        if pad {
            prop_assert_eq!(channel_data::stream_frame_len(&buf), Some(n));
            prop_assert_eq!(demux::stream_frame(&buf), demux::Frame::ChannelData(n));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn stun_shaped_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400), ty in any::<u16>()) {
        // A valid header in front of random attribute bytes reaches the attribute
        // walker far more often than uniformly random bytes do.
        let len = body.len() & !3;
        let mut bytes = Vec::with_capacity(20 + len);
        bytes.extend_from_slice(&(ty & 0x3fff).to_be_bytes());
        bytes.extend_from_slice(&(len as u16).to_be_bytes());
        bytes.extend_from_slice(&0x2112_a442u32.to_be_bytes());
        bytes.extend_from_slice(&[9; 12]);
        bytes.extend_from_slice(&body[..len]);
        exercise(&bytes);
    }
}
