//! A `no_std`, heap-free, zero-copy STUN codec: the foundation of causeway.
//!
//! This crate does **no I/O and reads no clock**. It parses datagrams that the caller
//! received into views over the caller's buffer, and encodes messages into a buffer
//! the caller owns. Where time matters (time-limited credentials), the caller passes
//! the current time in.
//!
//! # What it holds
//! - [`Message`]: a checked view over a STUN message (RFC 8489): header fields,
//!   attributes iterated lazily, typed attribute decoding with [`Message::attribute`].
//! - [`attributes`]: one type per attribute of RFC 8489, RFC 8656 (TURN), RFC 6062
//!   (TURN-TCP) and RFC 8445 (ICE), each implementing [`Attribute`].
//! - [`MessageBuilder`]: encodes into `&mut [u8]`, appends MESSAGE-INTEGRITY,
//!   MESSAGE-INTEGRITY-SHA256 and FINGERPRINT with the header length adjusted as
//!   RFC 8489 §14.5-14.7 require, and returns an error (never panics) when the
//!   buffer is too small.
//! - [`integrity`]: verification of a parsed message's MESSAGE-INTEGRITY,
//!   MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, in place, in constant time.
//! - [`credentials`]: short-term and long-term keys (MD5 and SHA-256), USERHASH, and
//!   the time-limited shared-secret scheme of TURN REST deployments.
//! - [`channel_data`]: the TURN ChannelData framing (RFC 8656 §12).
//! - [`demux`]: first-byte demultiplexing (RFC 7983) and stream framing.
//! - [`binding`]: a complete sans-IO Binding responder.
//! - [`classic`]: the answer to an RFC 3489 Binding request (no magic cookie).
//! - [`escape`]: client text (usernames, realms, host names) escaped and bounded
//!   for log lines.
//!
//! # Robustness contract
//! Every length and offset read from the wire is checked. Once
//! [`Message::new_checked`] has returned `Ok`, no accessor of the view panics, and no
//! function of this crate panics on any input from the network. The crate denies
//! `unwrap`, `expect`, `panic!` and unchecked indexing outside its tests, and its
//! parsers are fuzzed (`fuzz/` at the workspace root).
//!
//! # Example
//! ```
//! use stun_core::{Message, MessageBuilder, MessageType, Method, Class, TransactionId};
//! use stun_core::attributes::{Software, XorMappedAddress};
//!
//! let tid = TransactionId::new([7; 12]);
//! let mut buf = [0u8; 128];
//! let mut b = MessageBuilder::new(&mut buf, MessageType::new(Method::BINDING, Class::Success), tid)?;
//! b.add(&XorMappedAddress("192.0.2.1:32853".parse().unwrap()))?;
//! b.add(&Software("causeway"))?;
//! b.add_fingerprint()?;
//! let len = b.finish();
//!
//! let msg = Message::new_checked(&buf[..len])?;
//! assert_eq!(msg.method(), Method::BINDING);
//! assert_eq!(msg.attribute::<XorMappedAddress>()?.unwrap().0.port(), 32853);
//! assert!(msg.verify_fingerprint().is_ok());
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
#![no_std]
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

pub mod attributes;
pub mod binding;
mod builder;
pub mod channel_data;
pub mod classic;
pub mod credentials;
pub mod demux;
mod error;
pub mod escape;
mod header;
pub mod integrity;
mod message;
mod wire;

pub use attributes::{Attribute, AttributeType};
pub use builder::MessageBuilder;
pub use error::{AttributeError, AttributeErrorKind, EncodeError, IntegrityError, ParseError};
pub use header::{
    Class, HEADER_LEN, MAGIC_COOKIE, MessageType, Method, TransactionId, message_type_of,
};
pub use message::{Attributes, Message, RawAttribute, UnknownAttributeList};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
