//! One side of a proxied connection on an event loop: its [`Link`] and the
//! plaintext queued for it, bounded, with the time the socket last took bytes
//! (a peer that stops reading is found by that, not by the queue growing).
//!
//! Every queue of a proxy also draws on one [`Budget`]: past it, a side whose
//! queue holds anything takes no more (its peer is read no more), so browsers
//! that stop reading hold at most the budget between them, whatever their
//! number; a side with an empty queue may always take one read, so traffic
//! that moves keeps moving.

use crate::runtime::prelude::*;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::link::Link;

/// Most plaintext queued toward a side before the other side is read no more
/// (rustls holds up to [`TLS_BUFFER`] more).
pub(crate) const QUEUE: usize = 32 * 1024;
/// What rustls may buffer per direction of a session.
pub(crate) const TLS_BUFFER: usize = 16 * 1024;
/// What a side with an empty queue may take in one read once the budget is
/// spent (so traffic that moves keeps moving).
pub(crate) const FLOOR: usize = 4096;

/// What all queues of a proxy may hold together, in bytes (shared by the
/// proxies of one runtime, over reloads).
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        })
    }

    /// A new limit (a reload).
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes queued now, over every side.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes left before the limit.
    fn left(&self) -> usize {
        self.limit().saturating_sub(self.used())
    }

    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}
/// A drained queue keeps at most this much capacity (an idle tunnel holds little).
const KEEP: usize = 4096;

/// A link with its outgoing queue.
pub(crate) struct Side {
    pub(crate) link: Link,
    out: Vec<u8>,
    /// When the socket last took bytes, or when bytes were first queued.
    pub(crate) wrote_at: Instant,
    /// What its queue draws on.
    budget: Arc<Budget>,
}

impl Drop for Side {
    fn drop(&mut self) {
        self.budget.give(self.out.len());
    }
}

/// What a read gave.
pub(crate) enum Read {
    /// This many bytes, at the start of the scratch buffer.
    Data(usize),
    /// Nothing now.
    Later,
    /// The peer ended the stream.
    End,
}

impl Side {
    /// A side over `link`, its queue drawing on `budget`.
    pub(crate) fn new(mut link: Link, now: Instant, budget: Arc<Budget>) -> Side {
        if let Some(tls) = link.tls.as_mut() {
            tls.set_buffer_limit(Some(TLS_BUFFER));
        }
        Side {
            link,
            out: Vec::new(),
            wrote_at: now,
            budget,
        }
    }

    /// How many bytes may be read for this side now: what its own bound
    /// leaves; once the proxy's budget is spent, [`FLOOR`] bytes if its queue is
    /// empty, else none.
    pub(crate) fn room(&self) -> usize {
        match self.budget.left() {
            0 if self.out.is_empty() => FLOOR,
            left => QUEUE.saturating_sub(self.out.len()).min(left),
        }
    }

    /// Whether anything may be read for it now.
    pub(crate) fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// Whether plaintext waits to be handed to the link.
    pub(crate) fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether bytes wait for the socket.
    pub(crate) fn pending(&self) -> bool {
        !self.out.is_empty() || self.link.wants_write()
    }

    /// Queues `data` (callers read no more than [`Side::room`] for it).
    pub(crate) fn queue(&mut self, data: &[u8], now: Instant) {
        if data.is_empty() {
            return;
        }
        if !self.pending() {
            self.wrote_at = now;
        }
        self.out.extend_from_slice(data);
        self.budget.take(data.len());
    }

    /// Writes what the socket takes; `true` if it took anything.
    pub(crate) fn flush(&mut self, now: Instant) -> io::Result<bool> {
        let mut moved = false;
        while !self.out.is_empty() {
            match self.link.write_plain(&self.out) {
                Ok(0) => break,
                Ok(n) => {
                    let n = n.min(self.out.len());
                    self.out.drain(..n);
                    self.budget.give(n);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let (_, written) = self.link.flush_counting()?;
        if moved || written > 0 {
            self.wrote_at = now;
        }
        if self.out.is_empty() && self.out.capacity() > KEEP {
            self.out = Vec::new();
        }
        Ok(moved || written > 0)
    }

    /// Reads plaintext into `scratch`.
    pub(crate) fn read(&mut self, scratch: &mut [u8]) -> io::Result<Read> {
        loop {
            return match self.link.read_plain(scratch) {
                Ok(0) => Ok(Read::End),
                Ok(n) => Ok(Read::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Read::Later),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Starts ending the stream (a TLS close_notify, then what the socket takes).
    pub(crate) fn close(&mut self) {
        self.link.close();
    }
}
