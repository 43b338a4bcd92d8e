//! One TCP client connection: reads frames (STUN messages, ChannelData) off the
//! stream and queues replies, with bounded buffers.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use stun_core::demux::{self, Frame};
use turn_core::FiveTuple;

/// Largest frame accepted: a maximal STUN message.
pub(crate) const MAX_FRAME: usize = 20 + 65535;
/// Replies queued for a client that does not read them; past this it is dropped.
const MAX_PENDING_WRITE: usize = 256 * 1024;

/// What a read turned up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadState {
    /// Still open.
    Open,
    /// The peer closed, the stream is out of sync, or an I/O error happened.
    Closed(&'static str),
}

/// A client connection and its buffers.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) tuple: FiveTuple,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    pub(crate) last_active: Instant,
    pub(crate) wants_write: bool,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, tuple: FiveTuple, now: Instant) -> Self {
        Conn {
            stream,
            tuple,
            rbuf: vec![0; 4096],
            rlen: 0,
            wbuf: Vec::new(),
            last_active: now,
            wants_write: false,
        }
    }

    /// Reads what is available and hands each complete frame to `on_frame`, which
    /// may append a reply to the write buffer it is given.
    pub(crate) fn read_frames(
        &mut self,
        now: Instant,
        mut on_frame: impl FnMut(&[u8], &mut Vec<u8>),
    ) -> ReadState {
        loop {
            if self.rlen == self.rbuf.len() {
                // Grow only as far as the frame at the front needs.
                let need = demux::stream_frame(&self.rbuf[..self.rlen])
                    .frame_len()
                    .unwrap_or(0)
                    .max(self.rlen + 1);
                if need > MAX_FRAME {
                    return ReadState::Closed("frame larger than a STUN message");
                }
                self.rbuf.resize(need.next_power_of_two().min(MAX_FRAME), 0);
            }
            match self.stream.read(&mut self.rbuf[self.rlen..]) {
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
            if self.wbuf.len() > MAX_PENDING_WRITE {
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
        on_frame: &mut impl FnMut(&[u8], &mut Vec<u8>),
    ) -> Option<&'static str> {
        let mut start = 0;
        loop {
            let pending = &self.rbuf[start..self.rlen];
            match demux::stream_frame(pending) {
                Frame::NeedMore => break,
                Frame::Invalid => return Some("stream is neither STUN nor ChannelData"),
                Frame::Stun(n) | Frame::ChannelData(n) => {
                    if n > MAX_FRAME {
                        return Some("frame larger than a STUN message");
                    }
                    if pending.len() < n {
                        break;
                    }
                    on_frame(&pending[..n], &mut self.wbuf);
                    start += n;
                }
            }
        }
        self.rbuf.copy_within(start..self.rlen, 0);
        self.rlen -= start;
        None
    }

    /// Writes as much of the queue as the socket takes. Returns false on error.
    pub(crate) fn flush(&mut self) -> bool {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }

    /// Queues `bytes` for the client (a relayed packet); false when the client is
    /// too far behind, in which case the packet is dropped as UDP would drop it.
    pub(crate) fn queue(&mut self, bytes: &[u8]) -> bool {
        if self.wbuf.len() + bytes.len() > MAX_PENDING_WRITE {
            return false;
        }
        self.wbuf.extend_from_slice(bytes);
        true
    }

    /// Whether replies are waiting for the socket to become writable.
    pub(crate) fn has_pending_write(&self) -> bool {
        !self.wbuf.is_empty()
    }
}
