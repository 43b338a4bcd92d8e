//! Accepting on a listener until told to stop: for a listener that moves to
//! another process (an upgrade hands it over), where the old process must
//! stop taking its connections while the socket itself lives on.

use crate::runtime::prelude::*;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

/// How often a waiting accept looks at its stop flag.
const LOOK: Duration = Duration::from_millis(100);

/// The connections of a listener, until its flag is set (then the iterator
/// ends; the listener closes when this is dropped, in this process only).
///
/// ```
/// use std::net::{TcpListener, TcpStream};
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use proxy_core::runtime::Accepting;
/// # fn main() -> std::io::Result<()> {
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let stop = Arc::new(AtomicBool::new(false));
/// let mut accepting = Accepting::new(listener, stop.clone())?;
/// let _client = TcpStream::connect(addr)?;
/// assert!(accepting.next().is_some_and(|c| c.is_ok()));
/// stop.store(true, Ordering::Relaxed);
/// assert!(accepting.next().is_none());
/// # Ok(())
/// # }
/// ```
pub struct Accepting {
    listener: mio::net::TcpListener,
    poll: Poll,
    events: Events,
    stop: Arc<AtomicBool>,
}

impl core::fmt::Debug for Accepting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Accepting")
            .field("listener", &self.listener)
            .field("stopped", &self.stop.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Accepting {
    /// Accepts on `listener` until `stop` is set.
    pub fn new(listener: TcpListener, stop: Arc<AtomicBool>) -> io::Result<Accepting> {
        listener.set_nonblocking(true)?;
        let mut listener = mio::net::TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, Token(0), Interest::READABLE)?;
        Ok(Accepting {
            listener,
            poll,
            events: Events::with_capacity(4),
            stop,
        })
    }
}

impl Iterator for Accepting {
    /// A connection (blocking, as `TcpListener::accept` gives it), or why
    /// an accept failed.
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            match self.listener.accept() {
                Ok((s, _)) => {
                    let s = TcpStream::from(s);
                    return Some(s.set_nonblocking(false).map(|()| s));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            }
            if let Err(e) = self.poll.poll(&mut self.events, Some(LOOK))
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Some(Err(e));
            }
        }
    }
}
