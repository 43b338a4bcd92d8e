//! TCP allocations (RFC 6062) through the std relay on loopback, with the
//! blocking client: a Connect to a TCP echo peer and a megabyte both ways, a
//! peer's connection accepted with a permission (and one without refused
//! before it reaches the client), ConnectionBinds landing on another worker
//! than their allocation's, the peer policy on Connect (403), an unreachable
//! peer (447), and the bytes in the usage record.
#![cfg(feature = "std")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant as StdInstant};

use causeway_testkit::wait::PATIENCE;
use turn_core::Transport;
use turn_core::adapters::std::client::{ClientIoError, DataConnection, TurnClient};
use turn_core::adapters::std::{Relay, RelayEvent};
use turn_core::client::{ClientConfig, Failure};
use turn_core::server::policy::Cidr;
use turn_core::server::{EndReason, Event};

const T: Duration = PATIENCE;

/// A TCP echo peer on 127.0.0.2: echoes each connection until it ends.
fn tcp_echo_peer() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// A relay on 127.0.0.1 with 4 workers (so binds often land on another
/// worker), peers on 127.0.0.2 allowed.
fn relay() -> Relay {
    Relay::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .realm("example")
        .threads(4)
        .total(64)
        .allow_peer(Cidr::parse("127.0.0.2/32").unwrap())
        .user("alice", "s3cret")
        .start()
        .unwrap()
}

fn tcp_client(server: SocketAddr) -> TurnClient {
    let mut cfg = ClientConfig::new(server, "alice", "s3cret").unwrap();
    cfg.transport = Transport::Tcp;
    cfg.tcp_relay = true;
    let mut c = TurnClient::connect(cfg).unwrap();
    c.allocate(T).unwrap();
    c
}

/// Writes `data` and reads as much back: written in chunks, read in
/// between, so neither way's buffers fill while the other waits.
fn echo(mut conn: DataConnection, data: Vec<u8>) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let total = data.len();
    let mut back = Vec::with_capacity(total);
    let mut sent = 0;
    let end = StdInstant::now() + T;
    let mut buf = vec![0u8; 65536];
    while back.len() < total && StdInstant::now() < end {
        if sent < total {
            let n = (total - sent).min(16384);
            conn.write_all(&data[sent..sent + n]).unwrap();
            sent += n;
        }
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("data connection: {e}"),
        }
    }
    back
}

fn ended(events: &Receiver<RelayEvent>) -> turn_core::server::Traffic {
    let end = StdInstant::now() + T;
    while let Some(left) = end.checked_duration_since(StdInstant::now()) {
        if let Ok(RelayEvent::Allocation {
            event: Event::Ended {
                traffic, reason, ..
            },
            ..
        }) = events.recv_timeout(left)
        {
            assert_eq!(reason, EndReason::Released);
            return traffic;
        }
    }
    panic!("no usage record within {T:?}");
}

#[test]
fn a_connect_relays_a_megabyte_to_a_tcp_peer_and_back() {
    let relay = relay();
    let events = relay.take_events().unwrap();
    let server = relay.local_addrs()[0];
    let mut turn = tcp_client(server);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    // Several connections in a row: their binds land on every worker. (Each
    // to a peer of its own: a connection leaves from the relayed address, so
    // one to the same peer address waits for the last one's TIME_WAIT.)
    let mut total = 0u64;
    for round in 0..8 {
        let peer = tcp_echo_peer();
        let conn = turn.connect_peer(peer, T).unwrap();
        assert_eq!(conn.peer(), peer);
        let size = if round == 0 { data.len() } else { 1000 };
        let back = echo(conn, data[..size].to_vec());
        assert_eq!(back.len(), size, "round {round}");
        assert!(
            back == data[..size],
            "round {round}: the bytes came back changed"
        );
        total += size as u64;
    }
    turn.deallocate(T).unwrap();
    let traffic = ended(&events);
    assert_eq!(traffic.to_peer_bytes, total);
    assert_eq!(traffic.from_peer_bytes, total);
    relay.shutdown();
    relay.join();
}

#[test]
fn connect_keeps_to_the_peer_policy_and_says_when_a_peer_is_unreachable() {
    let relay = relay();
    let server = relay.local_addrs()[0];
    let mut turn = tcp_client(server);
    let closed = {
        let l = TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap()
    };
    let refused = |r: Result<DataConnection, ClientIoError>| match r {
        Err(ClientIoError::Failed {
            failure: Failure::Code(c),
            ..
        }) => c,
        other => panic!("{other:?}"),
    };
    // Not allowed: another loopback address, the relay's own TURN port, a
    // private range, the metadata address.
    for p in ["127.0.0.3:80", "10.0.0.1:445", "169.254.169.254:80"] {
        assert_eq!(
            refused(turn.connect_peer(p.parse().unwrap(), T)),
            403,
            "{p}"
        );
    }
    assert_eq!(refused(turn.connect_peer(server, T)), 403);
    // Allowed, but nobody listens: 447.
    assert_eq!(refused(turn.connect_peer(closed, T)), 447);
    // The allocation still works.
    let conn = turn.connect_peer(tcp_echo_peer(), T).unwrap();
    assert_eq!(echo(conn, b"still here".to_vec()), b"still here");
    relay.shutdown();
    relay.join();
}

#[test]
fn a_peer_reaches_the_client_only_with_a_permission() {
    let relay = relay();
    let server = relay.local_addrs()[0];
    let mut turn = tcp_client(server);
    let relayed = turn.relayed().unwrap();
    turn.create_permission("127.0.0.2".parse().unwrap(), T)
        .unwrap();

    // 127.0.0.4 has no permission: its connection is closed, never offered.
    let stranger = socket2_connect("127.0.0.4:0", relayed);
    let mut s = stranger;
    s.set_read_timeout(Some(T)).unwrap();
    let mut one = [0u8; 1];
    assert_eq!(
        s.read(&mut one).unwrap_or(0),
        0,
        "the stranger's connection is closed"
    );

    let mut friend = socket2_connect("127.0.0.2:0", relayed);
    friend.write_all(b"sent before the bind").unwrap();
    let mut conn = turn.accept_peer(T).unwrap();
    assert_eq!(
        conn.peer(),
        friend.local_addr().unwrap(),
        "the first one offered"
    );
    conn.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 20];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"sent before the bind");
    conn.write_all(b"and back").unwrap();
    friend.set_read_timeout(Some(T)).unwrap();
    let mut back = [0u8; 8];
    friend.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"and back");
    // The peer ends: the client sees the end too.
    drop(friend);
    let mut rest = [0u8; 1];
    assert_eq!(conn.read(&mut rest).unwrap_or(0), 0);
    relay.shutdown();
    relay.join();
}

/// A TCP connection from `local` (an address of loopback) to `to`.
fn socket2_connect(local: &str, to: SocketAddr) -> TcpStream {
    let local: SocketAddr = local.parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&local.into()).unwrap();
    s.connect_timeout(&to.into(), T).unwrap();
    s.into()
}
