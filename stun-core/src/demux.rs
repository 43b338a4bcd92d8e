//! Demultiplexing: which protocol a packet belongs to, from its first bytes
//! (RFC 7983), and where the next STUN or ChannelData message ends on a TCP/TLS
//! stream (RFC 8656 §12.5, RFC 6062).

use crate::header::HEADER_LEN;
use crate::wire::{self, pad4};

/// What a packet is, judged from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PacketKind {
    /// STUN (first byte 0..=3).
    Stun,
    /// ZRTP (16..=19).
    Zrtp,
    /// DTLS record (20..=63, version byte 0xFE).
    Dtls,
    /// TLS record (20..=63 followed by version major 0x03), as seen on TCP port 443.
    Tls,
    /// TURN ChannelData (64..=79).
    ChannelData,
    /// RTP or RTCP (128..=191).
    Rtp,
    /// Anything else, including an empty packet.
    Unknown,
}

/// Classifies a packet by its first byte (RFC 7983 §7), telling TLS from DTLS by
/// the version byte that follows.
pub fn classify(bytes: &[u8]) -> PacketKind {
    match (bytes.first(), bytes.get(1)) {
        (Some(0..=3), _) => PacketKind::Stun,
        (Some(16..=19), _) => PacketKind::Zrtp,
        (Some(20..=63), Some(0x03)) => PacketKind::Tls,
        (Some(20..=63), _) => PacketKind::Dtls,
        (Some(64..=79), _) => PacketKind::ChannelData,
        (Some(128..=191), _) => PacketKind::Rtp,
        _ => PacketKind::Unknown,
    }
}

/// The next frame on a stream that carries STUN and ChannelData messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Frame {
    /// A STUN message of this many bytes.
    Stun(usize),
    /// A ChannelData message of this many bytes, padding included.
    ChannelData(usize),
    /// Fewer than four bytes have arrived: read more.
    NeedMore,
    /// Neither STUN nor ChannelData (or a STUN length that is not a multiple of
    /// four): the stream is out of sync and should be closed.
    Invalid,
}

impl Frame {
    /// The frame's length, if known.
    pub fn frame_len(&self) -> Option<usize> {
        match *self {
            Frame::Stun(n) | Frame::ChannelData(n) => Some(n),
            Frame::NeedMore | Frame::Invalid => None,
        }
    }
}

/// Where the message at the start of `prefix` ends, from its first four bytes.
pub fn stream_frame(prefix: &[u8]) -> Frame {
    let (Some(first), Some(len)) = (prefix.first(), wire::u16_at(prefix, 2)) else {
        return Frame::NeedMore;
    };
    let len = usize::from(len);
    match first {
        0..=3 if len % 4 == 0 => Frame::Stun(HEADER_LEN + len),
        // 0x40-0x7F: the RFC 5766 channel range, which older clients still use.
        0x40..=0x7F => Frame::ChannelData(crate::channel_data::HEADER_LEN + pad4(len)),
        _ => Frame::Invalid,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn rfc7983_ranges() {
        assert_eq!(classify(&[0x00, 0x01]), PacketKind::Stun);
        assert_eq!(classify(&[0x03]), PacketKind::Stun);
        assert_eq!(classify(&[0x04]), PacketKind::Unknown);
        assert_eq!(classify(&[0x10]), PacketKind::Zrtp);
        assert_eq!(classify(&[0x16, 0xfe, 0xfd]), PacketKind::Dtls);
        assert_eq!(classify(&[0x16, 0x03, 0x01]), PacketKind::Tls);
        assert_eq!(classify(&[0x40, 0x00]), PacketKind::ChannelData);
        assert_eq!(classify(&[0x4f]), PacketKind::ChannelData);
        assert_eq!(classify(&[0x50]), PacketKind::Unknown);
        assert_eq!(classify(&[0x80]), PacketKind::Rtp);
        assert_eq!(classify(&[0xbf]), PacketKind::Rtp);
        assert_eq!(classify(&[0xc0]), PacketKind::Unknown);
        // 'G' is 0x47: by its first byte plain HTTP looks like ChannelData, so a
        // connection is demultiplexed on its first message, which is never
        // ChannelData (a channel needs an allocation first).
        assert_eq!(classify(b"GET /"), PacketKind::ChannelData);
        assert_eq!(classify(b"\xff"), PacketKind::Unknown);
        assert_eq!(classify(&[]), PacketKind::Unknown);
    }

    #[test]
    fn stream_frames() {
        assert_eq!(stream_frame(&[0, 1, 0]), Frame::NeedMore);
        assert_eq!(stream_frame(&[0, 1, 0, 8]), Frame::Stun(28));
        assert_eq!(stream_frame(&[0, 1, 0, 7]), Frame::Invalid);
        assert_eq!(stream_frame(&[0x40, 1, 0, 5]), Frame::ChannelData(12));
        assert_eq!(stream_frame(b"\x16\x03\x01\x00"), Frame::Invalid);
        assert_eq!(Frame::Stun(28).frame_len(), Some(28));
    }
}
