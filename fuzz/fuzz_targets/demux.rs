//! First-byte demultiplexing and STUN/ChannelData stream framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stun_core::demux::{self, Frame};

fuzz_target!(|data: &[u8]| {
    let _ = demux::classify(data);
    match demux::stream_frame(data) {
        Frame::Stun(n) | Frame::ChannelData(n) => assert!(n >= 4 && n <= 4 + 65535 + 20),
        Frame::NeedMore => assert!(data.len() < 4),
        Frame::Invalid => {}
    }
});
