//! An SFU on the same host, as an embedder runs one (LiveKit embeds its TURN
//! server this way): the relay and a UDP "media server" in one process on one
//! address. Without an entry the media server is out of reach and the client
//! is told so (403, not a 200 whose packets vanish); with
//! `allow_local_peer(IP:PORT)` it is reached through the relay, both ways, and
//! another service on that address still is not.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use causeway_testkit::wait::PATIENCE;
use turn_core::adapters::std::client::{ClientIoError, TurnClient};
use turn_core::adapters::std::{Relay, StartError};
use turn_core::client::{ClientConfig, Failure};
use turn_core::server::policy::LocalPeer;

/// A UDP echo on 127.0.0.1 counting what it received.
fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    (addr, seen)
}

fn relay(local: Option<SocketAddr>) -> Relay {
    // Relay ports above the ephemeral ones the media servers draw (an entry
    // may not cover the relay range).
    let mut b = Relay::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .relay_range(61000, 61999)
        .realm("example")
        .user("alice", "s3cret");
    if let Some(l) = local {
        b = b.allow_local_peer(LocalPeer::parse(&l.to_string()).unwrap());
    }
    b.start().unwrap()
}

fn client(relay: &Relay) -> TurnClient {
    let cfg = ClientConfig::new(relay.local_addrs()[0], "alice", "s3cret").unwrap();
    let mut turn = TurnClient::connect(cfg).unwrap();
    turn.allocate(PATIENCE).unwrap();
    turn
}

fn refused_403(r: Result<u16, ClientIoError>) -> bool {
    matches!(
        r,
        Err(ClientIoError::Failed {
            failure: Failure::Code(403),
            ..
        })
    )
}

#[test]
fn the_media_server_is_refused_without_an_entry() {
    let (sfu, seen) = echo();
    let relay = relay(None);
    let mut turn = client(&relay);
    assert!(refused_403(turn.bind_channel(sfu, PATIENCE)), "403");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    relay.shutdown();
    relay.join();
}

#[test]
fn the_named_media_server_is_reached_and_nothing_else_on_the_host() {
    let (sfu, _) = echo();
    let (other, other_seen) = echo();
    let relay = relay(Some(sfu));
    let mut turn = client(&relay);
    turn.bind_channel(sfu, PATIENCE).unwrap();
    assert!(refused_403(turn.bind_channel(other, PATIENCE)), "403");
    // A permission naming no port is granted for the relay's IP; a Send to the
    // other service is still dropped. It goes first: once the media server's
    // echo is back, the relay has handled it.
    turn.create_permission(other.ip(), PATIENCE).unwrap();
    turn.send_to(other, b"to the other service").unwrap();
    let mut buf = [0u8; 1500];
    let mut echoed = None;
    causeway_testkit::wait::until("the media server's echo", PATIENCE, || {
        turn.send_to(sfu, b"media through the relay")?;
        match turn.recv_from(&mut buf, Duration::from_millis(500))? {
            Some((n, from)) => {
                echoed = Some((buf[..n].to_vec(), from));
                Ok(())
            }
            None => Err(ClientIoError::TimedOut("echo")),
        }
    });
    let (data, from) = echoed.unwrap();
    assert_eq!(from, sfu);
    assert_eq!(data, b"media through the relay");
    assert_eq!(other_seen.load(Ordering::SeqCst), 0, "nothing reached it");
    relay.shutdown();
    relay.join();
}

#[test]
fn an_entry_covering_the_turn_listener_is_refused_at_start() {
    let e = Relay::builder()
        .listen("127.0.0.1:3478".parse().unwrap())
        .user("alice", "s3cret")
        .allow_local_peer(LocalPeer::parse("127.0.0.1:3000-4000").unwrap())
        .start()
        .unwrap_err();
    assert!(
        matches!(
            e,
            StartError::Settings {
                field: "turn.policy.local",
                ..
            }
        ),
        "{e}"
    );
}
