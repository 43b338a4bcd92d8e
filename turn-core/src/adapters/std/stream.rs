//! A TURN client's byte stream on the relay: TCP, or (feature `tls`) rustls's
//! server side over TCP, non-blocking, for a worker's or the front's event loop.

use crate::adapters::std::prelude::*;

use std::io;
#[cfg(feature = "tls")]
use std::io::{Read, Write};

use mio::net::TcpStream;

/// A client's stream: reads give plaintext, writes take plaintext; with TLS,
/// records rustls queued go out on [`ServerStream::flush`].
pub(crate) struct ServerStream {
    /// The TCP stream (registered with an event loop).
    pub(crate) sock: TcpStream,
    /// The TLS session over it, once the front answered a ClientHello.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<rustls::ServerConnection>,
}

impl ServerStream {
    /// A stream without TLS (yet).
    pub(crate) fn plain(sock: TcpStream) -> ServerStream {
        ServerStream {
            sock,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Reads plaintext into `dst`: `Ok(0)` at the end of the stream,
    /// `Err(WouldBlock)` when nothing is available now.
    pub(crate) fn read_plain(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            return read_tls(tls, &mut self.sock, dst);
        }
        io::Read::read(&mut self.sock, dst)
    }

    /// Queues plaintext for the client and writes what the socket takes; how
    /// much of `src` was taken (0 only when the socket would block).
    pub(crate) fn write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            // Records from an earlier write first: a full TLS buffer the socket
            // could take would otherwise refuse `src` with nothing to wait for.
            self.flush()?;
            let n = match self.tls.as_mut() {
                Some(tls) => tls.writer().write(src)?,
                None => 0,
            };
            self.flush()?;
            return Ok(n);
        }
        io::Write::write(&mut self.sock, src)
    }

    /// Writes queued TLS records; `Ok(true)` when nothing is left to write.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }

    /// Whether TLS records wait for the socket to become writable.
    pub(crate) fn wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.wants_write();
        }
        false
    }
}

/// Reads plaintext from `tls` over `sock`, taking records off the socket until
/// there is some, the socket would block, or the stream ends.
#[cfg(feature = "tls")]
fn read_tls(
    tls: &mut rustls::ServerConnection,
    sock: &mut TcpStream,
    dst: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(dst) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(sock)? == 0 {
            return Ok(0);
        }
        let state = tls.process_new_packets().map_err(|e| {
            // Tell the client why before giving up.
            let _ = tls.write_tls(sock);
            io::Error::new(io::ErrorKind::InvalidData, e)
        })?;
        if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
            return Ok(0);
        }
        // Handshake answers and key updates go out as they come.
        while tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
}
