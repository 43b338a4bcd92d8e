//! Usage records: a run of clients over UDP and TCP, each sending datagrams of
//! known sizes to an echo peer through the relay, then ending its allocation;
//! the records summed agree with what the peer received and the clients got
//! back, name the user, the account, the 5-tuple and the relayed address, and
//! say why each ended.
#![cfg(feature = "std")]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant as StdInstant;

use causeway_testkit::wait::PATIENCE;
use turn_core::Transport;
use turn_core::adapters::std::client::TurnClient;
use turn_core::adapters::std::{Relay, RelayEvent, UsageRecord};
use turn_core::client::ClientConfig;
use turn_core::server::EndReason;
use turn_core::server::policy::Cidr;

/// A UDP echo on 127.0.0.2 counting packets and bytes received.
fn echo_peer() -> (SocketAddr, Arc<[AtomicU64; 2]>) {
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let count = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            count[0].fetch_add(1, Ordering::SeqCst);
            count[1].fetch_add(n as u64, Ordering::SeqCst);
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    (addr, seen)
}

/// Sends datagrams of 1..=`n` times 10 bytes, one at a time, each once, and
/// waits for its echo; what came back (packets, bytes). No resend: a late
/// echo and a resent one's would both be counted by the relay, and the sums
/// below are exact. (One datagram in flight on loopback is not lost.)
fn exchange(turn: &mut TurnClient, peer: SocketAddr, n: usize) -> (u64, u64) {
    let mut got = (0, 0);
    let mut buf = [0u8; 2048];
    for i in 1..=n {
        let payload = vec![i as u8; i * 10];
        turn.send_to(peer, &payload).unwrap();
        let (len, _) = turn
            .recv_from(&mut buf, PATIENCE)
            .unwrap()
            .unwrap_or_else(|| panic!("no echo of datagram {i} within {PATIENCE:?}"));
        assert_eq!(buf[..len], payload[..], "the echo of datagram {i}");
        got.0 += 1;
        got.1 += len as u64;
    }
    got
}

#[test]
fn records_sum_to_what_the_clients_and_the_peer_saw() {
    let relay = Relay::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .realm("example")
        .threads(2)
        .allow_peer(Cidr::parse("127.0.0.2/32").unwrap())
        .user("alice", "s3cret")
        .start()
        .unwrap();
    let events = relay.take_events().unwrap();
    let server = relay.local_addrs()[0];
    let (peer, seen) = echo_peer();

    let mut udp =
        TurnClient::connect(ClientConfig::new(server, "alice", "s3cret").unwrap()).unwrap();
    let udp_relayed = udp.allocate(PATIENCE).unwrap().relayed;
    udp.bind_channel(peer, PATIENCE).unwrap();
    let mut cfg = ClientConfig::new(server, "alice", "s3cret").unwrap();
    cfg.transport = Transport::Tcp;
    let mut tcp = TurnClient::connect(cfg).unwrap();
    tcp.allocate(PATIENCE).unwrap();
    tcp.create_permission(peer.ip(), PATIENCE).unwrap();

    let back_udp = exchange(&mut udp, peer, 12);
    let back_tcp = exchange(&mut tcp, peer, 7);
    let udp_tuple = (udp.local_addr().unwrap(), udp.server());
    udp.deallocate(PATIENCE).unwrap();
    drop(tcp); // its connection closes: the allocation ends with it

    let mut records: Vec<UsageRecord> = Vec::new();
    let end = StdInstant::now() + PATIENCE;
    while records.len() < 2 {
        let left = end
            .checked_duration_since(StdInstant::now())
            .unwrap_or_else(|| panic!("two usage records; got {records:#?}"));
        if let Ok(RelayEvent::Usage { record, .. }) = events.recv_timeout(left) {
            records.push(record);
        }
    }
    let sum = |f: fn(&UsageRecord) -> u64| records.iter().map(f).sum::<u64>();
    assert_eq!(
        sum(|r| r.traffic.to_peer_packets),
        seen[0].load(Ordering::SeqCst),
        "{records:#?}"
    );
    assert_eq!(
        sum(|r| r.traffic.to_peer_bytes),
        seen[1].load(Ordering::SeqCst)
    );
    assert_eq!(
        sum(|r| r.traffic.from_peer_packets),
        back_udp.0 + back_tcp.0
    );
    assert_eq!(sum(|r| r.traffic.from_peer_bytes), back_udp.1 + back_tcp.1);

    let u = records
        .iter()
        .find(|r| r.tuple.transport == Transport::Udp)
        .unwrap();
    assert_eq!((u.tuple.client, u.tuple.server), udp_tuple);
    assert_eq!(u.relayed, vec![udp_relayed]);
    assert_eq!(u.reason, EndReason::Released);
    assert_eq!(
        (u.username.as_str(), u.account.as_str()),
        ("alice", "alice")
    );
    assert_eq!(u.realm, "example");
    assert!(u.ended >= u.started && u.duration() < 10 * PATIENCE);
    let t = records
        .iter()
        .find(|r| r.tuple.transport == Transport::Tcp)
        .unwrap();
    assert_eq!(t.reason, EndReason::ConnectionClosed);
    assert!(
        u.to_string()
            .contains("allocation of `alice` ended (released by the client)")
    );
    relay.shutdown();
    relay.join();
}
