//! TURN for relays and their clients, as sans-IO state machines: `no_std`, no heap,
//! capacities fixed at compile time.
//!
//! This crate does **no I/O and reads no clock**. The caller feeds it what arrived
//! (a client's packet on a listener, a peer's datagram on a relay socket), the time
//! (a monotonic [`Instant`] for timers, and the wall clock as [`UnixTime`] where
//! time-limited credentials and nonces need it), and a [`server::Host`] through
//! which the server asks for the few things it cannot do itself: bind and close
//! relay sockets, look up a user's key, count quotas, and draw random bytes. It
//! answers with what to send, where.
//!
//! - [`server`]: the TURN server of RFC 8656 (with RFC 6156 IPv6 and the dual
//!   allocation of ADDITIONAL-ADDRESS-FAMILY): Allocate, Refresh, CreatePermission,
//!   ChannelBind, Send/Data indications and ChannelData, long-term and time-limited
//!   shared-secret credentials, stateless nonces, a deny-by-default peer policy,
//!   quotas, rate limits and timers.
//! - [`client`]: the TURN client of the same RFCs (Allocate with the 401 round,
//!   438 recovery, 300 redirects, refreshes, permissions, channels, retransmission)
//!   and a TURN server selector that measures round-trip times and fails over.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(any(feature = "smoltcp", feature = "embassy-net", feature = "std"))]
pub mod adapters;
pub mod client;
mod rng;
pub mod server;
mod time;

pub use time::{Instant, UnixTime};

/// The STUN codec this crate builds on.
pub use stun_core;
/// Keys and credentials an embedder needs: long-term keys of both password
/// algorithms, USERHASH, time-limited shared-secret credentials.
pub use stun_core::credentials;

/// The transport between a client and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Whether messages travel on a byte stream (and ChannelData needs padding).
    pub const fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Lower-case name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// The 5-tuple that identifies a client's allocation: its address, the server
/// address it talks to, and the transport; with the host's tag for the socket
/// that stands for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// The client's address as the server sees it.
    pub client: core::net::SocketAddr,
    /// The server's listening address the client sent to.
    pub server: core::net::SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// The host's tag for the socket this 5-tuple arrives on: the listener a UDP
    /// client sends to, or a stream client's connection. The server hands it back
    /// with everything it sends to the client, so the host finds the socket
    /// without a lookup. Keep it the same for the 5-tuple's life (0 when the host
    /// has one socket).
    pub socket: u32,
}

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
