//! The TURN relay and a blocking TURN client on std sockets (feature `std`; TURN
//! over TLS on port 443 behind `tls`, sharing it with whatever HTTP server the
//! embedder wires in): the same state machines as
//! the embedded adapters, on Linux threads.
//!
//! # The relay, embedded
//!
//! A relay for one user on loopback, and a client allocating through it:
//!
//! ```
//! use std::time::Duration;
//! use turn_core::adapters::std::{Relay, client::TurnClient};
//! use turn_core::client::ClientConfig;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let relay = Relay::builder()
//!     .listen("127.0.0.1:0".parse()?)
//!     .realm("example")
//!     .user("alice", "s3cret")
//!     .threads(1)
//!     .start()?;
//! let server = relay.local_addrs()[0];
//!
//! let cfg = ClientConfig::new(server, "alice", "s3cret")?;
//! let mut turn = TurnClient::connect(cfg)?;
//! let allocation = turn.allocate(Duration::from_secs(5))?;
//! assert_eq!(allocation.relayed.ip(), server.ip());
//! assert_eq!(relay.stats().in_use(), 0, "published once a second");
//! relay.shutdown();
//! relay.join();
//! # Ok(())
//! # }
//! ```
//!
//! A deployment's relay listens on its private address, relays to a port range
//! and takes time-limited credentials from a meeting server:
//!
//! ```no_run
//! use turn_core::adapters::std::Relay;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let relay = Relay::builder()
//!     .listen("192.0.2.10:3478".parse()?)
//!     .external_ip("203.0.113.10".parse()?)
//!     .relay_range(24000, 29999)
//!     .realm("TANDBERG")
//!     .shared_secrets(["secret-2026-11", "secret-2026-12"])
//!     .start()?;
//! let stop = relay.stopper(); // give it to a signal handler
//! # drop(stop);
//! relay.join();
//! # Ok(())
//! # }
//! ```
//!
//! [`Relay::builder`] takes the settings ([`Settings`] holds them all, with the
//! defaults of a meeting deployment: no per-user quota, a total that follows the
//! machine, the reflection budgets of `turn-core`), the credentials (a
//! [`Credentials`] store: [`Users`] is the ready one; time-limited shared-secret
//! credentials are checked by the core itself), and starts:
//!
//! - one **worker** thread per core, each with its own shard of the TURN server
//!   and its own SO_REUSEPORT listeners, so the kernel spreads clients over the
//!   workers and a client's allocation, relay sockets and traffic stay on one;
//!   datagrams are received in batches (recvmmsg, with GRO) into buffers made at
//!   start, and nothing is allocated on the relay path;
//! - with TLS listeners, **TLS threads** (`turn-tls-N`, one per core by
//!   default, each with a bounded queue) that run every handshake, so
//!   handshakes never delay relayed media, and hand TURN connections back to
//!   their worker and HTTP ones to the hook the embedder gave
//!   ([`RelayBuilder::on_http`]; causeway wires its web proxy there). A ClientHello is answered
//!   only within its connection's opening deadline and its source's handshake
//!   rate ([`TcpLimits`]): a replayed ClientHello flood from one address costs
//!   no signatures past the rate. ECDSA keys cost far less per handshake than
//!   RSA ones.
//!
//! The [`Relay`] it returns gives the bound addresses, [`Stats`] (allocations,
//! per-user traffic, counters; also from another thread through a
//! [`StatsHandle`]), a channel of [`RelayEvent`]s ([`Relay::take_events`]:
//! allocations created and ended, refusals worth an operator's attention), and
//! stops with [`Relay::shutdown`] (or a [`Stopper`]) and [`Relay::join`], or
//! when dropped.
//!
//! # Beside an async runtime
//!
//! Nothing here is async and nothing needs a runtime: the relay runs on threads of
//! its own and blocks none of the caller's. From tokio, start it in `main` (or in
//! `spawn_blocking`, as starting binds sockets), keep the [`Relay`] in your state,
//! read [`Relay::stats`] from any task (it takes a lock for a moment), and forward
//! the events with `spawn_blocking(move || while let Ok(e) = events.recv() { .. })`
//! or a thread. Stop it with [`Relay::shutdown`] or a [`Stopper`] from a task;
//! [`Relay::join`] blocks until the workers are done, so call it from a blocking
//! context (or let `spawn_blocking` drop the relay).
//!
//! # The client
//!
//! [`client::TurnClient`] allocates, permits, binds channels, and sends and
//! receives through a relay over UDP, TCP or TLS, blocking with timeouts taken
//! from the sans-IO client's own timers.

mod builder;
mod capacity;
mod check;
pub mod client;
mod clock;
mod conn;
mod credentials;
mod error;
mod events;
#[cfg(feature = "tls")]
mod front;
mod handle;
mod handoff;
mod host;
mod meters;
mod net;
mod prelude;
mod proxied;
mod relay;
mod relays;
mod shared;
mod sources;
mod stats;
mod stream;
mod tcp_relay;
pub mod upgrade;
mod usage;
mod worker;
#[cfg(feature = "xdp")]
mod xdp;

pub use builder::{RelayBuilder, Settings, TcpLimits};
pub use capacity::Capacity;
pub use credentials::{Credentials, Users};
pub use error::StartError;
pub use events::RelayEvent;
#[cfg(feature = "tls")]
pub use front::http::Accepted;
pub use handle::{LISTING_KEPT, LISTING_WAIT, Relay, StatsHandle, Stopper};
pub use stats::{
    AllocationStats, PEERS_SHOWN, Stats, TlsRefused, UserStats, Username, WorkerStats,
};
pub use upgrade::{HAND_OVER_WITHIN, HandOverError, HandedOver, Resumed};
pub use usage::{UsageRecord, reason_name};
#[cfg(feature = "xdp")]
pub use xdp::{KernelStats, XdpMode, XdpSettings};
