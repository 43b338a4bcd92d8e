//! The STUN security features of RFC 8489 §9.2 on the server: the nonce cookie,
//! PASSWORD-ALGORITHMS negotiation, MESSAGE-INTEGRITY-SHA256 and USERHASH, with
//! requests built by the codec's builder and the user of RFC 8489 Appendix B.1.

mod common;

use common::*;
use stun_core::attributes::*;
use stun_core::credentials::{Algorithm, Key, long_term_key_sha256, userhash};
use stun_core::{
    AttributeType, Class, Message, MessageBuilder, MessageType, Method, TransactionId,
};
use turn_core::Instant;
use turn_core::server::{BadRequest, Refusal};

const T0: Instant = Instant::from_secs(1_764_000_000);
/// RFC 8489 Appendix B.1's user: "マトリックス", password "TheMatrIX" (after
/// OpaqueString), realm "example.org".
const MATRIX: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";

/// How a test request authenticates.
struct Auth<'a> {
    name: Name<'a>,
    realm: &'a str,
    nonce: &'a str,
    key: Key,
    /// PASSWORD-ALGORITHM to send.
    algorithm: Option<u16>,
    /// PASSWORD-ALGORITHMS to send back.
    algorithms: Option<&'a [u16]>,
    sha256: bool,
}

enum Name<'a> {
    Username(&'a str),
    Userhash([u8; 32]),
}

/// An Allocate request built with the codec's builder, authenticated as `auth`.
fn allocate(auth: &Auth<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([0x5a; 12]),
    )
    .unwrap();
    b.add(&RequestedTransport::UDP).unwrap();
    match &auth.name {
        Name::Username(u) => b.add(&Username(u)).unwrap(),
        Name::Userhash(h) => b.add(&Userhash(h)).unwrap(),
    }
    b.add(&Nonce(auth.nonce)).unwrap();
    b.add(&Realm(auth.realm)).unwrap();
    if let Some(a) = auth.algorithm {
        b.add(&PasswordAlgorithm {
            algorithm: a,
            params: &[],
        })
        .unwrap();
    }
    if let Some(list) = auth.algorithms {
        let list: Vec<PasswordAlgorithm<'_>> = list
            .iter()
            .map(|&algorithm| PasswordAlgorithm {
                algorithm,
                params: &[],
            })
            .collect();
        b.add(&PasswordAlgorithms::new(&list)).unwrap();
    }
    if auth.sha256 {
        b.add_message_integrity_sha256(auth.key.as_bytes()).unwrap();
    } else {
        b.add_message_integrity(auth.key.as_bytes()).unwrap();
    }
    b.add_fingerprint().unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

/// Sends `bytes` from the test client's 5-tuple; the reply and its refusal.
fn send(s: &mut TestServer, h: &mut FakeHost, bytes: &[u8]) -> (Vec<u8>, Option<Refusal>) {
    let c = Client::new("198.51.100.7:50000", "alice", "wonderland");
    let (o, out) = c.send_raw(s, h, T0, bytes);
    match o {
        Answer::ToClient { refusal, .. } => (out, refusal),
        other => panic!("no reply: {other:?}"),
    }
}

/// The 401's nonce, after checking the offer it carries.
fn challenge(s: &mut TestServer, h: &mut FakeHost, cookie: &str) -> String {
    let c = Client::new("198.51.100.7:50000", "alice", "wonderland");
    let req = c.build(
        Method::ALLOCATE,
        TransactionId::new([1; 12]),
        &|b| b.add(&RequestedTransport::UDP).unwrap(),
        false,
    );
    let (reply, _) = send(s, h, &req);
    let m = Message::new_checked(&reply[..]).unwrap();
    assert_eq!(m.attribute::<ErrorCode>().unwrap().unwrap().code, 401);
    let nonce = m.attribute::<Nonce>().unwrap().unwrap().0.to_string();
    assert!(nonce.starts_with(cookie), "{nonce}");
    let offered: Vec<u16> = m
        .attribute::<PasswordAlgorithms>()
        .unwrap()
        .expect("PASSWORD-ALGORITHMS offered")
        .iter()
        .map(|a| a.algorithm)
        .collect();
    assert_eq!(offered, vec![0x0002, 0x0001], "SHA-256 first, then MD5");
    nonce
}

const OFFER: &[u16] = &[0x0002, 0x0001];

#[test]
fn sha256_is_negotiated_and_the_response_is_signed_with_it() {
    let mut s = server();
    let mut h = FakeHost::new();
    let nonce = challenge(&mut s, &mut h, "obMatJos2gAAA");
    let key = Key::derive(Algorithm::Sha256, "alice", REALM, "wonderland");
    let (reply, refusal) = send(
        &mut s,
        &mut h,
        &allocate(&Auth {
            name: Name::Username("alice"),
            realm: REALM,
            nonce: &nonce,
            key,
            algorithm: Some(0x0002),
            algorithms: Some(OFFER),
            sha256: true,
        }),
    );
    assert_eq!(refusal, None);
    let m = Message::new_checked(&reply[..]).unwrap();
    assert_eq!(m.class(), Class::Success);
    m.verify_integrity_sha256(key.as_bytes())
        .expect("signed with MESSAGE-INTEGRITY-SHA256 and the SHA-256 key");
    assert!(!m.has(AttributeType::MESSAGE_INTEGRITY));
    assert_eq!(s.allocation_count(), 1);
}

#[test]
fn the_sha256_key_also_works_with_message_integrity() {
    let mut s = server();
    let mut h = FakeHost::new();
    let nonce = challenge(&mut s, &mut h, "obMatJos2gAAA");
    let key = Key::derive(Algorithm::Sha256, "alice", REALM, "wonderland");
    let (reply, refusal) = send(
        &mut s,
        &mut h,
        &allocate(&Auth {
            name: Name::Username("alice"),
            realm: REALM,
            nonce: &nonce,
            key,
            algorithm: Some(0x0002),
            algorithms: Some(OFFER),
            sha256: false,
        }),
    );
    assert_eq!(refusal, None);
    let m = Message::new_checked(&reply[..]).unwrap();
    m.verify_integrity(key.as_bytes()).unwrap();
}

#[test]
fn a_broken_negotiation_is_400_and_changes_nothing() {
    let mut s = server();
    let mut h = FakeHost::new();
    let nonce = challenge(&mut s, &mut h, "obMatJos2gAAA");
    let sha = Key::derive(Algorithm::Sha256, "alice", REALM, "wonderland");
    let cases: &[(Option<u16>, Option<&[u16]>)] = &[
        // A downgrade: the list sent back is not the one offered.
        (Some(0x0001), Some(&[0x0001])),
        (Some(0x0002), Some(&[0x0001, 0x0002])),
        // Only one of the pair.
        (Some(0x0002), None),
        (None, Some(OFFER)),
        // An algorithm that was not offered.
        (Some(0x0003), Some(OFFER)),
    ];
    for (algorithm, algorithms) in cases {
        let (reply, refusal) = send(
            &mut s,
            &mut h,
            &allocate(&Auth {
                name: Name::Username("alice"),
                realm: REALM,
                nonce: &nonce,
                key: sha,
                algorithm: *algorithm,
                algorithms: *algorithms,
                sha256: true,
            }),
        );
        let m = Message::new_checked(&reply[..]).unwrap();
        assert_eq!(
            m.attribute::<ErrorCode>().unwrap().unwrap().code,
            400,
            "{algorithm:?} {algorithms:?}"
        );
        assert_eq!(
            refusal,
            Some(Refusal::BadRequest(BadRequest::PasswordAlgorithmMismatch))
        );
    }
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(h.total(), 0);
}

#[test]
fn rfc5389_clients_keep_md5_without_algorithms() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:50000", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    // With the SHA-256 key but no negotiation: MD5 was assumed, so it fails.
    let mut s = server();
    let nonce = challenge(&mut s, &mut h, "obMatJos2gAAA");
    let (_, refusal) = send(
        &mut s,
        &mut h,
        &allocate(&Auth {
            name: Name::Username("alice"),
            realm: REALM,
            nonce: &nonce,
            key: Key::derive(Algorithm::Sha256, "alice", REALM, "wonderland"),
            algorithm: None,
            algorithms: None,
            sha256: true,
        }),
    );
    assert_eq!(refusal, Some(Refusal::IntegrityFailure));
}

#[test]
fn userhash_names_the_user_when_anonymity_is_offered() {
    let mut cfg = config();
    cfg.userhash = true;
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    let nonce = challenge(&mut s, &mut h, "obMatJos2wAAA");
    let key = Key::derive(Algorithm::Sha256, "alice", REALM, "wonderland");
    let auth = |hash| Auth {
        name: Name::Userhash(hash),
        realm: REALM,
        nonce: &nonce,
        key,
        algorithm: Some(0x0002),
        algorithms: Some(OFFER),
        sha256: true,
    };
    let (_, refusal) = send(&mut s, &mut h, &allocate(&auth(userhash("mallory", REALM))));
    assert_eq!(refusal, Some(Refusal::UnknownUser));
    let (reply, refusal) = send(&mut s, &mut h, &allocate(&auth(userhash("alice", REALM))));
    assert_eq!(refusal, None);
    Message::new_checked(&reply[..])
        .unwrap()
        .verify_integrity_sha256(key.as_bytes())
        .unwrap();
    assert_eq!(s.allocations().next().unwrap().username(), "alice");
    // Without the offer, a USERHASH names nobody.
    let mut s = server();
    let nonce = challenge(&mut s, &mut h, "obMatJos2gAAA");
    let (_, refusal) = send(
        &mut s,
        &mut h,
        &allocate(&Auth {
            nonce: &nonce,
            ..auth(userhash("alice", REALM))
        }),
    );
    assert_eq!(refusal, Some(Refusal::UnknownUser));
}

/// RFC 8489 Appendix B.1 (with erratum 6268), as in stun-core's vector tests.
const B1: [u8; 164] = [
    0x00, 0x01, 0x00, 0x90, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0,
    0x29, 0xda, 0x41, 0x2e, 0x00, 0x1e, 0x00, 0x20, 0x4a, 0x3c, 0xf3, 0x8f, 0xef, 0x69, 0x92, 0xbd,
    0xa9, 0x52, 0xc6, 0x78, 0x04, 0x17, 0xda, 0x0f, 0x24, 0x81, 0x94, 0x15, 0x56, 0x9e, 0x60, 0xb2,
    0x05, 0xc4, 0x6e, 0x41, 0x40, 0x7f, 0x17, 0x04, 0x00, 0x15, 0x00, 0x29, 0x6f, 0x62, 0x4d, 0x61,
    0x74, 0x4a, 0x6f, 0x73, 0x32, 0x41, 0x41, 0x41, 0x43, 0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b,
    0x39, 0x35, 0x34, 0x64, 0x36, 0x4f, 0x4c, 0x33, 0x34, 0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54, 0x76,
    0x79, 0x36, 0x34, 0x73, 0x41, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x0b, 0x65, 0x78, 0x61, 0x6d,
    0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67, 0x00, 0x00, 0x1d, 0x00, 0x04, 0x00, 0x02, 0x00, 0x00,
    0x00, 0x1c, 0x00, 0x20, 0xb5, 0xc7, 0xbf, 0x00, 0x5b, 0x6c, 0x52, 0xa2, 0x1c, 0x51, 0xc5, 0xe8,
    0x92, 0xf8, 0x19, 0x24, 0x13, 0x62, 0x96, 0xcb, 0x92, 0x7c, 0x43, 0x14, 0x93, 0x09, 0x27, 0x8c,
    0xc6, 0x51, 0x8e, 0x65,
];

#[test]
fn the_user_of_rfc8489_b1_allocates_with_userhash_and_sha256() {
    let mut cfg = turn_core::server::Config::new("example.org");
    cfg.relay_v4 = Some("10.0.0.5".parse().unwrap());
    cfg.userhash = true;
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    h.users.insert(MATRIX.into(), "TheMatrIX".into());
    // The host's keys and userhash lookup are the ones the vector was made with:
    // B.1 itself verifies with them.
    let b1 = Message::new_checked(&B1[..]).unwrap();
    let hash = b1.attribute::<Userhash>().unwrap().unwrap();
    use turn_core::server::Host;
    assert_eq!(
        h.username_by_hash(hash.0, "example.org").as_deref(),
        Some(MATRIX)
    );
    let key = h
        .long_term_key(MATRIX, "example.org", Algorithm::Sha256)
        .unwrap();
    assert_eq!(
        key.as_bytes(),
        long_term_key_sha256(MATRIX, "example.org", "TheMatrIX")
    );
    b1.verify_integrity_sha256(key.as_bytes()).unwrap();
    // B.1's shape (USERHASH, NONCE, REALM, PASSWORD-ALGORITHM, MESSAGE-INTEGRITY-
    // SHA256), with this server's nonce and the PASSWORD-ALGORITHMS it offered.
    let c = Client::new("198.51.100.7:50000", MATRIX, "TheMatrIX");
    let req = c.build(
        Method::ALLOCATE,
        TransactionId::new([1; 12]),
        &|b| b.add(&RequestedTransport::UDP).unwrap(),
        false,
    );
    let (reply, _) = send(&mut s, &mut h, &req);
    let nonce = Message::new_checked(&reply[..])
        .unwrap()
        .attribute::<Nonce>()
        .unwrap()
        .unwrap()
        .0
        .to_string();
    assert!(nonce.starts_with("obMatJos2wAAA"));
    let (reply, refusal) = send(
        &mut s,
        &mut h,
        &allocate(&Auth {
            name: Name::Userhash(*hash.0),
            realm: "example.org",
            nonce: &nonce,
            key,
            algorithm: Some(0x0002),
            algorithms: Some(OFFER),
            sha256: true,
        }),
    );
    assert_eq!(refusal, None);
    let m = Message::new_checked(&reply[..]).unwrap();
    assert_eq!(m.class(), Class::Success);
    m.verify_integrity_sha256(key.as_bytes()).unwrap();
    assert_eq!(s.allocations().next().unwrap().username(), MATRIX);
}
