//! The connector's side of a tunnel in use: the edge's connection and the web
//! bridge's, spliced both ways on a small event loop of their own, through a
//! bounded buffer per direction (a side that stops reading stops the other
//! being read). It ends when either side closes, once what was read from it
//! has been written, or after an hour without a byte either way.

use crate::runtime::prelude::*;
use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::runtime::Link;

/// Bytes held per direction.
const BUF: usize = 16 * 1024;
/// The longest quiet spell of a tunnel (the edge's own timers end idle
/// browsers sooner; this only frees a tunnel both ends forgot).
const IDLE: Duration = Duration::from_secs(3600);

/// One direction's bytes in flight.
struct Pipe {
    buf: Box<[u8; BUF]>,
    start: usize,
    end: usize,
    /// The reading side ended.
    eof: bool,
    /// Bytes written on.
    carried: u64,
}

impl Pipe {
    fn new(first: &[u8]) -> Pipe {
        let mut buf = Box::new([0u8; BUF]);
        let n = first.len().min(BUF);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), first.get(..n)) {
            dst.copy_from_slice(src);
        }
        Pipe {
            buf,
            start: 0,
            end: n,
            eof: false,
            carried: 0,
        }
    }

    /// Moves bytes from `from` to `to` until neither can go on; whether
    /// anything moved.
    fn pump(&mut self, from: &mut Link, to: &mut Link) -> io::Result<bool> {
        let mut moved = false;
        loop {
            if self.start < self.end {
                let pending = self.buf.get(self.start..self.end).unwrap_or_default();
                match to.write_plain(pending) {
                    Ok(0) => return Ok(moved),
                    Ok(n) => {
                        self.start += n;
                        self.carried += n as u64;
                        moved = true;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                    Err(e) => return Err(e),
                }
            }
            to.flush()?;
            if self.eof {
                return Ok(moved);
            }
            (self.start, self.end) = (0, 0);
            match from.read_plain(self.buf.as_mut_slice()) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.end = n;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(e) => return Err(e),
            }
        }
    }

    /// Its reading side ended and everything read was written.
    fn done(&self) -> bool {
        self.eof && self.start >= self.end
    }
}

/// Splices `edge` and `bridge` until one ends; `first` (read from the edge
/// already) goes to the bridge first. Returns the bytes carried each way
/// (edge to bridge, bridge to edge).
pub(crate) fn splice(
    mut edge: Link,
    mut bridge: Link,
    first: &[u8],
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<(u64, u64)> {
    const EDGE: Token = Token(0);
    const BRIDGE: Token = Token(1);
    let mut poll = Poll::new()?;
    let both = Interest::READABLE | Interest::WRITABLE;
    poll.registry().register(&mut edge.sock, EDGE, both)?;
    poll.registry().register(&mut bridge.sock, BRIDGE, both)?;
    let mut up = Pipe::new(first);
    let mut down = Pipe::new(&[]);
    let mut events = Events::with_capacity(8);
    let mut quiet_since = Instant::now();
    loop {
        let moved = up.pump(&mut edge, &mut bridge)? | down.pump(&mut bridge, &mut edge)?;
        if up.done() || down.done() {
            edge.close();
            bridge.close();
            return Ok((up.carried, down.carried));
        }
        let now = Instant::now();
        if moved {
            quiet_since = now;
        }
        // A stop ends a busy tunnel too.
        if now.saturating_duration_since(quiet_since) >= IDLE
            || stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            edge.close();
            bridge.close();
            return Ok((up.carried, down.carried));
        }
        if moved {
            continue;
        }
        poll.poll(&mut events, Some(Duration::from_secs(1)))?;
        for ev in events.iter() {
            match ev.token() {
                EDGE => edge.readable(),
                _ => bridge.readable(),
            }
        }
    }
}
