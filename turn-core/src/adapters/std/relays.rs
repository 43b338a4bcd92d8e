//! Relay sockets: one UDP socket per relayed address, owned by the worker whose
//! TURN shard holds the allocation, registered with its event loop.

use crate::adapters::std::prelude::*;

use std::io;
use std::net::SocketAddr;

use crate::server::{BindError, RelayHandle};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use quinn_udp::UdpSocketState;
use socket2::{Domain, Protocol, Socket, Type};

/// First mio token of relay sockets; the slot index follows.
pub(crate) const FIRST_RELAY: usize = 1 << 30;

/// A bound relay socket.
pub(crate) struct RelaySock {
    pub(crate) sock: UdpSocket,
    pub(crate) state: UdpSocketState,
    pub(crate) handle: RelayHandle,
    /// The address it is bound to.
    pub(crate) local: SocketAddr,
}

/// The worker's relay sockets, by allocation slot and family.
#[derive(Default)]
pub(crate) struct Relays {
    socks: Vec<Option<RelaySock>>,
    /// Socket indices by bound address (for relay-to-relay hand-offs).
    by_local: std::collections::HashMap<SocketAddr, usize>,
    /// Why the last bind failed for a reason other than a taken port.
    pub(crate) last_error: Option<(SocketAddr, io::Error)>,
    /// What the kernel relayed for clients whose relay sockets closed, by
    /// (client, listener), until their usage record takes it.
    #[cfg(feature = "xdp")]
    pub(crate) kernel_ended: Vec<((SocketAddr, SocketAddr), [u64; 4])>,
}

fn index(handle: RelayHandle) -> usize {
    handle.slot as usize * 2 + handle.family.index()
}

impl Relays {
    pub(crate) fn bind(
        &mut self,
        registry: &Registry,
        handle: RelayHandle,
        local: SocketAddr,
    ) -> Result<(), BindError> {
        let sock = self.open(local)?;
        self.adopt(registry, handle, sock, local)
    }

    /// Opens a socket on `local`, or says why not.
    pub(crate) fn open(&mut self, local: SocketAddr) -> Result<std::net::UdpSocket, BindError> {
        match open(local) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(BindError::InUse),
            Err(e) => {
                self.last_error = Some((local, e));
                Err(BindError::Unavailable)
            }
        }
    }

    /// Makes a bound socket the relay socket of `handle`.
    pub(crate) fn adopt(
        &mut self,
        registry: &Registry,
        handle: RelayHandle,
        sock: std::net::UdpSocket,
        local: SocketAddr,
    ) -> Result<(), BindError> {
        let state = match super::net::batched(&sock, super::net::Reads::Source) {
            Ok(s) => s,
            Err(e) => {
                self.last_error = Some((local, e));
                return Err(BindError::Unavailable);
            }
        };
        let mut sock = UdpSocket::from_std(sock);
        let i = index(handle);
        if let Err(e) = registry.register(&mut sock, Token(FIRST_RELAY + i), Interest::READABLE) {
            self.last_error = Some((local, e));
            return Err(BindError::Unavailable);
        }
        if self.socks.len() <= i {
            self.socks.resize_with(i + 1, || None);
        }
        if let Some(entry) = self.socks.get_mut(i) {
            *entry = Some(RelaySock {
                sock,
                state,
                handle,
                local,
            });
        }
        self.by_local.insert(local, i);
        Ok(())
    }

    /// Closes the socket of `handle`; false if it had none.
    pub(crate) fn close(&mut self, registry: &Registry, handle: RelayHandle) -> bool {
        if let Some(entry) = self.socks.get_mut(index(handle))
            && entry.as_ref().is_some_and(|r| r.handle == handle)
            && let Some(mut r) = entry.take()
        {
            let _ = registry.deregister(&mut r.sock);
            self.by_local.remove(&r.local);
            return true;
        }
        false
    }

    /// Takes the socket bound to `local` out of the event loop (a hand-over
    /// pauses), or puts it back.
    pub(crate) fn set_paused(&mut self, registry: &Registry, local: SocketAddr, paused: bool) {
        let Some(&i) = self.by_local.get(&local) else {
            return;
        };
        if let Some(Some(r)) = self.socks.get_mut(i) {
            let _ = if paused {
                registry.deregister(&mut r.sock)
            } else {
                registry.register(&mut r.sock, Token(FIRST_RELAY + i), Interest::READABLE)
            };
        }
    }

    /// The socket for `handle`, if it is still the one bound for it.
    pub(crate) fn get(&self, handle: RelayHandle) -> Option<&RelaySock> {
        self.socks
            .get(index(handle))
            .and_then(Option::as_ref)
            .filter(|r| r.handle == handle)
    }

    /// The socket bound to `local`.
    pub(crate) fn by_local(&self, local: SocketAddr) -> Option<&RelaySock> {
        self.by_local.get(&local).and_then(|&i| self.by_index(i))
    }

    /// The socket registered with token offset `i`.
    pub(crate) fn by_index(&self, i: usize) -> Option<&RelaySock> {
        self.socks.get(i).and_then(Option::as_ref)
    }
}

/// A non-blocking UDP socket bound to `local` (no SO_REUSEPORT: a relayed address
/// belongs to one allocation).
fn open(local: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if local.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    Ok(s.into())
}
