//! What the embedded adapters share: a fixed table of relay socket slots, the
//! local credential database, quotas, EVEN-PORT reservations, and the
//! [`Host`](crate::server::Host) over them.

use core::net::SocketAddr;

use stun_core::credentials::{Algorithm, Key, LongTermKey};

use crate::server::{BindError, QuotaError, RelayHandle};

/// Receive buffer of the embedded adapters: headroom, a datagram of up to 1500
/// bytes, tailroom.
pub(crate) const RX: usize = crate::server::PEER_HEADROOM + 1500 + crate::server::PEER_TAILROOM;

/// One user of a local credential database: the name and its long-term keys for
/// both password algorithms, derived once (the password itself is not kept).
#[derive(Debug, Clone, Copy)]
pub struct User<'u> {
    /// The username.
    pub name: &'u str,
    /// MD5(name ":" realm ":" password).
    pub md5: LongTermKey,
    /// SHA-256(name ":" realm ":" password).
    pub sha256: [u8; 32],
}

impl<'u> User<'u> {
    /// Derives the keys of `name` with `password` in `realm`.
    pub fn new(name: &'u str, realm: &str, password: &str) -> User<'u> {
        User {
            name,
            md5: stun_core::credentials::long_term_key(name, realm, password),
            sha256: stun_core::credentials::long_term_key_sha256(name, realm, password),
        }
    }

    fn key(&self, algorithm: Algorithm) -> Key {
        match algorithm {
            Algorithm::Md5 => Key::Md5(self.md5),
            Algorithm::Sha256 => Key::Sha256(self.sha256),
        }
    }
}

/// A local credential database.
pub type Users<'u> = &'u [User<'u>];

/// What an adapter needs besides sockets: the credential database, quotas, and a
/// secure random source.
pub struct Local<'u, G> {
    /// Users and their long-term keys.
    pub users: Users<'u>,
    /// Allocations per user.
    pub per_user: u16,
    /// Allocations in all.
    pub total: u16,
    /// Fills a buffer with secure random bytes.
    pub rng: G,
}

/// The operations an embedded stack provides for relay sockets: a fixed number of
/// UDP sockets, bound and unbound on demand. Shared by both adapters.
pub(crate) trait RelaySockets {
    fn bind(&mut self, slot: usize, local: SocketAddr) -> bool;
    fn unbind(&mut self, slot: usize);
}

/// One relay socket slot: what it is bound to, for which allocation, and whether
/// it only holds a port for an EVEN-PORT reservation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Slot {
    pub(crate) bound: Option<(RelayHandle, SocketAddr)>,
    pub(crate) reserved: bool,
}

/// What both adapters keep besides the server and the sockets: slot bookkeeping,
/// credentials, quotas, reservations, randomness.
pub(crate) struct Parts<'u, G, const R: usize> {
    pub(crate) slots: [Slot; R],
    pub(crate) users: Users<'u>,
    pub(crate) quota: crate::server::LocalQuota<8>,
    pub(crate) reservations: crate::server::Reservations<4>,
    pub(crate) rng: G,
    pub(crate) listener: SocketAddr,
}

impl<'u, G: FnMut(&mut [u8]), const R: usize> Parts<'u, G, R> {
    pub(crate) fn new(local: Local<'u, G>, listener: SocketAddr) -> Self {
        Parts {
            slots: [Slot::default(); R],
            users: local.users,
            quota: crate::server::LocalQuota::new(local.per_user, local.total),
            reservations: crate::server::Reservations::new(),
            rng: local.rng,
            listener,
        }
    }

    /// The server's host for one call, over `sockets`.
    pub(crate) fn host<T: RelaySockets>(&mut self, sockets: T) -> SlotHost<'_, 'u, T, G, R> {
        SlotHost {
            sockets,
            slots: &mut self.slots,
            users: self.users,
            quota: &mut self.quota,
            reservations: &mut self.reservations,
            rng: &mut self.rng,
            listener: self.listener,
        }
    }

    /// The slot holding the relay socket of `handle`.
    pub(crate) fn slot_of(&self, handle: RelayHandle) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.bound.is_some_and(|b| b.0 == handle))
    }
}

/// The [`Host`](crate::server::Host) logic both adapters share, over their socket
/// slots.
pub(crate) struct SlotHost<'a, 'u, T: RelaySockets, G: FnMut(&mut [u8]), const R: usize> {
    pub(crate) sockets: T,
    pub(crate) slots: &'a mut [Slot; R],
    pub(crate) users: Users<'u>,
    pub(crate) quota: &'a mut crate::server::LocalQuota<8>,
    pub(crate) reservations: &'a mut crate::server::Reservations<4>,
    pub(crate) rng: &'a mut G,
    pub(crate) listener: SocketAddr,
}

impl<T: RelaySockets, G: FnMut(&mut [u8]), const R: usize> SlotHost<'_, '_, T, G, R> {
    fn in_use(&self, local: SocketAddr) -> bool {
        local.port() == self.listener.port()
            || self
                .slots
                .iter()
                .any(|s| s.bound.is_some_and(|b| b.1 == local))
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.bound.is_none())
    }

    fn release_addr(&mut self, local: SocketAddr) {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.reserved && s.bound.is_some_and(|b| b.1 == local))
        {
            self.sockets.unbind(i);
            if let Some(s) = self.slots.get_mut(i) {
                *s = Slot::default();
            }
        }
    }
}

impl<T: RelaySockets, G: FnMut(&mut [u8]), const R: usize> crate::server::Host
    for SlotHost<'_, '_, T, G, R>
{
    fn long_term_key(&mut self, username: &str, _realm: &str, algorithm: Algorithm) -> Option<Key> {
        self.users
            .iter()
            .find(|u| u.name == username)
            .map(|u| u.key(algorithm))
    }

    fn is_relay(&mut self, local: SocketAddr) -> bool {
        self.slots
            .iter()
            .any(|s| !s.reserved && s.bound.is_some_and(|b| b.1 == local))
    }

    fn bind_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError> {
        if self.in_use(local) {
            return Err(BindError::InUse);
        }
        let i = self.free_slot().ok_or(BindError::Unavailable)?;
        if !self.sockets.bind(i, local) {
            return Err(BindError::Unavailable);
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = Slot {
                bound: Some((handle, local)),
                reserved: false,
            };
        }
        Ok(())
    }

    fn close_relay(&mut self, handle: RelayHandle, _local: SocketAddr) {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| !s.reserved && s.bound.is_some_and(|b| b.0 == handle))
        {
            self.sockets.unbind(i);
            if let Some(s) = self.slots.get_mut(i) {
                *s = Slot::default();
            }
        }
    }

    fn acquire_quota(&mut self, username: &str) -> Result<(), QuotaError> {
        self.quota.acquire(username)
    }

    fn release_quota(&mut self, username: &str) {
        self.quota.release(username);
    }

    fn reserve_port(
        &mut self,
        token: [u8; 8],
        local: SocketAddr,
        expires: crate::Instant,
    ) -> Result<(), BindError> {
        if self.in_use(local) {
            return Err(BindError::InUse);
        }
        let i = self.free_slot().ok_or(BindError::Unavailable)?;
        if !self.sockets.bind(i, local) {
            return Err(BindError::Unavailable);
        }
        let placeholder = RelayHandle {
            slot: u32::MAX,
            generation: 0,
            family: crate::server::RelayFamily::Ipv4,
        };
        if let Some(s) = self.slots.get_mut(i) {
            *s = Slot {
                bound: Some((placeholder, local)),
                reserved: true,
            };
        }
        if let Some(evicted) = self.reservations.hold(token, local, expires) {
            self.release_addr(evicted);
        }
        Ok(())
    }

    fn claim_port(
        &mut self,
        token: &[u8; 8],
        handle: RelayHandle,
        now: crate::Instant,
    ) -> Option<SocketAddr> {
        let local = self.reservations.take(token, now)?;
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.reserved && s.bound.is_some_and(|b| b.1 == local))?;
        *slot = Slot {
            bound: Some((handle, local)),
            reserved: false,
        };
        Some(local)
    }

    fn expire_reservations(&mut self, now: crate::Instant) {
        let mut expired: heapless::Vec<SocketAddr, 4> = heapless::Vec::new();
        self.reservations.expire(now, |a| {
            let _ = expired.push(a);
        });
        for a in expired {
            self.release_addr(a);
        }
    }

    fn random(&mut self, buf: &mut [u8]) {
        (self.rng)(buf);
    }
}
