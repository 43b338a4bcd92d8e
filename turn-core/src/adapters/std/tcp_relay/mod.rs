//! TCP relays (RFC 6062) on a worker: the listener of each TCP allocation's
//! relayed address, and its peer connections ([`Pipe`]), in one table whose
//! indices make their event-loop tokens.
//!
//! The worker's TURN shard decides (see [`crate::server::tcp`]); this holds the
//! sockets. Connections to peers leave from the relayed address itself: the
//! listener and the connecting sockets share its port with `SO_REUSEPORT`
//! (the listener alone accepts).

mod pipe;

use crate::adapters::std::prelude::*;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant as StdInstant;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::server::{BindError, ConnectionId, ConnectionTraffic, RelayHandle};

pub(crate) use pipe::Pipe;

/// First mio token of TCP relays: entry `i` has `FIRST_TCP_RELAY + 2 i` (its
/// listener or peer socket) and `+ 1` (its client data connection).
pub(crate) const FIRST_TCP_RELAY: usize = 1 << 28;

/// Connections a relayed address's listener queues before accepting.
const BACKLOG: i32 = 128;

/// A listener or a pipe.
pub(crate) enum Entry {
    /// A TCP allocation's relayed address.
    Listener {
        sock: TcpListener,
        handle: RelayHandle,
        local: SocketAddr,
    },
    /// A peer connection.
    Pipe(Box<Pipe>),
}

/// A worker's TCP relays.
#[derive(Default)]
pub(crate) struct TcpRelays {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_handle: HashMap<RelayHandle, usize>,
    by_id: HashMap<ConnectionId, usize>,
    /// Client data connections bound (they count as the worker's
    /// connections).
    pub(crate) bound: usize,
}

/// A TCP socket bound to `local` that shares its port with the relayed
/// address's other sockets.
fn socket_at(local: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if local.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    sock.bind(&local.into())?;
    Ok(sock)
}

/// The token of entry `i`'s first socket.
pub(crate) fn token(i: usize) -> Token {
    Token(FIRST_TCP_RELAY + 2 * i)
}

impl TcpRelays {
    fn place(&mut self, e: Entry) -> usize {
        match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.entries.get_mut(i) {
                    *slot = Some(e);
                }
                i
            }
            None => {
                self.entries.push(Some(e));
                self.entries.len() - 1
            }
        }
    }

    /// Entry `i`.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut Entry> {
        self.entries.get_mut(i).and_then(Option::as_mut)
    }

    /// The entry of connection `id`.
    pub(crate) fn index_of(&self, id: ConnectionId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// Listens on `local` for `handle`'s TCP allocation.
    pub(crate) fn listen(
        &mut self,
        registry: &Registry,
        handle: RelayHandle,
        local: SocketAddr,
    ) -> Result<(), BindError> {
        let opened = socket_at(local).and_then(|s| {
            s.listen(BACKLOG)?;
            Ok(TcpListener::from_std(s.into()))
        });
        let mut sock = match opened {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(BindError::InUse),
            Err(e) => {
                log::warn!("tcp relay {local}: cannot listen: {e}");
                return Err(BindError::Unavailable);
            }
        };
        let i = self.free.last().copied().unwrap_or(self.entries.len());
        if registry
            .register(&mut sock, token(i), Interest::READABLE)
            .is_err()
        {
            return Err(BindError::Unavailable);
        }
        let placed = self.place(Entry::Listener {
            sock,
            handle,
            local,
        });
        debug_assert_eq!(placed, i);
        self.by_handle.insert(handle, i);
        Ok(())
    }

    /// Closes `handle`'s listener; its address if it had one.
    pub(crate) fn close_listener(
        &mut self,
        registry: &Registry,
        handle: RelayHandle,
    ) -> Option<SocketAddr> {
        let i = self.by_handle.remove(&handle)?;
        match self.take(i) {
            Some(Entry::Listener {
                mut sock, local, ..
            }) => {
                let _ = registry.deregister(&mut sock);
                Some(local)
            }
            other => {
                // Not a listener: put it back.
                if let (Some(e), Some(slot)) = (other, self.entries.get_mut(i)) {
                    *slot = Some(e);
                }
                None
            }
        }
    }

    fn take(&mut self, i: usize) -> Option<Entry> {
        let e = self.entries.get_mut(i)?.take()?;
        self.free.push(i);
        Some(e)
    }

    /// Starts connecting from `from` to `peer` for connection `id`, to be done
    /// by `deadline`.
    pub(crate) fn connect(
        &mut self,
        registry: &Registry,
        id: ConnectionId,
        from: SocketAddr,
        peer: SocketAddr,
        deadline: StdInstant,
    ) -> io::Result<()> {
        let sock = socket_at(from)?;
        match sock.connect(&peer.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let stream = TcpStream::from_std(sock.into());
        self.add_pipe(registry, Pipe::new(id, stream, Some(deadline)))
    }

    /// Takes a peer connection accepted on a relayed address.
    pub(crate) fn add_pipe(&mut self, registry: &Registry, pipe: Pipe) -> io::Result<()> {
        let i = self.free.last().copied().unwrap_or(self.entries.len());
        let mut pipe = Box::new(pipe);
        registry.register(
            &mut pipe.peer,
            token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let id = pipe.id;
        let placed = self.place(Entry::Pipe(pipe));
        debug_assert_eq!(placed, i);
        self.by_id.insert(id, i);
        Ok(())
    }

    /// Closes connection `id` (both its sockets): what it relayed.
    pub(crate) fn close(&mut self, registry: &Registry, id: ConnectionId) -> ConnectionTraffic {
        let Some(i) = self.by_id.remove(&id) else {
            return ConnectionTraffic::default();
        };
        match self.take(i) {
            Some(Entry::Pipe(mut p)) => {
                let _ = registry.deregister(&mut p.peer);
                if let Some(mut c) = p.client.take() {
                    let _ = registry.deregister(&mut c.link.sock);
                    self.bound = self.bound.saturating_sub(1);
                }
                p.traffic
            }
            _ => ConnectionTraffic::default(),
        }
    }

    /// Joins client data connection `client` to connection `id`; false (the
    /// connection is dropped) if it is gone.
    pub(crate) fn bind(
        &mut self,
        registry: &Registry,
        id: ConnectionId,
        mut client: crate::adapters::std::conn::ClientConn,
    ) -> bool {
        let Some(i) = self.index_of(id) else {
            return false;
        };
        let Some(Entry::Pipe(p)) = self.get_mut(i) else {
            return false;
        };
        let t = Token(token(i).0 + 1);
        if registry
            .register(
                &mut client.link.sock,
                t,
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return false;
        }
        p.bind(client);
        self.bound += 1;
        true
    }

    /// Connections still connecting past their deadline.
    pub(crate) fn late(&self, now: StdInstant) -> Vec<ConnectionId> {
        self.entries
            .iter()
            .flatten()
            .filter_map(|e| match e {
                Entry::Pipe(p) if p.connecting.is_some_and(|d| now >= d) => Some(p.id),
                _ => None,
            })
            .collect()
    }
}

/// Most connections queued to one worker by the others.
const TRANSFERS_MAX: usize = 1024;

/// A worker's queue of stream connections the other workers send it: those
/// whose ConnectionBind names a connection its shard holds.
#[derive(Default)]
pub(crate) struct Transfers {
    queue: std::sync::Mutex<Vec<crate::adapters::std::conn::ClientConn>>,
    waker: std::sync::OnceLock<std::sync::Arc<mio::Waker>>,
}

impl Transfers {
    /// Wakes `waker`'s loop when a connection comes.
    pub(crate) fn set_waker(&self, waker: std::sync::Arc<mio::Waker>) {
        let _ = self.waker.set(waker);
    }

    /// Queues `conn` and wakes the worker; false (it is dropped) when full.
    pub(crate) fn push(&self, conn: crate::adapters::std::conn::ClientConn) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= TRANSFERS_MAX {
            return false;
        }
        q.push(conn);
        drop(q);
        if let Some(w) = self.waker.get() {
            let _ = w.wake();
        }
        true
    }

    /// What was queued.
    pub(crate) fn take(&self) -> Vec<crate::adapters::std::conn::ClientConn> {
        core::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
