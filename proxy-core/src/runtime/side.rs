//! One side of a proxied connection on an event loop: its [`Link`] and the
//! plaintext queued for it, bounded, with the time the socket last took bytes
//! (a peer that stops reading is found by that, not by the queue growing).

use crate::runtime::prelude::*;
use std::io;
use std::time::Instant;

use super::link::Link;

/// Most plaintext queued toward a side before the other side is read no more
/// (rustls holds up to [`TLS_BUFFER`] more).
pub(crate) const QUEUE: usize = 64 * 1024;
/// What rustls may buffer per direction of a session.
pub(crate) const TLS_BUFFER: usize = 32 * 1024;
/// A drained queue keeps at most this much capacity (an idle tunnel holds little).
const KEEP: usize = 4096;

/// A link with its outgoing queue.
pub(crate) struct Side {
    pub(crate) link: Link,
    out: Vec<u8>,
    /// When the socket last took bytes, or when bytes were first queued.
    pub(crate) wrote_at: Instant,
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
    /// A side over `link`.
    pub(crate) fn new(mut link: Link, now: Instant) -> Side {
        if let Some(tls) = link.tls.as_mut() {
            tls.set_buffer_limit(Some(TLS_BUFFER));
        }
        Side {
            link,
            out: Vec::new(),
            wrote_at: now,
        }
    }

    /// Whether more may be queued.
    pub(crate) fn has_room(&self) -> bool {
        self.out.len() < QUEUE
    }

    /// Whether plaintext waits to be handed to the link.
    pub(crate) fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether bytes wait for the socket.
    pub(crate) fn pending(&self) -> bool {
        !self.out.is_empty() || self.link.wants_write()
    }

    /// Queues `data` (callers check [`Side::has_room`] first; a queue may pass
    /// its bound by one read).
    pub(crate) fn queue(&mut self, data: &[u8], now: Instant) {
        if data.is_empty() {
            return;
        }
        if !self.pending() {
            self.wrote_at = now;
        }
        self.out.extend_from_slice(data);
    }

    /// Writes what the socket takes; `true` if it took anything.
    pub(crate) fn flush(&mut self, now: Instant) -> io::Result<bool> {
        let mut moved = false;
        while !self.out.is_empty() {
            match self.link.write_plain(&self.out) {
                Ok(0) => break,
                Ok(n) => {
                    self.out.drain(..n.min(self.out.len()));
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
