//! Thin adapters that run the TURN server (and client) on real network stacks,
//! behind features that are off by default. Parsing, authentication,
//! allocations, permissions and channels all stay in [`crate::server`]; an
//! adapter only moves datagrams between the stack's sockets and the server, and
//! implements the server's [`Host`](crate::server::Host) over the stack.
//!
//! - `std`: [`std::Relay`], the relay on Linux threads (a worker per core with
//!   SO_REUSEPORT listeners, batched UDP, TURN over TCP, and with `tls` TURN over
//!   TLS, sharing the port with the embedder's HTTP server), and [`std::client::TurnClient`], a
//!   blocking client.
//! - `smoltcp`: [`smoltcp::SmoltcpTurn`], poll-based over an `Interface` and a
//!   `SocketSet` the caller owns.
//! - `embassy-net`: [`embassy::EmbassyTurn`], async over an `embassy_net::Stack`.

#[cfg(feature = "embassy-net")]
pub mod embassy;
#[cfg(any(feature = "smoltcp", feature = "embassy-net"))]
mod slots;
#[cfg(feature = "smoltcp")]
pub mod smoltcp;
#[cfg(feature = "std")]
pub mod std;

#[cfg(any(feature = "smoltcp", feature = "embassy-net"))]
pub use slots::{Local, User, Users};
#[cfg(any(feature = "smoltcp", feature = "embassy-net"))]
pub(crate) use slots::{Parts, RX, RelaySockets, Slot};
