//! One TCP or TLS client connection and its buffers: as a TURN connection it
//! reads frames (STUN messages, ChannelData) off the stream and queues replies,
//! on its worker, with bounded buffers. On a TLS listener the front opens it
//! first (`front::opening`: TLS or plain; inside TLS, TURN or HTTP).
//!
//! Until it holds an allocation, a connection is held to little: frames of at
//! most [`MAX_UNAUTH_FRAME`] bytes and [`MAX_UNAUTH_WRITE`] bytes of replies
//! queued (about 4 KiB + 16 KiB of buffers, plus rustls's records for TLS), and it
//! must finish its TLS handshake and send its first whole message by a deadline
//! fixed when it was accepted, which trickling bytes do not move.

use crate::adapters::std::prelude::*;

use std::io;
use std::time::Instant;

use mio::net::TcpStream;
use stun_core::demux::{self, Frame};

use crate::FiveTuple;

use super::sources::SourceSlot;
pub(crate) use super::stream::ServerStream;

/// Largest frame accepted: a maximal STUN message.
pub(crate) const MAX_FRAME: usize = 20 + 65535;
/// Largest frame accepted before the connection holds an allocation: an Allocate
/// or a Binding request is far smaller.
pub(crate) const MAX_UNAUTH_FRAME: usize = 4096;
/// Replies queued for a client that does not read them; past this it is dropped.
const MAX_PENDING_WRITE: usize = 256 * 1024;
/// Replies queued before the connection holds an allocation.
const MAX_UNAUTH_WRITE: usize = 16 * 1024;

/// Why a connection that opens with a PROXY header from an address not
/// configured as a load balancer is closed.
pub(crate) const UNTRUSTED_PROXY: &str =
    "refused: a PROXY protocol header from an address not in proxy_protocol_from";

/// What a read turned up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadState {
    /// Still open.
    Open,
    /// The peer closed, the stream is out of sync, or an I/O error happened.
    Closed(&'static str),
}

/// What the reader of a frame says next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// On to the next frame.
    Next,
    /// The frame was handled and the stream is no longer framed (a
    /// ConnectionBind that made it a data connection): stop, leaving what
    /// follows in the read buffer.
    Stop,
    /// Stop before this frame, leaving it in the read buffer (for another
    /// worker).
    Hold,
}

/// Where a connection on a TLS listener stands.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Its first bytes have not been classified yet.
    Opening,
    /// A TURN client (over TCP or TLS).
    Turn,
}

/// A client connection and its buffers.
pub(crate) struct ClientConn {
    // The counts go first: fields drop in order, so a connection gives back
    // its places before its socket closes, and a client that sees the close
    // and connects again at once is not refused for the connection it left.
    /// Its place in the per-source count.
    pub(super) slot: Option<SourceSlot>,
    /// Its place among its worker's connections still opening (counted against
    /// `tcp.max_connections` until the worker takes it back, or it leaves).
    pub(crate) opening: Option<OpeningTicket>,
    pub(crate) link: ServerStream,
    pub(crate) tuple: FiveTuple,
    pub(crate) stage: Stage,
    pub(crate) rbuf: Vec<u8>,
    pub(crate) rlen: usize,
    wbuf: Vec<u8>,
    pub(crate) last_active: Instant,
    pub(crate) wants_write: bool,
    /// By when the handshake and the first whole message must be done; `None`
    /// once the first message was handled.
    pub(crate) deadline: Option<Instant>,
    /// Whether the connection holds an allocation (its limits are then wider).
    pub(crate) allocated: bool,
    /// From a load balancer: a PROXY header comes first.
    pub(crate) proxy_pending: bool,
    /// A frame's reader said stop ([`Flow::Stop`] or [`Flow::Hold`]): no
    /// more frames are read until the connection changes hands.
    pub(crate) halted: bool,
}

/// A connection's place among its worker's openings; given back when dropped.
#[derive(Debug)]
pub(crate) struct OpeningTicket(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl OpeningTicket {
    /// Counts one more opening in `count`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn take(count: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> OpeningTicket {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpeningTicket(count.clone())
    }
}

impl Drop for OpeningTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ClientConn {
    /// A connection accepted at `now` that must finish its opening by `deadline`.
    pub(crate) fn new(
        stream: TcpStream,
        tuple: FiveTuple,
        stage: Stage,
        now: Instant,
        deadline: Instant,
        slot: Option<SourceSlot>,
    ) -> Self {
        ClientConn {
            link: ServerStream::plain(stream),
            tuple,
            stage,
            rbuf: vec![0; 4096],
            rlen: 0,
            wbuf: Vec::new(),
            last_active: now,
            wants_write: false,
            deadline: Some(deadline),
            allocated: false,
            slot,
            proxy_pending: false,
            opening: None,
            halted: false,
        }
    }

    fn max_frame(&self) -> usize {
        if self.allocated {
            MAX_FRAME
        } else {
            MAX_UNAUTH_FRAME
        }
    }

    fn max_write(&self) -> usize {
        if self.allocated {
            MAX_PENDING_WRITE
        } else {
            MAX_UNAUTH_WRITE
        }
    }

    /// Reads what is available and hands each complete frame to `on_frame`, which
    /// may append a reply to the write buffer it is given, and says whether to
    /// go on (see [`Flow`]; once halted, nothing more is read).
    pub(crate) fn read_frames(
        &mut self,
        now: Instant,
        mut on_frame: impl FnMut(&[u8], &mut Vec<u8>) -> Flow,
    ) -> ReadState {
        self.halted = false;
        // Bytes buffered while the opening was classified come first.
        if let Some(reason) = self.drain_frames(&mut on_frame) {
            return ReadState::Closed(reason);
        }
        loop {
            if self.halted {
                return ReadState::Open;
            }
            if self.rlen == self.rbuf.len() {
                // Grow only as far as the frame at the front needs.
                let need = demux::stream_frame(self.rbuf.get(..self.rlen).unwrap_or_default())
                    .frame_len()
                    .unwrap_or(0)
                    .max(self.rlen + 1);
                if need > self.max_frame() {
                    return ReadState::Closed(self.too_large());
                }
                self.rbuf
                    .resize(need.next_power_of_two().min(self.max_frame()), 0);
            }
            match self
                .link
                .read_plain(self.rbuf.get_mut(self.rlen..).unwrap_or_default())
            {
                Ok(0) => return ReadState::Closed("closed by peer"),
                Ok(n) => {
                    self.rlen += n;
                    self.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadState::Closed("read error"),
            }
            // Process as we go so one read burst cannot grow the buffer unbounded.
            if let Some(reason) = self.drain_frames(&mut on_frame) {
                return ReadState::Closed(reason);
            }
            if self.wbuf.len() > self.max_write() {
                return ReadState::Closed("client does not read its responses");
            }
        }
        match self.drain_frames(&mut on_frame) {
            Some(reason) => ReadState::Closed(reason),
            None => ReadState::Open,
        }
    }

    /// Hands every complete frame at the front of the read buffer to `on_frame`.
    fn drain_frames(
        &mut self,
        on_frame: &mut impl FnMut(&[u8], &mut Vec<u8>) -> Flow,
    ) -> Option<&'static str> {
        let mut start = 0;
        let max = self.max_frame();
        // Before the first message: a load balancer's header, sent from an
        // address not configured as one, is named as such.
        if self.deadline.is_some()
            && proxy_core::demux::classify(self.rbuf.get(..self.rlen).unwrap_or_default())
                == proxy_core::demux::Opening::ProxyHeader
        {
            return Some(UNTRUSTED_PROXY);
        }
        while !self.halted {
            let pending = self.rbuf.get(start..self.rlen).unwrap_or_default();
            match demux::stream_frame(pending) {
                Frame::NeedMore => break,
                Frame::Invalid => return Some("stream is neither STUN nor ChannelData"),
                Frame::Stun(n) | Frame::ChannelData(n) => {
                    if n > max {
                        return Some(self.too_large());
                    }
                    if pending.len() < n {
                        break;
                    }
                    match on_frame(pending.get(..n).unwrap_or_default(), &mut self.wbuf) {
                        Flow::Next => {}
                        Flow::Stop => self.halted = true,
                        Flow::Hold => {
                            self.halted = true;
                            break;
                        }
                    }
                    self.deadline = None;
                    start += n;
                }
            }
        }
        self.rbuf.copy_within(start..self.rlen, 0);
        self.rlen -= start;
        None
    }

    fn too_large(&self) -> &'static str {
        if self.allocated {
            "frame larger than a STUN message"
        } else {
            "frame larger than 4 KiB before an allocation"
        }
    }

    /// Writes as much of the queue as the socket takes. Returns false on error.
    pub(crate) fn flush(&mut self) -> bool {
        while !self.wbuf.is_empty() {
            match self.link.write_plain(&self.wbuf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        self.link.flush().is_ok()
    }

    /// Queues `bytes` for the client (a relayed packet); false when the client is
    /// too far behind, in which case the packet is dropped as UDP would drop it.
    pub(crate) fn queue(&mut self, bytes: &[u8]) -> bool {
        if self.wbuf.len() + bytes.len() > self.max_write() {
            return false;
        }
        self.wbuf.extend_from_slice(bytes);
        true
    }

    /// Whether bytes wait for the socket to become writable.
    pub(crate) fn has_pending_write(&self) -> bool {
        !self.wbuf.is_empty() || self.link.wants_write()
    }
}
