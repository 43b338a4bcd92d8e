//! One fake [`Host`] for every test of the TURN server: a credential database,
//! relay sockets, port reservations, quotas per user and in total, channel
//! routes, per-user bandwidth buckets and a deterministic random source. It
//! checks that the server uses it consistently: a relay closed with the handle
//! it was bound with, a quota never released more than acquired.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use stun_core::credentials::{Algorithm, Key};
use turn_core::Instant;
use turn_core::server::{
    BindError, ChannelRoute, ConnectionId, ConnectionTraffic, Host, QuotaError, RelayHandle,
};

/// The fake environment the server runs in.
#[derive(Default)]
pub struct FakeHost {
    /// Passwords by user name.
    pub users: HashMap<String, String>,
    /// Relay sockets bound, by local address, with the handle each was bound with.
    pub bound: HashMap<SocketAddr, RelayHandle>,
    /// Ports reserved (EVEN-PORT), by token, until when.
    pub reserved: HashMap<[u8; 8], (SocketAddr, Instant)>,
    /// Ports some other program holds: binding them fails with `InUse`.
    pub taken: HashSet<u16>,
    /// Every bind fails with `Unavailable`.
    pub unavailable: bool,
    /// Allocations counted per user.
    pub per_user: HashMap<String, usize>,
    /// Most allocations per user.
    pub user_quota: usize,
    /// Most allocations in all.
    pub total_quota: usize,
    /// The state of the random source (xorshift).
    pub rng: u64,
    /// Channel routes the server announced, in order.
    pub routes: Vec<ChannelRoute>,
    /// Per-user bandwidth buckets, by user and direction (to peer).
    pub user_buckets: HashMap<(String, bool), turn_core::server::TokenBucket>,
    /// The host's own addresses past the policy's list.
    pub own: HashSet<std::net::IpAddr>,
    /// Whether it offers TCP relays (RFC 6062); off, an Allocate for TCP gets
    /// 442.
    pub tcp_relays: bool,
    /// TCP relays listening (also in `bound`).
    pub listening: HashSet<SocketAddr>,
    /// Connections to peers the server asked for, in order: id, relay, from,
    /// peer, deadline.
    pub connects: Vec<(ConnectionId, RelayHandle, SocketAddr, SocketAddr, Instant)>,
    /// Every connect fails to start.
    pub connect_fails: bool,
    /// Connections the server closed, in order.
    pub closed: Vec<ConnectionId>,
    /// What each connection relayed, reported when the server closes it.
    pub relayed: HashMap<ConnectionId, ConnectionTraffic>,
}

impl FakeHost {
    /// Users alice (password `wonderland`) and bob (`builder`), 100
    /// allocations per user and 1000 in all.
    pub fn new() -> Self {
        FakeHost::with_quotas(100, 1000)
    }

    /// As [`FakeHost::new`], with `user_quota` allocations per user and
    /// `total_quota` in all.
    pub fn with_quotas(user_quota: usize, total_quota: usize) -> Self {
        let mut h = FakeHost {
            user_quota,
            total_quota,
            rng: 0x1234_5678,
            ..Default::default()
        };
        h.users.insert("alice".into(), "wonderland".into());
        h.users.insert("bob".into(), "builder".into());
        h
    }

    /// Whether `local` is bound, reserved, or its port taken.
    pub fn in_use(&self, local: SocketAddr) -> bool {
        self.taken.contains(&local.port())
            || self.bound.contains_key(&local)
            || self.reserved.values().any(|(a, _)| *a == local)
    }

    /// Allocations counted in all.
    pub fn total(&self) -> usize {
        self.per_user.values().sum()
    }
}

impl Host for FakeHost {
    fn route(&mut self, route: &ChannelRoute) {
        self.routes.push(*route);
    }

    fn user_bandwidth(
        &mut self,
        user: &str,
        to_peer: bool,
        rate: turn_core::server::Bandwidth,
        now: Instant,
        bytes: usize,
    ) -> bool {
        self.user_buckets
            .entry((user.to_string(), to_peer))
            .or_default()
            .take(now, rate, bytes)
    }

    fn long_term_key(&mut self, username: &str, realm: &str, algorithm: Algorithm) -> Option<Key> {
        self.users
            .get(username)
            .map(|p| Key::derive(algorithm, username, realm, p))
    }

    fn username_by_hash(
        &mut self,
        userhash: &[u8; 32],
        realm: &str,
    ) -> Option<heapless::String<128>> {
        self.users
            .keys()
            .find(|u| stun_core::credentials::userhash(u, realm) == *userhash)
            .map(|u| heapless::String::try_from(u.as_str()).unwrap())
    }

    fn is_relay(&mut self, local: SocketAddr) -> bool {
        self.bound.contains_key(&local)
    }

    fn is_own_address(&mut self, ip: std::net::IpAddr) -> bool {
        self.own.contains(&ip)
    }

    fn bind_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError> {
        if self.unavailable {
            return Err(BindError::Unavailable);
        }
        if self.in_use(local) {
            return Err(BindError::InUse);
        }
        self.bound.insert(local, handle);
        Ok(())
    }

    fn listen_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError> {
        if !self.tcp_relays {
            return Err(BindError::NotOffered);
        }
        self.bind_relay(handle, local)?;
        self.listening.insert(local);
        Ok(())
    }

    fn connect_peer(
        &mut self,
        id: ConnectionId,
        handle: RelayHandle,
        from: SocketAddr,
        peer: SocketAddr,
        deadline: Instant,
    ) -> bool {
        assert_eq!(
            self.bound.get(&from),
            Some(&handle),
            "a connection from an address that is not the allocation's relay"
        );
        if self.connect_fails {
            return false;
        }
        self.connects.push((id, handle, from, peer, deadline));
        true
    }

    fn close_connection(&mut self, id: ConnectionId) -> ConnectionTraffic {
        assert!(!self.closed.contains(&id), "connection {id:?} closed twice");
        self.closed.push(id);
        self.relayed.get(&id).copied().unwrap_or_default()
    }

    fn reserve_port(
        &mut self,
        token: [u8; 8],
        local: SocketAddr,
        expires: Instant,
    ) -> Result<(), BindError> {
        if self.in_use(local) {
            return Err(BindError::InUse);
        }
        self.reserved.insert(token, (local, expires));
        Ok(())
    }

    fn claim_port(
        &mut self,
        token: &[u8; 8],
        handle: RelayHandle,
        now: Instant,
    ) -> Option<SocketAddr> {
        let (local, expires) = self.reserved.remove(token)?;
        if now >= expires {
            return None;
        }
        self.bound.insert(local, handle);
        Some(local)
    }

    fn expire_reservations(&mut self, now: Instant) {
        self.reserved.retain(|_, (_, e)| now < *e);
    }

    fn close_relay(&mut self, handle: RelayHandle, local: SocketAddr) {
        self.listening.remove(&local);
        let h = self.bound.remove(&local);
        assert_eq!(
            h,
            Some(handle),
            "closing a relay that was not bound with this handle"
        );
    }

    fn acquire_quota(&mut self, username: &str) -> Result<(), QuotaError> {
        if self.per_user.get(username).copied().unwrap_or(0) >= self.user_quota {
            return Err(QuotaError::User);
        }
        if self.total() >= self.total_quota {
            return Err(QuotaError::Total);
        }
        *self.per_user.entry(username.into()).or_default() += 1;
        Ok(())
    }

    fn release_quota(&mut self, username: &str) {
        let n = self
            .per_user
            .get_mut(username)
            .expect("release of an unknown user");
        assert!(*n > 0, "quota released twice");
        *n -= 1;
    }

    fn random(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            *b = self.rng as u8;
        }
    }
}
