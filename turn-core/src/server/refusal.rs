//! Why a client's packet was refused or dropped: one value per cause an operator
//! acts on, with the STUN error code it earned and a log line's worth of text.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use stun_core::{AttributeError, AttributeType, ParseError};

use super::policy::Verdict;

/// The reason phrase of the 508 a draining server answers Allocate with (the
/// client tells it from a full server's by it: [`crate::client::Failure::Draining`]).
pub const DRAINING_PHRASE: &str = "Draining: try another server";

/// What was wrong with a request that earned 400 Bad Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BadRequest {
    /// A required attribute is missing.
    Missing(AttributeType),
    /// An attribute's value is malformed.
    Malformed(AttributeError),
    /// CHANNEL-NUMBER outside 0x4000..=0x4FFF (0x7FFF with legacy channels).
    ChannelOutOfRange(u16),
    /// The channel is bound to another peer.
    ChannelBoundElsewhere(u16),
    /// The peer is bound to another channel.
    PeerBoundElsewhere(u16),
    /// RESERVATION-TOKEN together with EVEN-PORT or REQUESTED-ADDRESS-FAMILY.
    TokenConflict,
    /// REQUESTED-ADDRESS-FAMILY together with ADDITIONAL-ADDRESS-FAMILY, or an
    /// ADDITIONAL-ADDRESS-FAMILY other than IPv6.
    FamilyConflict,
    /// A method the server does not serve.
    UnsupportedMethod(u16),
    /// The username is longer than the server stores.
    UsernameTooLong,
    /// PASSWORD-ALGORITHMS differs from the server's offer, PASSWORD-ALGORITHM is
    /// not one of it, or only one of the two was sent (RFC 8489 §9.2.4).
    PasswordAlgorithmMismatch,
    /// RESERVATION-TOKEN together with ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §7.2).
    TokenWithAdditionalFamily,
    /// An Allocate for a TCP relay over UDP (RFC 6062 §5.1).
    TcpRelayOverUdp,
    /// An Allocate for a TCP relay with an attribute it cannot honour
    /// (EVEN-PORT, RESERVATION-TOKEN, DONT-FRAGMENT, ADDITIONAL-ADDRESS-FAMILY).
    NotForTcpRelay(AttributeType),
    /// A Connect on a UDP allocation.
    NotTcpAllocation,
    /// A ChannelBind on a TCP allocation.
    NotOnTcpAllocation,
    /// A ConnectionBind naming no connection that waits for one.
    UnknownConnection(u32),
    /// A ConnectionBind on a UDP flow, on a connection that holds an
    /// allocation, or on one bound already: it must open a new TCP or TLS
    /// connection (RFC 6062 §5.4).
    BindNotOnNewConnection,
}

/// Why a packet from a client was refused (with an error response) or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Refusal {
    /// A source over its budget of unauthenticated requests: dropped.
    RateLimited,
    /// 438: the nonce is too old; a new one was sent.
    StaleNonce,
    /// 401: the username is not in the credential database.
    UnknownUser,
    /// 401: MESSAGE-INTEGRITY does not match: client and server passwords differ.
    IntegrityFailure,
    /// 401: a time-limited credential whose expiry has passed.
    CredentialExpired {
        /// Expiry in the username (UNIX seconds).
        expiry: u64,
        /// The server's time (UNIX seconds).
        now: u64,
    },
    /// 401: the request names another realm.
    WrongRealm,
    /// 441: the request's username is not the one that created the allocation.
    WrongCredentials,
    /// 437: no allocation for this 5-tuple (or, for Allocate, one already exists).
    AllocationMismatch,
    /// 442: a relay transport other than UDP.
    UnsupportedTransport(u8),
    /// 440: the relay address family is not configured.
    FamilyNotSupported,
    /// 443: the peer's family differs from every relayed address's.
    PeerFamilyMismatch,
    /// 403: the peer policy forbids this peer, for the reason given.
    ForbiddenPeer(IpAddr, Verdict),
    /// 486: the user has as many allocations as the quota allows.
    UserQuota,
    /// 508: the server is full (with an alternate server, [`Refusal::Redirected`]).
    Capacity,
    /// 508, its reason phrase [`DRAINING_PHRASE`]: the server is draining and
    /// takes no new allocations (with an alternate server,
    /// [`Refusal::Redirected`]).
    Draining,
    /// 300 Try Alternate: full or draining, the client is sent to the
    /// alternate server.
    Redirected {
        /// The alternate server.
        to: SocketAddr,
        /// Whether this server is draining (else it is full).
        draining: bool,
    },
    /// 508: no relay port could be bound in the configured range.
    NoRelayPort,
    /// 508: the RESERVATION-TOKEN names no live reservation (unknown, expired or
    /// claimed already).
    NoReservation,
    /// 508: EVEN-PORT asked to reserve the next port, and the host keeps no
    /// reservations.
    ReservationNotOffered,
    /// 508: the allocation holds as many permissions, channels or peer TCP
    /// connections as it can.
    AllocationFull,
    /// 446: the TCP allocation has a connection to this peer already (RFC 6062).
    ConnectionExists(SocketAddr),
    /// 447: the connection to this peer failed or timed out (RFC 6062).
    ConnectionFailed(SocketAddr),
    /// A Send indication or ChannelData on a TCP allocation, whose data goes on
    /// its data connections: dropped.
    TcpAllocation,
    /// 400 Bad Request.
    BadRequest(BadRequest),
    /// 420 Unknown Attribute (the first one).
    UnknownAttribute(AttributeType),
    /// Not STUN or ChannelData at all: dropped.
    Malformed(ParseError),
    /// FINGERPRINT present but wrong: dropped.
    BadFingerprint,
    /// Neither STUN nor ChannelData (RTP, DTLS, anything else): dropped.
    NotTurn,
    /// A STUN response, or an indication other than Send: dropped.
    UnexpectedMessage,
    /// A Send indication without XOR-PEER-ADDRESS or DATA: dropped.
    IncompleteSend,
    /// A Send indication asking for DONT-FRAGMENT, which this server is set not
    /// to honour (`dont_fragment = false`): dropped (RFC 8656 §11.2).
    DontFragment,
    /// A ChannelData message whose length does not fit the packet: dropped.
    BadChannelData,
    /// Data for a peer without a permission: dropped.
    NoPermission(IpAddr),
    /// Data for an address of this server that is not a live relayed address
    /// (relay-to-relay reaches live allocations only): dropped.
    NotLiveRelay(SocketAddr),
    /// Over the allocation's or the user's bandwidth limit: dropped.
    OverBandwidth,
    /// ChannelData on a channel that is not bound: dropped.
    NoChannel(u16),
    /// A Send indication or ChannelData from a 5-tuple with no allocation: dropped.
    NoAllocation,
    /// The response did not fit the output buffer.
    OutputTooSmall,
    /// An RFC 3489 Binding (no magic cookie) while
    /// [`Config::classic_stun`](super::Config::classic_stun) is off: dropped.
    ClassicOff,
}

impl Refusal {
    /// The STUN error code sent, or `None` when the packet is dropped silently.
    pub const fn code(&self) -> Option<u16> {
        Some(match self {
            Refusal::UnknownUser
            | Refusal::IntegrityFailure
            | Refusal::CredentialExpired { .. }
            | Refusal::WrongRealm => 401,
            Refusal::StaleNonce => 438,
            Refusal::WrongCredentials => 441,
            Refusal::AllocationMismatch => 437,
            Refusal::UnsupportedTransport(_) => 442,
            Refusal::FamilyNotSupported => 440,
            Refusal::PeerFamilyMismatch => 443,
            Refusal::ForbiddenPeer(..) => 403,
            Refusal::UserQuota => 486,
            Refusal::Redirected { .. } => 300,
            Refusal::Capacity
            | Refusal::Draining
            | Refusal::NoRelayPort
            | Refusal::NoReservation
            | Refusal::ReservationNotOffered
            | Refusal::AllocationFull => 508,
            Refusal::ConnectionExists(_) => 446,
            Refusal::ConnectionFailed(_) => 447,
            Refusal::BadRequest(_) => 400,
            Refusal::UnknownAttribute(_) => 420,
            Refusal::RateLimited
            | Refusal::Malformed(_)
            | Refusal::BadFingerprint
            | Refusal::NotTurn
            | Refusal::UnexpectedMessage
            | Refusal::IncompleteSend
            | Refusal::DontFragment
            | Refusal::BadChannelData
            | Refusal::NoPermission(_)
            | Refusal::NotLiveRelay(_)
            | Refusal::OverBandwidth
            | Refusal::NoChannel(_)
            | Refusal::NoAllocation
            | Refusal::OutputTooSmall
            | Refusal::TcpAllocation
            | Refusal::ClassicOff => return None,
        })
    }

    /// Whether an operator should see it at the default log level: per-packet
    /// drops are not worth a line each.
    pub const fn is_notable(&self) -> bool {
        !matches!(
            self,
            Refusal::Malformed(_)
                | Refusal::NotTurn
                | Refusal::UnexpectedMessage
                | Refusal::IncompleteSend
                | Refusal::DontFragment
                | Refusal::BadChannelData
                | Refusal::NoPermission(_)
                | Refusal::NoChannel(_)
                | Refusal::NoAllocation
                | Refusal::RateLimited
        )
    }
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRequest::Missing(t) => write!(f, "missing {t}"),
            BadRequest::Malformed(e) => write!(f, "{e}"),
            BadRequest::ChannelOutOfRange(c) => {
                write!(f, "channel 0x{c:04x} outside the channel range")
            }
            BadRequest::ChannelBoundElsewhere(c) => {
                write!(f, "channel 0x{c:04x} is already bound to another peer")
            }
            BadRequest::PeerBoundElsewhere(c) => {
                write!(f, "peer is already bound to channel 0x{c:04x}")
            }
            BadRequest::TokenConflict => f.write_str(
                "RESERVATION-TOKEN cannot come with EVEN-PORT or REQUESTED-ADDRESS-FAMILY",
            ),
            BadRequest::FamilyConflict => f.write_str(
                "ADDITIONAL-ADDRESS-FAMILY must be IPv6 and cannot come with REQUESTED-ADDRESS-FAMILY",
            ),
            BadRequest::UnsupportedMethod(m) => write!(f, "method 0x{m:03x} is not served"),
            BadRequest::UsernameTooLong => f.write_str("username longer than the server stores"),
            BadRequest::PasswordAlgorithmMismatch => f.write_str(
                "PASSWORD-ALGORITHMS differs from the offer or PASSWORD-ALGORITHM is not in it",
            ),
            BadRequest::TokenWithAdditionalFamily => {
                f.write_str("RESERVATION-TOKEN cannot come with ADDITIONAL-ADDRESS-FAMILY")
            }
            BadRequest::TcpRelayOverUdp => {
                f.write_str("a TCP relay is allocated over a TCP or TLS connection, not UDP")
            }
            BadRequest::NotForTcpRelay(t) => write!(f, "{t} cannot come with a TCP relay"),
            BadRequest::NotTcpAllocation => f.write_str("Connect on a UDP allocation"),
            BadRequest::NotOnTcpAllocation => {
                f.write_str("ChannelBind on a TCP allocation (its data goes on data connections)")
            }
            BadRequest::UnknownConnection(id) => write!(
                f,
                "CONNECTION-ID 0x{id:08x} names no connection waiting for a ConnectionBind \
                 (unknown, bound already, or past its 30 s)"
            ),
            BadRequest::BindNotOnNewConnection => f.write_str(
                "ConnectionBind must come on a new TCP or TLS connection, not one holding an \
                 allocation or a data connection",
            ),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::RateLimited => {
                f.write_str("dropped: too many unauthenticated requests from this address")
            }
            Refusal::StaleNonce => f.write_str("438 stale nonce: a fresh nonce was sent"),
            Refusal::UnknownUser => {
                f.write_str("401 unknown user: not in the credential database (check credentials)")
            }
            Refusal::IntegrityFailure => f.write_str(
                "401 integrity check failed: client and server passwords differ (check credentials)",
            ),
            Refusal::CredentialExpired { expiry, now } => write!(
                f,
                "401 time-limited credential expired {} s ago (check the issuer's clock and TTL)",
                now.saturating_sub(*expiry)
            ),
            Refusal::WrongRealm => f.write_str("401 wrong realm (check the realm on both sides)"),
            Refusal::WrongCredentials => {
                f.write_str("441 wrong credentials: username differs from the allocation's")
            }
            Refusal::AllocationMismatch => f.write_str("437 allocation mismatch"),
            Refusal::UnsupportedTransport(p) => {
                write!(
                    f,
                    "442 unsupported transport protocol {p} (UDP relays, and TCP relays where \
                     the server offers them)"
                )
            }
            Refusal::FamilyNotSupported => {
                f.write_str("440 address family not supported (no relay address of that family)")
            }
            Refusal::PeerFamilyMismatch => f.write_str("443 peer address family mismatch"),
            Refusal::ForbiddenPeer(ip, why) => {
                let rule = match why {
                    Verdict::DeniedByConfig => "denied by deny_peer",
                    Verdict::DeniedOwnAddress => {
                        "an address of this server that is no live relayed address; a service \
                         of this host is opened with allow_local_peer = [\"IP:PORT\"]"
                    }
                    Verdict::DeniedByDefault | Verdict::Allow => {
                        "in the built-in deny list; open it with allow_peer"
                    }
                };
                write!(f, "403 forbidden peer {ip} ({rule})")
            }
            Refusal::UserQuota => f.write_str("486 allocation quota reached for this user"),
            Refusal::Capacity => f.write_str("508 server at capacity"),
            Refusal::Draining => f.write_str(
                "508 draining: this node takes no new allocations (set alternate_server to send \
                 clients to another)",
            ),
            Refusal::Redirected { to, draining } => {
                let why = if *draining { "draining" } else { "at capacity" };
                write!(f, "300 sent to the alternate server {to}: this node is {why}")
            }
            Refusal::NoRelayPort => {
                f.write_str("508 no relay port free in the configured range")
            }
            Refusal::NoReservation => f.write_str(
                "508 RESERVATION-TOKEN names no live reservation (expired or already claimed)",
            ),
            Refusal::ReservationNotOffered => {
                f.write_str("508 EVEN-PORT reservations are not offered by this server")
            }
            Refusal::AllocationFull => {
                f.write_str("508 allocation holds as many permissions, channels or TCP connections as it can")
            }
            Refusal::ConnectionExists(p) => {
                write!(f, "446 connection already exists to peer {p} on this TCP allocation")
            }
            Refusal::ConnectionFailed(p) => write!(
                f,
                "447 connection to peer {p} failed or timed out (is it listening and reachable \
                 from the relay address?)"
            ),
            Refusal::TcpAllocation => f.write_str(
                "dropped: a Send indication or ChannelData on a TCP allocation (data goes on its \
                 data connections)",
            ),
            Refusal::BadRequest(b) => write!(f, "400 bad request: {b}"),
            Refusal::UnknownAttribute(t) => write!(f, "420 unknown attribute {t}"),
            Refusal::Malformed(e) => write!(f, "dropped: {e}"),
            Refusal::BadFingerprint => f.write_str("dropped: bad FINGERPRINT"),
            Refusal::NotTurn => f.write_str("dropped: neither STUN nor ChannelData"),
            Refusal::UnexpectedMessage => {
                f.write_str("dropped: a STUN response, or an indication other than Send")
            }
            Refusal::IncompleteSend => {
                f.write_str("dropped: a Send indication without XOR-PEER-ADDRESS or DATA")
            }
            Refusal::DontFragment => f.write_str(
                "dropped: a Send indication with DONT-FRAGMENT, which dont_fragment = false \
                 does not honour",
            ),
            Refusal::BadChannelData => {
                f.write_str("dropped: a ChannelData length that does not fit the packet")
            }
            Refusal::NoPermission(ip) => write!(f, "dropped: no permission for peer {ip}"),
            Refusal::NotLiveRelay(a) => write!(
                f,
                "dropped: {a} is an address of this server but no live relayed address (nor \
                 in allow_local_peer)"
            ),
            Refusal::NoChannel(c) => write!(f, "dropped: channel 0x{c:04x} is not bound"),
            Refusal::OverBandwidth => f.write_str("dropped: over the bandwidth limit"),
            Refusal::NoAllocation => f.write_str("dropped: no allocation for this 5-tuple"),
            Refusal::OutputTooSmall => f.write_str("dropped: response did not fit the buffer"),
            Refusal::ClassicOff => f.write_str(
                "dropped: an RFC 3489 Binding (no magic cookie) from an old client; classic_stun = \
                 true answers it",
            ),
        }
    }
}
