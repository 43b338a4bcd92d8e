//! ChannelData parsing (UDP rule) and stream framing (TCP rule), and re-encoding
//! what was parsed, which must reproduce the same header and data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stun_core::channel_data::{self, ChannelData};

fuzz_target!(|data: &[u8]| {
    let _ = channel_data::stream_frame_len(data);
    let Ok(c) = ChannelData::new_checked(data) else {
        return;
    };
    assert!(4 + c.data().len() <= data.len());
    let mut out = [0u8; 70_000];
    let n = channel_data::encode(&mut out, c.channel(), c.data(), true).expect("fits");
    let again = ChannelData::new_checked(&out[..n]).expect("re-encoded ChannelData parses");
    assert_eq!(again.channel(), c.channel());
    assert_eq!(again.data(), c.data());
});
