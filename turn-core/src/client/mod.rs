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

mod input;
mod retransmit;
mod rfc6062;
mod selection;
mod server_type;
mod timers;
mod types;

pub use rfc6062::BindAnswer;
pub use selection::{Candidate, CandidateState, ProbeTransmit, Selector};
pub use server_type::{ServerType, ServerTypeError};
pub use types::{
    ClientConfig, ClientError, ClientEvent, Failure, Received, RequestKind, State, Transmit,
};

use core::net::{IpAddr, SocketAddr};

use stun_core::attributes::{
    AddressFamily, ChannelNumber, Data, Lifetime, Nonce, Realm, RequestedAddressFamily,
    RequestedTransport, Software, Username, XorPeerAddress,
};
use stun_core::channel_data::{self};
use stun_core::credentials::LongTermKey;
use stun_core::{Class, MessageBuilder, MessageType, Method, TransactionId};

use crate::rng::Random;
use crate::{Instant, Transport};
use retransmit::Retransmit;

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

#[derive(Debug, Clone)]
struct Transaction {
    tid: TransactionId,
    kind: RequestKind,
    bytes: heapless::Vec<u8, MAX_REQUEST>,
    timer: Retransmit,
    /// Whether it carries credentials (a 401 to an unauthenticated request is the
    /// normal first round).
    authenticated: bool,
    /// Whether a 438 already made it retry with a fresh nonce: a second one fails.
    stale_retried: bool,
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
            timer: Retransmit::new(now),
            authenticated: false,
            stale_retried: false,
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
            RequestKind::Connect(_) => Method::CONNECT,
        };
        let (tid, kind) = (t.tid, t.kind);
        let write = |buf: &mut [u8]| -> Result<usize, stun_core::EncodeError> {
            let mut b = MessageBuilder::new(buf, MessageType::new(method, Class::Request), tid)?;
            match kind {
                RequestKind::Allocate => {
                    b.add(if self.cfg.tcp_relay {
                        &RequestedTransport::TCP
                    } else {
                        &RequestedTransport::UDP
                    })?;
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
                RequestKind::Connect(peer) => b.add(&XorPeerAddress(peer))?,
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
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        let destination = self.cfg.server;
        let stream = self.cfg.transport.is_stream();
        let t = self
            .transactions
            .iter_mut()
            .find(|t| t.timer.is_pending())?;
        let n = t.bytes.len();
        out.get_mut(..n)?.copy_from_slice(&t.bytes);
        t.timer.sent(now, stream);
        Some(Transmit {
            destination,
            transport: self.cfg.transport,
            len: n,
        })
    }

    /// Whether `bytes` are for this client: a response to one of its requests in
    /// flight, a Data indication, or ChannelData on a channel it asked for. A
    /// host with several clients (or a [`Selector`]) on one socket hands each
    /// packet to the one that accepts it.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        if let Ok(cd) = channel_data::ChannelData::new_checked(bytes) {
            return self.channels.iter().any(|c| c.number == cd.channel());
        }
        let Ok(msg) = stun_core::Message::new_checked(bytes) else {
            return false;
        };
        match msg.class() {
            Class::Indication => {
                msg.method() == Method::DATA || msg.method() == Method::CONNECTION_ATTEMPT
            }
            Class::Success | Class::Error => {
                let tid = msg.transaction_id();
                self.transactions.iter().any(|t| t.tid == tid)
            }
            Class::Request => false,
        }
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
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
        let (destination, transport) = (self.cfg.server, self.cfg.transport);
        let sent = |len| Transmit {
            destination,
            transport,
            len,
        };
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
