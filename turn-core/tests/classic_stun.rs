//! RFC 3489 Binding requests (no magic cookie) on the TURN server: answered with
//! MAPPED-ADDRESS by default, refused with 420 when they ask for another address,
//! dropped and counted when `classic_stun` is off; none changes state.

mod common;

use common::*;
use turn_core::server::{Reason, Refusal};
use turn_core::{Instant, Transport};

const T0: Instant = Instant::from_secs(1_764_000_000);

/// A classic Binding request with these attributes.
fn classic(attrs: &[u8]) -> Vec<u8> {
    let mut req = vec![0u8, 1, 0, attrs.len() as u8];
    req.extend_from_slice(&[0x5A; 16]);
    req.extend_from_slice(attrs);
    req
}

#[test]
fn a_classic_binding_gets_mapped_address() {
    let mut s = server();
    let mut h = FakeHost::new();
    let c = Client::new("198.51.100.7:4000", "alice", "wonderland");
    let (o, out) = c.send_raw(&mut s, &mut h, T0, &classic(&[0, 3, 0, 4, 0, 0, 0, 0]));
    assert!(matches!(o, Answer::ToClient { refusal: None, .. }), "{o:?}");
    assert_eq!(
        out,
        [
            &[1u8, 1, 0, 12][..],
            &[0x5A; 16],
            &[0, 1, 0, 8, 0, 1, 0x0f, 0xa0, 198, 51, 100, 7]
        ]
        .concat()
    );
    // Over TCP too (framed as any STUN message).
    let t = Client::with_transport("198.51.100.8:4001", "alice", "wonderland", Transport::Tcp);
    let (_, out) = t.send_raw(&mut s, &mut h, T0, &classic(&[]));
    assert_eq!(out[26..28], [0x0f, 0xa1]);
    assert_eq!(s.allocation_count(), 0);
}

#[test]
fn a_classic_binding_for_another_address_gets_420() {
    let mut s = server();
    let mut h = FakeHost::new();
    let c = Client::new("198.51.100.7:4000", "alice", "wonderland");
    let (o, out) = c.send_raw(
        &mut s,
        &mut h,
        T0,
        &classic(&[0, 2, 0, 8, 0, 1, 0, 80, 192, 0, 2, 1]),
    );
    let Answer::ToClient {
        refusal: Some(Refusal::UnknownAttribute(t)),
        ..
    } = o
    else {
        panic!("420 expected: {o:?}")
    };
    assert_eq!(t.value(), 2);
    assert_eq!(out[..2], [1, 0x11]);
    assert_eq!(s.counters().refusals.get(Reason::UnknownAttribute), 1);
}

#[test]
fn off_drops_and_counts_them() {
    let mut cfg = config();
    cfg.classic_stun = false;
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    let c = Client::new("198.51.100.7:4000", "alice", "wonderland");
    let (o, _) = c.send_raw(&mut s, &mut h, T0, &classic(&[]));
    assert_eq!(o, Answer::Nothing(Some(Refusal::ClassicOff)));
    assert_eq!(s.counters().refusals.get(Reason::ClassicOff), 1);
    // Not a Binding, or not well formed: dropped either way, as before.
    let mut s = server();
    let mut other = classic(&[]);
    other[1] = 3; // Allocate without the cookie
    let (o, _) = c.send_raw(&mut s, &mut h, T0, &other);
    assert!(
        matches!(o, Answer::Nothing(Some(Refusal::Malformed(_)))),
        "{o:?}"
    );
}
