//! Codec benchmarks: parse and verify a typical authenticated Allocate request, and
//! encode the success response a TURN server sends back.
//!
//! Run: `cargo bench -p stun-core --bench codec`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stun_core::attributes::{
    Lifetime, Nonce, Realm, RequestedTransport, Software, Username, XorMappedAddress,
    XorRelayedAddress,
};
use stun_core::credentials::long_term_key;
use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

const USER: &str = "1764045000:webrtc-guest";
const REALM: &str = "TANDBERG";
const NONCE: &str = "0000019ab4c1f2e8a1b2c3d4e5f60718";

/// An Allocate request as a browser sends it after the 401 round.
fn allocate_request(key: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([0x5a; 12]),
    )
    .unwrap();
    b.add(&RequestedTransport::UDP).unwrap();
    b.add(&Username(USER)).unwrap();
    b.add(&Realm(REALM)).unwrap();
    b.add(&Nonce(NONCE)).unwrap();
    b.add_message_integrity(key).unwrap();
    b.add_fingerprint().unwrap();
    let len = b.finish();
    buf.truncate(len);
    buf
}

fn codec(c: &mut Criterion) {
    let key = long_term_key(USER, REALM, "secret");
    let request = allocate_request(&key);

    c.bench_function("parse allocate (view)", |b| {
        b.iter(|| {
            Message::new_checked(black_box(&request[..]))
                .unwrap()
                .method()
        })
    });

    c.bench_function("parse allocate + read 4 attributes", |b| {
        b.iter(|| {
            let m = Message::new_checked(black_box(&request[..])).unwrap();
            let u = m.attribute::<Username>().unwrap().unwrap();
            let r = m.attribute::<Realm>().unwrap().unwrap();
            let n = m.attribute::<Nonce>().unwrap().unwrap();
            let t = m.attribute::<RequestedTransport>().unwrap().unwrap();
            (u.0.len(), r.0.len(), n.0.len(), t.protocol)
        })
    });

    let parsed = Message::new_checked(&request[..]).unwrap();
    c.bench_function("verify MESSAGE-INTEGRITY + FINGERPRINT", |b| {
        b.iter(|| {
            black_box(&parsed)
                .verify_integrity(black_box(&key))
                .unwrap();
            black_box(&parsed).verify_fingerprint().unwrap();
        })
    });

    let relayed = "203.0.113.10:24012".parse().unwrap();
    let mapped = "198.51.100.20:53000".parse().unwrap();
    let mut out = [0u8; 256];
    c.bench_function("encode allocate success", |b| {
        b.iter(|| {
            let mut m =
                MessageBuilder::response(&mut out, black_box(&parsed), Class::Success).unwrap();
            m.add(&XorRelayedAddress(relayed)).unwrap();
            m.add(&XorMappedAddress(mapped)).unwrap();
            m.add(&Lifetime(600)).unwrap();
            m.add(&Software("causeway")).unwrap();
            m.add_message_integrity(black_box(&key)).unwrap();
            m.add_fingerprint().unwrap();
            m.finish()
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
