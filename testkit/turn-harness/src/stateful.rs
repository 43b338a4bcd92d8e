//! A stateful harness for the TURN server: the input is read as a sequence of
//! operations — authenticated requests (the harness knows the passwords and
//! computes MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 itself), requests with
//! wrong credentials, raw packets, data from clients and from peers, closed TCP
//! connections, time steps and timer runs — and after each one the invariants are
//! checked:
//!
//! - nothing panics, and every reply parses with a valid FINGERPRINT;
//! - quotas (per user, in total) are never exceeded, and the host's counts, relay
//!   sockets and the server's allocations agree;
//! - nothing is relayed to a peer the policy denies or to one of the server's own
//!   addresses, except a live relayed address, and always from the relay socket the
//!   allocation holds;
//! - a packet that is not authenticated changes no state.
//!
//! The fuzz target `turn_server_stateful` runs it; turn-core's tests replay it on
//! random inputs and on the inputs kept under `fuzz/regressions/turn_stateful`.
//! The host is the tests' [`FakeHost`] (alice and bob, three allocations per
//! user and five in all).

use std::net::SocketAddr;

use crate::{Answer, FakeHost};
use stun_core::attributes::{
    AdditionalAddressFamily, AddressFamily, ChannelNumber, ConnectionId, Data, DontFragment,
    ErrorCode, EvenPort, Lifetime, Nonce, PasswordAlgorithm, PasswordAlgorithms, Realm,
    RequestedAddressFamily, RequestedTransport, ReservationToken, Username, XorPeerAddress,
    XorRelayedAddress,
};
use stun_core::credentials::{Algorithm, Key, SharedSecret};
use stun_core::{
    AttributeType, Class, Message, MessageBuilder, MessageType, Method, TransactionId,
};
use turn_core::server::policy::{Cidr, Verdict};
use turn_core::server::{
    Config, Outgoing, PEER_HEADROOM, PeerBuffer, RelayFamily, RelayHandle, Server, Slot,
};
use turn_core::{FiveTuple, Instant, Transport, UnixTime};

const REALM: &str = "fuzz";
const SECRET: &[u8] = b"fuzz-shared-secret";
const PER_USER: usize = 3;
const TOTAL: usize = 5;
const T0: u64 = 1_764_000_000;

/// Peer TCP connections the server holds at most (RFC 6062).
const CONNECTIONS: usize = 4;
type FuzzServer = Server<Vec<Slot<4, 4>>, 4, 4, CONNECTIONS>;

/// A cursor over the fuzzer's bytes; past the end every read is 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// One of the harness's clients.
struct Peerless {
    tuple: FiveTuple,
    username: String,
    password: String,
    nonce: Option<String>,
}

/// The harness's world: the server, its host, clients, peers, time.
struct World {
    server: FuzzServer,
    host: FakeHost,
    cfg: Config,
    clients: Vec<Peerless>,
    peers: Vec<SocketAddr>,
    tokens: Vec<[u8; 8]>,
    /// Connections to peers the invariants have looked at.
    connects_checked: usize,
    now: Instant,
    out: Vec<u8>,
}

/// What the server state looks like, to compare before and after a packet that
/// must change nothing.
type Snapshot = (
    Vec<(FiveTuple, Instant, usize, usize, Vec<SocketAddr>)>,
    Vec<SocketAddr>,
    Vec<(String, usize)>,
    (usize, usize),
);

fn listener() -> SocketAddr {
    "10.0.0.6:3478".parse().unwrap()
}

impl World {
    fn new() -> World {
        let mut cfg = Config::new(REALM);
        cfg.relay_v4 = Some("10.0.0.5".parse().unwrap());
        cfg.relay_v6 = Some("fd00::5".parse().unwrap());
        cfg.external_v4 = Some("203.0.113.5".parse().unwrap());
        cfg.port_min = 24000;
        cfg.port_max = 24011;
        cfg.max_lifetime_secs = 1200;
        cfg.nonce_lifetime_secs = 300;
        cfg.unauth_burst = 8;
        cfg.unauth_per_sec = 2;
        cfg.unauth_global_per_sec = 50;
        cfg.legacy_channels = true;
        cfg.dont_fragment = true;
        cfg.shared_secrets
            .push(turn_core::server::Secret::from_slice(SECRET).unwrap())
            .unwrap();
        cfg.policy
            .allow
            .push(Cidr::parse("10.0.0.0/8").unwrap())
            .unwrap();
        cfg.policy
            .deny
            .push(Cidr::parse("10.66.0.0/16").unwrap())
            .unwrap();
        cfg.policy.add_own(listener().ip());
        // A media server beside the relay on its own address: that port alone
        // (the invariant below judges relayed packets by the same policy).
        cfg.policy
            .local
            .push(turn_core::server::policy::LocalPeer::parse("10.0.0.5:7882").unwrap())
            .unwrap();
        let server = Server::with_tcp(cfg.clone(), vec![Slot::EMPTY; 4], [5; 32]).unwrap();
        // The server adds its relay and advertised addresses to the policy.
        cfg.policy.add_own("10.0.0.5".parse().unwrap());
        cfg.policy.add_own("fd00::5".parse().unwrap());
        cfg.policy.add_own("203.0.113.5".parse().unwrap());
        let limited = format!("{}:guest", T0 + 3600);
        let limited_pw = SharedSecret::new(SECRET)
            .password(&limited)
            .as_str()
            .to_string();
        let client = |addr: &str, t, user: &str, pw: &str| Peerless {
            tuple: FiveTuple {
                client: addr.parse().unwrap(),
                server: listener(),
                transport: t,
                socket: 0,
            },
            username: user.into(),
            password: pw.into(),
            nonce: None,
        };
        let mut host = FakeHost::with_quotas(PER_USER, TOTAL);
        host.tcp_relays = true;
        World {
            server,
            host,
            clients: vec![
                client("198.51.100.1:1000", Transport::Udp, "alice", "wonderland"),
                client("198.51.100.1:1001", Transport::Udp, "alice", "wonderland"),
                client("198.51.100.2:1000", Transport::Udp, "bob", "builder"),
                client("198.51.100.3:1000", Transport::Tcp, "bob", "builder"),
                client("198.51.100.4:1000", Transport::Udp, &limited, &limited_pw),
                client("198.51.100.4:1001", Transport::Tcp, &limited, &limited_pw),
            ],
            peers: [
                "8.8.8.8:3478",
                "8.8.4.4:5000",
                "[2001:4860::8888]:5000",
                "10.1.2.3:40000",
                "10.66.1.1:1",
                "127.0.0.1:1",
                "169.254.169.254:80",
                "[::ffff:10.0.0.5]:24001",
                "10.0.0.6:3478",
                "10.0.0.5:3478",
                "203.0.113.5:24001",
                "10.0.0.5:24002",
                "[64:ff9b::a00:5]:24001",
                "[fd00::5]:24003",
                "10.0.0.5:7882",
                "[::ffff:10.0.0.5]:7882",
                "10.0.0.5:7883",
            ]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect(),
            tokens: Vec::new(),
            connects_checked: 0,
            cfg,
            now: Instant::from_secs(T0),
            out: vec![0u8; 1500],
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut allocs: Vec<_> = self
            .server
            .allocations()
            .map(|a| {
                (
                    *a.five_tuple(),
                    a.expires(),
                    a.permission_count(),
                    a.channel_count(),
                    a.relays().map(|r| r.local).collect(),
                )
            })
            .collect();
        allocs.sort_by_key(|a| a.0.client);
        let mut bound: Vec<_> = self.host.bound.keys().copied().collect();
        bound.sort();
        let mut users: Vec<_> = self
            .host
            .per_user
            .iter()
            .map(|(u, n)| (u.clone(), *n))
            .collect();
        users.sort();
        let connections = (
            self.server.peer_connection_count(),
            self.host.connects.len(),
        );
        (allocs, bound, users, connections)
    }

    /// Checks what the server answered for a client's packet.
    fn check_output(&mut self, o: Answer, packet: &[u8], key: Option<(&Key, bool)>) {
        match o {
            Answer::ToClient { bytes: reply, .. } if stun_core::classic::is_classic(packet) => {
                assert!(
                    reply[..2] == [1, 1] || reply[..2] == [1, 0x11],
                    "a classic answer"
                );
                assert_eq!(reply.get(4..20), packet.get(4..20));
            }
            Answer::ToClient {
                bytes: reply,
                refusal,
                ..
            } => {
                let m = Message::new_checked(&reply[..]).expect("replies parse");
                m.verify_fingerprint()
                    .expect("replies carry a valid FINGERPRINT");
                if let (Some((key, sha256)), None, Class::Success) = (key, refusal, m.class()) {
                    let ok = if sha256 {
                        m.verify_integrity_sha256(key.as_bytes())
                    } else {
                        m.verify_integrity(key.as_bytes())
                    };
                    ok.expect("a success is signed with the request's key");
                }
            }
            Answer::ToPeer {
                relay,
                from,
                peer,
                own_relay,
                data,
            } => {
                assert!(
                    data.is_empty() || packet.windows(data.len()).any(|w| w == data),
                    "relayed bytes the client did not send"
                );
                if self.host.bound.contains_key(&peer) {
                    assert_eq!(own_relay, Some(peer), "a live relay socket named as one");
                }
                if let Some(to) = own_relay {
                    assert_eq!(to.port(), peer.port(), "the relay socket {to} for {peer}");
                }
                assert_eq!(
                    self.host.bound.get(&from),
                    Some(&relay),
                    "relayed from the allocation's own relay socket"
                );
                let verdict = self.cfg.policy.check(peer, |_| false);
                assert!(
                    verdict == Verdict::Allow || self.host.bound.contains_key(&peer),
                    "relayed to {peer} ({verdict:?}), neither allowed nor a live relay"
                );
            }
            Answer::Nothing(_) => {}
        }
    }

    fn check_invariants(&mut self) {
        let total = self.host.total();
        assert!(total <= TOTAL, "total quota exceeded");
        assert!(
            self.host.per_user.values().all(|n| *n <= PER_USER),
            "user quota exceeded"
        );
        assert_eq!(
            total,
            self.server.allocation_count(),
            "quota counts and allocations differ"
        );
        assert!(self.server.peer_connection_count() <= CONNECTIONS);
        // Each connection asked for, once, as it was asked for.
        for (_, _, _, peer, _) in self.host.connects.iter().skip(self.connects_checked) {
            let verdict = self.cfg.policy.check(*peer, |_| false);
            assert!(
                verdict == Verdict::Allow || self.host.bound.contains_key(peer),
                "a connection to {peer} ({verdict:?}) asked for"
            );
        }
        self.connects_checked = self.host.connects.len();
        let relays: usize = self.server.allocations().map(|a| a.relays().count()).sum();
        assert_eq!(
            relays,
            self.host.bound.len(),
            "relay sockets and allocations differ"
        );
        for a in self.server.allocations() {
            for r in a.relays() {
                assert!(
                    self.host.bound.contains_key(&r.local),
                    "an allocation's relay is not bound"
                );
            }
        }
    }

    /// A packet that must not change anything.
    fn unauthenticated(&mut self, c: usize, packet: &[u8]) {
        let before = self.snapshot();
        let tuple = self.clients[c].tuple;
        let o = self.server.handle_client(
            self.now,
            UnixTime(self.now.as_secs()),
            &mut self.host,
            tuple,
            packet,
            &mut self.out,
        );
        let o = Answer::from(o);
        // A fresh nonce is what an unauthenticated request may earn.
        if let Some(reply) = o.to_client()
            && let Ok(m) = Message::new_checked(reply)
            && let Ok(Some(n)) = m.attribute::<Nonce>()
        {
            self.clients[c].nonce = Some(n.0.to_string());
        }
        // (Data on a live allocation needs no authentication, and changes none of
        // what is compared.)
        self.check_output(o, packet, None);
        assert_eq!(
            before,
            self.snapshot(),
            "an unauthenticated packet changed state"
        );
    }

    fn peer_addr(&self, u: &mut Input<'_>) -> SocketAddr {
        let mut pool = self.peers.clone();
        pool.extend(
            self.server
                .allocations()
                .flat_map(|a| a.relays().map(|r| r.advertised)),
        );
        pool.extend(self.host.bound.keys());
        pool[usize::from(u.byte()) % pool.len()]
    }

    /// An authenticated request (the nonce fetched first if the client has none).
    fn request(&mut self, u: &mut Input<'_>, wrong_password: bool) {
        let c = usize::from(u.byte()) % self.clients.len();
        if self.clients[c].nonce.is_none() {
            let first = build(Method::ALLOCATE, [1; 12], |b| {
                b.add(&RequestedTransport::UDP).unwrap();
            });
            self.unauthenticated(c, &first);
            if self.clients[c].nonce.is_none() {
                return;
            }
        }
        let method = [
            Method::ALLOCATE,
            Method::REFRESH,
            Method::CREATE_PERMISSION,
            Method::CHANNEL_BIND,
            Method::CONNECT,
            Method::CONNECTION_BIND,
        ][usize::from(u.byte() % 6)];
        let known_id = self.connection_id(u);
        let flags = u.byte();
        let sha256 = flags & 1 != 0;
        let algorithm = if flags & 2 != 0 {
            Algorithm::Sha256
        } else {
            Algorithm::Md5
        };
        let user = self.clients[c].username.clone();
        let pw = if wrong_password {
            "not-it".to_string()
        } else {
            self.clients[c].password.clone()
        };
        let key = Key::derive(algorithm, &user, REALM, &pw);
        let nonce = self.clients[c].nonce.clone().unwrap_or_default();
        let peers = [self.peer_addr(u), self.peer_addr(u), self.peer_addr(u)];
        let token = (!self.tokens.is_empty())
            .then(|| self.tokens[usize::from(u.byte()) % self.tokens.len()]);
        let (lifetime, number, extra) = (u.u32(), u.u16(), u.byte());
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&u.u32().to_be_bytes());
        let packet = build(method, tid, |b| {
            match method {
                Method::ALLOCATE => {
                    let proto = if extra & 1 == 0 { 17 } else { 6 };
                    b.add(&RequestedTransport { protocol: proto }).unwrap();
                    if extra & 2 != 0 {
                        b.add(&Lifetime(lifetime % 2000)).unwrap();
                    }
                    if extra & 4 != 0 {
                        b.add(&RequestedAddressFamily(AddressFamily::Ipv6)).unwrap();
                    }
                    if extra & 8 != 0 {
                        b.add(&AdditionalAddressFamily(AddressFamily::Ipv6))
                            .unwrap();
                    }
                    if extra & 16 != 0 {
                        b.add(&EvenPort {
                            reserve_next: extra & 32 != 0,
                        })
                        .unwrap();
                    }
                    if extra & 64 != 0
                        && let Some(t) = token
                    {
                        b.add(&ReservationToken(t)).unwrap();
                    }
                    if extra & 128 != 0 {
                        b.add(&DontFragment).unwrap();
                    }
                }
                Method::REFRESH => {
                    let l = match extra % 4 {
                        0 => 0,
                        1 => 600,
                        _ => lifetime % 4000,
                    };
                    b.add(&Lifetime(l)).unwrap();
                    if extra & 4 != 0 {
                        let f = if extra & 8 != 0 {
                            AddressFamily::Ipv6
                        } else {
                            AddressFamily::Ipv4
                        };
                        b.add(&RequestedAddressFamily(f)).unwrap();
                    }
                }
                Method::CREATE_PERMISSION => {
                    for p in peers.iter().take(1 + usize::from(extra % 3)) {
                        b.add(&XorPeerAddress(*p)).unwrap();
                    }
                }
                Method::CONNECT => b.add(&XorPeerAddress(peers[0])).unwrap(),
                Method::CONNECTION_BIND => {
                    if extra & 1 == 0 {
                        b.add(&ConnectionId(known_id)).unwrap();
                    }
                }
                _ => {
                    let ch = if extra & 1 == 0 {
                        0x4000 + number % 8
                    } else {
                        number
                    };
                    b.add(&ChannelNumber(ch)).unwrap();
                    b.add(&XorPeerAddress(peers[0])).unwrap();
                }
            }
            if extra & 0x30 == 0x30 && method != Method::ALLOCATE {
                // An unknown comprehension-required attribute: 420.
                b.add_raw(AttributeType::new(0x0033), &[1, 2, 3, 4])
                    .unwrap();
            }
            b.add(&Username(&user)).unwrap();
            b.add(&Realm(REALM)).unwrap();
            b.add(&Nonce(&nonce)).unwrap();
            if algorithm == Algorithm::Sha256 {
                b.add(&PasswordAlgorithm {
                    algorithm: 2,
                    params: &[],
                })
                .unwrap();
                let offer = [
                    PasswordAlgorithm {
                        algorithm: 2,
                        params: &[],
                    },
                    PasswordAlgorithm {
                        algorithm: 1,
                        params: &[],
                    },
                ];
                b.add(&PasswordAlgorithms::new(&offer)).unwrap();
            }
            if sha256 {
                b.add_message_integrity_sha256(key.as_bytes()).unwrap();
            } else {
                b.add_message_integrity(key.as_bytes()).unwrap();
            }
        });
        if wrong_password {
            self.unauthenticated(c, &packet);
            return;
        }
        let tuple = self.clients[c].tuple;
        let o = self.server.handle_client(
            self.now,
            UnixTime(self.now.as_secs()),
            &mut self.host,
            tuple,
            &packet,
            &mut self.out,
        );
        let o = Answer::from(o);
        if let Some(reply) = o.to_client()
            && let Ok(m) = Message::new_checked(reply)
        {
            if let Ok(Some(n)) = m.attribute::<Nonce>() {
                self.clients[c].nonce = Some(n.0.to_string());
            }
            if let Ok(Some(t)) = m.attribute::<ReservationToken>() {
                self.tokens.push(t.0);
            }
            if let Ok(Some(r)) = m.attribute::<XorRelayedAddress>() {
                self.peers.push(r.0);
                self.peers.truncate(64);
            }
            let _ = m.attribute::<ErrorCode>();
        }
        self.check_output(o, &packet, Some((&key, sha256)));
    }

    /// Data from a client: ChannelData or a Send indication.
    fn client_data(&mut self, u: &mut Input<'_>) {
        let c = usize::from(u.byte()) % self.clients.len();
        let peer = self.peer_addr(u);
        let kind = u.byte();
        let n = usize::from(u.byte() % 64);
        let payload = u.bytes(n);
        let packet = if kind & 1 == 0 {
            build_indication(peer, &payload, kind & 2 != 0)
        } else {
            let ch = 0x4000 + u16::from(kind >> 4) % 8;
            let mut p = ch.to_be_bytes().to_vec();
            // Sometimes a length that lies.
            let len = if kind & 2 != 0 {
                payload.len() as u16 + 7
            } else {
                payload.len() as u16
            };
            p.extend_from_slice(&len.to_be_bytes());
            p.extend_from_slice(&payload);
            p
        };
        let tuple = self.clients[c].tuple;
        let o = self.server.handle_client(
            self.now,
            UnixTime(self.now.as_secs()),
            &mut self.host,
            tuple,
            &packet,
            &mut self.out,
        );
        let o = Answer::from(o);
        self.check_output(o, &packet, None);
    }

    /// A datagram from a peer on one of the relay sockets (or a stale handle).
    fn peer_data(&mut self, u: &mut Input<'_>) {
        let peer = self.peer_addr(u);
        let handles: Vec<RelayHandle> = self.host.bound.values().copied().collect();
        let pick = u.byte();
        let handle = match handles.get(usize::from(pick) % (handles.len() + 1)) {
            Some(h) => *h,
            None => RelayHandle {
                slot: u32::from(pick % 5),
                generation: u32::from(pick >> 5),
                family: if pick & 1 == 0 {
                    RelayFamily::Ipv4
                } else {
                    RelayFamily::Ipv6
                },
            },
        };
        let n = usize::from(u.byte() % 96);
        let payload = u.bytes(n);
        let mut buf = vec![0u8; PEER_HEADROOM + payload.len() + 3];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(&payload);
        let before = self.snapshot();
        let mut datagram = PeerBuffer::new(&mut buf, payload.len()).expect("room around it");
        match self
            .server
            .handle_peer(self.now, &mut self.host, handle, peer, &mut datagram)
        {
            Outgoing::Client { tuple, bytes, .. } => {
                assert!(bytes.len() <= PEER_HEADROOM + payload.len() + 3);
                assert!(
                    self.server.has_allocation(&tuple),
                    "forwarded to a client without an allocation"
                );
            }
            Outgoing::Peer { .. } => panic!("a peer's datagram sent to a peer"),
            Outgoing::Nothing(_) => {}
        }
        assert_eq!(before, self.snapshot(), "a peer datagram changed state");
    }

    /// A connection id the host saw (or any number).
    fn connection_id(&self, u: &mut Input<'_>) -> u32 {
        let pick = u.byte();
        match self
            .host
            .connects
            .get(usize::from(pick) % (self.host.connects.len() + 1))
        {
            Some((id, ..)) => id.0,
            None => u32::from(pick) << 8 | u32::from(pick),
        }
    }

    /// RFC 6062's host reports: a connection to a peer done or failed, a
    /// peer's connection accepted on a TCP relay, a connection ended.
    fn tcp_event(&mut self, u: &mut Input<'_>) {
        let kind = u.byte();
        let id = turn_core::server::ConnectionId(self.connection_id(u));
        let mut out = vec![0u8; 1500];
        match kind % 3 {
            0 => {
                let ok = kind & 4 != 0;
                if let Outgoing::Client { tuple, bytes, .. } =
                    self.server
                        .peer_connected(self.now, &mut self.host, id, ok, &mut out)
                {
                    assert!(self.server.has_allocation(&tuple), "answered a stranger");
                    let m = Message::new_checked(bytes).expect("the Connect answer parses");
                    assert_eq!(m.method(), Method::CONNECT);
                    m.verify_fingerprint().expect("with a FINGERPRINT");
                }
            }
            1 => {
                let peer = self.peer_addr(u);
                let listening: Vec<SocketAddr> = self.host.listening.iter().copied().collect();
                let Some(local) = listening.get(usize::from(u.byte()) % (listening.len() + 1))
                else {
                    return;
                };
                let handle = self.host.bound[local];
                if let Ok((_, Outgoing::Client { tuple, bytes, .. })) =
                    self.server
                        .peer_accepted(self.now, &mut self.host, handle, peer, &mut out)
                {
                    assert!(self.server.has_allocation(&tuple), "offered to a stranger");
                    let m = Message::new_checked(bytes).expect("ConnectionAttempt parses");
                    assert_eq!(m.method(), Method::CONNECTION_ATTEMPT);
                    let verdict = self.cfg.policy.check(peer, |_| false);
                    assert!(
                        verdict == Verdict::Allow || self.host.bound.contains_key(&peer),
                        "a connection from {peer} ({verdict:?}) let in"
                    );
                }
            }
            _ => {
                let traffic = turn_core::server::ConnectionTraffic {
                    to_peer_bytes: u64::from(u.byte()),
                    from_peer_bytes: u64::from(u.byte()),
                };
                self.server.connection_ended(id, traffic);
            }
        }
    }

    fn step(&mut self, u: &mut Input<'_>) {
        match u.byte() % 10 {
            9 => self.tcp_event(u),
            0 | 1 => self.request(u, false),
            2 => self.request(u, true),
            3 => {
                let c = usize::from(u.byte()) % self.clients.len();
                let n = usize::from(u.byte());
                let raw = u.bytes(n);
                self.unauthenticated(c, &raw);
            }
            4 => self.client_data(u),
            5 => self.peer_data(u),
            6 => self.now = self.now.plus_secs(u64::from(u.byte()) * 5),
            7 => {
                if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.server.handle_timeout(self.now, &mut self.host);
                }
            }
            _ => {
                let c = usize::from(u.byte()) % self.clients.len();
                if self.clients[c].tuple.transport == Transport::Tcp {
                    let tuple = self.clients[c].tuple;
                    self.server.connection_closed(&tuple, &mut self.host);
                }
            }
        }
        self.check_invariants();
    }
}

fn build(method: Method, tid: [u8; 12], add: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId::new(tid),
    )
    .unwrap();
    add(&mut b);
    b.add_fingerprint().unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

fn build_indication(peer: SocketAddr, data: &[u8], dont_fragment: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::SEND, Class::Indication),
        TransactionId::new([7; 12]),
    )
    .unwrap();
    b.add(&XorPeerAddress(peer)).unwrap();
    b.add(&Data(data)).unwrap();
    if dont_fragment {
        b.add(&DontFragment).unwrap();
    }
    let n = b.finish();
    buf.truncate(n);
    buf
}

/// Runs the operations `data` encodes, checking the invariants after each.
pub fn run(data: &[u8]) {
    let mut w = World::new();
    let mut u = Input(data);
    while !u.done() {
        w.step(&mut u);
    }
    // At the end, time runs out for everything: the books balance at zero.
    w.now = w.now.plus_secs(100_000);
    w.server.handle_timeout(w.now, &mut w.host);
    w.check_invariants();
    assert_eq!(w.server.allocation_count(), 0);
    assert_eq!(w.server.peer_connection_count(), 0);
    assert!(w.host.bound.is_empty());
}
