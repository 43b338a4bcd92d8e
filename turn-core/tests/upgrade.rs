//! A relay handed over to another relay (`Relay::hand_over`,
//! `RelayBuilder::resume`), here in one process over a Unix socket pair: UDP
//! allocations keep their relayed addresses and lose no packet, their next
//! requests need no new nonce, TCP clients stay with the old relay until they
//! end while new ones reach the new relay, and a refused or broken hand-over
//! leaves the old relay serving.
#![cfg(feature = "std")]

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use causeway_testkit::wait::{self, PATIENCE};
use turn_core::Transport;
use turn_core::adapters::std::client::TurnClient;
use turn_core::adapters::std::{HandOverError, Relay, RelayBuilder, Resumed, StartError};
use turn_core::client::ClientConfig;
use turn_core::server::policy::Cidr;

const T: Duration = PATIENCE;

fn until(what: &str, mut f: impl FnMut() -> bool) {
    wait::until(what, T, || if f() { Ok(()) } else { Err("not yet") });
}

fn builder(listen: SocketAddr) -> RelayBuilder {
    Relay::builder()
        .listen(listen)
        .realm("example")
        .threads(2)
        .total(64)
        .user("alice", "s3cret")
        .allow_peer(Cidr::parse("127.0.0.2/32").unwrap())
        .allow_peer(Cidr::parse("127.0.0.3/32").unwrap())
}

/// A UDP echo peer on `ip`; it reports each datagram's source.
fn echo_peer(ip: &str) -> (SocketAddr, std::sync::mpsc::Receiver<SocketAddr>) {
    let sock = UdpSocket::bind((ip, 0)).unwrap();
    let addr = sock.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
            let _ = tx.send(from);
        }
    });
    (addr, rx)
}

/// A relay resuming from `end` on a thread of its own, as a new process would.
fn resume(listen: SocketAddr, end: UnixStream) -> JoinHandle<Result<Resumed, StartError>> {
    std::thread::spawn(move || builder(listen).resume(&end))
}

fn client(server: SocketAddr, transport: Transport) -> TurnClient {
    let mut cfg = ClientConfig::new(server, "alice", "s3cret").unwrap();
    cfg.transport = transport;
    TurnClient::connect(cfg).unwrap()
}

/// Sends `seq` to `peer` and waits for it to come back; the round trip.
fn echo(turn: &mut TurnClient, peer: SocketAddr, seq: u32) -> Duration {
    let payload = seq.to_be_bytes();
    let start = StdInstant::now();
    turn.send_to(peer, &payload).unwrap();
    let mut buf = [0u8; 64];
    while start.elapsed() < T {
        if let Some((n, from)) = turn.recv_from(&mut buf, T).unwrap()
            && from == peer
            && buf[..n] == payload
        {
            return start.elapsed();
        }
    }
    panic!("echo {seq} from {peer} lost");
}

#[test]
fn udp_allocations_move_with_their_addresses_and_lose_nothing() {
    let old = builder("127.0.0.1:0".parse().unwrap()).start().unwrap();
    let server = old.local_addrs()[0];
    let (peer, seen) = echo_peer("127.0.0.2");
    // One client on a channel, one with Send indications, one over TCP.
    let mut on_channel = client(server, Transport::Udp);
    let relayed = on_channel.allocate(T).unwrap().relayed;
    on_channel.bind_channel(peer, T).unwrap();
    let mut indications = client(server, Transport::Udp);
    let relayed_2 = indications.allocate(T).unwrap().relayed;
    indications.create_permission(peer.ip(), T).unwrap();
    let mut tcp = client(server, Transport::Tcp);
    tcp.allocate(T).unwrap();
    tcp.create_permission(peer.ip(), T).unwrap();
    echo(&mut tcp, peer, 0);

    // The channel streams echoes on its own thread, across the hand-over.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echoed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let streaming = {
        let (stop, echoed) = (stop.clone(), echoed.clone());
        std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut seq = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || seq < 200 {
                longest = longest.max(echo(&mut on_channel, peer, seq));
                echoed.store(seq, std::sync::atomic::Ordering::Relaxed);
                seq += 1;
                // The stream's pace: an echo every few milliseconds.
                std::thread::sleep(Duration::from_millis(2));
            }
            (on_channel, seq, longest)
        })
    };
    // The hand-over comes once the stream is under way.
    until("the stream's first echoes", || {
        echoed.load(std::sync::atomic::Ordering::Relaxed) >= 20
    });

    let (old_end, new_end) = UnixStream::pair().unwrap();
    let new = resume(server, new_end);
    let handed = old.hand_over(&old_end, &[]).unwrap();
    let resumed = new.join().unwrap().unwrap();
    assert_eq!((handed.allocations, resumed.allocations), (2, 2));
    assert!(old.handed_over());
    assert!(matches!(
        old.hand_over(&old_end, &[]),
        Err(HandOverError::Busy)
    ));
    let new = resumed.relay;
    assert_eq!(new.local_addrs(), &[server]);

    // The TCP client stays with the old relay, which serves it still.
    echo(&mut tcp, peer, 1);
    // A new TCP client is the new relay's.
    let mut late = client(server, Transport::Tcp);
    late.allocate(T).unwrap();
    until("the new relay to publish its allocations", || {
        new.stats().in_use() == 3
    });
    drop(tcp);
    drop(late);
    old.shutdown();
    old.join();

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut on_channel, sent, longest) = streaming.join().unwrap();
    // Once the old relay is gone, the new one relays: every echo came back
    // (a lost one fails above), from the same relayed addresses.
    echo(&mut on_channel, peer, sent);
    echo(&mut indications, peer, 0);
    let sources: std::collections::HashSet<SocketAddr> = seen.try_iter().collect();
    assert!(
        sources.contains(&relayed) && sources.contains(&relayed_2),
        "{sources:?}"
    );
    eprintln!(
        "{sent} echoes across the hand-over, the longest round trip {longest:?}, UDP paused {:?}",
        handed.paused
    );
    // Requests after it are answered by the new relay with the nonce the
    // clients hold: no 438, no 401.
    let challenged = new.stats().totals().challenges;
    on_channel
        .create_permission("127.0.0.3".parse().unwrap(), T)
        .unwrap();
    indications.hold(Duration::from_millis(200)).unwrap();
    until("the new relay to publish its counters", || {
        new.stats().totals().to_peer_packets >= 2
    });
    assert_eq!(new.stats().totals().challenges, challenged);
}

#[test]
fn a_refused_or_broken_hand_over_leaves_the_old_relay_serving() {
    let old = builder("127.0.0.1:0".parse().unwrap()).start().unwrap();
    let server = old.local_addrs()[0];
    let (peer, _) = echo_peer("127.0.0.2");
    let mut turn = client(server, Transport::Udp);
    turn.allocate(T).unwrap();
    turn.bind_channel(peer, T).unwrap();
    echo(&mut turn, peer, 0);

    // A new relay configured on other listeners refuses, and says why.
    let (old_end, new_end) = UnixStream::pair().unwrap();
    let new = resume("127.0.0.1:1".parse().unwrap(), new_end);
    match old.hand_over(&old_end, &[]) {
        Err(HandOverError::Refused(why)) => assert!(why.contains("listen"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        new.join().unwrap(),
        Err(StartError::Settings {
            field: "listen",
            ..
        })
    ));
    assert!(!old.handed_over());
    echo(&mut turn, peer, 1);

    // A new process that dies once it has the sockets.
    let (old_end, new_end) = UnixStream::pair().unwrap();
    let dies = std::thread::spawn(move || {
        let mut len = [0u8; 4];
        std::io::Read::read_exact(&mut &new_end, &mut len).unwrap();
    });
    assert!(matches!(
        old.hand_over(&old_end, &[]),
        Err(HandOverError::Io { .. })
    ));
    dies.join().unwrap();
    echo(&mut turn, peer, 2);

    // Not a relay at the other end at all.
    let (old_end, new_end) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &new_end, b"X").unwrap();
    assert!(old.hand_over(&old_end, &[]).is_err());
    echo(&mut turn, peer, 3);

    // And then a good one still works.
    let (old_end, new_end) = UnixStream::pair().unwrap();
    let new = resume(server, new_end);
    assert_eq!(old.hand_over(&old_end, &[]).unwrap().allocations, 1);
    let new = new.join().unwrap().unwrap().relay;
    old.shutdown();
    old.join();
    echo(&mut turn, peer, 4);
    new.shutdown();
    new.join();
}

#[test]
fn the_embedders_sockets_cross_by_name() {
    let old = builder("127.0.0.1:0".parse().unwrap()).start().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (old_end, new_end) = UnixStream::pair().unwrap();
    let new = resume(old.local_addrs()[0], new_end);
    let handed = old
        .hand_over(&old_end, &[("admin", std::os::fd::AsFd::as_fd(&admin))])
        .unwrap();
    assert_eq!(handed.allocations, 0);
    let resumed = new.join().unwrap().unwrap();
    let (name, fd) = resumed.sockets.into_iter().next().unwrap();
    assert_eq!(name, "admin");
    let inherited = std::net::TcpListener::from(fd);
    assert_eq!(inherited.local_addr().unwrap(), admin.local_addr().unwrap());
    drop(admin);
    // The listener lives on in the new owner.
    let _c = std::net::TcpStream::connect(inherited.local_addr().unwrap()).unwrap();
    inherited.accept().unwrap();
}
