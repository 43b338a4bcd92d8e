//! One direction of a tunnel in use at the connector (the edge's connection
//! to the web bridge's, or back): bytes read from one [`Link`] and written to
//! the other on the connector's event loop. Reads go through the loop's one
//! scratch buffer; a pipe holds bytes of its own only while the side it writes
//! to takes no more (and reads nothing more until they are written), so an
//! idle tunnel costs no buffer and a side that stops reading stops the other
//! being read.

use crate::runtime::prelude::*;
use std::io;

use crate::runtime::Link;

/// The scratch buffer a loop lends its pipes.
pub(crate) const SCRATCH: usize = 16 * 1024;

/// One direction's bytes in flight.
#[derive(Default)]
pub(crate) struct Pipe {
    /// Bytes read but not yet taken by the other side (back-pressure only).
    held: Vec<u8>,
    /// Of `held`, how many were written on.
    start: usize,
    /// The reading side ended.
    eof: bool,
    /// Bytes written on.
    pub(crate) carried: u64,
}

impl Pipe {
    /// A pipe that first writes `first` (read already).
    pub(crate) fn with(first: Vec<u8>) -> Pipe {
        Pipe {
            held: first,
            ..Pipe::default()
        }
    }

    /// Moves bytes from `from` to `to` until neither can go on; whether
    /// anything moved.
    pub(crate) fn pump(
        &mut self,
        from: &mut Link,
        to: &mut Link,
        scratch: &mut [u8],
    ) -> io::Result<bool> {
        let mut moved = false;
        loop {
            while self.start < self.held.len() {
                let pending = self.held.get(self.start..).unwrap_or_default();
                match to.write_plain(pending) {
                    Ok(0) => return Ok(moved),
                    Ok(n) => {
                        self.start += n;
                        self.carried += n as u64;
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                    Err(e) => return Err(e),
                }
            }
            if !self.held.is_empty() {
                // Written: give the memory back.
                self.held = Vec::new();
                self.start = 0;
            }
            to.flush()?;
            if self.eof {
                return Ok(moved);
            }
            let n = match from.read_plain(scratch) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(true);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(e) => return Err(e),
            };
            moved = true;
            let read = scratch.get(..n).unwrap_or_default();
            let taken = match to.write_plain(read) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            self.carried += taken as u64;
            if taken < n {
                self.held = read.get(taken..).unwrap_or_default().to_vec();
            }
        }
    }

    /// Its reading side ended and everything read was written.
    pub(crate) fn done(&self) -> bool {
        self.eof && self.start >= self.held.len()
    }
}
