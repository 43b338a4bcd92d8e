//! The opening of a connection on a TLS listener, on a front thread: what its
//! first bytes are (TLS or plain; inside TLS, TURN or HTTP, with `proxy-core`'s
//! classifier), the TLS handshake once the front decided to answer it, and the
//! hand-over of an HTTP connection to whoever the embedder wired in.

use crate::adapters::std::prelude::*;

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use proxy_core::demux::{self as opening, MAX_OPENING};

use super::http::Accepted;
use crate::Transport;
use crate::adapters::std::conn::{ClientConn, Stage, UNTRUSTED_PROXY};

/// TLS records rustls may queue for a connection that does not read.
const TLS_BUFFER: usize = 16 * 1024;

/// Plaintext read inside TLS before the first bytes must say TURN or HTTP.
const MAX_INNER_OPENING: usize = 64;

/// What the opening of a connection on a TLS listener turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Demuxed {
    /// Not known yet: wait for more bytes.
    Wait,
    /// A TLS ClientHello: answering it costs a signature, so the caller decides
    /// whether to ([`ClientConn::start_tls`]) before it goes on.
    Hello,
    /// TURN: back to the worker that accepted it.
    Turn,
    /// HTTP (inside TLS or not): to the embedder's HTTP hook.
    Http,
    /// Neither: close it.
    Close(&'static str),
}

impl ClientConn {
    /// Answers the ClientHello [`ClientConn::open`] found (the signature is spent
    /// here); then [`ClientConn::open`] goes on inside TLS.
    pub(crate) fn start_tls(
        &mut self,
        tls: &Arc<rustls::ServerConfig>,
    ) -> Result<(), &'static str> {
        let mut conn =
            rustls::ServerConnection::new(tls.clone()).map_err(|_| "TLS setup failed")?;
        conn.set_buffer_limit(Some(TLS_BUFFER));
        let mut hello = self.rbuf.get(..self.rlen).unwrap_or(&[]);
        while !hello.is_empty() {
            if conn.read_tls(&mut hello).is_err() {
                return Err("TLS record rejected");
            }
        }
        conn.process_new_packets()
            .map_err(|_| "TLS handshake failed")?;
        self.rlen = 0;
        self.link.tls = Some(conn);
        self.tuple.transport = Transport::Tls;
        let _ = self.link.flush();
        Ok(())
    }

    /// Reads the opening of a connection on a TLS listener and decides what it
    /// is; what TLS decrypts stays buffered for the next owner. A ClientHello
    /// stops it ([`Demuxed::Hello`]) until [`ClientConn::start_tls`].
    pub(crate) fn open(&mut self, now: Instant) -> Demuxed {
        loop {
            let inside = self.link.tls.is_some();
            let seen = self.rbuf.get(..self.rlen).unwrap_or(&[]);
            let class = if inside {
                opening::classify_inner(seen)
            } else {
                opening::classify(seen)
            };
            match class {
                opening::Opening::NeedMore => {}
                opening::Opening::Stun => {
                    self.stage = Stage::Turn;
                    return Demuxed::Turn;
                }
                opening::Opening::Http => return Demuxed::Http,
                _ if inside => return Demuxed::Close("inside TLS: neither TURN nor HTTP"),
                opening::Opening::Unknown => return Demuxed::Close("neither TLS, TURN nor HTTP"),
                opening::Opening::ProxyHeader => return Demuxed::Close(UNTRUSTED_PROXY),
                opening::Opening::Tls { .. } => return Demuxed::Hello,
            }
            let limit = if inside {
                MAX_INNER_OPENING
            } else {
                MAX_OPENING
            };
            if self.rlen >= limit {
                return Demuxed::Close(if inside {
                    "inside TLS: neither TURN nor HTTP"
                } else {
                    "opening too long"
                });
            }
            if self.rbuf.len() < MAX_OPENING {
                self.rbuf.resize(MAX_OPENING, 0);
            }
            let dst = self.rbuf.get_mut(self.rlen..).unwrap_or_default();
            let read = if inside {
                self.link.read_plain(dst)
            } else {
                self.link.sock.read(dst)
            };
            match read {
                Ok(0) => return Demuxed::Close("closed by peer"),
                Ok(n) => {
                    self.rlen += n;
                    self.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if inside {
                        let _ = self.link.flush();
                    }
                    return Demuxed::Wait;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if inside => return Demuxed::Close("TLS handshake failed"),
                Err(_) => return Demuxed::Close("read error"),
            }
        }
    }

    /// The connection as the HTTP hook takes it: the stream, the TLS session,
    /// the bytes read past the opening and the SNI the TLS handshake negotiated
    /// (rustls read the whole ClientHello, however many records it spans).
    pub(crate) fn into_accepted(mut self) -> Accepted {
        self.rbuf.truncate(self.rlen);
        let tls = self.link.tls.take();
        let sni = tls
            .as_ref()
            .and_then(|c| c.server_name())
            .map(str::to_string);
        let local = self.tuple.server;
        Accepted {
            client: self.tuple.client,
            local,
            sni,
            tls,
            buffered: core::mem::take(&mut self.rbuf),
            stream: std::net::TcpStream::from(self.link.sock),
        }
    }
}
