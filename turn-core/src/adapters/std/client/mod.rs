//! A blocking TURN client on std sockets: [`TurnClient`] drives the sans-IO
//! [`Client`] over a UDP socket or a TCP (or, with the
//! `tls` feature, TLS) stream to the server, waiting with timeouts taken from
//! the client's own timers, so retransmissions, the 401 round, a 438 retry, a
//! 300 redirect and refreshes all happen while you wait.
//!
//! ```no_run
//! use std::time::Duration;
//! use turn_core::adapters::std::client::TurnClient;
//! use turn_core::client::ClientConfig;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = ClientConfig::new("192.0.2.10:3478".parse()?, "alice", "s3cret")?;
//! let mut turn = TurnClient::connect(cfg)?;
//! let t = Duration::from_secs(5);
//! let allocation = turn.allocate(t)?;
//! println!("peers send to {}", allocation.relayed);
//! let peer = "198.51.100.20:5000".parse()?;
//! turn.bind_channel(peer, t)?;
//! turn.send_to(peer, b"hello")?;
//! let mut buf = [0u8; 1500];
//! if let Some((n, from)) = turn.recv_from(&mut buf, t)? {
//!     println!("{from} answered {:?}", &buf[..n]);
//! }
//! turn.deallocate(t)?;
//! # Ok(())
//! # }
//! ```

use crate::adapters::std::prelude::*;

mod connection;
mod data;
mod error;
mod select;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant as StdInstant};

use stun_core::attributes::XorMappedAddress;
use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

use crate::Instant;
#[cfg(feature = "tls")]
use crate::Transport;
use crate::client::{Client, ClientConfig, ClientEvent};

use connection::Connection;
#[cfg(feature = "tls")]
pub use connection::TlsTarget;
pub use data::DataConnection;
pub use error::ClientIoError;
pub use select::{Chosen, allocate_best, probe};

/// The clients' monotonic clock: milliseconds since the first client started.
fn now() -> Instant {
    static ORIGIN: OnceLock<StdInstant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(StdInstant::now);
    Instant::from_millis(u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// What an allocation gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    /// The relayed address peers send to.
    pub relayed: SocketAddr,
    /// This client's address as the server sees it.
    pub mapped: SocketAddr,
    /// Lifetime granted, seconds (refreshed while the client is driven).
    pub lifetime: u32,
    /// The server it is on, if a 300 redirect moved it.
    pub redirected: Option<SocketAddr>,
}

/// A TURN client over std sockets: one allocation on one server. See the
/// [module docs](self).
pub struct TurnClient {
    client: Client,
    conn: Connection,
    /// The server `conn` goes to.
    server: SocketAddr,
    #[cfg(feature = "tls")]
    tls: Option<TlsTarget>,
    buf: Vec<u8>,
    events: Vec<ClientEvent>,
}

impl fmt::Debug for TurnClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnClient")
            .field("server", &self.server)
            .field("state", &self.client.state())
            .field("relayed", &self.client.relayed())
            .finish_non_exhaustive()
    }
}

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl TurnClient {
    /// Connects to `cfg.server` over UDP or TCP (`cfg.transport`). Allocates
    /// nothing yet.
    pub fn connect(cfg: ClientConfig) -> Result<TurnClient, ClientIoError> {
        Self::open(
            cfg,
            #[cfg(feature = "tls")]
            None,
        )
    }

    /// Connects to `cfg.server` over TLS, verifying it as `target` says.
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        mut cfg: ClientConfig,
        target: TlsTarget,
    ) -> Result<TurnClient, ClientIoError> {
        cfg.transport = Transport::Tls;
        Self::open(cfg, Some(target))
    }

    fn open(
        cfg: ClientConfig,
        #[cfg(feature = "tls")] tls: Option<TlsTarget>,
    ) -> Result<TurnClient, ClientIoError> {
        let (server, transport) = (cfg.server, cfg.transport);
        let conn = Connection::open(
            server,
            transport,
            CONNECT_TIMEOUT,
            #[cfg(feature = "tls")]
            tls.as_ref(),
        )
        .map_err(|source| ClientIoError::Connect {
            server,
            transport,
            source,
        })?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| ClientIoError::Io(io::Error::other(e.to_string())))?;
        Ok(TurnClient {
            client: Client::new(cfg, seed),
            conn,
            server,
            #[cfg(feature = "tls")]
            tls,
            buf: vec![0; 1 << 16],
            events: Vec::new(),
        })
    }

    /// The server this client talks to (a redirect changes it).
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.conn.local_addr()
    }

    /// The connected UDP socket to the server (UDP clients only): for a
    /// caller that frames its own ChannelData on a bound channel and reads the
    /// answers itself, such as a load generator driving many allocations from
    /// one event loop (the client is then no longer driven: nothing is
    /// refreshed).
    pub fn udp_socket(&self) -> Option<&std::net::UdpSocket> {
        match &self.conn {
            Connection::Udp(sock, _) => Some(sock),
            Connection::Stream(..) => None,
        }
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.client.relayed()
    }

    /// This client's address as the server sees it, once allocated.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.client.mapped()
    }

    /// The sans-IO client underneath.
    pub fn core(&self) -> &Client {
        &self.client
    }

    /// The events seen so far (redirects, round-trip times, refreshes), taken.
    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        core::mem::take(&mut self.events)
    }

    /// A STUN Binding request (retransmitted over UDP): this host's address as
    /// the server sees it and the round-trip time, or `None` with no answer.
    pub fn binding(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(SocketAddr, Duration)>, ClientIoError> {
        let mut tid = [0u8; 12];
        getrandom::fill(&mut tid)
            .map_err(|e| ClientIoError::Io(io::Error::other(e.to_string())))?;
        let tid = TransactionId::new(tid);
        let mut req = [0u8; 64];
        let len = {
            let mut b = MessageBuilder::new(
                &mut req,
                MessageType::new(Method::BINDING, Class::Request),
                tid,
            )
            .map_err(|e| ClientIoError::Io(io::Error::other(e.to_string())))?;
            b.add_fingerprint()
                .map_err(|e| ClientIoError::Io(io::Error::other(e.to_string())))?;
            b.finish()
        };
        let req = req.get(..len).unwrap_or_default();
        let start = StdInstant::now();
        let mut next_send = start;
        let mut rto = Duration::from_millis(250);
        while start.elapsed() < timeout {
            if StdInstant::now() >= next_send {
                self.conn.send(req)?;
                next_send = StdInstant::now() + rto;
                rto *= 2;
            }
            let wait = next_send
                .saturating_duration_since(StdInstant::now())
                .min(timeout.saturating_sub(start.elapsed()));
            if let Some(n) = self.conn.recv(&mut self.buf, wait)?
                && let Ok(m) = Message::new_checked(self.buf.get(..n).unwrap_or_default())
                && m.transaction_id() == tid
            {
                let mapped = m.attribute::<XorMappedAddress>().ok().flatten();
                return Ok(mapped.map(|a| (a.0, start.elapsed())));
            }
        }
        Ok(None)
    }

    /// Runs the client until `done` says so (given each event) or `timeout`
    /// passes, sending what it asks and feeding it what arrives; returns the
    /// events seen. Data from peers arriving meanwhile is dropped (use
    /// [`TurnClient::recv_from`] to read it).
    pub fn drive(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&ClientEvent) -> bool,
    ) -> Result<Vec<ClientEvent>, ClientIoError> {
        let deadline = StdInstant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            self.flush()?;
            while let Some(e) = self.client.poll_event() {
                let stop = done(&e);
                seen.push(e);
                if stop {
                    self.events.extend_from_slice(&seen);
                    return Ok(seen);
                }
            }
            let left = deadline.saturating_duration_since(StdInstant::now());
            if left.is_zero() {
                self.events.extend_from_slice(&seen);
                return Ok(seen);
            }
            let wait = self.wait(left);
            match self.conn.recv(&mut self.buf, wait)? {
                Some(n) => {
                    let bytes = self.buf.get(..n).unwrap_or_default();
                    let _ = self.client.handle_input(now(), self.server, bytes);
                }
                None => self.client.handle_timeout(now()),
            }
        }
    }

    /// How long to wait for input: until the client's next timer, at most `left`.
    fn wait(&self, left: Duration) -> Duration {
        self.client.poll_timeout().map_or(left, |at| {
            Duration::from_millis(at.millis_since(now())).min(left)
        })
    }

    /// Sends everything the client has to send, following a redirect to its new
    /// server.
    fn flush(&mut self) -> Result<(), ClientIoError> {
        while let Some(t) = self.client.poll_transmit(now(), &mut self.buf) {
            if t.destination != self.server {
                self.reconnect(t.destination)?;
            }
            self.conn.send(self.buf.get(..t.len).unwrap_or_default())?;
        }
        Ok(())
    }

    fn reconnect(&mut self, server: SocketAddr) -> Result<(), ClientIoError> {
        self.conn = self.open_to(server)?;
        self.server = server;
        Ok(())
    }

    /// A new connection to `server` over the client's transport (and TLS).
    fn open_to(&self, server: SocketAddr) -> Result<Connection, ClientIoError> {
        let transport = self.client.transport();
        Connection::open(
            server,
            transport,
            CONNECT_TIMEOUT,
            #[cfg(feature = "tls")]
            self.tls.as_ref(),
        )
        .map_err(|source| ClientIoError::Connect {
            server,
            transport,
            source,
        })
    }

    /// Drives until an event `want` picks, or a failure of the same request.
    fn until(
        &mut self,
        timeout: Duration,
        what: &'static str,
        want: impl Fn(&ClientEvent) -> bool,
    ) -> Result<ClientEvent, ClientIoError> {
        let seen = self.drive(timeout, |e| {
            want(e) || matches!(e, ClientEvent::Failed { .. })
        })?;
        match seen
            .into_iter()
            .rev()
            .find(|e| want(e) || matches!(e, ClientEvent::Failed { .. }))
        {
            Some(ClientEvent::Failed { request, failure }) => {
                Err(ClientIoError::Failed { request, failure })
            }
            Some(e) => Ok(e),
            None => Err(ClientIoError::TimedOut(what)),
        }
    }

    /// Allocates (with the 401 round, a 438 retry, and a redirect if the server
    /// sends one).
    pub fn allocate(&mut self, timeout: Duration) -> Result<Allocated, ClientIoError> {
        self.client.allocate(now())?;
        let first = self.server;
        match self.until(timeout, "allocation", |e| {
            matches!(e, ClientEvent::Allocated { .. })
        })? {
            ClientEvent::Allocated {
                relayed,
                mapped,
                lifetime,
            } => Ok(Allocated {
                relayed,
                mapped,
                lifetime,
                redirected: (self.server != first).then_some(self.server),
            }),
            _ => Err(ClientIoError::TimedOut("allocation")),
        }
    }

    /// Installs (or refreshes) a permission for `peer`; the client refreshes it
    /// while driven.
    pub fn create_permission(
        &mut self,
        peer: IpAddr,
        timeout: Duration,
    ) -> Result<(), ClientIoError> {
        self.client.create_permission(now(), peer)?;
        self.until(timeout, "permission", |e| {
            *e == ClientEvent::PermissionCreated(peer)
        })
        .map(|_| ())
    }

    /// Binds a channel to `peer` (which installs its permission too); its number.
    pub fn bind_channel(
        &mut self,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<u16, ClientIoError> {
        let channel = self.client.bind_channel(now(), peer)?;
        self.until(
            timeout,
            "channel binding",
            |e| matches!(e, ClientEvent::ChannelBound { peer: p, .. } if *p == peer),
        )
        .map(|_| channel)
    }

    /// Sends `data` to `peer` through the relay: on its channel if one is bound,
    /// else in a Send indication (which needs a permission).
    pub fn send_to(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), ClientIoError> {
        let t = self.client.send_to(peer, data, &mut self.buf)?;
        self.conn.send(self.buf.get(..t.len).unwrap_or_default())?;
        Ok(())
    }

    /// Waits up to `timeout` for data from a peer, copied into `buf` (cut to its
    /// size); its length and the peer. Meanwhile the client keeps its allocation,
    /// permissions and channels refreshed.
    pub fn recv_from(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<(usize, SocketAddr)>, ClientIoError> {
        let deadline = StdInstant::now() + timeout;
        loop {
            self.flush()?;
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            let left = deadline.saturating_duration_since(StdInstant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let wait = self.wait(left);
            match self.conn.recv(&mut self.buf, wait)? {
                Some(n) => {
                    let bytes = self.buf.get(..n).unwrap_or_default();
                    if let Some(rx) = self.client.handle_input(now(), self.server, bytes)
                        && let Some(data) = bytes.get(rx.data)
                    {
                        let len = data.len().min(buf.len());
                        if let (Some(dst), Some(src)) = (buf.get_mut(..len), data.get(..len)) {
                            dst.copy_from_slice(src);
                        }
                        return Ok(Some((len, rx.peer)));
                    }
                }
                None => self.client.handle_timeout(now()),
            }
        }
    }

    /// Keeps the allocation (refreshing it, its permissions and channels) for
    /// `duration`; fails if a refresh fails.
    pub fn hold(&mut self, duration: Duration) -> Result<(), ClientIoError> {
        let seen = self.drive(duration, |e| matches!(e, ClientEvent::Failed { .. }))?;
        match seen
            .into_iter()
            .find(|e| matches!(e, ClientEvent::Failed { .. }))
        {
            Some(ClientEvent::Failed { request, failure }) => {
                Err(ClientIoError::Failed { request, failure })
            }
            _ => Ok(()),
        }
    }

    /// Refreshes the allocation now for `lifetime` (the client refreshes it by
    /// itself while driven; this asks at once, as a load generator or a test
    /// does) and waits up to `timeout` for the server's answer: the lifetime it
    /// granted (RFC 8656: no less than its default, no more than its maximum).
    /// A zero `lifetime` deletes it, as [`TurnClient::deallocate`] does.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use turn_core::adapters::std::client::TurnClient;
    /// # use turn_core::client::ClientConfig;
    /// let server = "192.0.2.10:3478".parse()?;
    /// let mut turn = TurnClient::connect(ClientConfig::new(server, "alice", "s3cret")?)?;
    /// turn.allocate(Duration::from_secs(5))?;
    /// let granted = turn.refresh(Duration::from_secs(600), Duration::from_secs(5))?;
    /// assert!(granted <= Duration::from_secs(3600));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh(
        &mut self,
        lifetime: Duration,
        timeout: Duration,
    ) -> Result<Duration, ClientIoError> {
        let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        self.client.refresh(now(), secs)?;
        let what = if secs == 0 { "deallocation" } else { "refresh" };
        // A deletion is answered with 0; a refresh with what was granted.
        match self.until(
            timeout,
            what,
            |e| matches!(e, ClientEvent::Refreshed { lifetime } if (*lifetime == 0) == (secs == 0)),
        )? {
            ClientEvent::Refreshed { lifetime } => Ok(Duration::from_secs(lifetime.into())),
            _ => Err(ClientIoError::TimedOut("refresh")),
        }
    }

    /// Deletes the allocation and waits up to `timeout` for the server to
    /// confirm (with a zero timeout, sends the request once and returns).
    pub fn deallocate(&mut self, timeout: Duration) -> Result<(), ClientIoError> {
        if timeout.is_zero() {
            self.client.deallocate(now())?;
            return self.flush();
        }
        self.refresh(Duration::ZERO, timeout).map(|_| ())
    }
}
