//! The server's state image: written by one server, read by another with its
//! own secret and another clock origin, the allocations go on (the client's
//! nonce still valid, its channel relaying, its lifetimes where they were);
//! every refused image (unknown version, each truncation, bytes past the end,
//! a table too small, a relay the host cannot give back) leaves the reader
//! holding nothing and its host as it was.

mod common;

use common::*;
use turn_core::server::{ImageError, Server, Slot};
use turn_core::{Instant, Transport, UnixTime};

const PEER: &str = "8.8.8.8:5000";

/// A server with two UDP allocations (one with a permission and a channel
/// that carried a packet) and one over TCP; its host, the clients, the time.
fn busy() -> (TestServer, FakeHost, Vec<Client>, Instant) {
    let mut s = server();
    let mut h = FakeHost::new();
    let now = Instant::from_secs(1000);
    let mut a = Client::new("192.0.2.1:4000", "alice", "wonderland");
    assert_success(&a.allocate(&mut s, &mut h, now), &a);
    assert_success(&a.bind(&mut s, &mut h, now, 0x4001, PEER), &a);
    let mut data = vec![0x40, 0x01, 0, 4];
    data.extend_from_slice(b"ping");
    let (sent, _) = a.send_raw(&mut s, &mut h, now, &data);
    assert!(matches!(sent, Answer::ToPeer { .. }), "{sent:?}");
    let mut b = Client::new("192.0.2.2:4000", "bob", "builder");
    assert_success(&b.allocate(&mut s, &mut h, now), &b);
    let mut t = Client::with_transport("192.0.2.3:4000", "bob", "builder", Transport::Tcp);
    assert_success(&t.allocate(&mut s, &mut h, now), &t);
    assert_eq!(s.allocation_count(), 3);
    (s, h, vec![a, b, t], now)
}

fn image_of(s: &TestServer, now: Instant) -> Vec<u8> {
    let mut buf = vec![0u8; s.image_len()];
    let n = s.write_image(now, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// A fresh server with another secret, and a host of its own (its relay
/// sockets are those the image asks for, as a host that inherited them gives).
fn successor() -> (TestServer, FakeHost) {
    let s: TestServer = Server::new(config(), vec![Slot::EMPTY; 16], [7; 32]).unwrap();
    (s, FakeHost::new())
}

#[test]
fn allocations_go_on_in_the_server_that_reads_the_image() {
    let (s, _, mut clients, then) = busy();
    // Ten minutes' worth of clock origin apart, 30 s later.
    let image = image_of(&s, then.plus_secs(30));
    let (mut s2, mut h2) = successor();
    let now = Instant::from_secs(400);
    assert_eq!(
        s2.read_image(&mut h2, &image, now),
        Ok(2),
        "the TCP one stays"
    );
    // Same relayed addresses, lifetimes rebased: 600 s from `then`, read 30 s
    // after it.
    let relays_then: Vec<_> = s
        .allocations()
        .filter(|a| a.five_tuple().transport == Transport::Udp)
        .map(|a| a.relays().next().unwrap().local)
        .collect();
    let mut relays_now: Vec<_> = h2.bound.keys().copied().collect();
    relays_now.sort();
    let mut expected = relays_then.clone();
    expected.sort();
    assert_eq!(relays_now, expected);
    for a in s2.allocations() {
        assert_eq!(a.expires().as_secs(), now.as_secs() + 570, "{a:?}");
    }
    let alice = s2.allocations().find(|a| a.username() == "alice").unwrap();
    assert_eq!(alice.traffic().to_peer_packets, 1);
    // Alice's nonce (issued by the first server) is valid here: her Refresh
    // succeeds at once, no 438.
    let a = &mut clients[0];
    // The wall clock goes on across processes (the monotonic one need not).
    a.wall = Some(UnixTime(then.as_secs() + 30));
    let nonce = a.nonce.clone();
    let r = a.refresh(&mut s2, &mut h2, now, 600);
    assert_success(&r, a);
    assert_eq!(a.nonce, nonce, "no new nonce was needed");
    // Her channel relays in the new server.
    let mut data = vec![0x40, 0x01, 0, 4];
    data.extend_from_slice(b"pong");
    let (sent, _) = a.send_raw(&mut s2, &mut h2, now, &data);
    match sent {
        Answer::ToPeer { peer, data, .. } => {
            assert_eq!((peer, &data[..]), (addr(PEER), &b"pong"[..]))
        }
        other => panic!("{other:?}"),
    }
    // And the peer's answer reaches her.
    let alice_local = alice_relay(&s2);
    let got = from_peer(&mut s2, &mut h2, now, alice_local, PEER, b"back");
    assert!(got.is_some_and(|(t, _)| t == a.tuple));
    // The image read back from the new server is the same again.
    let again = image_of(&s2, now);
    let (mut s3, mut h3) = successor();
    assert_eq!(s3.read_image(&mut h3, &again, now), Ok(2));
}

/// Alice's relay socket's local address in `s`.
fn alice_relay(s: &TestServer) -> std::net::SocketAddr {
    s.allocations()
        .find(|a| a.username() == "alice")
        .and_then(|a| a.relays().next().map(|r| r.local))
        .unwrap()
}

#[test]
fn a_refused_image_leaves_the_reader_holding_nothing() {
    let (s, _, _, then) = busy();
    let image = image_of(&s, then);
    let now = Instant::from_secs(50);
    let fresh = successor;
    // Every truncation.
    for len in 0..image.len() {
        let (mut s2, mut h2) = fresh();
        let r = s2.read_image(&mut h2, &image[..len], now);
        assert!(r.is_err(), "{len}: {r:?}");
        assert_eq!(s2.allocation_count(), 0, "{len}");
        assert!(
            h2.bound.is_empty() && h2.per_user.values().all(|&n| n == 0),
            "{len}"
        );
    }
    // A version this build does not know.
    let mut v2 = image.clone();
    v2[4] = 2;
    let (mut s2, mut h2) = fresh();
    assert_eq!(
        s2.read_image(&mut h2, &v2, now),
        Err(ImageError::UnknownVersion(2))
    );
    // Not an image.
    assert_eq!(
        s2.read_image(&mut h2, b"GET / HTTP/1.1\r\n", now),
        Err(ImageError::NotAnImage)
    );
    // Bytes past the last record.
    let mut long = image.clone();
    long.push(0);
    assert!(matches!(
        s2.read_image(&mut h2, &long, now),
        Err(ImageError::Inconsistent(_))
    ));
    // A table smaller than the image.
    let mut small: TestServer = Server::new(config(), vec![Slot::EMPTY; 1], [7; 32]).unwrap();
    assert_eq!(
        small.read_image(&mut h2, &image, now),
        Err(ImageError::OverCapacity)
    );
    assert_eq!(s2.allocation_count(), 0);
    // A host that cannot give back the second allocation's relay: the first,
    // taken already, is let go again.
    let (mut s3, mut h3) = fresh();
    let second = s
        .allocations()
        .filter(|a| a.five_tuple().transport == Transport::Udp)
        .nth(1)
        .and_then(|a| a.relays().next())
        .unwrap()
        .local;
    h3.taken.insert(second.port());
    assert_eq!(
        s3.read_image(&mut h3, &image, now),
        Err(ImageError::RelayRefused)
    );
    assert_eq!(s3.allocation_count(), 0);
    assert!(h3.bound.is_empty(), "{:?}", h3.bound);
    assert!(h3.per_user.values().all(|&n| n == 0), "{:?}", h3.per_user);
    // A server holding allocations reads none.
    let (mut s4, mut h4) = fresh();
    assert_eq!(s4.read_image(&mut h4, &image, now), Ok(2));
    assert_eq!(
        s4.read_image(&mut h4, &image, now),
        Err(ImageError::NotEmpty)
    );
    assert_eq!(s4.allocation_count(), 2);
}

#[test]
fn legacy_channel_numbers_cross_too() {
    // coturn's tools bind 0x5000 and up, which `legacy_channels` accepts.
    let mut cfg = config();
    cfg.legacy_channels = true;
    let mut s: TestServer = Server::new(cfg.clone(), vec![Slot::EMPTY; 16], [1; 32]).unwrap();
    let mut h = FakeHost::new();
    let now = Instant::from_secs(1000);
    let mut a = Client::new("192.0.2.1:4000", "alice", "wonderland");
    assert_success(&a.allocate(&mut s, &mut h, now), &a);
    assert_success(&a.bind(&mut s, &mut h, now, 0x7FFF, PEER), &a);
    let image = image_of(&s, now);
    let mut s2: TestServer = Server::new(cfg, vec![Slot::EMPTY; 16], [7; 32]).unwrap();
    assert_eq!(s2.read_image(&mut FakeHost::new(), &image, now), Ok(1));
}

#[test]
fn the_writer_says_when_the_buffer_is_short() {
    let (s, _, _, then) = busy();
    let need = image_of(&s, then).len();
    assert!(need <= s.image_len());
    let mut buf = vec![0u8; need - 1];
    assert_eq!(
        s.write_image(then, &mut buf),
        Err(ImageError::BufferTooSmall)
    );
}

#[test]
fn an_image_of_this_version_written_before_still_reads() {
    // Written by this format's first build (kept as a fuzzing seed too): a
    // change of layout that keeps the version number fails here.
    let golden = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/state_image/image-of-two-udp-allocations"),
    )
    .unwrap();
    let (mut s, mut h) = successor();
    assert_eq!(s.read_image(&mut h, &golden, Instant::from_secs(9)), Ok(2));
    let mut users: Vec<_> = s.allocations().map(|a| a.username().to_string()).collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"]);
}

/// A host's growing table ([`Server::reserve_slots`], with the `std` feature).
#[cfg(feature = "std")]
#[test]
fn a_growing_table_makes_room_for_the_image_first() {
    let (s, _, _, then) = busy();
    let image = image_of(&s, then);
    assert_eq!(turn_core::server::image::allocations_in(&image), Ok(2));
    assert_eq!(
        turn_core::server::image::allocations_in(&image[..10]),
        Err(ImageError::Truncated)
    );
    let now = Instant::from_secs(50);
    let mut s2: TestServer = Server::new(config(), vec![Slot::EMPTY; 1], [7; 32]).unwrap();
    let mut h2 = FakeHost::new();
    assert_eq!(
        s2.read_image(&mut h2, &image, now),
        Err(ImageError::OverCapacity)
    );
    assert_eq!(s2.reserve_slots(2), 2);
    assert_eq!(s2.read_image(&mut h2, &image, now), Ok(2));
    assert_eq!(s2.capacity(), 2);
    assert!(s2.allocations().any(|a| a.username() == "alice"));
}
