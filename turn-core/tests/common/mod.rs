//! A deterministic harness for the TURN server: a fake host (credential database,
//! relay sockets, quotas, random numbers), a fake clock, and a client that speaks
//! just enough TURN to drive the server through every path.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use stun_core::attributes::*;
use stun_core::credentials::{LongTermKey, long_term_key};
use stun_core::{
    AttributeType, Class, Message, MessageBuilder, MessageType, Method, TransactionId,
};
use turn_core::server::{
    Config, Outgoing, PEER_HEADROOM, PEER_TAILROOM, PeerBuffer, RelayFamily, Server, Slot,
};
use turn_core::{FiveTuple, Instant, Transport, UnixTime};

pub use turn_harness::{Answer, FakeHost};

pub const REALM: &str = "TANDBERG";
pub const P: usize = 8;
pub const C: usize = 8;
pub type TestServer = Srv<0>;
/// A test server with room for `T` peer TCP connections (RFC 6062).
pub type Srv<const T: usize> = Server<Vec<Slot<P, C>>, P, C, T>;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn config() -> Config {
    let mut cfg = Config::new(REALM);
    cfg.relay_v4 = Some("10.0.0.5".parse().unwrap());
    cfg.external_v4 = Some("203.0.113.5".parse().unwrap());
    cfg.port_min = 24000;
    cfg.port_max = 29999;
    // Small budgets of unauthenticated answers, so tests can reach them.
    cfg.unauth_burst = 10;
    cfg.unauth_per_sec = 5;
    cfg.unauth_global_per_sec = 500;
    cfg
}

pub fn server_with(cfg: Config, slots: usize) -> TestServer {
    Server::new(cfg, vec![Slot::EMPTY; slots], [42; 32]).unwrap()
}

pub fn server() -> TestServer {
    server_with(config(), 16)
}

/// The listener all tests talk to.
pub const LISTENER: &str = "203.0.113.5:3478";

pub fn tuple(client: &str, transport: Transport) -> FiveTuple {
    FiveTuple {
        client: addr(client),
        server: addr(LISTENER),
        transport,
        socket: 0,
    }
}

/// What came back from the server for a request.
pub struct Reply {
    pub bytes: Vec<u8>,
    pub refusal: Option<turn_core::server::Refusal>,
}

impl Reply {
    pub fn msg(&self) -> Message<&[u8]> {
        Message::new_checked(&self.bytes[..]).expect("server replies parse")
    }

    pub fn class(&self) -> Class {
        self.msg().class()
    }

    pub fn code(&self) -> Option<u16> {
        self.msg().attribute::<ErrorCode>().unwrap().map(|e| e.code)
    }

    pub fn nonce(&self) -> Option<String> {
        self.msg()
            .attribute::<Nonce>()
            .unwrap()
            .map(|n| n.0.to_string())
    }
}

/// A TURN client for tests: holds credentials and the last nonce.
pub struct Client {
    pub tuple: FiveTuple,
    pub username: String,
    pub password: String,
    pub nonce: Option<String>,
    pub realm: String,
    /// The wall clock the server is given; by default the same seconds as the
    /// monotonic clock (tests of clock steps set it apart).
    pub wall: Option<UnixTime>,
    next_tid: u8,
}

/// An attribute to add to a request.
pub type Adder<'a> = &'a dyn Fn(&mut MessageBuilder<'_>);

impl Client {
    pub fn new(client: &str, username: &str, password: &str) -> Client {
        Client::with_transport(client, username, password, Transport::Udp)
    }

    pub fn with_transport(client: &str, username: &str, password: &str, t: Transport) -> Client {
        Client {
            tuple: tuple(client, t),
            username: username.into(),
            password: password.into(),
            nonce: None,
            realm: REALM.into(),
            wall: None,
            next_tid: 1,
        }
    }

    pub fn key(&self) -> LongTermKey {
        long_term_key(&self.username, &self.realm, &self.password)
    }

    pub fn tid(&mut self) -> TransactionId {
        self.next_tid = self.next_tid.wrapping_add(1);
        let mut id = [self.next_tid; 12];
        id[0] = self.tuple.client.port() as u8;
        TransactionId::new(id)
    }

    /// Encodes a request; with `auth`, adds USERNAME/REALM/NONCE/MESSAGE-INTEGRITY.
    pub fn build(&self, method: Method, tid: TransactionId, add: Adder<'_>, auth: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let mut b =
            MessageBuilder::new(&mut buf, MessageType::new(method, Class::Request), tid).unwrap();
        add(&mut b);
        if auth {
            b.add(&Username(&self.username)).unwrap();
            b.add(&Realm(&self.realm)).unwrap();
            b.add(&Nonce(self.nonce.as_deref().unwrap_or("none")))
                .unwrap();
            b.add_message_integrity(&self.key()).unwrap();
        }
        b.add_fingerprint().unwrap();
        let n = b.finish();
        buf.truncate(n);
        buf
    }

    /// Sends bytes and returns the reply, if any.
    pub fn send_raw<const T: usize>(
        &self,
        s: &mut Srv<T>,
        h: &mut FakeHost,
        now: Instant,
        bytes: &[u8],
    ) -> (Answer, Vec<u8>) {
        let mut out = vec![0u8; 1500];
        let wall = self.wall.unwrap_or(UnixTime(now.as_secs()));
        let o = Answer::from(s.handle_client(now, wall, h, self.tuple, bytes, &mut out));
        let reply = o.to_client().map(<[u8]>::to_vec).unwrap_or_default();
        (o, reply)
    }

    /// Sends an authenticated request (doing the 401 round first if no nonce is
    /// known, and retrying once on 438) and returns the final reply.
    pub fn request<const T: usize>(
        &mut self,
        s: &mut Srv<T>,
        h: &mut FakeHost,
        now: Instant,
        method: Method,
        add: Adder<'_>,
    ) -> Reply {
        if self.nonce.is_none() {
            let tid = self.tid();
            let r = self
                .exchange(s, h, now, &self.build(method, tid, add, false))
                .expect("challenge");
            assert_eq!(r.code(), Some(401), "first round must be 401");
            self.nonce = r.nonce();
        }
        let tid = self.tid();
        let r = self
            .exchange(s, h, now, &self.build(method, tid, add, true))
            .expect("reply");
        if r.code() == Some(438) {
            self.nonce = r.nonce();
            let tid = self.tid();
            return self
                .exchange(s, h, now, &self.build(method, tid, add, true))
                .expect("reply");
        }
        r
    }

    pub fn exchange<const T: usize>(
        &self,
        s: &mut Srv<T>,
        h: &mut FakeHost,
        now: Instant,
        bytes: &[u8],
    ) -> Option<Reply> {
        let (o, out) = self.send_raw(s, h, now, bytes);
        match o {
            Answer::ToClient { refusal, .. } => {
                let r = Reply {
                    bytes: out,
                    refusal,
                };
                let m = r.msg();
                m.verify_fingerprint()
                    .expect("every reply carries a valid FINGERPRINT");
                Some(r)
            }
            _ => None,
        }
    }

    pub fn allocate<const T: usize>(
        &mut self,
        s: &mut Srv<T>,
        h: &mut FakeHost,
        now: Instant,
    ) -> Reply {
        self.request(s, h, now, Method::ALLOCATE, &|b| {
            b.add(&RequestedTransport::UDP).unwrap()
        })
    }

    pub fn permit<const T: usize>(
        &mut self,
        s: &mut Srv<T>,
        h: &mut FakeHost,
        now: Instant,
        peer: &str,
    ) -> Reply {
        let p = addr(peer);
        self.request(s, h, now, Method::CREATE_PERMISSION, &move |b| {
            b.add(&XorPeerAddress(p)).unwrap()
        })
    }

    pub fn bind<const T: usize>(
        &mut self,
        s: &mut Srv<T>,
        h: &mut FakeHost,
        now: Instant,
        ch: u16,
        peer: &str,
    ) -> Reply {
        let p = addr(peer);
        self.request(s, h, now, Method::CHANNEL_BIND, &move |b| {
            b.add(&ChannelNumber(ch)).unwrap();
            b.add(&XorPeerAddress(p)).unwrap();
        })
    }

    pub fn refresh<const T: usize>(
        &mut self,
        s: &mut Srv<T>,
        h: &mut FakeHost,
        now: Instant,
        lifetime: u32,
    ) -> Reply {
        self.request(s, h, now, Method::REFRESH, &move |b| {
            b.add(&Lifetime(lifetime)).unwrap()
        })
    }

    /// A Send indication.
    pub fn send_indication(&self, peer: &str, data: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::SEND, Class::Indication),
            TransactionId::new([9; 12]),
        )
        .unwrap();
        b.add(&XorPeerAddress(addr(peer))).unwrap();
        b.add(&Data(data)).unwrap();
        let n = b.finish();
        buf.truncate(n);
        buf
    }
}

/// Checks a success reply's MESSAGE-INTEGRITY with the client's key.
pub fn assert_success(r: &Reply, c: &Client) {
    assert_eq!(
        r.class(),
        Class::Success,
        "expected success, got {:?} ({:?})",
        r.code(),
        r.refusal
    );
    r.msg()
        .verify_integrity(&c.key())
        .expect("success responses carry MESSAGE-INTEGRITY");
}

/// The relayed address an Allocate success advertised.
pub fn relayed(r: &Reply) -> SocketAddr {
    r.msg().attribute::<XorRelayedAddress>().unwrap().unwrap().0
}

/// Delivers a datagram from `peer` on the relay bound at `local`; returns what the
/// client receives.
pub fn from_peer<const T: usize>(
    s: &mut Srv<T>,
    h: &mut FakeHost,
    now: Instant,
    local: SocketAddr,
    peer: &str,
    data: &[u8],
) -> Option<(FiveTuple, Vec<u8>)> {
    let handle = *h.bound.get(&local).expect("relay bound");
    let mut buf = vec![0u8; PEER_HEADROOM + data.len() + PEER_TAILROOM];
    buf[PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(data);
    let mut datagram = PeerBuffer::new(&mut buf, data.len()).unwrap();
    match s.handle_peer(now, h, handle, addr(peer), &mut datagram) {
        Outgoing::Client { tuple, bytes, .. } => Some((tuple, bytes.to_vec())),
        Outgoing::Peer { .. } | Outgoing::Nothing(_) => None,
    }
}

/// The one relay socket bound in `h` for IPv4.
pub fn relay_local(h: &FakeHost) -> SocketAddr {
    *h.bound
        .iter()
        .find(|(a, handle)| a.is_ipv4() && handle.family == RelayFamily::Ipv4)
        .expect("an IPv4 relay is bound")
        .0
}

pub fn unknown_list(r: &Reply) -> Vec<AttributeType> {
    r.msg()
        .attribute::<UnknownAttributes>()
        .unwrap()
        .unwrap()
        .iter()
        .collect()
}
