//! The std adapter as a library: a relay started with the builder on loopback,
//! driven by the blocking client over UDP and TCP, with its events, stats,
//! credential stores, settings refused by name, a redirect when full, and a
//! clean stop.
#![cfg(feature = "std")]

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant as StdInstant};

use causeway_testkit::wait::{self, PATIENCE};
use turn_core::Transport;
use turn_core::adapters::std::client::{ClientIoError, TurnClient};
use turn_core::adapters::std::{Credentials, Relay, RelayEvent, StartError, Users};
use turn_core::client::{ClientConfig, Failure};
use turn_core::credentials::{Algorithm, Key};
use turn_core::server::policy::Cidr;
use turn_core::server::{Event, Refusal};

/// A client request's limit (it returns as soon as it is answered).
const T: Duration = PATIENCE;

/// A UDP echo peer on 127.0.0.2 (another address than the relay's own).
fn echo_peer() -> SocketAddr {
    causeway_testkit::tools::udp_echo_peer("127.0.0.2")
}

fn loopback_relay() -> turn_core::adapters::std::RelayBuilder {
    Relay::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .realm("example")
        .threads(2)
        .total(64)
        .allow_peer(Cidr::parse("127.0.0.2/32").unwrap())
}

fn next_event(events: &Receiver<RelayEvent>, want: impl Fn(&RelayEvent) -> bool) -> RelayEvent {
    let end = StdInstant::now() + T;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(StdInstant::now()) {
        match events.recv_timeout(left) {
            Ok(e) if want(&e) => return e,
            Ok(e) => seen.push(e),
            Err(_) => break,
        }
    }
    panic!("no such event within {T:?}; seen: {seen:#?}");
}

/// Sends `payload` to the echo `peer` through the relay until it comes back
/// (UDP may lose either way).
fn echo_through(turn: &mut TurnClient, peer: SocketAddr, payload: &[u8]) {
    let mut buf = [0u8; 2048];
    let start = StdInstant::now();
    while start.elapsed() < PATIENCE {
        turn.send_to(peer, payload).unwrap();
        if let Some((n, from)) = turn
            .recv_from(&mut buf, Duration::from_millis(500))
            .unwrap()
        {
            assert_eq!((from, &buf[..n]), (peer, payload));
            return;
        }
    }
    panic!(
        "nothing came back through the relay from {peer} within {PATIENCE:?}: {:?}",
        String::from_utf8_lossy(payload)
    );
}

#[test]
fn relays_over_udp_and_tcp_with_events_and_stats() {
    let relay = loopback_relay().user("alice", "s3cret").start().unwrap();
    let events = relay.take_events().unwrap();
    assert!(relay.take_events().is_none(), "taken once");
    let server = relay.local_addrs()[0];
    let peer = echo_peer();

    let mut udp =
        TurnClient::connect(ClientConfig::new(server, "alice", "s3cret").unwrap()).unwrap();
    let a = udp.allocate(T).unwrap();
    assert_eq!(a.relayed.ip(), server.ip());
    assert_eq!(a.redirected, None);
    udp.bind_channel(peer, T).unwrap();
    echo_through(&mut udp, peer, b"over a channel");

    let mut cfg = ClientConfig::new(server, "alice", "s3cret").unwrap();
    cfg.transport = Transport::Tcp;
    let mut tcp = TurnClient::connect(cfg).unwrap();
    tcp.allocate(T).unwrap();
    tcp.create_permission(peer.ip(), T).unwrap();
    echo_through(&mut tcp, peer, b"in a Send indication over TCP");

    match next_event(&events, |e| matches!(e, RelayEvent::Allocation { .. })) {
        RelayEvent::Allocation {
            event: Event::Allocated { username, .. },
            ..
        } => assert_eq!(username.as_str(), "alice"),
        other => panic!("{other:?}"),
    }

    // Each worker publishes its stats about once a second: wait for all of it.
    let mut stats = relay.stats();
    let published = wait::holds(PATIENCE, || {
        stats = relay.stats();
        stats.in_use() == 2
            && stats.totals().to_peer_packets >= 2
            && stats.workers.iter().map(|w| w.connections).sum::<usize>() == 1
    });
    assert!(published, "{stats:#?}");
    assert_eq!(stats.workers.len(), 2);
    assert_eq!(
        stats.users().get("alice").map(|u| u.allocations),
        Some(2),
        "{stats:#?}"
    );
    assert!(
        stats
            .allocations
            .iter()
            .any(|a| a.tuple.transport == Transport::Tcp)
    );
    assert_eq!(
        stats.workers.iter().map(|w| w.connections).sum::<usize>(),
        1,
        "one TCP client"
    );

    // Refreshed now: the server grants what RFC 8656 lets it (no less than its
    // default, 600 s; no more than its maximum, 3600 s).
    assert_eq!(
        udp.refresh(Duration::from_secs(300), T).unwrap(),
        Duration::from_secs(600),
        "a shorter lifetime asked for gets the default"
    );
    assert_eq!(
        udp.refresh(Duration::from_secs(1200), T).unwrap(),
        Duration::from_secs(1200)
    );
    assert_eq!(
        udp.refresh(Duration::from_secs(86_400), T).unwrap(),
        Duration::from_secs(3600),
        "capped by the server's maximum"
    );
    echo_through(&mut udp, peer, b"after the refreshes");

    udp.deallocate(T).unwrap();
    drop(tcp);
    let ended = next_event(&events, |e| {
        matches!(
            e,
            RelayEvent::Allocation {
                event: Event::Ended { .. },
                ..
            }
        )
    });
    assert!(matches!(ended, RelayEvent::Allocation { .. }));
    relay.shutdown();
    relay.join();
}

#[test]
fn a_bad_password_is_refused_and_reported_with_the_user() {
    let relay = loopback_relay().user("alice", "s3cret").start().unwrap();
    let events = relay.take_events().unwrap();
    let server = relay.local_addrs()[0];
    let mut turn =
        TurnClient::connect(ClientConfig::new(server, "alice", "wrong").unwrap()).unwrap();
    match turn.allocate(T) {
        Err(ClientIoError::Failed { failure, .. }) => {
            assert_eq!(failure, Failure::Code(401))
        }
        other => panic!("{other:?}"),
    }
    match next_event(&events, |e| matches!(e, RelayEvent::Refused { .. })) {
        RelayEvent::Refused {
            username, refusal, ..
        } => {
            assert_eq!(username.as_deref(), Some("alice"));
            assert_eq!(refusal, Refusal::IntegrityFailure);
        }
        other => panic!("{other:?}"),
    }
}

/// A store of the embedder's own: every name is accepted with its reverse as
/// the password.
struct Mirror;

impl Credentials for Mirror {
    fn key(&self, username: &str, realm: &str, algorithm: Algorithm) -> Option<Key> {
        let password: String = username.chars().rev().collect();
        Some(Key::derive(algorithm, username, realm, &password))
    }
}

#[test]
fn a_credential_store_of_ones_own_and_shared_secrets_beside_it() {
    let relay = loopback_relay()
        .credentials(Mirror)
        .shared_secret("meeting-secret")
        .start()
        .unwrap();
    let server = relay.local_addrs()[0];
    let mut mirror = TurnClient::connect(ClientConfig::new(server, "bob", "bob").unwrap()).unwrap();
    mirror.allocate(T).unwrap();
    let mut abc = TurnClient::connect(ClientConfig::new(server, "abc", "cba").unwrap()).unwrap();
    abc.allocate(T).unwrap();

    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let user = format!("{expiry}:guest");
    let pass = turn_core::credentials::SharedSecret::new(b"meeting-secret").password(&user);
    let mut guest =
        TurnClient::connect(ClientConfig::new(server, &user, pass.as_str()).unwrap()).unwrap();
    guest.allocate(T).unwrap();
}

#[test]
fn settings_that_cannot_work_are_refused_by_name() {
    let field = |r: Result<Relay, StartError>| match r {
        Err(StartError::Settings { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(Relay::builder().realm("").start()), "turn.realm");
    assert_eq!(
        field(Relay::builder().shared_secret(&"x".repeat(200)).start()),
        "turn.shared_secrets"
    );
    assert_eq!(
        field(
            Relay::builder()
                .shared_secrets(["a", "b", "c", "d", "e"])
                .start()
        ),
        "turn.shared_secrets"
    );
    assert_eq!(
        field(Relay::builder().credentials(Mirror).user("a", "b").start()),
        "user"
    );
    assert_eq!(
        field(
            Relay::builder()
                .listen("0.0.0.0:0".parse().unwrap())
                .user("a", "b")
                .start()
        ),
        "turn.relay_v4"
    );
    // A taken port names the address.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    match Relay::builder().listen(busy_addr).user("a", "b").start() {
        Err(StartError::Bind { addr, .. }) => assert_eq!(addr, busy_addr),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_full_relay_redirects_and_the_client_follows() {
    let spare = loopback_relay().user("alice", "s3cret").start().unwrap();
    let full = loopback_relay()
        .user("alice", "s3cret")
        .threads(1)
        .total(1)
        .alternate_server(spare.local_addrs()[0])
        .start()
        .unwrap();
    let server = full.local_addrs()[0];
    let mut first =
        TurnClient::connect(ClientConfig::new(server, "alice", "s3cret").unwrap()).unwrap();
    assert_eq!(first.allocate(T).unwrap().redirected, None);
    let mut second =
        TurnClient::connect(ClientConfig::new(server, "alice", "s3cret").unwrap()).unwrap();
    let a = second.allocate(T).unwrap();
    assert_eq!(a.redirected, Some(spare.local_addrs()[0]));
    assert_eq!(second.server(), spare.local_addrs()[0]);
    let peer = echo_peer();
    second.bind_channel(peer, T).unwrap();
    echo_through(&mut second, peer, b"through the alternate");
}

#[test]
fn dropping_the_relay_stops_it_and_frees_its_ports() {
    let relay = loopback_relay().user("alice", "s3cret").start().unwrap();
    let addr = relay.local_addrs()[0];
    let stopper = relay.stopper();
    stopper.stop();
    drop(relay);
    // Its listeners are closed: the address can be bound again.
    let again = Relay::builder()
        .listen(addr)
        .user("alice", "s3cret")
        .threads(1)
        .total(4)
        .start()
        .unwrap();
    assert_eq!(again.local_addrs(), &[addr]);
}

#[test]
fn users_answer_for_their_realm_only() {
    let mut users = Users::new("example");
    users.insert("alice", "s3cret");
    assert!(users.key("alice", "example", Algorithm::Sha256).is_some());
    assert!(users.key("alice", "other", Algorithm::Sha256).is_none());
}

#[test]
fn a_reload_changes_credentials_and_keeps_allocations() {
    let relay = loopback_relay().user("alice", "first").start().unwrap();
    let server = relay.local_addrs()[0];
    let peer = echo_peer();
    let mut a = TurnClient::connect(ClientConfig::new(server, "alice", "first").unwrap()).unwrap();
    a.allocate(T).unwrap();
    a.bind_channel(peer, T).unwrap();
    assert!(relay.is_ready());
    // A worker that has not gone round its loop for 3 s is not alive: poll.
    assert!(wait::holds(PATIENCE, || relay.is_healthy()));

    // The same listeners, a new password and a shared secret.
    let next = |listen: SocketAddr| {
        Relay::builder()
            .listen(listen)
            .realm("example")
            .threads(2)
            .total(64)
            .allow_peer(Cidr::parse("127.0.0.2/32").unwrap())
            .user("alice", "second")
            .shared_secret("rotated")
    };
    // Changing a listener needs a restart: refused, nothing changed.
    match relay.reload(next("127.0.0.1:1".parse().unwrap())) {
        Err(StartError::Settings { field, .. }) => assert_eq!(field, "listen"),
        other => panic!("{other:?}"),
    }
    // Port 0, as it was asked for at start, is the port it has.
    relay.reload(next("127.0.0.1:0".parse().unwrap())).unwrap();
    echo_through(&mut a, peer, b"the allocation made before flows on");
    let mut old =
        TurnClient::connect(ClientConfig::new(server, "alice", "first").unwrap()).unwrap();
    assert!(matches!(
        old.allocate(T),
        Err(ClientIoError::Failed {
            failure: Failure::Code(401),
            ..
        })
    ));
    let mut new =
        TurnClient::connect(ClientConfig::new(server, "alice", "second").unwrap()).unwrap();
    new.allocate(T).unwrap();
}

#[test]
fn a_drain_turns_new_clients_away_and_ends_when_the_last_allocation_does() {
    let relay = loopback_relay().user("alice", "pw").start().unwrap();
    let server = relay.local_addrs()[0];
    let peer = echo_peer();
    let mut a = TurnClient::connect(ClientConfig::new(server, "alice", "pw").unwrap()).unwrap();
    a.allocate(T).unwrap();
    a.bind_channel(peer, T).unwrap();
    assert!(
        wait::holds(PATIENCE, || relay.stats().in_use() == 1),
        "published in the stats: {:?}",
        relay.stats()
    );

    let drain_started = StdInstant::now();
    relay.drain(Duration::from_secs(600));
    assert!(relay.is_draining() && !relay.is_ready());
    let mut b = TurnClient::connect(ClientConfig::new(server, "alice", "pw").unwrap()).unwrap();
    match b.allocate(T) {
        // The 508 says the server is draining, not full.
        Err(ClientIoError::Failed { failure, .. }) => assert_eq!(failure, Failure::Draining),
        other => panic!("{other:?}"),
    }
    echo_through(&mut a, peer, b"still relayed while draining");
    // A drain is not called over in its first 2 s, while stats catch up: past
    // them, only the allocation left keeps it going.
    let past_grace = Duration::from_millis(2500);
    if let Some(rest) = past_grace.checked_sub(drain_started.elapsed()) {
        std::thread::sleep(rest);
    }
    assert!(!relay.drained(), "an allocation is left");
    a.deallocate(T).unwrap();
    assert!(
        wait::holds(PATIENCE, || relay.drained()),
        "{:?}",
        relay.stats()
    );
}

#[test]
fn every_own_address_is_refused_as_a_peer_however_many_the_host_has() {
    // A Kubernetes node with IPVS holds every ClusterIP on one interface: far
    // more own addresses than the policy's fixed list. Each stays refused
    // (including the last) while the allow list covers the range they are in.
    let own: Vec<std::net::IpAddr> = (1..=3 * turn_core::server::policy::OWN_MAX as u8)
        .map(|i| std::net::IpAddr::from([10, 96, 0, i]))
        .collect();
    let mut settings = turn_core::adapters::std::Settings {
        own_addresses: own.clone(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Default::default()
    };
    settings
        .turn
        .policy
        .allow
        .push(Cidr::parse("10.0.0.0/8").unwrap())
        .unwrap();
    let relay = Relay::with_settings(settings)
        .realm("example")
        .threads(1)
        .total(4)
        .user("alice", "s3cret")
        .start()
        .unwrap();
    let server = relay.local_addrs()[0];
    let mut turn =
        TurnClient::connect(ClientConfig::new(server, "alice", "s3cret").unwrap()).unwrap();
    turn.allocate(T).unwrap();
    // The meeting server's range is allowed...
    turn.create_permission("10.1.2.3".parse().unwrap(), T)
        .unwrap();
    // ...none of the host's own addresses, the first and the last alike.
    for ip in [own[0], own[own.len() - 1]] {
        match turn.create_permission(ip, T) {
            Err(ClientIoError::Failed { failure, .. }) => {
                assert_eq!(failure, Failure::Code(403), "{ip}")
            }
            other => panic!("{ip}: {other:?}"),
        }
    }
}

#[test]
fn on_a_wildcard_listener_an_allocation_names_the_address_its_client_reached() {
    let relay = Relay::builder()
        .listen("0.0.0.0:0".parse().unwrap())
        .relay_ip("127.0.0.1".parse().unwrap())
        .realm("example")
        .threads(1)
        .total(8)
        .user("alice", "pw")
        .start()
        .unwrap();
    let port = relay.local_addrs()[0].port();
    let reached: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut cfg = ClientConfig::new(reached, "alice", "pw").unwrap();
        cfg.transport = transport;
        let mut turn = TurnClient::connect(cfg).unwrap();
        // Answered: the reply found its way out of the wildcard socket.
        turn.allocate(T).unwrap();
        let mut servers = Vec::new();
        assert!(
            wait::holds(PATIENCE, || {
                servers = relay
                    .stats()
                    .allocations
                    .iter()
                    .filter(|a| a.tuple.transport == transport)
                    .map(|a| a.tuple.server)
                    .collect();
                !servers.is_empty()
            }),
            "{transport:?}: published"
        );
        assert_eq!(servers, [reached], "{transport:?}");
    }
}
