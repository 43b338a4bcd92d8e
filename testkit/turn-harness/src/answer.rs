//! What the server answered, owned: [`Outgoing`] borrows the packet or the
//! reply buffer, and a test keeps the answer past both.

use std::net::SocketAddr;

use turn_core::FiveTuple;
use turn_core::server::{Outgoing, Refusal, RelayHandle};

/// An owned [`Outgoing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// To the client of `tuple`: a reply to its request, or a peer's data.
    ToClient {
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// What to send.
        bytes: Vec<u8>,
        /// Why a request was refused, when this is an error response.
        refusal: Option<Refusal>,
    },
    /// From relay socket `relay` (bound to `from`) to `peer`.
    ToPeer {
        /// The relay socket.
        relay: RelayHandle,
        /// Its local address.
        from: SocketAddr,
        /// The peer.
        peer: SocketAddr,
        /// The peer's relay socket, when it is one of this server's.
        own_relay: Option<SocketAddr>,
        /// The payload.
        data: Vec<u8>,
    },
    /// Nothing; why, when there is a reason worth logging.
    Nothing(Option<Refusal>),
}

impl From<Outgoing<'_>> for Answer {
    fn from(o: Outgoing<'_>) -> Answer {
        match o {
            Outgoing::Client {
                tuple,
                bytes,
                refusal,
            } => Answer::ToClient {
                tuple,
                bytes: bytes.to_vec(),
                refusal,
            },
            Outgoing::Peer {
                relay,
                from,
                peer,
                own_relay,
                bytes,
            } => Answer::ToPeer {
                relay,
                from,
                peer,
                own_relay,
                data: bytes.to_vec(),
            },
            Outgoing::Nothing(why) => Answer::Nothing(why),
        }
    }
}

impl Answer {
    /// The bytes for the client, if this is a reply or a peer's data.
    pub fn to_client(&self) -> Option<&[u8]> {
        match self {
            Answer::ToClient { bytes, .. } => Some(bytes),
            _ => None,
        }
    }

    /// The refusal it carries: an error response's, or a silent drop's.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Answer::ToClient { refusal, .. } => *refusal,
            Answer::Nothing(why) => *why,
            Answer::ToPeer { .. } => None,
        }
    }
}
