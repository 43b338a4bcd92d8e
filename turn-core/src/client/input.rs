//! What comes from the server: Data indications and ChannelData (handed back
//! as a range of the input), and responses, matched to their transaction,
//! verified, and turned into state and events (the 401 round, 438, 300).

use core::net::SocketAddr;

use stun_core::attributes::{
    AlternateServer, ErrorCode, Lifetime, Nonce, Realm, XorMappedAddress, XorPeerAddress,
    XorRelayedAddress,
};
use stun_core::channel_data::{self, ChannelData};
use stun_core::credentials::long_term_key;
use stun_core::{Class, Message, Method};

use super::retransmit::Retransmit;
use super::timers::refresh_time;
use super::{CHANNEL_REFRESH_SECS, PERMISSION_REFRESH_SECS};
use super::{Client, ClientEvent, Failure, Perm, Received, RequestKind, State, Transaction};
use crate::Instant;

impl<const P: usize, const C: usize> Client<P, C> {
    /// Handles a datagram or stream frame that came from `from`. Anything not
    /// from the server is ignored (over UDP, anyone can send to the client's
    /// socket). Returns application data from a peer, if it was that: its range in
    /// `bytes`, not a copy.
    pub fn handle_input(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<Received> {
        if from != self.cfg.server {
            return None;
        }
        if let Ok(cd) = ChannelData::new_checked(bytes) {
            let number = cd.channel();
            let peer = self
                .channels
                .iter()
                .find(|c| c.number == number && c.bound)?
                .peer;
            let len = cd.data().len();
            return Some(Received {
                peer,
                data: channel_data::HEADER_LEN..channel_data::HEADER_LEN + len,
            });
        }
        let msg = Message::new_checked(bytes).ok()?;
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            return None;
        }
        match msg.class() {
            Class::Indication if msg.method() == Method::DATA => {
                let peer = msg.attribute::<XorPeerAddress>().ok()??.0;
                let raw = msg.raw_attribute(stun_core::AttributeType::DATA)?;
                self.permissions
                    .iter()
                    .any(|p| p.ip == peer.ip())
                    .then_some(Received {
                        peer,
                        data: raw.value_range(),
                    })
            }
            Class::Indication if msg.method() == Method::CONNECTION_ATTEMPT => {
                let peer = msg.attribute::<XorPeerAddress>().ok()??.0;
                let id = msg
                    .attribute::<stun_core::attributes::ConnectionId>()
                    .ok()??
                    .0;
                self.push_event(ClientEvent::ConnectionAttempt { peer, id });
                None
            }
            Class::Success | Class::Error => {
                self.response(now, &msg);
                None
            }
            _ => None,
        }
    }

    fn response(&mut self, now: Instant, msg: &Message<&[u8]>) {
        let tid = msg.transaction_id();
        let Some(i) = self.transactions.iter().position(|t| t.tid == tid) else {
            return;
        };
        let t = self.transactions.swap_remove(i);
        if let Some(ms) = t.timer.rtt_ms(now, false) {
            self.push_event(ClientEvent::Rtt { ms });
        }
        if msg.class() == Class::Error {
            let code = msg
                .attribute::<ErrorCode>()
                .ok()
                .flatten()
                .map_or(400, |e| e.code);
            return self.error_response(now, t, msg, code);
        }
        if let Some(key) = &self.key
            && msg.verify_integrity(key).is_err()
        {
            return self.fail(t.kind, Failure::BadResponseIntegrity);
        }
        match t.kind {
            RequestKind::Allocate => {
                let relayed = msg
                    .attribute::<XorRelayedAddress>()
                    .ok()
                    .flatten()
                    .map(|a| a.0);
                let mapped = msg
                    .attribute::<XorMappedAddress>()
                    .ok()
                    .flatten()
                    .map(|a| a.0);
                let lifetime = msg
                    .attribute::<Lifetime>()
                    .ok()
                    .flatten()
                    .map_or(600, |l| l.0);
                match (relayed, mapped) {
                    (Some(relayed), Some(mapped)) => {
                        self.state = State::Allocated;
                        self.relayed = Some(relayed);
                        self.mapped = Some(mapped);
                        self.refresh_at = Some(refresh_time(now, lifetime));
                        self.push_event(ClientEvent::Allocated {
                            relayed,
                            mapped,
                            lifetime,
                        });
                    }
                    _ => self.fail(t.kind, Failure::Code(500)),
                }
            }
            RequestKind::Refresh(asked) => {
                let lifetime = msg
                    .attribute::<Lifetime>()
                    .ok()
                    .flatten()
                    .map_or(asked, |l| l.0);
                if asked == 0 {
                    self.state = State::Closed;
                    self.permissions.clear();
                    self.channels.clear();
                    self.refresh_at = None;
                } else {
                    self.refresh_at = Some(refresh_time(now, lifetime));
                }
                self.push_event(ClientEvent::Refreshed { lifetime });
            }
            RequestKind::Permission(ip) => {
                let refresh_at = now.plus_secs(PERMISSION_REFRESH_SECS);
                match self.permissions.iter_mut().find(|p| p.ip == ip) {
                    Some(p) => p.refresh_at = refresh_at,
                    None => {
                        let _ = self.permissions.push(Perm { ip, refresh_at });
                    }
                }
                self.push_event(ClientEvent::PermissionCreated(ip));
            }
            RequestKind::ChannelBind(channel, peer) => {
                if let Some(c) = self.channels.iter_mut().find(|c| c.number == channel) {
                    c.bound = true;
                    c.refresh_at = now.plus_secs(CHANNEL_REFRESH_SECS);
                }
                // A channel binding installs a permission for the peer too.
                if !self.permissions.iter().any(|p| p.ip == peer.ip()) {
                    let _ = self.permissions.push(Perm {
                        ip: peer.ip(),
                        refresh_at: now.plus_secs(PERMISSION_REFRESH_SECS),
                    });
                }
                self.push_event(ClientEvent::ChannelBound { channel, peer });
            }
            RequestKind::Connect(peer) => {
                match msg.attribute::<stun_core::attributes::ConnectionId>() {
                    Ok(Some(id)) => self.push_event(ClientEvent::Connected { peer, id: id.0 }),
                    _ => self.fail(t.kind, Failure::Code(500)),
                }
            }
        }
    }

    fn error_response(
        &mut self,
        now: Instant,
        mut t: Transaction,
        msg: &Message<&[u8]>,
        code: u16,
    ) {
        let realm = msg.attribute::<Realm>().ok().flatten().map(|r| r.0);
        let nonce = msg.attribute::<Nonce>().ok().flatten().map(|n| n.0);
        let retry_with = |c: &mut Self, realm: Option<&str>, nonce: Option<&str>| -> bool {
            let (Some(nonce), realm) = (nonce, realm) else {
                return false;
            };
            c.nonce.clear();
            if c.nonce.push_str(nonce).is_err() {
                return false;
            }
            if let Some(r) = realm {
                c.realm.clear();
                if c.realm.push_str(r).is_err() {
                    return false;
                }
            }
            c.key = Some(long_term_key(&c.cfg.username, &c.realm, &c.cfg.password));
            true
        };
        let first_round = code == 401 && !t.authenticated;
        let stale = code == 438 && !t.stale_retried;
        if (first_round || stale) && retry_with(self, realm, nonce) {
            t.stale_retried |= stale;
            // The same request again, with credentials and a new transaction id.
            t.tid = self.next_tid();
            if self.encode(&mut t).is_ok() {
                t.timer = Retransmit::new(now);
                let _ = self.transactions.push(t);
                return;
            }
        }
        if code == 300
            && t.kind == RequestKind::Allocate
            && let Some(AlternateServer(alt)) = msg.attribute::<AlternateServer>().ok().flatten()
        {
            self.cfg.server = alt;
            self.key = None;
            self.state = State::Idle;
            self.push_event(ClientEvent::Redirected { server: alt });
            let _ = self.allocate(now);
            return;
        }
        let draining = code == 508
            && msg
                .attribute::<ErrorCode>()
                .ok()
                .flatten()
                .is_some_and(|e| e.reason == crate::server::DRAINING_PHRASE);
        let failure = if draining {
            Failure::Draining
        } else {
            Failure::Code(code)
        };
        self.fail(t.kind, failure);
    }
}
