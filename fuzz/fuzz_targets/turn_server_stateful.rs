//! The TURN server driven by sequences of authenticated requests, bad
//! credentials, raw packets, client and peer data, closed connections and time
//! steps, with its invariants checked after each (see `turn_stateful/harness.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "turn_stateful/harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::run(data));
