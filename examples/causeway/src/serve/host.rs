//! The TURN core's [`Host`] on a worker: relay sockets on its event loop, the shared
//! credential database and quotas, and the OS random source.

use std::net::SocketAddr;

use mio::Registry;
use stun_core::credentials::LongTermKey;
use turn_core::Instant;
use turn_core::server::{BindError, Host, QuotaError, RelayHandle};

use super::relays::Relays;
use super::shared::Shared;

/// Borrows what a worker lends the TURN core for one call.
pub(crate) struct WorkerHost<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) relays: &'a mut Relays,
    pub(crate) registry: &'a Registry,
}

impl Host for WorkerHost<'_> {
    fn long_term_key(&mut self, username: &str, _realm: &str) -> Option<LongTermKey> {
        // Keys are derived for the configured realm; the core checked the realm.
        self.shared.key(username)
    }

    fn bind_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError> {
        self.relays.bind(self.registry, handle, local)
    }

    fn close_relay(&mut self, handle: RelayHandle, local: SocketAddr) {
        let _ = local;
        self.relays.close(self.registry, handle);
    }

    fn reserve_port(
        &mut self,
        token: [u8; 8],
        local: SocketAddr,
        expires: Instant,
    ) -> Result<(), BindError> {
        let sock = self.relays.open(local)?;
        self.shared.reservations.hold(token, sock, local, expires);
        Ok(())
    }

    fn claim_port(
        &mut self,
        token: &[u8; 8],
        handle: RelayHandle,
        now: Instant,
    ) -> Option<SocketAddr> {
        let (sock, local) = self.shared.reservations.take(token, now)?;
        self.relays.adopt(self.registry, handle, sock, local).ok()?;
        Some(local)
    }

    fn expire_reservations(&mut self, now: Instant) {
        self.shared.reservations.expire(now);
    }

    fn acquire_quota(&mut self, username: &str) -> Result<(), QuotaError> {
        self.shared.quota.acquire(username)
    }

    fn release_quota(&mut self, username: &str) {
        self.shared.quota.release(username);
    }

    fn random(&mut self, buf: &mut [u8]) {
        // getrandom(2) does not fail once the kernel's pool is initialised, which
        // happens long before a server takes traffic.
        if let Err(e) = getrandom::fill(buf) {
            panic!("the OS random source failed: {e}");
        }
    }
}
