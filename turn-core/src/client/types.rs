//! What the client is set up with and what it answers: its configuration,
//! errors and failures, the requests it makes, its events, and the messages and
//! data it hands back.

use core::fmt;
use core::net::{IpAddr, SocketAddr};
use core::ops::Range;

use stun_core::attributes::AddressFamily;

use super::CREDENTIAL_MAX;
use crate::Transport;

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
    /// Ask for a TCP relay (RFC 6062) instead of UDP: the client then opens
    /// peer connections with [`Client::connect`](super::Client::connect) and
    /// joins them to data connections with
    /// [`Client::connection_bind`](super::Client::connection_bind); over a TCP or
    /// TLS transport only.
    pub tcp_relay: bool,
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
            tcp_relay: false,
        })
    }

    /// A configuration with time-limited credentials (the TURN REST scheme):
    /// the username `expiry:user` and its password under the shared `secret`,
    /// valid until `expiry` (UNIX seconds).
    ///
    /// ```
    /// use turn_core::client::ClientConfig;
    /// let cfg = ClientConfig::time_limited("192.0.2.1:3478".parse().unwrap(), "guest", b"secret", 1_800_000_000).unwrap();
    /// assert_eq!(cfg.username.as_str(), "1800000000:guest");
    /// ```
    pub fn time_limited(
        server: SocketAddr,
        user: &str,
        secret: &[u8],
        expiry: u64,
    ) -> Result<Self, ClientError> {
        let mut buf = [0u8; CREDENTIAL_MAX];
        let username = stun_core::credentials::TimeLimitedUsername::write(expiry, user, &mut buf)
            .map_err(|_| ClientError::CredentialTooLong)?;
        let password = stun_core::credentials::SharedSecret::new(secret).password(username);
        ClientConfig::new(server, username, password.as_str())
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
    /// with [`Client::create_permission`](super::Client::create_permission) first).
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
    /// 508 from a server that says it is draining (its reason phrase is
    /// [`crate::server::DRAINING_PHRASE`]): it is shutting down or being
    /// replaced, not full.
    Draining,
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
            Failure::Code(403) => {
                "the server's peer policy forbids this peer address (one on the relay's own host \
                 is opened with allow_local_peer)"
            }
            Failure::Code(486) => "the user's allocation quota is reached",
            Failure::Code(508) => "the server is out of capacity or relay ports",
            Failure::Draining => {
                "the server is draining (stopping or being replaced): use another server, or \
                 set its alternate_server so that clients are sent on"
            }
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
            Failure::Draining => write!(f, "error 508 (draining): {}", self.diagnosis()),
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
    /// Connect to a peer over a TCP relay (RFC 6062).
    Connect(SocketAddr),
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
    /// The relay connected to a peer (RFC 6062 Connect): join the connection
    /// `id` to a new data connection with
    /// [`Client::connection_bind`](super::Client::connection_bind).
    Connected {
        /// The peer.
        peer: SocketAddr,
        /// The CONNECTION-ID.
        id: u32,
    },
    /// A peer connected to the relayed address (RFC 6062 ConnectionAttempt):
    /// join it to a new data connection within 30 s, or it is closed.
    ConnectionAttempt {
        /// The peer.
        peer: SocketAddr,
        /// The CONNECTION-ID.
        id: u32,
    },
}

/// A message to send, written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the message must be sent"]
pub struct Transmit {
    /// Where to send it: the server (which a 300 redirect changes).
    pub destination: SocketAddr,
    /// Over what: the client's transport (or the probed entry's).
    pub transport: Transport,
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
