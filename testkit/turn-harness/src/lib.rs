//! The TURN server's test harness, shared by turn-core's tests and the fuzz
//! targets (a crate of its own, so neither includes the other's files):
//!
//! - [`FakeHost`]: one fake [`Host`](turn_core::server::Host) for every test;
//! - [`Answer`]: what the server answered, owned;
//! - [`stateful`]: the harness that reads its input as a sequence of operations
//!   on the server and checks the server's invariants after each.

mod answer;
mod host;
pub mod stateful;

pub use answer::Answer;
pub use host::FakeHost;
