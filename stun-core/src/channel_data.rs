//! TURN ChannelData messages (RFC 8656 §12.4-12.5): a 4-byte header (channel number,
//! length) in front of the application data, the fast path of a relay.
//!
//! Over UDP the datagram may carry padding after the data; one shorter than the
//! declared length is dropped. Over TCP and TLS each ChannelData message is padded to
//! a multiple of four bytes, which [`stream_frame_len`] accounts for.
//!
//! The header can be written in front of data already in place
//! ([`encode_in_place`]): a relay receives a peer's datagram four bytes into its
//! buffer and sends the buffer on without copying the payload.

use core::fmt;

use crate::wire::{self, pad4};

/// Length of the ChannelData header.
pub const HEADER_LEN: usize = 4;
/// Lowest channel number (RFC 8656 §12).
pub const MIN_CHANNEL: u16 = 0x4000;
/// Highest channel number (RFC 8656 §12; 0x5000-0x7FFF are reserved).
pub const MAX_CHANNEL: u16 = 0x4FFF;
/// Highest channel number of RFC 5766, which older clients (coturn's own tools,
/// pjnath) still use.
pub const MAX_LEGACY_CHANNEL: u16 = 0x7FFF;

/// Whether `n` is a channel number a client may bind under RFC 8656.
pub const fn is_valid_channel(n: u16) -> bool {
    n >= MIN_CHANNEL && n <= MAX_CHANNEL
}

/// Whether `n` is a channel number under RFC 5766 (0x4000-0x7FFF).
pub const fn is_legacy_channel(n: u16) -> bool {
    n >= MIN_CHANNEL && n <= MAX_LEGACY_CHANNEL
}

/// Why bytes are not a usable ChannelData message, or could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChannelDataError {
    /// The header, or the data it declares, runs past the bytes available.
    Truncated {
        /// Bytes the header declares (header included).
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The channel number is outside 0x4000..=0x7FFF.
    InvalidChannel {
        /// The number found.
        channel: u16,
    },
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        required: usize,
        /// Bytes available.
        available: usize,
    },
    /// The data is longer than 65535 bytes.
    TooLong,
}

impl fmt::Display for ChannelDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ChannelDataError::Truncated { needed, available } => write!(
                f,
                "ChannelData declares {needed} bytes but only {available} arrived"
            ),
            ChannelDataError::InvalidChannel { channel } => {
                write!(f, "channel number 0x{channel:04x} is outside 0x4000-0x7FFF")
            }
            ChannelDataError::BufferTooSmall {
                required,
                available,
            } => write!(
                f,
                "buffer too small for ChannelData: need {required} bytes, have {available}"
            ),
            ChannelDataError::TooLong => f.write_str("ChannelData payload longer than 65535 bytes"),
        }
    }
}

impl core::error::Error for ChannelDataError {}

/// A checked view over a ChannelData message.
#[derive(Debug, Clone, Copy)]
pub struct ChannelData<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> ChannelData<T> {
    /// Validates the header: a channel number in 0x4000..=0x7FFF (the RFC 5766
    /// range; a server enforces the range it grants when binding) and at least the
    /// declared number of data bytes (bytes after them, such as padding, are
    /// allowed and ignored).
    pub fn new_checked(buf: T) -> Result<ChannelData<T>, ChannelDataError> {
        let bytes = buf.as_ref();
        let (channel, len) = match (wire::u16_at(bytes, 0), wire::u16_at(bytes, 2)) {
            (Some(c), Some(l)) => (c, usize::from(l)),
            _ => {
                return Err(ChannelDataError::Truncated {
                    needed: HEADER_LEN,
                    available: bytes.len(),
                });
            }
        };
        if !is_legacy_channel(channel) {
            return Err(ChannelDataError::InvalidChannel { channel });
        }
        if HEADER_LEN + len > bytes.len() {
            return Err(ChannelDataError::Truncated {
                needed: HEADER_LEN + len,
                available: bytes.len(),
            });
        }
        Ok(ChannelData { buf })
    }

    /// The channel number.
    pub fn channel(&self) -> u16 {
        wire::u16_at(self.buf.as_ref(), 0).unwrap_or(0)
    }

    /// The application data.
    pub fn data(&self) -> &[u8] {
        let bytes = self.buf.as_ref();
        let len = usize::from(wire::u16_at(bytes, 2).unwrap_or(0));
        bytes.get(HEADER_LEN..HEADER_LEN + len).unwrap_or(&[])
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

/// Writes a ChannelData header for `data_len` bytes on `channel` into `buf[..4]`.
pub fn write_header(buf: &mut [u8], channel: u16, data_len: usize) -> Result<(), ChannelDataError> {
    if !is_legacy_channel(channel) {
        return Err(ChannelDataError::InvalidChannel { channel });
    }
    let len = u16::try_from(data_len).map_err(|_| ChannelDataError::TooLong)?;
    let available = buf.len();
    wire::put_u16(buf, 0, channel)
        .and_then(|()| wire::put_u16(buf, 2, len))
        .ok_or(ChannelDataError::BufferTooSmall {
            required: HEADER_LEN,
            available,
        })
}

/// Completes a ChannelData message whose data already sits at `buf[4..4 + data_len]`:
/// writes the header and, with `pad` (TCP/TLS), zeroes the padding. Returns the
/// number of bytes to send.
pub fn encode_in_place(
    buf: &mut [u8],
    channel: u16,
    data_len: usize,
    pad: bool,
) -> Result<usize, ChannelDataError> {
    let total = if pad {
        HEADER_LEN + pad4(data_len)
    } else {
        HEADER_LEN + data_len
    };
    if total > buf.len() {
        return Err(ChannelDataError::BufferTooSmall {
            required: total,
            available: buf.len(),
        });
    }
    write_header(buf, channel, data_len)?;
    if let Some(padding) = buf.get_mut(HEADER_LEN + data_len..total) {
        padding.fill(0);
    }
    Ok(total)
}

/// Writes a whole ChannelData message (header, a copy of `data`, and padding when
/// `pad`) into `buf`; returns its length.
pub fn encode(
    buf: &mut [u8],
    channel: u16,
    data: &[u8],
    pad: bool,
) -> Result<usize, ChannelDataError> {
    let available = buf.len();
    wire::put(buf, HEADER_LEN, data).ok_or(ChannelDataError::BufferTooSmall {
        required: HEADER_LEN + data.len(),
        available,
    })?;
    encode_in_place(buf, channel, data.len(), pad)
}

/// On a TCP or TLS stream, the length of the ChannelData message starting at
/// `prefix` (header, data and padding), once its 4-byte header has arrived.
pub fn stream_frame_len(prefix: &[u8]) -> Option<usize> {
    let len = usize::from(wire::u16_at(prefix, 2)?);
    Some(HEADER_LEN + pad4(len))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn parse() {
        let b = [0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c', 0];
        let c = ChannelData::new_checked(&b[..]).unwrap();
        assert_eq!(c.channel(), 0x4001);
        assert_eq!(c.data(), b"abc");
        assert_eq!(stream_frame_len(&b), Some(8));
    }

    #[test]
    fn declared_length_exceeds_datagram() {
        let b = [0x40, 0x01, 0x00, 0x10, b'a'];
        assert_eq!(
            ChannelData::new_checked(&b[..]).unwrap_err(),
            ChannelDataError::Truncated {
                needed: 20,
                available: 5
            }
        );
        assert!(ChannelData::new_checked(&b[..3]).is_err());
    }

    #[test]
    fn channel_range() {
        for ch in [0x3fffu16, 0x8000, 0xffff, 0x0001] {
            let mut b = [0u8; 4];
            b[..2].copy_from_slice(&ch.to_be_bytes());
            assert_eq!(
                ChannelData::new_checked(&b[..]).unwrap_err(),
                ChannelDataError::InvalidChannel { channel: ch }
            );
        }
        let mut out = [0u8; 8];
        assert!(encode(&mut out, 0x8000, b"x", false).is_err());
        assert!(is_valid_channel(0x4fff) && !is_valid_channel(0x5000));
        assert!(is_legacy_channel(0x7fff) && !is_legacy_channel(0x8000));
    }

    #[test]
    fn encode_pads_for_streams() {
        let mut out = [0xffu8; 12];
        assert_eq!(encode(&mut out, 0x4fff, b"hello", true).unwrap(), 12);
        assert_eq!(
            out,
            [0x4f, 0xff, 0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]
        );
        let mut out = [0u8; 9];
        assert_eq!(encode(&mut out, 0x4000, b"hello", false).unwrap(), 9);
        let mut small = [0u8; 9];
        assert_eq!(
            encode(&mut small, 0x4000, b"hello", true).unwrap_err(),
            ChannelDataError::BufferTooSmall {
                required: 12,
                available: 9
            }
        );
    }
}
