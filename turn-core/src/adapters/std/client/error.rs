//! Why a client call failed, in words an operator acts on.

use crate::adapters::std::prelude::*;

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::Transport;
use crate::client::{ClientError, Failure, RequestKind};

/// Why a client call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientIoError {
    /// The server could not be reached.
    Connect {
        /// The server.
        server: SocketAddr,
        /// Over what.
        transport: Transport,
        /// The cause.
        source: io::Error,
    },
    /// The connection failed after it was made.
    Io(io::Error),
    /// The client refused the call (not allocated, too many permissions, ...).
    Client(ClientError),
    /// The server refused a request, or its answer did not verify.
    Failed {
        /// What was asked.
        request: RequestKind,
        /// Why it failed.
        failure: Failure,
    },
    /// No answer in time.
    TimedOut(&'static str),
}

impl fmt::Display for ClientIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientIoError::Connect {
                server,
                transport,
                source,
            } => write!(
                f,
                "cannot reach {server} over {}: {source}",
                transport.name()
            ),
            ClientIoError::Io(e) => write!(f, "connection to the server failed: {e}"),
            ClientIoError::Client(e) => write!(f, "{e}"),
            ClientIoError::Failed { request, failure } => {
                write!(f, "{} failed: {failure}", request_name(request))
            }
            ClientIoError::TimedOut(what) => write!(f, "{what}: no answer in time"),
        }
    }
}

impl std::error::Error for ClientIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientIoError::Connect { source, .. } | ClientIoError::Io(source) => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientIoError {
    fn from(e: io::Error) -> Self {
        ClientIoError::Io(e)
    }
}

impl From<ClientError> for ClientIoError {
    fn from(e: ClientError) -> Self {
        ClientIoError::Client(e)
    }
}

fn request_name(r: &RequestKind) -> &'static str {
    match r {
        RequestKind::Allocate => "allocation",
        RequestKind::Refresh(0) => "deallocation",
        RequestKind::Refresh(_) => "refresh",
        RequestKind::Permission(_) => "permission",
        RequestKind::ChannelBind(..) => "channel binding",
        RequestKind::Connect(_) => "connection to the peer",
    }
}
