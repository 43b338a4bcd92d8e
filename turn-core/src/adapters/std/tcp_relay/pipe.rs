//! One peer TCP connection of a TCP allocation and, once bound, its client
//! data connection: the bytes each sends go to the other as they are, through
//! a bounded buffer each way. A full buffer stops reading from its sender, so
//! TCP's own flow control holds a fast side to the pace of the slow one.

use crate::adapters::std::prelude::*;

use std::io::{self, Read, Write};
use std::time::Instant as StdInstant;

use mio::net::TcpStream;

use crate::adapters::std::conn::ClientConn;
use crate::server::{ConnectionId, ConnectionTraffic};

/// What waits in each direction at most: 64 KiB, about one window.
pub(crate) const BUFFER: usize = 64 * 1024;

/// A peer connection and its data connection.
pub(crate) struct Pipe {
    pub(crate) id: ConnectionId,
    pub(crate) peer: TcpStream,
    /// While connecting (for a Connect): by when it must be done.
    pub(crate) connecting: Option<StdInstant>,
    /// The client data connection, once ConnectionBind joined it.
    pub(crate) client: Option<ClientConn>,
    /// From the client, for the peer.
    to_peer: Vec<u8>,
    /// From the peer, for the client (held until the bind, then relayed).
    to_client: Vec<u8>,
    /// What was relayed each way.
    pub(crate) traffic: ConnectionTraffic,
    /// The peer closed (or failed): nothing more comes from it.
    peer_done: bool,
    /// The client closed (or failed).
    client_done: bool,
}

/// Reads from `src` into `buf` up to [`BUFFER`]: whether anything came, and
/// whether the stream ended (or failed).
fn fill(buf: &mut Vec<u8>, mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) -> (bool, bool) {
    let mut progress = false;
    while buf.len() < BUFFER {
        let start = buf.len();
        buf.resize(BUFFER, 0);
        let got = read(buf.get_mut(start..).unwrap_or_default());
        match got {
            Ok(0) => {
                buf.truncate(start);
                return (progress, true);
            }
            Ok(n) => {
                buf.truncate(start + n);
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                buf.truncate(start);
                break;
            }
            Err(_) => {
                buf.truncate(start);
                return (progress, true);
            }
        }
    }
    (progress, false)
}

/// Writes from the front of `buf`: how many bytes went, and whether the
/// stream failed.
fn drain(buf: &mut Vec<u8>, mut write: impl FnMut(&[u8]) -> io::Result<usize>) -> (u64, bool) {
    let mut sent = 0u64;
    while !buf.is_empty() {
        match write(buf) {
            Ok(0) => return (sent, true),
            Ok(n) => {
                buf.drain(..n.min(buf.len()));
                sent += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return (sent, true),
        }
    }
    (sent, false)
}

impl Pipe {
    /// A peer connection, connecting until `connecting` if set.
    pub(crate) fn new(id: ConnectionId, peer: TcpStream, connecting: Option<StdInstant>) -> Pipe {
        Pipe {
            id,
            peer,
            connecting,
            client: None,
            to_peer: Vec::new(),
            to_client: Vec::new(),
            traffic: ConnectionTraffic::default(),
            peer_done: false,
            client_done: false,
        }
    }

    /// Joins the client data connection; what it sent past its ConnectionBind
    /// (still in its read buffer) goes to the peer first.
    pub(crate) fn bind(&mut self, mut client: ClientConn) {
        let early = client.rbuf.get(..client.rlen).unwrap_or_default();
        self.to_peer.extend_from_slice(early);
        client.rlen = 0;
        // Its buffer for frames is no longer needed.
        client.rbuf = Vec::new();
        self.client = Some(client);
    }

    /// Moves what it can both ways. `false` once the pipe is done: one side
    /// closed and what it sent has reached the other (or cannot).
    pub(crate) fn pump(&mut self) -> bool {
        loop {
            let mut progress = false;
            if let Some(c) = self.client.as_mut() {
                if !self.client_done {
                    let (p, done) = fill(&mut self.to_peer, |b| c.link.read_plain(b));
                    progress |= p;
                    self.client_done = done;
                }
                // The ConnectionBind's answer first, then the peer's bytes.
                if !c.flush() {
                    self.client_done = true;
                    self.to_client.clear();
                } else if !c.has_pending_write() {
                    let (sent, failed) = drain(&mut self.to_client, |b| c.link.write_plain(b));
                    progress |= sent > 0;
                    self.traffic.from_peer_bytes += sent;
                    if failed {
                        self.client_done = true;
                        self.to_client.clear();
                    }
                }
            }
            if !self.peer_done {
                let peer = &mut self.peer;
                let (p, done) = fill(&mut self.to_client, |b| peer.read(b));
                progress |= p;
                self.peer_done = done;
            }
            let peer = &mut self.peer;
            let (sent, failed) = drain(&mut self.to_peer, |b| peer.write(b));
            progress |= sent > 0;
            self.traffic.to_peer_bytes += sent;
            if failed {
                self.peer_done = true;
                self.to_peer.clear();
            }
            if !progress {
                break;
            }
        }
        let client_finished = self.client_done && self.to_peer.is_empty();
        let peer_finished = self.peer_done && self.to_client.is_empty() && self.client.is_some();
        !(client_finished || peer_finished)
    }
}
