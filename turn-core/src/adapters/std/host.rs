//! The TURN core's [`Host`] on a worker: relay sockets on its event loop, the
//! shared credential store and quotas, and the worker's random stream.

use crate::adapters::std::prelude::*;

use std::net::SocketAddr;

use mio::Registry;

use crate::Instant;
use crate::credentials::{Algorithm, Key};
use crate::rng::Random;
use crate::server::{
    BindError, ConnectionId, ConnectionTraffic, Host, QuotaError, RelayHandle, USERNAME_MAX,
};

use super::relays::Relays;
use super::shared::Shared;
use super::tcp_relay::TcpRelays;

/// Borrows what a worker lends the TURN core for one call.
pub(crate) struct WorkerHost<'a> {
    /// The worker's index (relay handles are per shard).
    pub(crate) worker: usize,
    pub(crate) shared: &'a Shared,
    pub(crate) relays: &'a mut Relays,
    pub(crate) registry: &'a Registry,
    pub(crate) random: &'a mut Random,
    /// In a process resuming a hand-over: the relay sockets it inherited, by
    /// address, which [`Host::bind_relay`] takes in place of binding.
    pub(crate) inherited:
        Option<&'a mut std::collections::HashMap<SocketAddr, std::net::UdpSocket>>,
    /// The worker's TCP relays (RFC 6062).
    pub(crate) tcp: &'a mut TcpRelays,
}

impl Host for WorkerHost<'_> {
    fn long_term_key(&mut self, username: &str, realm: &str, algorithm: Algorithm) -> Option<Key> {
        let store = self
            .shared
            .credentials
            .read()
            .unwrap_or_else(|e| e.into_inner());
        store.key(username, realm, algorithm)
    }

    fn username_by_hash(
        &mut self,
        userhash: &[u8; 32],
        realm: &str,
    ) -> Option<heapless::String<USERNAME_MAX>> {
        let store = self
            .shared
            .credentials
            .read()
            .unwrap_or_else(|e| e.into_inner());
        store
            .username_by_hash(userhash, realm)
            .and_then(|u| heapless::String::try_from(u.as_str()).ok())
    }

    fn bind_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError> {
        // A TCP relay holds the port (the relay map has one owner per port).
        if self.inherited.is_none() && self.shared.live.contains(local) {
            return Err(BindError::InUse);
        }
        match self.inherited.as_deref_mut() {
            Some(inherited) => {
                let sock = inherited.remove(&local).ok_or(BindError::Unavailable)?;
                self.relays.adopt(self.registry, handle, sock, local)?;
            }
            None => self.relays.bind(self.registry, handle, local)?,
        }
        self.shared.live.set(local, Some(self.worker));
        Ok(())
    }

    fn listen_relay(&mut self, handle: RelayHandle, local: SocketAddr) -> Result<(), BindError> {
        if self.shared.live.contains(local) {
            return Err(BindError::InUse);
        }
        self.tcp.listen(self.registry, handle, local)?;
        self.shared.live.set(local, Some(self.worker));
        Ok(())
    }

    fn connect_peer(
        &mut self,
        id: ConnectionId,
        _handle: RelayHandle,
        from: SocketAddr,
        peer: SocketAddr,
        deadline: Instant,
    ) -> bool {
        let deadline = self.shared.clock.to_std(deadline);
        match self.tcp.connect(self.registry, id, from, peer, deadline) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("tcp relay {from}: cannot connect to {peer}: {e}");
                false
            }
        }
    }

    fn close_connection(&mut self, id: ConnectionId) -> ConnectionTraffic {
        self.tcp.close(self.registry, id)
    }

    fn close_relay(&mut self, handle: RelayHandle, local: SocketAddr) {
        if self.relays.close(self.registry, handle)
            || self.tcp.close_listener(self.registry, handle).is_some()
        {
            self.shared.live.set(local, None);
        }
        #[cfg(feature = "xdp")]
        if let Some(fast) = &self.shared.fast {
            let relayed = fast
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove_relay(self.worker, handle);
            self.relays.kernel_ended.extend(relayed);
        }
    }

    #[cfg(feature = "xdp")]
    fn route(&mut self, route: &crate::server::ChannelRoute) {
        if let Some(fast) = &self.shared.fast {
            fast.lock()
                .unwrap_or_else(|e| e.into_inner())
                .install(self.worker, route);
        }
    }

    fn is_relay(&mut self, local: SocketAddr) -> bool {
        self.shared.live.contains(local)
    }

    fn is_own_address(&mut self, ip: std::net::IpAddr) -> bool {
        self.shared
            .own
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(ip)
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
        self.shared.live.set(local, Some(self.worker));
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

    fn user_bandwidth(
        &mut self,
        user: &str,
        to_peer: bool,
        rate: crate::server::Bandwidth,
        now: Instant,
        bytes: usize,
    ) -> bool {
        self.shared.meters.take(user, to_peer, rate, now, bytes)
    }

    fn random(&mut self, buf: &mut [u8]) {
        // A ChaCha12 stream keyed from the OS at start: nothing to fail here.
        self.random.fill(buf);
    }
}
