//! What the relay tells its embedder as it runs: [`RelayEvent`].

use std::io;
use std::net::SocketAddr;

use crate::FiveTuple;
use crate::server::{Event, Refusal};

use super::stats::Username;
use super::usage::UsageRecord;

/// Something that happened on the relay, for the embedder (the same things are
/// logged with `log`). Events queue up to the builder's
/// [`event_queue`](super::RelayBuilder::event_queue) size; past it they are
/// dropped and counted in [`Stats::events_dropped`](super::Stats::events_dropped), never blocking a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// An allocation ended: its usage record (sent before the
    /// [`RelayEvent::Allocation`] of the same end).
    Usage {
        /// The worker that held it.
        worker: usize,
        /// Who used how much.
        record: UsageRecord,
    },
    /// An allocation was created or ended.
    Allocation {
        /// The worker that holds it.
        worker: usize,
        /// What happened.
        event: Event,
    },
    /// A request was refused for a reason an operator acts on: bad credentials,
    /// an unknown user, a stale nonce past its retry, a forbidden peer, a quota.
    /// (Routine refusals, such as the first 401 of every allocation, are not
    /// reported.)
    Refused {
        /// The worker that refused it.
        worker: usize,
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// The USERNAME it carried, if any.
        username: Option<Username>,
        /// Why.
        refusal: Refusal,
    },
    /// A relay socket could not be bound for a reason other than a taken port
    /// (the address is not this host's, permissions, file descriptors).
    RelaySocketFailed {
        /// The worker.
        worker: usize,
        /// The address it tried.
        local: SocketAddr,
        /// The system's reason.
        error: io::ErrorKind,
    },
}
