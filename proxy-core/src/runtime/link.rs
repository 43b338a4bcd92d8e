//! A non-blocking TCP stream with or without TLS, seen as plaintext: both sides
//! of every connection the web proxy serves.
//!
//! It remembers when its socket was drained (a read found nothing, or took less
//! than it asked for, so the kernel queue was empty): further reads answer
//! `WouldBlock` without a syscall until the event loop sees the socket readable
//! again ([`Link::readable`]). Event loops are edge-triggered, so an empty read
//! after every write and every pass is wasted work.

use crate::runtime::prelude::*;
use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// A TCP stream, optionally wrapped in a rustls connection.
pub struct Link {
    /// The TCP stream (non-blocking, for a mio event loop).
    pub sock: TcpStream,
    /// The TLS session over it, if any.
    pub tls: Option<rustls::Connection>,
    /// The socket's receive queue was found empty since it was last readable.
    drained: bool,
}

/// The socket as rustls reads it, noting a short read (the queue is drained).
struct Counted<'a> {
    sock: &'a mut TcpStream,
    short: bool,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// How far a TLS handshake got ([`Link::handshake`]).
pub(crate) enum Handshake {
    /// Over (or no TLS).
    Done,
    /// Waiting for the socket; whether this step moved anything.
    Going(bool),
}

/// Whether a non-blocking connect of `sock` is done: `Ok(true)` connected,
/// `Ok(false)` still in progress, `Err` why it failed.
pub(crate) fn connected(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

impl Link {
    /// A plain link.
    pub fn plain(sock: TcpStream) -> Link {
        Link::new(sock, None)
    }

    /// A link over `sock`, with `tls` if it speaks TLS.
    pub fn new(sock: TcpStream, tls: Option<rustls::Connection>) -> Link {
        Link {
            sock,
            tls,
            drained: false,
        }
    }

    /// The event loop saw the socket readable: the next read asks the kernel.
    pub fn readable(&mut self) {
        self.drained = false;
    }

    /// A link over a connection another front accepted (non-blocking), with the
    /// server-side TLS session it opened, if any: what
    /// [`Proxy::hand_off`](super::Proxy::hand_off) takes.
    pub fn accepted(sock: std::net::TcpStream, tls: Option<rustls::ServerConnection>) -> Link {
        Link::new(
            TcpStream::from_std(sock),
            tls.map(rustls::Connection::Server),
        )
    }

    /// Reads plaintext into `dst`: `Ok(0)` at the end of the stream,
    /// `Err(WouldBlock)` when nothing is available now.
    pub fn read_plain(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let would_block = || io::Error::from(io::ErrorKind::WouldBlock);
        let Some(tls) = self.tls.as_mut() else {
            if self.drained {
                return Err(would_block());
            }
            let read = self.sock.read(dst);
            match &read {
                Ok(n) if *n > 0 && *n < dst.len() => self.drained = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.drained = true,
                _ => {}
            }
            return read;
        };
        loop {
            match tls.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.drained {
                return Err(would_block());
            }
            let mut counted = Counted {
                sock: &mut self.sock,
                short: false,
            };
            match tls.read_tls(&mut counted) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    self.drained = counted.short;
                    let state = tls.process_new_packets().map_err(|e| {
                        // Tell the peer why before giving up.
                        let _ = tls.write_tls(&mut self.sock);
                        tls_error(e)
                    })?;
                    if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                        return Ok(0);
                    }
                    while tls.wants_write() {
                        match tls.write_tls(&mut self.sock) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.drained = true;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Queues plaintext for the peer (TLS buffers it; plain TCP may take part of
    /// it) and writes what the socket takes. Returns how much of `src` was taken:
    /// 0 only when the socket would block (so a writable event follows).
    pub fn write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.sock.write(src);
        }
        // Records from an earlier write first: a full TLS buffer the socket
        // could take would otherwise refuse `src` with nothing left to wait for.
        self.flush()?;
        let n = match self.tls.as_mut() {
            Some(tls) => tls.writer().write(src)?,
            None => 0,
        };
        self.flush()?;
        Ok(n)
    }

    /// Writes queued TLS records; `Ok(true)` when nothing is left to write.
    pub fn flush(&mut self) -> io::Result<bool> {
        self.flush_counting().map(|(done, _)| done)
    }

    /// As [`Link::flush`], also saying how many bytes the socket took.
    pub(crate) fn flush_counting(&mut self) -> io::Result<(bool, usize)> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok((true, 0));
        };
        let mut written = 0;
        while tls.wants_write() {
            match tls.write_tls(&mut self.sock) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, written)),
                Err(e) => return Err(e),
            }
        }
        Ok((true, written))
    }

    /// Ends the stream from this side: a TLS close_notify first, so the peer
    /// knows the end is not a truncation, then whatever the socket takes now.
    pub fn close(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
        }
        let _ = self.flush();
    }

    /// What the TLS session holds: bytes of records waiting for the socket, and
    /// plaintext received that nobody read yet (nothing without TLS).
    pub(crate) fn buffered(&mut self) -> (usize, usize) {
        match self.tls.as_mut().map(|t| t.process_new_packets()) {
            Some(Ok(state)) => (state.tls_bytes_to_write(), state.plaintext_bytes_to_read()),
            _ => (0, 0),
        }
    }

    /// Drives the TLS handshake as far as the socket allows. Errors: the peer
    /// closed (`UnexpectedEof`), a TLS failure (`InvalidData`, the peer told
    /// why first), the socket's own.
    pub(crate) fn handshake(&mut self) -> io::Result<Handshake> {
        let Link { sock, tls, .. } = self;
        let Some(tls) = tls.as_mut() else {
            return Ok(Handshake::Done);
        };
        let mut progress = false;
        loop {
            while tls.wants_write() {
                match tls.write_tls(sock) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if !tls.is_handshaking() {
                return Ok(Handshake::Done);
            }
            if !tls.wants_read() {
                return Ok(Handshake::Going(progress));
            }
            match tls.read_tls(sock) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed during the TLS handshake",
                    ));
                }
                Ok(_) => {
                    progress = true;
                    if let Err(e) = tls.process_new_packets() {
                        // Tell the peer why before giving up.
                        let _ = tls.write_tls(sock);
                        return Err(tls_error(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Handshake::Going(progress));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether TLS records wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }
}
