//! The TURN client (RFC 8656 §6-§12): one allocation on one server, as a sans-IO
//! state machine.
//!
//! # Driving it
//! - Ask for work: [`Client::allocate`], [`Client::create_permission`],
//!   [`Client::bind_channel`], [`Client::refresh`], [`Client::deallocate`].
//! - [`Client::poll_transmit`] writes each message to send to [`Client::server`]
//!   into the caller's buffer; call it until it returns `None` after every input.
//! - [`Client::handle_input`] with every datagram (or stream frame) from the
//!   server: responses, Data indications and ChannelData. Data from peers comes
//!   back as a [`Received`] with the peer and the payload's range.
//! - [`Client::poll_timeout`] / [`Client::handle_timeout`]: retransmissions (RFC
//!   8489 §6.2.1 over UDP: RTO doubling, Rc transmissions, last wait Rm × RTO; none
//!   over TCP) and the refreshes of the allocation, permissions and channels.
//! - [`Client::poll_event`]: allocation, permissions, channels, failures with the
//!   error code and the likely cause, and round-trip times.
//! - [`Client::send_to`] wraps application data for a peer: ChannelData when a
//!   channel is bound, a Send indication otherwise.
//!
//! Authentication is long-term (RFC 8489 §9.2): the first Allocate goes without
//! credentials, the 401 brings REALM and NONCE, and every later request carries
//! USERNAME, REALM, NONCE and MESSAGE-INTEGRITY. A 438 swaps the nonce and retries.
//! Time-limited credentials (TURN REST) are long-term credentials whose password
//! the caller derives with [`stun_core::credentials::SharedSecret`].

mod selection;

pub use selection::{Candidate, CandidateState, Selector};

use core::fmt;
use core::net::{IpAddr, SocketAddr};
use core::ops::Range;

use stun_core::attributes::{
    AddressFamily, AlternateServer, ChannelNumber, Data, ErrorCode, Lifetime, Nonce, Realm,
    RequestedAddressFamily, RequestedTransport, Software, Username, XorMappedAddress,
    XorPeerAddress, XorRelayedAddress,
};
use stun_core::channel_data::{self, ChannelData};
use stun_core::credentials::{LongTermKey, long_term_key};
use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

use crate::rng::Random;
use crate::{Instant, Transport};

/// Longest credential strings the client stores.
pub const CREDENTIAL_MAX: usize = 128;
/// Requests in flight at once.
const MAX_TRANSACTIONS: usize = 6;
/// Longest request the client sends.
const MAX_REQUEST: usize = 320;
/// Initial retransmission timeout over UDP (RFC 8489 §6.2.1).
pub const RTO_MS: u64 = 500;
/// Transmissions of a request over UDP (Rc).
pub const RC: u32 = 7;
/// Multiple of RTO waited after the last transmission (Rm).
pub const RM: u64 = 16;
/// How long to wait for a response over TCP/TLS (RFC 8489 §6.2.2: 39.5 s).
pub const TCP_TIMEOUT_MS: u64 = 39_500;
/// Permissions are refreshed this long before their 300 s run out.
const PERMISSION_REFRESH_SECS: u64 = 240;
/// Channels are refreshed this long after binding (their lifetime is 600 s).
const CHANNEL_REFRESH_SECS: u64 = 540;

/// How the client is set up.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The TURN server.
    pub server: SocketAddr,
    /// Transport to it (the caller opens the socket or stream).
    pub transport: Transport,
    /// Username.
    pub username: heapless::String<CREDENTIAL_MAX>,
    /// Password (for time-limited credentials, the one derived from the secret).
    pub password: heapless::String<CREDENTIAL_MAX>,
    /// Lifetime to ask for, seconds (the server may grant another).
    pub lifetime_secs: u32,
    /// Relay address family.
    pub family: AddressFamily,
    /// SOFTWARE to send; empty to omit.
    pub software: heapless::String<32>,
}

impl ClientConfig {
    /// A configuration for `server` with `username` and `password`, UDP, IPv4,
    /// 600 s lifetime. Fails if a credential is longer than [`CREDENTIAL_MAX`].
    pub fn new(server: SocketAddr, username: &str, password: &str) -> Result<Self, ClientError> {
        let mut u = heapless::String::new();
        let mut p = heapless::String::new();
        u.push_str(username)
            .map_err(|_| ClientError::CredentialTooLong)?;
        p.push_str(password)
            .map_err(|_| ClientError::CredentialTooLong)?;
        Ok(ClientConfig {
            server,
            transport: Transport::Udp,
            username: u,
            password: p,
            lifetime_secs: 600,
            family: AddressFamily::Ipv4,
            software: heapless::String::new(),
        })
    }
}

/// Why something the caller asked for cannot be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientError {
    /// A username or password longer than the client stores.
    CredentialTooLong,
    /// There is no allocation (yet, or any more).
    NotAllocated,
    /// An allocation exists or is being made.
    AlreadyAllocated,
    /// Too many requests in flight.
    Busy,
    /// No channel number is left.
    NoChannel,
    /// The caller's buffer is too small.
    BufferTooSmall,
    /// No permission for the peer: the server would drop the data (ask for one
    /// with [`Client::create_permission`] first).
    NoPermission,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientError::CredentialTooLong => "username or password too long",
            ClientError::NotAllocated => "no allocation",
            ClientError::AlreadyAllocated => "already allocated",
            ClientError::Busy => "too many requests in flight",
            ClientError::NoChannel => "no channel number left",
            ClientError::BufferTooSmall => "buffer too small",
            ClientError::NoPermission => "no permission for this peer",
        })
    }
}

impl core::error::Error for ClientError {}

/// Why a request failed, with what it most likely means for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// An error response.
    Code(u16),
    /// No response after all retransmissions (or the TCP timeout).
    Timeout,
    /// A response that does not authenticate with our key.
    BadResponseIntegrity,
}

impl Failure {
    /// The likely cause and fix, for the `check` tool and logs.
    pub const fn diagnosis(&self) -> &'static str {
        match self {
            Failure::Code(401) | Failure::Code(431) | Failure::BadResponseIntegrity => {
                "credentials differ between client and server: check username, password, \
                 realm and (for time-limited credentials) the shared secret and clocks"
            }
            Failure::Code(438) => "the server keeps refusing nonces: check the server's clock",
            Failure::Code(437) => "allocation mismatch: another allocation exists for this 5-tuple",
            Failure::Code(441) => "wrong credentials: a different user owns this allocation",
            Failure::Code(442) => "the server does not relay this transport (UDP relays only)",
            Failure::Code(440) => "the server has no relay address of the requested family",
            Failure::Code(403) => "the server's peer policy forbids this peer address",
            Failure::Code(486) => "the user's allocation quota is reached",
            Failure::Code(508) => "the server is out of capacity or relay ports",
            Failure::Code(300) => "the server redirected to an alternate server",
            Failure::Code(420) => "the server does not understand an attribute we sent",
            Failure::Code(_) => "the server refused the request",
            Failure::Timeout => {
                "no answer: the TURN port is unreachable (firewall, wrong address or port, \
                 or TURN on TCP 443 while 3478 was expected)"
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Code(c) => write!(f, "error {c}: {}", self.diagnosis()),
            Failure::Timeout => write!(f, "timeout: {}", self.diagnosis()),
            Failure::BadResponseIntegrity => {
                write!(f, "bad response integrity: {}", self.diagnosis())
            }
        }
    }
}

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RequestKind {
    /// Allocate.
    Allocate,
    /// Refresh (lifetime asked).
    Refresh(u32),
    /// CreatePermission for a peer.
    Permission(IpAddr),
    /// ChannelBind of a channel to a peer.
    ChannelBind(u16, SocketAddr),
}

/// Something that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// The allocation exists.
    Allocated {
        /// The relayed address peers send to.
        relayed: SocketAddr,
        /// The client's address as the server sees it.
        mapped: SocketAddr,
        /// Lifetime granted, seconds.
        lifetime: u32,
    },
    /// The allocation was refreshed (lifetime 0: deleted).
    Refreshed {
        /// Lifetime granted, seconds.
        lifetime: u32,
    },
    /// A permission is installed or refreshed.
    PermissionCreated(IpAddr),
    /// A channel is bound or refreshed.
    ChannelBound {
        /// The channel.
        channel: u16,
        /// Its peer.
        peer: SocketAddr,
    },
    /// A request failed.
    Failed {
        /// What it was for.
        request: RequestKind,
        /// Why.
        failure: Failure,
    },
    /// The server redirected the Allocate (300); the client now talks to `server`.
    Redirected {
        /// The alternate server.
        server: SocketAddr,
    },
    /// A round-trip time measured on a request answered without retransmission.
    Rtt {
        /// Milliseconds.
        ms: u64,
    },
}

/// A message to send, written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the message must be sent"]
pub struct Transmit {
    /// Where to send it: the server (which a 300 redirect changes).
    pub destination: SocketAddr,
    /// Bytes written at the start of the buffer.
    pub len: usize,
}

/// Application data from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The peer.
    pub peer: SocketAddr,
    /// The payload's range in the input.
    pub data: Range<usize>,
}

/// The allocation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// Nothing asked yet.
    Idle,
    /// Allocate in flight.
    Allocating,
    /// Allocated.
    Allocated,
    /// The allocation failed or was lost.
    Failed,
    /// Deleted by the client.
    Closed,
}

#[derive(Debug, Clone)]
struct Transaction {
    tid: TransactionId,
    kind: RequestKind,
    bytes: heapless::Vec<u8, MAX_REQUEST>,
    first_sent: Option<Instant>,
    next_send: Instant,
    transmissions: u32,
    rto_ms: u64,
    /// Whether it carries credentials (a 401 to an unauthenticated request is the
    /// normal first round).
    authenticated: bool,
    /// Whether a 438 already made it retry with a fresh nonce: a second one fails.
    stale_retried: bool,
    pending_send: bool,
}

#[derive(Debug, Clone, Copy)]
struct Perm {
    ip: IpAddr,
    refresh_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Chan {
    number: u16,
    peer: SocketAddr,
    bound: bool,
    refresh_at: Instant,
}

/// A TURN client for one allocation. `P` permissions and `C` channels at most.
#[derive(Debug)]
pub struct Client<const P: usize = 8, const C: usize = 8> {
    cfg: ClientConfig,
    state: State,
    realm: heapless::String<64>,
    nonce: heapless::String<128>,
    key: Option<LongTermKey>,
    relayed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    refresh_at: Option<Instant>,
    transactions: heapless::Vec<Transaction, MAX_TRANSACTIONS>,
    permissions: heapless::Vec<Perm, P>,
    channels: heapless::Vec<Chan, C>,
    next_channel: u16,
    events: heapless::Deque<ClientEvent, 16>,
    random: Random,
}

impl Client {
    /// A client with room for 8 permissions and 8 channels; `seed` (from a secure
    /// random source) keys the stream its transaction ids are drawn from, so they
    /// cannot be predicted (RFC 8489 §5).
    ///
    /// ```
    /// use turn_core::client::{Client, ClientConfig};
    /// use turn_core::Instant;
    /// let cfg = ClientConfig::new("192.0.2.1:3478".parse().unwrap(), "alice", "pw").unwrap();
    /// let mut client = Client::new(cfg, [7; 32]);
    /// client.allocate(Instant::from_millis(0)).unwrap();
    /// let mut buf = [0u8; 1500];
    /// let t = client.poll_transmit(Instant::from_millis(0), &mut buf).unwrap();
    /// assert_eq!(t.destination, "192.0.2.1:3478".parse().unwrap());
    /// // Send buf[..t.len] to t.destination; feed what comes back to handle_input.
    /// ```
    pub fn new(cfg: ClientConfig, seed: [u8; 32]) -> Client {
        Client::with_tables(cfg, seed)
    }
}

impl<const P: usize, const C: usize> Client<P, C> {
    /// A client with room for `P` permissions and `C` channels (see [`Client::new`]).
    pub fn with_tables(cfg: ClientConfig, seed: [u8; 32]) -> Self {
        Client {
            cfg,
            state: State::Idle,
            realm: heapless::String::new(),
            nonce: heapless::String::new(),
            key: None,
            relayed: None,
            mapped: None,
            refresh_at: None,
            transactions: heapless::Vec::new(),
            permissions: heapless::Vec::new(),
            channels: heapless::Vec::new(),
            next_channel: channel_data::MIN_CHANNEL,
            events: heapless::Deque::new(),
            random: Random::new(seed),
        }
    }

    /// The server the client talks to (changes after a 300 redirect).
    pub fn server(&self) -> SocketAddr {
        self.cfg.server
    }

    /// The transport to the server.
    pub fn transport(&self) -> Transport {
        self.cfg.transport
    }

    /// The allocation's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// The client's server-reflexive address, once allocated.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    fn next_tid(&mut self) -> TransactionId {
        self.random.tid()
    }

    fn push_event(&mut self, e: ClientEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    /// Encodes and queues a request.
    fn start(&mut self, now: Instant, kind: RequestKind) -> Result<(), ClientError> {
        if self.transactions.is_full() {
            return Err(ClientError::Busy);
        }
        let tid = self.next_tid();
        let mut t = Transaction {
            tid,
            kind,
            bytes: heapless::Vec::new(),
            first_sent: None,
            next_send: now,
            transmissions: 0,
            rto_ms: RTO_MS,
            authenticated: false,
            stale_retried: false,
            pending_send: true,
        };
        self.encode(&mut t)?;
        self.transactions.push(t).map_err(|_| ClientError::Busy)
    }

    /// Writes the request of `t` (with credentials once the realm is known).
    fn encode(&self, t: &mut Transaction) -> Result<(), ClientError> {
        let method = match t.kind {
            RequestKind::Allocate => Method::ALLOCATE,
            RequestKind::Refresh(_) => Method::REFRESH,
            RequestKind::Permission(_) => Method::CREATE_PERMISSION,
            RequestKind::ChannelBind(..) => Method::CHANNEL_BIND,
        };
        let (tid, kind) = (t.tid, t.kind);
        let write = |buf: &mut [u8]| -> Result<usize, stun_core::EncodeError> {
            let mut b = MessageBuilder::new(buf, MessageType::new(method, Class::Request), tid)?;
            match kind {
                RequestKind::Allocate => {
                    b.add(&RequestedTransport::UDP)?;
                    b.add(&Lifetime(self.cfg.lifetime_secs))?;
                    if self.cfg.family == AddressFamily::Ipv6 {
                        b.add(&RequestedAddressFamily(AddressFamily::Ipv6))?;
                    }
                }
                RequestKind::Refresh(l) => b.add(&Lifetime(l))?,
                RequestKind::Permission(ip) => b.add(&XorPeerAddress(SocketAddr::new(ip, 0)))?,
                RequestKind::ChannelBind(ch, peer) => {
                    b.add(&ChannelNumber(ch))?;
                    b.add(&XorPeerAddress(peer))?;
                }
            }
            if !self.cfg.software.is_empty() {
                b.add(&Software(&self.cfg.software))?;
            }
            if let Some(key) = &self.key {
                b.add(&Username(&self.cfg.username))?;
                b.add(&Realm(&self.realm))?;
                b.add(&Nonce(&self.nonce))?;
                b.add_message_integrity(key)?;
            }
            b.add_fingerprint()?;
            Ok(b.finish())
        };
        // Written where it is kept for retransmissions, not copied there.
        t.bytes.clear();
        let _ = t.bytes.resize(MAX_REQUEST, 0);
        let n = write(&mut t.bytes).map_err(|_| ClientError::BufferTooSmall)?;
        t.bytes.truncate(n);
        t.authenticated = self.key.is_some();
        Ok(())
    }

    /// Starts the allocation.
    pub fn allocate(&mut self, now: Instant) -> Result<(), ClientError> {
        if matches!(self.state, State::Allocating | State::Allocated) {
            return Err(ClientError::AlreadyAllocated);
        }
        self.state = State::Allocating;
        self.start(now, RequestKind::Allocate)
    }

    /// Refreshes the allocation with `lifetime` seconds.
    pub fn refresh(&mut self, now: Instant, lifetime: u32) -> Result<(), ClientError> {
        if self.state != State::Allocated {
            return Err(ClientError::NotAllocated);
        }
        self.start(now, RequestKind::Refresh(lifetime))
    }

    /// Deletes the allocation (Refresh with LIFETIME 0).
    pub fn deallocate(&mut self, now: Instant) -> Result<(), ClientError> {
        self.refresh(now, 0)
    }

    /// Installs a permission for `peer`'s IP (refreshed automatically).
    pub fn create_permission(&mut self, now: Instant, peer: IpAddr) -> Result<(), ClientError> {
        if self.state != State::Allocated {
            return Err(ClientError::NotAllocated);
        }
        self.start(now, RequestKind::Permission(peer))
    }

    /// Binds a channel to `peer` (refreshed automatically) and returns its number.
    /// Data goes by Send indication until the server confirms the binding.
    pub fn bind_channel(&mut self, now: Instant, peer: SocketAddr) -> Result<u16, ClientError> {
        if self.state != State::Allocated {
            return Err(ClientError::NotAllocated);
        }
        if let Some(c) = self.channels.iter().find(|c| c.peer == peer) {
            let n = c.number;
            self.start(now, RequestKind::ChannelBind(n, peer))?;
            return Ok(n);
        }
        if self.next_channel > channel_data::MAX_CHANNEL || self.channels.is_full() {
            return Err(ClientError::NoChannel);
        }
        let number = self.next_channel;
        self.start(now, RequestKind::ChannelBind(number, peer))?;
        self.next_channel += 1;
        let _ = self.channels.push(Chan {
            number,
            peer,
            bound: false,
            refresh_at: now.plus_secs(CHANNEL_REFRESH_SECS),
        });
        Ok(number)
    }

    /// The next message for the server, written into `out`; `None` when there is
    /// nothing to send now. Call again until it returns `None`, after every input,
    /// timeout or request.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        let destination = self.cfg.server;
        let t = self.transactions.iter_mut().find(|t| t.pending_send)?;
        let n = t.bytes.len();
        out.get_mut(..n)?.copy_from_slice(&t.bytes);
        t.pending_send = false;
        t.transmissions += 1;
        if t.first_sent.is_none() {
            t.first_sent = Some(now);
        }
        let stream = self.cfg.transport.is_stream();
        if !stream && t.transmissions > 1 {
            t.rto_ms *= 2;
        }
        t.next_send = if stream {
            now.plus_millis(TCP_TIMEOUT_MS)
        } else if t.transmissions >= RC {
            now.plus_millis(RTO_MS * RM)
        } else {
            now.plus_millis(t.rto_ms)
        };
        Some(Transmit {
            destination,
            len: n,
        })
    }

    /// When [`Client::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self
            .transactions
            .iter()
            .filter(|t| !t.pending_send)
            .map(|t| t.next_send)
            .min();
        // Refreshes happen only while allocated (see `handle_timeout`).
        if self.state != State::Allocated {
            return tx;
        }
        let perms = self.permissions.iter().map(|p| p.refresh_at).min();
        let chans = self
            .channels
            .iter()
            .filter(|c| c.bound)
            .map(|c| c.refresh_at)
            .min();
        [tx, self.refresh_at, perms, chans]
            .into_iter()
            .flatten()
            .min()
    }

    /// Retransmits, gives up on transactions, and refreshes what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stream = self.cfg.transport.is_stream();
        let mut i = 0;
        while let Some(t) = self.transactions.get_mut(i) {
            if t.pending_send || now < t.next_send {
                i += 1;
                continue;
            }
            if stream || t.transmissions >= RC {
                let t = self.transactions.swap_remove(i);
                self.fail(t.kind, Failure::Timeout);
                continue;
            }
            t.pending_send = true;
            i += 1;
        }
        if self.state != State::Allocated {
            return;
        }
        // A refresh that cannot start now (too many requests in flight) is tried
        // again one RTO later, never dropped.
        let retry = now.plus_millis(RTO_MS);
        if self.refresh_at.is_some_and(|r| now >= r) {
            self.refresh_at = match self.start(now, RequestKind::Refresh(self.cfg.lifetime_secs)) {
                Ok(()) => None,
                Err(_) => Some(retry),
            };
        }
        for k in 0..self.permissions.len() {
            if let Some(p) = self
                .permissions
                .get(k)
                .copied()
                .filter(|p| now >= p.refresh_at)
            {
                let started = self.start(now, RequestKind::Permission(p.ip)).is_ok();
                if let Some(p) = self.permissions.get_mut(k) {
                    p.refresh_at = if started {
                        now.plus_secs(PERMISSION_REFRESH_SECS)
                    } else {
                        retry
                    };
                }
            }
        }
        for k in 0..self.channels.len() {
            if let Some(c) = self
                .channels
                .get(k)
                .copied()
                .filter(|c| c.bound && now >= c.refresh_at)
            {
                let started = self
                    .start(now, RequestKind::ChannelBind(c.number, c.peer))
                    .is_ok();
                if let Some(c) = self.channels.get_mut(k) {
                    c.refresh_at = if started {
                        now.plus_secs(CHANNEL_REFRESH_SECS)
                    } else {
                        retry
                    };
                }
            }
        }
    }

    fn fail(&mut self, kind: RequestKind, failure: Failure) {
        match kind {
            RequestKind::Allocate => self.state = State::Failed,
            RequestKind::Refresh(_) => {
                if self.state == State::Allocated {
                    self.state = State::Failed;
                }
            }
            RequestKind::Permission(ip) => self.permissions.retain(|p| p.ip != ip),
            RequestKind::ChannelBind(n, _) => self.channels.retain(|c| c.number != n || c.bound),
        }
        self.push_event(ClientEvent::Failed {
            request: kind,
            failure,
        });
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Handles a datagram or stream frame that came from `from`. Anything not
    /// from the server is ignored (over UDP, anyone can send to the client's
    /// socket). Returns application data from a peer, if it was that: its range in
    /// `bytes`, not a copy.
    pub fn handle_input(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<Received> {
        if from != self.cfg.server {
            return None;
        }
        if let Ok(cd) = ChannelData::new_checked(bytes) {
            let number = cd.channel();
            let peer = self
                .channels
                .iter()
                .find(|c| c.number == number && c.bound)?
                .peer;
            let len = cd.data().len();
            return Some(Received {
                peer,
                data: channel_data::HEADER_LEN..channel_data::HEADER_LEN + len,
            });
        }
        let msg = Message::new_checked(bytes).ok()?;
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            return None;
        }
        match msg.class() {
            Class::Indication if msg.method() == Method::DATA => {
                let peer = msg.attribute::<XorPeerAddress>().ok()??.0;
                let raw = msg.raw_attribute(stun_core::AttributeType::DATA)?;
                self.permissions
                    .iter()
                    .any(|p| p.ip == peer.ip())
                    .then_some(Received {
                        peer,
                        data: raw.value_range(),
                    })
            }
            Class::Success | Class::Error => {
                self.response(now, &msg);
                None
            }
            _ => None,
        }
    }

    fn response(&mut self, now: Instant, msg: &Message<&[u8]>) {
        let tid = msg.transaction_id();
        let Some(i) = self.transactions.iter().position(|t| t.tid == tid) else {
            return;
        };
        let t = self.transactions.swap_remove(i);
        if t.transmissions == 1
            && let Some(sent) = t.first_sent
        {
            self.push_event(ClientEvent::Rtt {
                ms: now.millis_since(sent),
            });
        }
        if msg.class() == Class::Error {
            let code = msg
                .attribute::<ErrorCode>()
                .ok()
                .flatten()
                .map_or(400, |e| e.code);
            return self.error_response(now, t, msg, code);
        }
        if let Some(key) = &self.key
            && msg.verify_integrity(key).is_err()
        {
            return self.fail(t.kind, Failure::BadResponseIntegrity);
        }
        match t.kind {
            RequestKind::Allocate => {
                let relayed = msg
                    .attribute::<XorRelayedAddress>()
                    .ok()
                    .flatten()
                    .map(|a| a.0);
                let mapped = msg
                    .attribute::<XorMappedAddress>()
                    .ok()
                    .flatten()
                    .map(|a| a.0);
                let lifetime = msg
                    .attribute::<Lifetime>()
                    .ok()
                    .flatten()
                    .map_or(600, |l| l.0);
                match (relayed, mapped) {
                    (Some(relayed), Some(mapped)) => {
                        self.state = State::Allocated;
                        self.relayed = Some(relayed);
                        self.mapped = Some(mapped);
                        self.refresh_at = Some(refresh_time(now, lifetime));
                        self.push_event(ClientEvent::Allocated {
                            relayed,
                            mapped,
                            lifetime,
                        });
                    }
                    _ => self.fail(t.kind, Failure::Code(500)),
                }
            }
            RequestKind::Refresh(asked) => {
                let lifetime = msg
                    .attribute::<Lifetime>()
                    .ok()
                    .flatten()
                    .map_or(asked, |l| l.0);
                if asked == 0 {
                    self.state = State::Closed;
                    self.permissions.clear();
                    self.channels.clear();
                    self.refresh_at = None;
                } else {
                    self.refresh_at = Some(refresh_time(now, lifetime));
                }
                self.push_event(ClientEvent::Refreshed { lifetime });
            }
            RequestKind::Permission(ip) => {
                let refresh_at = now.plus_secs(PERMISSION_REFRESH_SECS);
                match self.permissions.iter_mut().find(|p| p.ip == ip) {
                    Some(p) => p.refresh_at = refresh_at,
                    None => {
                        let _ = self.permissions.push(Perm { ip, refresh_at });
                    }
                }
                self.push_event(ClientEvent::PermissionCreated(ip));
            }
            RequestKind::ChannelBind(channel, peer) => {
                if let Some(c) = self.channels.iter_mut().find(|c| c.number == channel) {
                    c.bound = true;
                    c.refresh_at = now.plus_secs(CHANNEL_REFRESH_SECS);
                }
                // A channel binding installs a permission for the peer too.
                if !self.permissions.iter().any(|p| p.ip == peer.ip()) {
                    let _ = self.permissions.push(Perm {
                        ip: peer.ip(),
                        refresh_at: now.plus_secs(PERMISSION_REFRESH_SECS),
                    });
                }
                self.push_event(ClientEvent::ChannelBound { channel, peer });
            }
        }
    }

    fn error_response(
        &mut self,
        now: Instant,
        mut t: Transaction,
        msg: &Message<&[u8]>,
        code: u16,
    ) {
        let realm = msg.attribute::<Realm>().ok().flatten().map(|r| r.0);
        let nonce = msg.attribute::<Nonce>().ok().flatten().map(|n| n.0);
        let retry_with = |c: &mut Self, realm: Option<&str>, nonce: Option<&str>| -> bool {
            let (Some(nonce), realm) = (nonce, realm) else {
                return false;
            };
            c.nonce.clear();
            if c.nonce.push_str(nonce).is_err() {
                return false;
            }
            if let Some(r) = realm {
                c.realm.clear();
                if c.realm.push_str(r).is_err() {
                    return false;
                }
            }
            c.key = Some(long_term_key(&c.cfg.username, &c.realm, &c.cfg.password));
            true
        };
        let first_round = code == 401 && !t.authenticated;
        let stale = code == 438 && !t.stale_retried;
        if (first_round || stale) && retry_with(self, realm, nonce) {
            t.stale_retried |= stale;
            // The same request again, with credentials and a new transaction id.
            t.tid = self.next_tid();
            if self.encode(&mut t).is_ok() {
                t.pending_send = true;
                t.transmissions = 0;
                t.first_sent = None;
                t.rto_ms = RTO_MS;
                t.next_send = now;
                let _ = self.transactions.push(t);
                return;
            }
        }
        if code == 300
            && t.kind == RequestKind::Allocate
            && let Some(AlternateServer(alt)) = msg.attribute::<AlternateServer>().ok().flatten()
        {
            self.cfg.server = alt;
            self.key = None;
            self.state = State::Idle;
            self.push_event(ClientEvent::Redirected { server: alt });
            let _ = self.allocate(now);
            return;
        }
        self.fail(t.kind, Failure::Code(code));
    }

    /// Wraps `data` for `peer` into `out`: ChannelData if a channel is bound (padded
    /// over TCP/TLS), else a Send indication. Refuses a peer without a permission
    /// (one asked for counts), since the server would drop the data.
    pub fn send_to(
        &mut self,
        peer: SocketAddr,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit, ClientError> {
        if self.state != State::Allocated {
            return Err(ClientError::NotAllocated);
        }
        let destination = self.cfg.server;
        let sent = |len| Transmit { destination, len };
        if let Some(c) = self.channels.iter().find(|c| c.peer == peer && c.bound) {
            return channel_data::encode(out, c.number, data, self.cfg.transport.is_stream())
                .map(sent)
                .map_err(|_| ClientError::BufferTooSmall);
        }
        if !self.permissions.iter().any(|p| p.ip == peer.ip()) {
            return Err(ClientError::NoPermission);
        }
        let tid = self.next_tid();
        let mut b =
            MessageBuilder::new(out, MessageType::new(Method::SEND, Class::Indication), tid)
                .map_err(|_| ClientError::BufferTooSmall)?;
        b.add(&XorPeerAddress(peer))
            .map_err(|_| ClientError::BufferTooSmall)?;
        b.add(&Data(data))
            .map_err(|_| ClientError::BufferTooSmall)?;
        Ok(sent(b.finish()))
    }
}

/// When to refresh an allocation granted `lifetime` seconds at `now`: a minute
/// before it runs out, or at half of short lifetimes.
fn refresh_time(now: Instant, lifetime: u32) -> Instant {
    let l = u64::from(lifetime);
    now.plus_secs(if l > 120 { l - 60 } else { l / 2 })
}
