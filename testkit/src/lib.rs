//! What the end-to-end tests of the workspace share, so that no test reaches into
//! another crate's test folder:
//!
//! - [`tools`]: Debian's packages installed when missing, a tool run with a time
//!   limit, coturn's UDP echo peer and one of our own;
//! - [`wait`]: readiness of exactly what a test will use (a TCP or TLS port, a
//!   STUN server over UDP or TCP, a UDP echo), polled up to a generous limit,
//!   never a fixed sleep;
//! - [`output`]: a child's output kept line by line, waited on, and its tail
//!   printed when a test fails;
//! - [`coturn`]: coturn's `turnserver`, started and waited for on every port it
//!   was given;
//! - [`bridge`]: a throwaway CA, temporary directories, the stand-in web bridge;
//! - [`chromium`], [`prometheus`]: Debian's Chromium (over DevTools) and
//!   Prometheus;
//! - [`delay`]: a UDP link of a known delay;
//! - [`http`]: one HTTP/1.1 response read off a stream.
//!
//! Every limit here is many times what an idle machine needs: CI runs on a busy
//! two-core machine, and a limit only costs time when something is broken.

#![allow(missing_docs, unreachable_pub, clippy::new_without_default)]

pub mod bridge;
pub mod chromium;
pub mod coturn;
pub mod delay;
pub mod http;
pub mod output;
pub mod plain_bridge;
pub mod prometheus;
pub mod tools;
pub mod wait;

pub use output::Output;
/// The JSON parser the kit reads tools' output with, for tests that need one too.
pub use serde_json;
pub use tools::{coturn_tool, ensure_package, run_with_timeout};
