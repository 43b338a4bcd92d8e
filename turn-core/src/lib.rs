//! TURN server and client state machines (RFC 8656, 5766, 6156), sans-IO, `no_std`,
//! heap-free. Built on `stun-core`; see the workspace README for what lands here.
#![no_std]
#![forbid(unsafe_code)]
