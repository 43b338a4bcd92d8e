//! Memory that follows what a std relay holds: its allocation table starts
//! small and grows with the allocations, up to its share of the total
//! (allocations made before a growth keep relaying after it, and past the
//! share the relay answers as a full one); its workers list their allocations
//! for the stats only while someone reads them.
#![cfg(feature = "std")]

use std::net::SocketAddr;
use std::time::Duration;

use causeway_testkit::wait::{self, PATIENCE};
use turn_core::adapters::std::Relay;
use turn_core::adapters::std::client::{ClientIoError, TurnClient};
use turn_core::client::{ClientConfig, Failure};
use turn_core::server::policy::Cidr;

/// A UDP echo peer on 127.0.0.2.
fn echo_peer() -> SocketAddr {
    causeway_testkit::tools::udp_echo_peer("127.0.0.2")
}

/// Sends `payload` to the echo `peer` until it comes back (UDP may lose).
fn echoes(turn: &mut TurnClient, peer: SocketAddr, payload: &[u8]) -> bool {
    let mut buf = [0u8; 2048];
    wait::holds(PATIENCE, || {
        turn.send_to(peer, payload).unwrap();
        matches!(
            turn.recv_from(&mut buf, Duration::from_millis(500)),
            Ok(Some((n, from))) if from == peer && &buf[..n] == payload
        )
    })
}

#[test]
fn the_table_grows_with_its_allocations_and_stops_at_its_share() {
    // One worker with a share of 400: its table starts with 256 slots.
    let relay = Relay::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .realm("example")
        .threads(1)
        .total(400)
        .user("alice", "s3cret")
        .allow_peer(Cidr::parse("127.0.0.2/32").unwrap())
        .start()
        .unwrap();
    let server = relay.local_addrs()[0];
    let worker = |relay: &Relay| relay.stats().workers[0];
    // Stats are published once a second.
    let w = wait::until("the first stats", PATIENCE, || {
        let w = worker(&relay);
        if w.capacity > 0 {
            Ok(w)
        } else {
            Err("none yet")
        }
    });
    assert_eq!((w.capacity, w.slots), (400, 256), "small until used");

    let peer = echo_peer();
    let connect = || TurnClient::connect(ClientConfig::new(server, "alice", "s3cret").unwrap());
    let mut first = connect().unwrap();
    first.allocate(PATIENCE).unwrap();
    first.bind_channel(peer, PATIENCE).unwrap();
    assert!(echoes(&mut first, peer, b"before the growth"));

    let mut held = vec![first];
    while held.len() < 400 {
        let mut c = connect().unwrap();
        c.allocate(PATIENCE).unwrap();
        held.push(c);
    }
    let w = wait::until("the 400 allocations published", PATIENCE, || {
        let w = worker(&relay);
        if w.allocations == 400 {
            Ok(w)
        } else {
            Err(format!("{w:?}"))
        }
    });
    // 256, then a quarter more each time it filled (at least 64): 320, 400.
    assert_eq!((w.capacity, w.slots), (400, 400));

    // Read, the 400 are listed, each once.
    let listed = wait::until("the 400 allocations listed", PATIENCE, || {
        let s = relay.stats();
        if s.allocations.len() == 400 {
            Ok(s.allocations)
        } else {
            Err(format!("{} listed", s.allocations.len()))
        }
    });
    let clients: std::collections::HashSet<_> = listed.iter().map(|a| a.tuple.client).collect();
    assert_eq!(clients.len(), 400, "each allocation once");

    // The first allocation's slot and relay socket survived both growths.
    assert!(echoes(&mut held[0], peer, b"after the growth"));

    // Past its share the relay is full, as a fixed table was.
    let mut over = connect().unwrap();
    match over.allocate(PATIENCE) {
        Err(ClientIoError::Failed {
            failure: Failure::Code(508),
            ..
        }) => {}
        other => panic!("the 401st allocation: {other:?}"),
    }
    assert_eq!(worker(&relay).slots, 400, "never past the share");
}

#[test]
fn allocations_are_listed_when_read_and_the_summary_never_lists_them() {
    let relay = Relay::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .realm("example")
        .threads(2)
        .total(64)
        .user("alice", "s3cret")
        .start()
        .unwrap();
    let server = relay.local_addrs()[0];
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut c =
            TurnClient::connect(ClientConfig::new(server, "alice", "s3cret").unwrap()).unwrap();
        c.allocate(PATIENCE).unwrap();
        clients.push(c);
    }
    let summary = wait::until("the summary counts 5", PATIENCE, || {
        let s = relay.summary();
        if s.in_use() == 5 {
            Ok(s)
        } else {
            Err(format!("{}", s.in_use()))
        }
    });
    assert!(summary.allocations.is_empty(), "a summary lists nothing");
    // Nobody read them so far; the first read waits for the workers' lists.
    let stats = relay.stats();
    assert_eq!(stats.allocations.len(), 5, "{:?}", stats.workers);
    assert!(stats.allocations.iter().all(|a| a.username == "alice"));
    // The summary reads counters alone, lists or not.
    assert!(relay.summary().allocations.is_empty());
}
