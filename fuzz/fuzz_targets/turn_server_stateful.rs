//! The TURN server driven by sequences of authenticated requests, bad
//! credentials, raw packets, client and peer data, closed connections and time
//! steps, with its invariants checked after each (see `turn_harness::stateful`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| turn_harness::stateful::run(data));
