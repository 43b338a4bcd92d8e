//! TCP allocations (RFC 6062) in the core, over the fake host: the Allocate
//! checks, Connect and its deferred answer (success with CONNECTION-ID, 446,
//! 447, 403), a peer's connection offered with ConnectionAttempt (or refused
//! without a permission), ConnectionBind and its refusals, the bind timeout,
//! and the bytes of data connections in the usage record.

mod common;

use common::*;
use stun_core::attributes::*;
use stun_core::{Class, Message, Method};
use turn_core::server::{
    ConnectionId, ConnectionTraffic, EndReason, Event, Outgoing, Refusal, RelayHandle, Server, Slot,
};
use turn_core::{Instant, Transport};

const T0: Instant = Instant::from_secs(100);
/// Room for 8 peer connections.
type Tcp = Srv<8>;

fn tcp_server() -> (Tcp, FakeHost) {
    let s = Server::with_tcp(config(), vec![Slot::EMPTY; 16], [42; 32]).unwrap();
    let mut h = FakeHost::new();
    h.tcp_relays = true;
    (s, h)
}

fn allocate_tcp(c: &mut Client, s: &mut Tcp, h: &mut FakeHost) -> Reply {
    c.request(s, h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::TCP).unwrap()
    })
}

/// alice on TCP, holding a TCP allocation; its relay's local address.
fn allocated(s: &mut Tcp, h: &mut FakeHost) -> (Client, std::net::SocketAddr) {
    let mut c = Client::with_transport("198.51.100.7:40000", "alice", "wonderland", Transport::Tcp);
    let r = allocate_tcp(&mut c, s, h);
    assert_success(&r, &c);
    let local = *h.listening.iter().next().expect("a TCP relay listens");
    (c, local)
}

fn connect(c: &mut Client, s: &mut Tcp, h: &mut FakeHost, peer: &str) -> Option<Reply> {
    let p = addr(peer);
    let tid = c.tid();
    let bytes = c.build(
        Method::CONNECT,
        tid,
        &move |b| b.add(&XorPeerAddress(p)).unwrap(),
        true,
    );
    c.exchange(s, h, T0, &bytes)
}

fn connection_id(msg: &Message<&[u8]>) -> ConnectionId {
    ConnectionId(
        msg.attribute::<stun_core::attributes::ConnectionId>()
            .unwrap()
            .unwrap()
            .0,
    )
}

/// The answer to a Connect once the host reports.
fn report(
    s: &mut Tcp,
    h: &mut FakeHost,
    id: ConnectionId,
    ok: bool,
) -> Option<(turn_core::FiveTuple, Vec<u8>)> {
    let mut out = vec![0u8; 1500];
    match s.peer_connected(T0, h, id, ok, &mut out) {
        Outgoing::Client { tuple, bytes, .. } => Some((tuple, bytes.to_vec())),
        _ => None,
    }
}

fn bind_request(c: &mut Client, id: ConnectionId) -> Vec<u8> {
    let tid = c.tid();
    c.build(
        Method::CONNECTION_BIND,
        tid,
        &move |b| b.add(&stun_core::attributes::ConnectionId(id.0)).unwrap(),
        true,
    )
}

/// A new data connection of alice's, with the nonce she holds.
fn data_client(c: &Client, port: u16) -> Client {
    let mut d = Client::with_transport(
        &format!("198.51.100.7:{port}"),
        "alice",
        "wonderland",
        Transport::Tcp,
    );
    d.nonce = c.nonce.clone();
    d
}

#[test]
fn a_tcp_allocation_listens_on_its_relayed_address() {
    let (mut s, mut h) = tcp_server();
    let (_c, local) = allocated(&mut s, &mut h);
    assert!(h.listening.contains(&local));
    assert!(s.allocations().next().unwrap().is_tcp());
}

#[test]
fn a_tcp_allocation_is_refused_where_rfc_6062_says() {
    let (mut s, mut h) = tcp_server();
    // Over UDP: 400.
    let mut u = Client::new("198.51.100.7:40000", "alice", "wonderland");
    let r = allocate_tcp(&mut u, &mut s, &mut h);
    assert_eq!(r.code(), Some(400));
    // With EVEN-PORT: 400.
    let mut c = Client::with_transport("198.51.100.7:40001", "alice", "wonderland", Transport::Tcp);
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::TCP).unwrap();
        b.add(&EvenPort {
            reserve_next: false,
        })
        .unwrap();
    });
    assert_eq!(r.code(), Some(400));
    assert!(h.listening.is_empty());
    // A host without TCP relays: 442, and nothing held.
    h.tcp_relays = false;
    let r = allocate_tcp(&mut c, &mut s, &mut h);
    assert_eq!(r.code(), Some(442));
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(h.total(), 0, "the quota is given back");
}

#[test]
fn connect_is_answered_when_the_host_reports() {
    let (mut s, mut h) = tcp_server();
    let (mut c, local) = allocated(&mut s, &mut h);
    // No permission needed; the answer waits for the host.
    assert!(connect(&mut c, &mut s, &mut h, "8.8.8.8:80").is_none());
    let (id, _, from, peer, deadline) = h.connects[0];
    assert_eq!(from, local);
    assert_eq!(peer, addr("8.8.8.8:80"));
    assert_eq!(
        deadline,
        T0.plus_secs(turn_core::server::CONNECT_TIMEOUT_SECS)
    );
    // A second Connect to the same peer meanwhile: 446.
    assert_eq!(
        connect(&mut c, &mut s, &mut h, "8.8.8.8:80")
            .unwrap()
            .code(),
        Some(446)
    );
    let (to, bytes) = report(&mut s, &mut h, id, true).expect("an answer");
    assert_eq!(to, c.tuple);
    let m = Message::new_checked(&bytes[..]).unwrap();
    assert_eq!((m.method(), m.class()), (Method::CONNECT, Class::Success));
    m.verify_integrity(&c.key())
        .expect("signed with the request's key");
    m.verify_fingerprint().unwrap();
    assert_eq!(connection_id(&m), id);
    assert_eq!(s.peer_connection_count(), 1);
    // Reported twice: nothing more.
    assert!(report(&mut s, &mut h, id, true).is_none());
}

#[test]
fn a_failed_connect_is_447_and_frees_its_place() {
    let (mut s, mut h) = tcp_server();
    let (mut c, _) = allocated(&mut s, &mut h);
    assert!(connect(&mut c, &mut s, &mut h, "8.8.8.8:80").is_none());
    let id = h.connects[0].0;
    let (_, bytes) = report(&mut s, &mut h, id, false).unwrap();
    let m = Message::new_checked(&bytes[..]).unwrap();
    assert_eq!(m.attribute::<ErrorCode>().unwrap().unwrap().code, 447);
    m.verify_integrity(&c.key()).unwrap();
    assert_eq!(s.peer_connection_count(), 0);
    assert_eq!(
        s.counters()
            .refusals
            .get(Refusal::ConnectionFailed(addr("8.8.8.8:80")).reason()),
        1
    );
    // A host that cannot even start: 447 at once.
    h.connect_fails = true;
    let r = connect(&mut c, &mut s, &mut h, "8.8.8.8:80").unwrap();
    assert_eq!(r.code(), Some(447));
    assert_eq!(s.peer_connection_count(), 0);
}

#[test]
fn connect_to_a_forbidden_peer_is_403_and_to_nothing() {
    let (mut s, mut h) = tcp_server();
    let (mut c, _) = allocated(&mut s, &mut h);
    for peer in [
        "127.0.0.1:22",
        "10.1.2.3:445",
        "10.0.0.5:3478",
        "169.254.169.254:80",
    ] {
        let r = connect(&mut c, &mut s, &mut h, peer).unwrap();
        assert_eq!(r.code(), Some(403), "{peer}");
    }
    assert!(h.connects.is_empty());
}

#[test]
fn connect_and_channel_bind_belong_to_their_allocation_kinds() {
    let (mut s, mut h) = tcp_server();
    // Connect on a UDP allocation: 400.
    let mut u = Client::new("198.51.100.7:40000", "alice", "wonderland");
    assert_success(&u.allocate(&mut s, &mut h, T0), &u);
    assert_eq!(
        connect(&mut u, &mut s, &mut h, "8.8.8.8:80")
            .unwrap()
            .code(),
        Some(400)
    );
    // ChannelBind on a TCP allocation: 400; a Send indication: dropped.
    let (mut c, _) = allocated(&mut s, &mut h);
    assert_success(&c.permit(&mut s, &mut h, T0, "8.8.8.8:1"), &c);
    assert_eq!(
        c.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:1").code(),
        Some(400)
    );
    let send = c.send_indication("8.8.8.8:1", b"x");
    let (answer, _) = c.send_raw(&mut s, &mut h, T0, &send);
    assert!(matches!(
        answer,
        Answer::Nothing(Some(Refusal::TcpAllocation))
    ));
    // Without a connection held, Connect names the allocation: 437.
    let mut stranger =
        Client::with_transport("198.51.100.9:1", "alice", "wonderland", Transport::Tcp);
    let r = stranger.request(&mut s, &mut h, T0, Method::CONNECT, &|b| {
        b.add(&XorPeerAddress(addr("8.8.8.8:80"))).unwrap()
    });
    assert_eq!(r.code(), Some(437));
}

#[test]
fn connection_bind_joins_a_new_connection_to_the_peer_connection() {
    let (mut s, mut h) = tcp_server();
    let (mut c, _) = allocated(&mut s, &mut h);
    assert!(connect(&mut c, &mut s, &mut h, "8.8.8.8:80").is_none());
    let id = h.connects[0].0;
    report(&mut s, &mut h, id, true).unwrap();

    // On the control connection: 400.
    let on_control = bind_request(&mut c, id);
    assert_eq!(
        c.exchange(&mut s, &mut h, T0, &on_control).unwrap().code(),
        Some(400)
    );
    // Over UDP: 400.
    let mut udp = Client::new("198.51.100.7:40500", "alice", "wonderland");
    udp.nonce = c.nonce.clone();
    let b = bind_request(&mut udp, id);
    assert_eq!(
        udp.exchange(&mut s, &mut h, T0, &b).unwrap().code(),
        Some(400)
    );
    // Another user: 441.
    let mut bob = Client::with_transport("198.51.100.7:40600", "bob", "builder", Transport::Tcp);
    bob.nonce = c.nonce.clone();
    let b = bind_request(&mut bob, id);
    let r = bob.exchange(&mut s, &mut h, T0, &b).unwrap();
    assert_eq!(r.code(), Some(441));
    // An unknown id: 400.
    let mut d = data_client(&c, 40001);
    let b = bind_request(&mut d, ConnectionId(id.0 ^ 1));
    assert_eq!(
        d.exchange(&mut s, &mut h, T0, &b).unwrap().code(),
        Some(400)
    );
    assert_eq!(s.data_connection(&d.tuple), None);

    // alice's new connection: bound.
    let b = bind_request(&mut d, id);
    let r = d.exchange(&mut s, &mut h, T0, &b).unwrap();
    assert_success(&r, &d);
    assert_eq!(s.data_connection(&d.tuple), Some(id));
    // Bound once only.
    let mut e = data_client(&c, 40002);
    let b = bind_request(&mut e, id);
    assert_eq!(
        e.exchange(&mut s, &mut h, T0, &b).unwrap().code(),
        Some(400)
    );
}

#[test]
fn a_peer_connection_needs_a_permission_and_is_offered_with_connection_attempt() {
    let (mut s, mut h) = tcp_server();
    let (mut c, local) = allocated(&mut s, &mut h);
    let handle: RelayHandle = h.bound[&local];
    let mut out = vec![0u8; 1500];
    let peer = addr("8.8.8.8:5555");
    assert_eq!(
        s.peer_accepted(T0, &mut h, handle, peer, &mut out)
            .map(|(id, _)| id),
        Err(Refusal::NoPermission(peer.ip()))
    );
    assert_eq!(s.allocations().next().unwrap().traffic().peer_refused, 1);
    assert_success(&c.permit(&mut s, &mut h, T0, "8.8.8.8:0"), &c);
    let (id, answer) = s.peer_accepted(T0, &mut h, handle, peer, &mut out).unwrap();
    let Outgoing::Client { tuple, bytes, .. } = answer else {
        panic!("a ConnectionAttempt for the client");
    };
    assert_eq!(tuple, c.tuple);
    let m = Message::new_checked(bytes).unwrap();
    assert_eq!(
        (m.method(), m.class()),
        (Method::CONNECTION_ATTEMPT, Class::Indication)
    );
    assert_eq!(m.attribute::<XorPeerAddress>().unwrap().unwrap().0, peer);
    assert_eq!(connection_id(&m), id);
    // The same peer again while it is held: refused.
    let mut out2 = vec![0u8; 1500];
    assert_eq!(
        s.peer_accepted(T0, &mut h, handle, peer, &mut out2)
            .map(|(id, _)| id),
        Err(Refusal::ConnectionExists(peer))
    );
    // Bound by a new connection of alice's.
    let mut d = data_client(&c, 40001);
    let b = bind_request(&mut d, id);
    assert_success(&d.exchange(&mut s, &mut h, T0, &b).unwrap(), &d);
}

#[test]
fn a_connection_not_bound_in_30_s_is_closed() {
    let (mut s, mut h) = tcp_server();
    let (mut c, local) = allocated(&mut s, &mut h);
    assert_success(&c.permit(&mut s, &mut h, T0, "8.8.8.8:0"), &c);
    let handle = h.bound[&local];
    let mut out = vec![0u8; 1500];
    let (id, _) = s
        .peer_accepted(T0, &mut h, handle, addr("8.8.8.8:5555"), &mut out)
        .unwrap();
    s.handle_timeout(T0.plus_secs(29), &mut h);
    assert!(h.closed.is_empty());
    s.handle_timeout(T0.plus_secs(31), &mut h);
    assert_eq!(h.closed, vec![id]);
    assert_eq!(s.peer_connection_count(), 0);
    // Too late to bind.
    let mut d = data_client(&c, 40001);
    let b = bind_request(&mut d, id);
    let r = d.exchange(&mut s, &mut h, T0.plus_secs(31), &b);
    assert_eq!(r.map(|r| r.code()), Some(Some(400)));
}

#[test]
fn a_data_connections_bytes_join_the_usage_record() {
    let (mut s, mut h) = tcp_server();
    let (mut c, local) = allocated(&mut s, &mut h);
    while s.poll_event().is_some() {}
    assert_success(&c.permit(&mut s, &mut h, T0, "8.8.8.8:0"), &c);
    // One connection ends on its own, reported by the host.
    assert!(connect(&mut c, &mut s, &mut h, "8.8.8.8:80").is_none());
    let first = h.connects[0].0;
    report(&mut s, &mut h, first, true).unwrap();
    s.connection_ended(
        first,
        ConnectionTraffic {
            to_peer_bytes: 1000,
            from_peer_bytes: 20,
        },
    );
    assert_eq!(s.peer_connection_count(), 0);
    // One is still open when the allocation ends: the server closes it.
    let handle = h.bound[&local];
    let mut out = vec![0u8; 1500];
    let (second, _) = s
        .peer_accepted(T0, &mut h, handle, addr("8.8.8.8:5555"), &mut out)
        .unwrap();
    h.relayed.insert(
        second,
        ConnectionTraffic {
            to_peer_bytes: 5,
            from_peer_bytes: 300,
        },
    );
    let r = c.refresh(&mut s, &mut h, T0, 0);
    assert_success(&r, &c);
    assert_eq!(h.closed, vec![second]);
    assert!(h.listening.is_empty(), "the listener is closed");
    let ended = std::iter::from_fn(|| s.poll_event())
        .find_map(|e| match e {
            Event::Ended {
                traffic, reason, ..
            } => Some((traffic, reason)),
            _ => None,
        })
        .expect("a usage record");
    assert_eq!(ended.1, EndReason::Released);
    assert_eq!(
        (ended.0.to_peer_bytes, ended.0.from_peer_bytes),
        (1005, 320)
    );
    assert_eq!(s.counters().to_peer_bytes, 1005);
}

#[test]
fn connection_ids_carry_the_shard_and_the_limit_holds() {
    let mut cfg = config();
    cfg.peer_connections_per_allocation = 2;
    let mut s: Tcp = Server::with_tcp(cfg, vec![Slot::EMPTY; 16], [42; 32]).unwrap();
    s.set_shard(3);
    let mut h = FakeHost::new();
    h.tcp_relays = true;
    let (mut c, _) = allocated(&mut s, &mut h);
    assert!(connect(&mut c, &mut s, &mut h, "8.8.8.8:80").is_none());
    assert!(connect(&mut c, &mut s, &mut h, "8.8.4.4:80").is_none());
    assert_eq!(
        connect(&mut c, &mut s, &mut h, "1.1.1.1:80")
            .unwrap()
            .code(),
        Some(508)
    );
    for (id, ..) in &h.connects {
        assert_eq!(id.shard(), 3);
    }
    let id = h.connects[0].0;
    let mut d = data_client(&c, 40001);
    let b = bind_request(&mut d, id);
    assert_eq!(ConnectionId::of_bind_request(&b), Some(id));
    assert_eq!(
        ConnectionId::of_bind_request(&c.send_indication("8.8.8.8:1", b"x")),
        None
    );
}

#[test]
fn a_server_without_room_for_connections_serves_neither_method() {
    let mut s = server();
    let mut h = FakeHost::new();
    h.tcp_relays = true;
    let mut c = Client::with_transport("198.51.100.7:40000", "alice", "wonderland", Transport::Tcp);
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::TCP).unwrap()
    });
    assert_eq!(r.code(), Some(442));
    let r = c.request(&mut s, &mut h, T0, Method::CONNECT, &|b| {
        b.add(&XorPeerAddress(addr("8.8.8.8:80"))).unwrap()
    });
    assert_eq!(r.code(), Some(400));
}

#[test]
fn tcp_allocations_turned_off_are_442() {
    let mut cfg = config();
    cfg.tcp_allocations = false;
    let mut s: Tcp = Server::with_tcp(cfg, vec![Slot::EMPTY; 16], [42; 32]).unwrap();
    let mut h = FakeHost::new();
    h.tcp_relays = true;
    let mut c = Client::with_transport("198.51.100.7:40000", "alice", "wonderland", Transport::Tcp);
    assert_eq!(allocate_tcp(&mut c, &mut s, &mut h).code(), Some(442));
    assert!(h.listening.is_empty());
    // UDP allocations are untouched.
    let mut u = Client::new("198.51.100.7:40001", "alice", "wonderland");
    assert_success(&u.allocate(&mut s, &mut h, T0), &u);
}
