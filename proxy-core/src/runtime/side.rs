//! One side of a proxied connection on an event loop: its [`Link`] and the
//! plaintext queued for it, bounded, with the time the socket last took bytes
//! (a peer that stops reading is found by that, not by the queue growing).
//!
//! Every side of a proxy also draws on one [`Budget`] for what it holds: its
//! queue, and what rustls holds for it (records not yet taken by the socket,
//! plaintext not yet read). Past the budget, a side that holds anything for
//! its peer takes no more (its peer is read no more), so browsers that stop
//! reading hold at most the budget between them, whatever their number; a side
//! that holds nothing may always take one read, so traffic that moves keeps
//! moving.

use crate::runtime::prelude::*;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use super::link::Link;

/// Most plaintext queued toward a side before the other side is read no more
/// (rustls holds up to [`TLS_BUFFER`] more).
pub(crate) const QUEUE: usize = 32 * 1024;
/// What rustls may buffer per direction of a session.
pub(crate) const TLS_BUFFER: usize = 16 * 1024;
/// What a side that holds nothing may take in one read once the budget is
/// spent (so traffic that moves keeps moving).
pub(crate) const FLOOR: usize = 4096;
/// What a read may leave in its peer's TLS session past what it takes: the
/// rest of a record rustls had to decrypt whole (16 KiB of plaintext). A read
/// needs this much of the budget left besides what it takes.
pub(crate) const RECORD: usize = 16 * 1024;

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
/// Unsent bytes the kernel may hold for a side's socket (`TCP_NOTSENT_LOWAT`,
/// Linux): past them a write waits, so a browser that stops reading leaves
/// its bytes in the budgeted queue instead of in a send buffer the kernel
/// grows to megabytes. Bytes in flight are not limited by it (the window
/// is), so a fast download stays fast.
pub(crate) const KERNEL_UNSENT: u32 = 64 * 1024;

/// A drained queue keeps at most this much capacity (an idle tunnel holds little).
const KEEP: usize = 4096;

/// A link with its outgoing queue.
pub(crate) struct Side {
    pub(crate) link: Link,
    out: Vec<u8>,
    /// When the socket last took bytes, or when bytes were first queued.
    pub(crate) wrote_at: Instant,
    /// What it draws on.
    budget: Arc<Budget>,
    /// What it holds for its peer (queue and TLS records), as last counted.
    held_out: usize,
    /// What it draws on the budget now (`held_out` and plaintext rustls has
    /// read from its peer that nobody took yet).
    charged: usize,
    /// Where its bytes are counted, if anywhere (a connector's connection).
    pub(crate) meter: Option<Arc<Meter>>,
}

/// Bytes through a web bridge's sides, counted as they move (the traversal
/// counts them per join URL and connector).
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Written toward the web bridge.
    pub(crate) to_bridge: AtomicU64,
    /// Read from it.
    pub(crate) from_bridge: AtomicU64,
}

impl Drop for Side {
    fn drop(&mut self) {
        self.budget.give(self.charged);
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
        #[cfg(target_os = "linux")]
        if let Err(e) = socket2::SockRef::from(&link.sock).set_tcp_notsent_lowat(KERNEL_UNSENT) {
            log::debug!("TCP_NOTSENT_LOWAT not set: {e}");
        }
        Side {
            link,
            out: Vec::new(),
            wrote_at: now,
            budget,
            held_out: 0,
            charged: 0,
            meter: None,
        }
    }

    /// Counts again what it holds, and draws that on the budget.
    fn settle(&mut self) {
        let (to_write, to_read) = self.link.buffered();
        self.held_out = self.out.len() + to_write;
        let held = self.held_out + to_read;
        if held > self.charged {
            self.budget.take(held - self.charged);
        } else {
            self.budget.give(self.charged - held);
        }
        self.charged = held;
    }

    /// How many bytes may be read for this side now: what its own bound
    /// leaves; once the proxy's budget is spent (less a [`RECORD`] its peer's
    /// session may keep), [`FLOOR`] bytes if it holds nothing for its peer,
    /// else none.
    pub(crate) fn room(&self) -> usize {
        match self.budget.left().saturating_sub(RECORD) {
            0 if self.held_out == 0 => FLOOR,
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
        // Grown by doubling, never past the bound (a full queue is no larger
        // than what it holds).
        let need = self.out.len() + data.len();
        if need > self.out.capacity() {
            let want = need.max(self.out.capacity() * 2).min(QUEUE).max(need);
            self.out.reserve_exact(want - self.out.len());
        }
        self.out.extend_from_slice(data);
        self.settle();
    }

    /// Queues what `write` puts into at most `max` bytes at the end of the queue
    /// (a head written in place rather than built elsewhere and copied in):
    /// how many, or `None`, queuing nothing, when `write` refuses.
    pub(crate) fn queue_written(
        &mut self,
        max: usize,
        now: Instant,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        let was_pending = self.pending();
        let start = self.out.len();
        self.out.resize(start + max, 0);
        let n = write(self.out.get_mut(start..).unwrap_or_default()).map(|n| n.min(max));
        self.out.truncate(start + n.unwrap_or(0));
        if !was_pending && n.is_some_and(|n| n > 0) {
            self.wrote_at = now;
        }
        self.settle();
        n
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
                    moved = true;
                    if let Some(m) = &self.meter {
                        m.to_bridge.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let flushed = self.link.flush_counting();
        if self.out.is_empty() && self.out.capacity() > KEEP {
            self.out = Vec::new();
        }
        self.settle();
        let (_, written) = flushed?;
        if moved || written > 0 {
            self.wrote_at = now;
        }
        Ok(moved || written > 0)
    }

    /// Reads plaintext into `scratch`.
    pub(crate) fn read(&mut self, scratch: &mut [u8]) -> io::Result<Read> {
        let read = self.read_plain(scratch);
        if let (Some(m), Ok(Read::Data(n))) = (&self.meter, &read) {
            m.from_bridge.fetch_add(*n as u64, Ordering::Relaxed);
        }
        self.settle();
        read
    }

    fn read_plain(&mut self, scratch: &mut [u8]) -> io::Result<Read> {
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
