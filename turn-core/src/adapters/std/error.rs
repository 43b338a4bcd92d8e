//! Why a relay does not start: [`StartError`], naming the setting, the address
//! or the step.

use crate::adapters::std::prelude::*;

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::server::ConfigError;

/// Why the relay did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A setting cannot work; `field` names it (as in [`Settings`](super::Settings)).
    Settings {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The TURN core refused its configuration.
    Config(ConfigError),
    /// A listener could not be bound.
    Bind {
        /// "udp", "tcp" or "tls".
        transport: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Resuming from another process's hand-over failed (that process serves
    /// on).
    HandOver(super::upgrade::HandOverError),
    /// Something else the start needs failed: an event loop, a thread, the OS
    /// random source.
    Setup {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Settings { field, problem } => write!(f, "`{field}`: {problem}"),
            StartError::Config(e) => write!(f, "TURN configuration refused: {e}"),
            StartError::Bind {
                transport,
                addr,
                source,
            } => write!(
                f,
                "cannot listen on {transport} {addr}: {source} (is another server, such as \
                 coturn, already on this port?)"
            ),
            StartError::Setup { what, source } => write!(f, "cannot {what}: {source}"),
            StartError::HandOver(e) => write!(f, "cannot resume the relay handed over: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } | StartError::Setup { source, .. } => Some(source),
            StartError::Config(e) => Some(e),
            StartError::HandOver(e) => Some(e),
            StartError::Settings { .. } => None,
        }
    }
}
