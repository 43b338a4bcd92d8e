//! Transaction ids are unpredictable (RFC 8489 §5): for the client, the selector
//! and the server's Data indications, what one id reveals says nothing about the
//! next. A scheme of a secret base mixed with a public counter fails this: the
//! differences between consecutive ids are the same whatever the secret, so one
//! observed id predicts all the others.

mod common;

use common::*;
use stun_core::{Message, TransactionId};
use turn_core::client::{Candidate, Client, ClientConfig, Selector};
use turn_core::{Instant, Transport, UnixTime};

const T0: Instant = Instant::from_secs(1_764_000_000);

/// The XOR of each id with the next.
fn steps(ids: &[TransactionId]) -> Vec<[u8; 12]> {
    ids.windows(2)
        .map(|w| {
            let mut d = [0u8; 12];
            for ((d, a), b) in d.iter_mut().zip(w[0].as_bytes()).zip(w[1].as_bytes()) {
                *d = a ^ b;
            }
            d
        })
        .collect()
}

/// Ids from two sources keyed differently must not step alike, and none repeats.
fn assert_unpredictable(a: &[TransactionId], b: &[TransactionId]) {
    assert!(a.len() >= 4 && b.len() >= 4);
    for (i, x) in a.iter().enumerate() {
        assert!(a[i + 1..].iter().all(|y| y != x), "an id repeats");
    }
    let (sa, sb) = (steps(a), steps(b));
    assert!(
        sa.iter().zip(&sb).all(|(x, y)| x != y),
        "consecutive ids differ the same way under different keys"
    );
    // Every byte of the id varies (no fixed part).
    for byte in 0..12 {
        assert!(
            a.iter()
                .any(|id| id.as_bytes()[byte] != a[0].as_bytes()[byte])
        );
    }
}

fn selector_ids(seed: [u8; 32]) -> Vec<TransactionId> {
    let mut sel: Selector<8> = Selector::new(seed);
    for i in 1..=8u8 {
        sel.add(
            Candidate::new(addr(&format!("192.0.2.{i}:3478")), Transport::Udp, "u", "p").unwrap(),
        )
        .unwrap();
    }
    sel.probe_all(T0);
    let mut out = [0u8; 128];
    let mut ids = Vec::new();
    while let Some(p) = sel.poll_transmit(T0, &mut out) {
        let n = p.transmit.len;
        ids.push(Message::new_checked(&out[..n]).unwrap().transaction_id());
    }
    ids
}

#[test]
fn the_selectors_probes() {
    assert_unpredictable(&selector_ids([1; 32]), &selector_ids([2; 32]));
}

/// The ids of a client's requests: its Allocate, the authenticated retry, and
/// permissions for several peers.
fn client_ids(seed: [u8; 32]) -> Vec<TransactionId> {
    let mut s = server();
    let mut h = FakeHost::new();
    let cfg = ClientConfig::new(addr(LISTENER), "alice", "wonderland").unwrap();
    let mut c: Client = Client::new(cfg, seed);
    let tuple = tuple("198.51.100.7:40000", Transport::Udp);
    let mut ids = Vec::new();
    let mut out = [0u8; 1500];
    let mut reply = [0u8; 1500];
    c.allocate(T0).unwrap();
    let mut pump = |c: &mut Client, ids: &mut Vec<TransactionId>| {
        while let Some(t) = c.poll_transmit(T0, &mut out) {
            let n = t.len;
            ids.push(Message::new_checked(&out[..n]).unwrap().transaction_id());
            if let turn_core::server::Outgoing::Client { bytes, .. } = s.handle_client(
                T0,
                UnixTime(T0.as_secs()),
                &mut h,
                tuple,
                &out[..n],
                &mut reply,
            ) {
                let from = c.server();
                let _ = c.handle_input(T0, from, bytes);
            }
        }
    };
    pump(&mut c, &mut ids);
    for i in 1..=4u8 {
        c.create_permission(T0, addr(&format!("8.8.8.{i}:1")).ip())
            .unwrap();
        pump(&mut c, &mut ids);
    }
    ids
}

#[test]
fn the_clients_requests() {
    let a = client_ids([1; 32]);
    assert_eq!(a.len(), 6, "Allocate twice, four CreatePermissions");
    assert_unpredictable(&a, &client_ids([2; 32]));
}

/// The ids of the Data indications a server sends for peer datagrams.
fn data_indication_ids(secret: [u8; 32]) -> Vec<TransactionId> {
    let mut s: TestServer =
        turn_core::server::Server::new(config(), vec![turn_core::server::Slot::EMPTY; 4], secret)
            .unwrap();
    let mut h = FakeHost::new();
    let mut c = common::Client::new("198.51.100.7:1", "alice", "wonderland");
    c.allocate(&mut s, &mut h, T0);
    c.permit(&mut s, &mut h, T0, "8.8.8.8:1");
    let local = relay_local(&h);
    (0..8)
        .map(|_| {
            let (_, bytes) = from_peer(&mut s, &mut h, T0, local, "8.8.8.8:1", b"media").unwrap();
            Message::new_checked(&bytes[..]).unwrap().transaction_id()
        })
        .collect()
}

#[test]
fn the_servers_data_indications() {
    assert_unpredictable(&data_indication_ids([1; 32]), &data_indication_ids([2; 32]));
}
