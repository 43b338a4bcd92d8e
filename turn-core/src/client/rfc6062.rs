//! TCP relays (RFC 6062) on the client side: Connect to a peer from the
//! relayed address, and ConnectionBind, which the caller sends on a new TCP
//! or TLS connection to the server to make it the data connection of a peer
//! connection (one the server connected for a Connect, or one a peer opened,
//! announced by [`ClientEvent::ConnectionAttempt`](super::ClientEvent)).
//!
//! ```
//! use core::net::SocketAddr;
//! use turn_core::client::{BindAnswer, Client, ClientConfig, ClientEvent};
//! use turn_core::credentials::{Algorithm, Key};
//! use turn_core::server::{
//!     BindError, Config, ConnectionId, Host, Outgoing, QuotaError, RelayHandle, Server, Slot,
//! };
//! use turn_core::{FiveTuple, Instant, Transport, UnixTime};
//!
//! /// One user; TCP relays that always listen; connections it notes.
//! #[derive(Default)]
//! struct Memory(Vec<ConnectionId>);
//! impl Host for Memory {
//!     fn long_term_key(&mut self, user: &str, realm: &str, a: Algorithm) -> Option<Key> {
//!         (user == "alice").then(|| Key::derive(a, user, realm, "s3cret"))
//!     }
//!     fn bind_relay(&mut self, _: RelayHandle, _: SocketAddr) -> Result<(), BindError> { Ok(()) }
//!     fn listen_relay(&mut self, _: RelayHandle, _: SocketAddr) -> Result<(), BindError> { Ok(()) }
//!     fn connect_peer(&mut self, id: ConnectionId, _: RelayHandle, _: SocketAddr,
//!                     _: SocketAddr, _: Instant) -> bool {
//!         self.0.push(id);
//!         true
//!     }
//!     fn close_relay(&mut self, _: RelayHandle, _: SocketAddr) {}
//!     fn is_relay(&mut self, _: SocketAddr) -> bool { false }
//!     fn acquire_quota(&mut self, _: &str) -> Result<(), QuotaError> { Ok(()) }
//!     fn release_quota(&mut self, _: &str) {}
//!     fn random(&mut self, buf: &mut [u8]) { buf.fill(7) } // use a real one
//! }
//!
//! let listener: SocketAddr = "192.0.2.1:3478".parse().unwrap();
//! let mut cfg = Config::new("example");
//! cfg.relay_v4 = Some("192.0.2.1".parse().unwrap());
//! let mut server: Server<_, 8, 8, 4> =
//!     Server::with_tcp(cfg, [Slot::<8, 8>::EMPTY; 4], [1; 32]).unwrap();
//! let mut host = Memory::default();
//! let mut ccfg = ClientConfig::new(listener, "alice", "s3cret").unwrap();
//! ccfg.transport = Transport::Tcp;
//! ccfg.tcp_relay = true;
//! let mut client = Client::new(ccfg, [2; 32]);
//! let (now, unix) = (Instant::from_secs(0), UnixTime(1_800_000_000));
//! let tuple = |port| FiveTuple {
//!     client: SocketAddr::new("198.51.100.7".parse().unwrap(), port),
//!     server: listener,
//!     transport: Transport::Tcp,
//!     socket: 0,
//! };
//! let (control, data) = (tuple(50000), tuple(50001));
//! let (mut request, mut reply) = ([0u8; 1500], [0u8; 1500]);
//! let mut exchange = |client: &mut Client, server: &mut Server<_, 8, 8, 4>, host: &mut Memory| {
//!     while let Some(t) = client.poll_transmit(now, &mut request) {
//!         if let Outgoing::Client { bytes, .. } =
//!             server.handle_client(now, unix, host, control, &request[..t.len], &mut reply)
//!         {
//!             let _ = client.handle_input(now, listener, bytes);
//!         }
//!     }
//! };
//! client.allocate(now).unwrap();
//! exchange(&mut client, &mut server, &mut host); // 401, then the allocation
//!
//! client.connect(now, "8.8.8.8:443".parse().unwrap()).unwrap();
//! exchange(&mut client, &mut server, &mut host); // the answer waits for the host
//! let asked = host.0[0];
//! let Outgoing::Client { bytes, .. } = server.peer_connected(now, &mut host, asked, true, &mut reply)
//! else { panic!() };
//! client.handle_input(now, listener, bytes);
//! let id = core::iter::from_fn(|| client.poll_event())
//!     .find_map(|e| match e { ClientEvent::Connected { id, .. } => Some(id), _ => None })
//!     .unwrap();
//!
//! // On a new connection to the server: ConnectionBind, and its answer.
//! let n = client.connection_bind(id, &mut request).unwrap();
//! let Outgoing::Client { bytes, .. } =
//!     server.handle_client(now, unix, &mut host, data, &request[..n], &mut reply)
//! else { panic!() };
//! assert_eq!(client.bind_answer(bytes), BindAnswer::Bound);
//! assert_eq!(server.data_connection(&data), Some(ConnectionId(id)));
//! // From now on that connection carries the peer's bytes as they are.
//! ```

use core::net::SocketAddr;

use stun_core::attributes::{ConnectionId, ErrorCode, Nonce, Realm, Username};
use stun_core::credentials::long_term_key;
use stun_core::{Class, Message, MessageBuilder, MessageType, Method};

use super::{Client, ClientError, RequestKind, State};
use crate::Instant;

/// What the answer to a ConnectionBind says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindAnswer {
    /// Bound: from now on the data connection carries the peer's bytes.
    Bound,
    /// 438: the nonce was stale and is now the fresh one; send a new
    /// ConnectionBind on the same connection.
    Retry,
    /// Refused with this code (0: not a ConnectionBind answer, or not signed
    /// with the client's key).
    Failed(u16),
}

impl<const P: usize, const C: usize> Client<P, C> {
    /// Asks the server to connect to `peer` from the TCP relayed address; the
    /// answer comes as [`ClientEvent::Connected`](super::ClientEvent) (or a
    /// failure: 403 for a peer the server's policy forbids, 446 when connected
    /// already, 447 when the peer cannot be reached).
    pub fn connect(&mut self, now: Instant, peer: SocketAddr) -> Result<(), ClientError> {
        if self.state != State::Allocated || !self.cfg.tcp_relay {
            return Err(ClientError::NotAllocated);
        }
        self.start(now, RequestKind::Connect(peer))
    }

    /// Writes into `out` a ConnectionBind for connection `id`, to send as the
    /// first message of a new TCP or TLS connection to the server, with the
    /// client's credentials. Its answer, the first message back on that
    /// connection, goes to [`Client::bind_answer`].
    pub fn connection_bind(&mut self, id: u32, out: &mut [u8]) -> Result<usize, ClientError> {
        let key = self.key.ok_or(ClientError::NotAllocated)?;
        let tid = self.next_tid();
        let mut write = || -> Result<usize, stun_core::EncodeError> {
            let mut b = MessageBuilder::new(
                out,
                MessageType::new(Method::CONNECTION_BIND, Class::Request),
                tid,
            )?;
            b.add(&ConnectionId(id))?;
            b.add(&Username(&self.cfg.username))?;
            b.add(&Realm(&self.realm))?;
            b.add(&Nonce(&self.nonce))?;
            b.add_message_integrity(&key)?;
            b.add_fingerprint()?;
            Ok(b.finish())
        };
        write().map_err(|_| ClientError::BufferTooSmall)
    }

    /// What the first message back on a data connection says about its
    /// ConnectionBind.
    pub fn bind_answer(&mut self, bytes: &[u8]) -> BindAnswer {
        let Ok(msg) = Message::new_checked(bytes) else {
            return BindAnswer::Failed(0);
        };
        if msg.method() != Method::CONNECTION_BIND {
            return BindAnswer::Failed(0);
        }
        match msg.class() {
            Class::Success => match self.key {
                Some(key) if msg.verify_integrity(&key).is_ok() => BindAnswer::Bound,
                _ => BindAnswer::Failed(0),
            },
            Class::Error => {
                let code = msg
                    .attribute::<ErrorCode>()
                    .ok()
                    .flatten()
                    .map_or(400, |e| e.code);
                let nonce = msg.attribute::<Nonce>().ok().flatten();
                if code == 438
                    && let Some(n) = nonce
                {
                    self.nonce.clear();
                    if self.nonce.push_str(n.0).is_ok() {
                        self.key = Some(long_term_key(
                            &self.cfg.username,
                            &self.realm,
                            &self.cfg.password,
                        ));
                        return BindAnswer::Retry;
                    }
                }
                BindAnswer::Failed(code)
            }
            _ => BindAnswer::Failed(0),
        }
    }
}
