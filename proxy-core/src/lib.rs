//! The decisions of a WebRTC web proxy, as `no_std`, heap-free, sans-IO functions:
//! the std adapter (or an appliance's firmware) does the I/O and the TLS, this
//! crate decides.
//!
//! - [`demux`]: what a new connection on port 443 is, from its first bytes: a TLS
//!   ClientHello (with its SNI), STUN/TURN, or plain HTTP; and, inside TLS, TURN
//!   or HTTP. TURN and the web proxy share the port.
//! - [`http`]: the HTTP/1.1 request head, parsed with `httparse` and checked
//!   against request smuggling (RFC 9112): one Host, one Content-Length or a final
//!   `chunked`, never both, no obs-fold, no bare CR, no NUL.
//! - [`path`]: path normalisation (dot segments, percent-encoded dots, double
//!   slashes), refusing ambiguous paths (encoded slashes, backslashes).
//! - [`allow`]: the allow list of rules (scheme, port, prefix/exact path, methods).
//! - [`route`]: join URL host (and SNI) to web bridge.
//! - [`websocket`]: upgrade requests and the 101 answer's Sec-WebSocket-Accept.
//! - [`body`]: where request and response bodies end (Content-Length, chunked).
//! - [`response`]: refusals, redirects and upstream response heads.
//! - [`timer`]: header and body read deadlines against slow clients.
//! - [`proxy_protocol`]: the PROXY protocol header (v1 and v2) a TCP load
//!   balancer puts in front of a connection, naming the real client.
//! - [`source`]: the source a per-address limit counts (an IPv6 client's /64).
//! - [`decide`]: all of it together: forward (where, which path), or refuse (which
//!   status, why).
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod allow;
pub mod body;
pub mod decide;
pub mod demux;
pub mod forward;
pub mod http;
pub mod path;
pub mod proxy_protocol;
pub mod refusal;
pub mod response;
pub mod route;
#[cfg(feature = "tls")]
pub mod runtime;
pub mod source;
pub mod timer;
pub mod websocket;

pub use refusal::{Reason, Refusal};

#[cfg(feature = "std")]
extern crate std;

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "tls"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
