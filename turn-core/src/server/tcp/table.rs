//! The peer TCP connections a server holds, in a fixed array: where each
//! stands, and lookups by id, by allocation and by peer.

use core::net::SocketAddr;

use stun_core::TransactionId;
use stun_core::credentials::Key;

use super::ConnectionId;
use crate::server::Host;
use crate::{FiveTuple, Instant};

/// Where a peer connection stands.
#[derive(Clone, Copy)]
pub(super) enum Stage {
    /// The host is connecting for a Connect: its answer is written when the
    /// host reports, signed as the request was.
    Connecting {
        tid: TransactionId,
        key: Key,
        sha256: bool,
    },
    /// Connected (or accepted), waiting for its ConnectionBind.
    Waiting,
    /// Joined to the client data connection of this 5-tuple.
    Bound(FiveTuple),
}

/// One peer TCP connection.
#[derive(Clone, Copy)]
pub(super) struct Entry {
    pub(super) id: ConnectionId,
    pub(super) slot: u32,
    pub(super) generation: u32,
    pub(super) peer: SocketAddr,
    pub(super) stage: Stage,
    /// The connect deadline (connecting) or the bind deadline (waiting).
    pub(super) until: Instant,
}

/// The peer TCP connections of a server's TCP allocations: `T` at most.
pub(crate) struct Connections<const T: usize> {
    pub(super) entries: [Option<Entry>; T],
    pub(super) shard: u8,
    pub(super) len: usize,
}

impl<const T: usize> Connections<T> {
    pub(crate) const fn new() -> Self {
        Connections {
            entries: [None; T],
            shard: 0,
            len: 0,
        }
    }

    pub(super) fn find(&self, id: ConnectionId) -> Option<&Entry> {
        self.entries.iter().flatten().find(|e| e.id == id)
    }

    pub(super) fn find_mut(&mut self, id: ConnectionId) -> Option<&mut Entry> {
        self.entries.iter_mut().flatten().find(|e| e.id == id)
    }

    pub(super) fn remove(&mut self, id: ConnectionId) -> Option<Entry> {
        let place = self
            .entries
            .iter_mut()
            .find(|e| e.is_some_and(|e| e.id == id))?;
        self.len = self.len.saturating_sub(1);
        place.take()
    }

    pub(super) fn of(&self, slot: usize, generation: u32) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .flatten()
            .filter(move |e| e.slot as usize == slot && e.generation == generation)
    }

    pub(super) fn insert(&mut self, e: Entry) -> bool {
        match self.entries.iter_mut().find(|e| e.is_none()) {
            Some(place) => {
                *place = Some(e);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// A new id: this shard's byte on top, random below, unused and not 0.
    pub(super) fn new_id(&self, host: &mut impl Host) -> Option<ConnectionId> {
        for _ in 0..8 {
            let mut b = [0u8; 4];
            host.random(&mut b);
            let low = u32::from_be_bytes(b) & 0x00FF_FFFF;
            let id = ConnectionId(u32::from(self.shard) << 24 | low);
            if low != 0 && self.find(id).is_none() {
                return Some(id);
            }
        }
        None
    }
}
