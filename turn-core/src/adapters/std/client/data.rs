//! TCP relays (RFC 6062) with the blocking client: a peer connection opened
//! from the relayed address ([`TurnClient::connect_peer`]) or accepted on it
//! ([`TurnClient::accept_peer`]), joined to a new connection to the server by
//! ConnectionBind, and handed back as a [`DataConnection`] that reads and
//! writes the peer's bytes.

use crate::adapters::std::prelude::*;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use crate::client::{BindAnswer, ClientEvent, Failure, RequestKind};

use super::connection::Stream;
use super::{ClientIoError, TurnClient, now};

/// A data connection: the peer's bytes, both ways, over a connection to the
/// server (TCP, or TLS like the client's).
pub struct DataConnection {
    stream: Stream,
    /// What the server sent past the ConnectionBind's answer, read first.
    early: Vec<u8>,
    peer: SocketAddr,
}

impl std::fmt::Debug for DataConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl DataConnection {
    /// The peer at the other end.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Bounds each read (`None`: wait as long as it takes).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.tcp().set_read_timeout(timeout)
    }

    /// Closes the writing half: the peer sees the end of the stream.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.tcp().shutdown(std::net::Shutdown::Write)
    }
}

impl Read for DataConnection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.early.is_empty() {
            let n = buf.len().min(self.early.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), self.early.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.early.drain(..n);
            return Ok(n);
        }
        self.stream.read(buf)
    }
}

impl Write for DataConnection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl TurnClient {
    /// Has the server connect to `peer` from the TCP relayed address (the
    /// client allocated with `tcp_relay`), and returns the data connection.
    pub fn connect_peer(
        &mut self,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<DataConnection, ClientIoError> {
        let deadline = StdInstant::now() + timeout;
        self.client.connect(now(), peer)?;
        let id = match self.until(
            timeout,
            "connection to the peer",
            |e| matches!(e, ClientEvent::Connected { peer: p, .. } if *p == peer),
        )? {
            ClientEvent::Connected { id, .. } => id,
            _ => return Err(ClientIoError::TimedOut("connection to the peer")),
        };
        self.data_connection(id, peer, deadline)
    }

    /// Waits for a peer to connect to the TCP relayed address (it needs a
    /// permission), and returns its data connection.
    pub fn accept_peer(&mut self, timeout: Duration) -> Result<DataConnection, ClientIoError> {
        let deadline = StdInstant::now() + timeout;
        let seen = self.drive(timeout, |e| {
            matches!(e, ClientEvent::ConnectionAttempt { .. })
        })?;
        match seen.into_iter().rev().find_map(|e| match e {
            ClientEvent::ConnectionAttempt { peer, id } => Some((peer, id)),
            _ => None,
        }) {
            Some((peer, id)) => self.data_connection(id, peer, deadline),
            None => Err(ClientIoError::TimedOut("a peer's connection")),
        }
    }

    /// Opens a connection to the server and binds it to connection `id`.
    fn data_connection(
        &mut self,
        id: u32,
        peer: SocketAddr,
        deadline: StdInstant,
    ) -> Result<DataConnection, ClientIoError> {
        let mut conn = self.open_to(self.server)?;
        let failed = |failure| ClientIoError::Failed {
            request: RequestKind::Connect(peer),
            failure,
        };
        // A stale nonce is answered with a fresh one: one more try.
        for _ in 0..2 {
            let n = self.client.connection_bind(id, &mut self.buf)?;
            conn.send(self.buf.get(..n).unwrap_or_default())?;
            let left = deadline.saturating_duration_since(StdInstant::now());
            let Some(n) = conn.recv(&mut self.buf, left.max(Duration::from_millis(1)))? else {
                return Err(ClientIoError::TimedOut("ConnectionBind"));
            };
            match self
                .client
                .bind_answer(self.buf.get(..n).unwrap_or_default())
            {
                BindAnswer::Bound => {
                    let (stream, early) = conn.into_stream()?;
                    return Ok(DataConnection {
                        stream,
                        early,
                        peer,
                    });
                }
                BindAnswer::Retry => {}
                BindAnswer::Failed(code) => return Err(failed(Failure::Code(code))),
            }
        }
        Err(failed(Failure::Code(438)))
    }
}
