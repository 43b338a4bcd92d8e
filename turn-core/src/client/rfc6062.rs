//! TCP relays (RFC 6062) on the client side: Connect to a peer from the
//! relayed address, and ConnectionBind, which the caller sends on a new TCP
//! or TLS connection to the server to make it the data connection of a peer
//! connection (one the server connected for a Connect, or one a peer opened,
//! announced by [`ClientEvent::ConnectionAttempt`](super::ClientEvent)).
//!
//! ```
//! use turn_core::client::{BindAnswer, Client, ClientConfig};
//! use turn_core::{Instant, Transport};
//! let mut cfg = ClientConfig::new("192.0.2.1:3478".parse().unwrap(), "alice", "pw").unwrap();
//! cfg.transport = Transport::Tcp;
//! cfg.tcp_relay = true;
//! let mut client = Client::new(cfg, [7; 32]);
//! // ... allocate, then client.connect(now, peer); on ClientEvent::Connected { id, .. }:
//! let mut buf = [0u8; 512];
//! let n = client.connection_bind(0x0100_0001, &mut buf).unwrap();
//! // Open a new connection to the server, send buf[..n], read one STUN message
//! // back and ask what it says:
//! assert_eq!(client.bind_answer(&buf[..n]), BindAnswer::Failed(0)); // (a request is no answer)
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
