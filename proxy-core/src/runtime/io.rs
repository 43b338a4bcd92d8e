//! Blocking-with-deadline reads and writes over non-blocking [`Link`]s: one small
//! event loop per proxy connection, over the client and the web bridge.

use crate::runtime::prelude::*;
use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::link::Link;

/// The client's token.
pub(crate) const CLIENT: Token = Token(0);
/// The web bridge's token.
pub(crate) const UPSTREAM: Token = Token(1);

/// A per-connection event loop.
pub(crate) struct Io {
    pub(crate) poll: Poll,
    pub(crate) events: Events,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
}

impl Io {
    pub(crate) fn new() -> io::Result<Io> {
        Ok(Io {
            poll: Poll::new()?,
            events: Events::with_capacity(8),
        })
    }

    /// Registers `link` under `token` for both directions.
    pub(crate) fn register(&self, link: &mut Link, token: Token) -> io::Result<()> {
        self.poll.registry().register(
            &mut link.sock,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Waits for any event until `deadline`.
    pub(crate) fn wait(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        match self
            .poll
            .poll(&mut self.events, Some(left.max(Duration::from_millis(1))))
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads some plaintext from `link`, waiting until `deadline`. `Ok(0)` at the
    /// end of the stream.
    pub(crate) fn read(
        &mut self,
        link: &mut Link,
        buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<usize> {
        loop {
            match link.read_plain(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = link.flush();
                    self.wait(deadline)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `data` to `link`. The deadline follows progress: the peer
    /// may take as long as it likes, as long as it never stalls for `stall`.
    pub(crate) fn write_all(
        &mut self,
        link: &mut Link,
        mut data: &[u8],
        stall: Duration,
    ) -> io::Result<()> {
        let mut deadline = Instant::now() + stall;
        while !data.is_empty() {
            match link.write_plain(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = data.get(n..).unwrap_or(&[]);
                    deadline = Instant::now() + stall;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(deadline)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // TLS records still queued: whatever the socket takes is progress.
        loop {
            let (done, written) = link.flush_counting()?;
            if done {
                return Ok(());
            }
            if written > 0 {
                deadline = Instant::now() + stall;
            }
            self.wait(deadline)?;
        }
    }
}
