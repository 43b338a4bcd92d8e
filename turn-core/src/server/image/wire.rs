//! The image's encoding: integers little-endian, addresses as family, bytes,
//! port (and an IPv6 scope id), times relative to the writer's clock; a
//! writer and a reader that never run past their buffer's end.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use super::ImageError;
use crate::Instant;

/// An address at most: family, IPv6, port, scope id.
pub(super) const ADDR_MAX: usize = 1 + 16 + 2 + 4;

/// Writes into a buffer, refusing to run past its end.
pub(super) struct Writer<'b> {
    pub(super) buf: &'b mut [u8],
    pub(super) at: usize,
}

impl Writer<'_> {
    pub(super) fn bytes(&mut self, b: &[u8]) -> Result<(), ImageError> {
        let end = self
            .at
            .checked_add(b.len())
            .ok_or(ImageError::BufferTooSmall)?;
        let dst = self
            .buf
            .get_mut(self.at..end)
            .ok_or(ImageError::BufferTooSmall)?;
        dst.copy_from_slice(b);
        self.at = end;
        Ok(())
    }
    pub(super) fn u8(&mut self, v: u8) -> Result<(), ImageError> {
        self.bytes(&[v])
    }
    pub(super) fn u16(&mut self, v: u16) -> Result<(), ImageError> {
        self.bytes(&v.to_le_bytes())
    }
    pub(super) fn u32(&mut self, v: u32) -> Result<(), ImageError> {
        self.bytes(&v.to_le_bytes())
    }
    pub(super) fn u64(&mut self, v: u64) -> Result<(), ImageError> {
        self.bytes(&v.to_le_bytes())
    }
    pub(super) fn i64(&mut self, v: i64) -> Result<(), ImageError> {
        self.bytes(&v.to_le_bytes())
    }
    pub(super) fn ip(&mut self, ip: &IpAddr) -> Result<(), ImageError> {
        match ip {
            IpAddr::V4(a) => {
                self.u8(4)?;
                self.bytes(&a.octets())
            }
            IpAddr::V6(a) => {
                self.u8(6)?;
                self.bytes(&a.octets())
            }
        }
    }
    pub(super) fn addr(&mut self, a: &SocketAddr) -> Result<(), ImageError> {
        self.ip(&a.ip())?;
        self.u16(a.port())?;
        if let SocketAddr::V6(v6) = a {
            self.u32(v6.scope_id())?;
        }
        Ok(())
    }
}

/// Reads from an image, refusing to run past its end.
pub(super) struct Reader<'b> {
    pub(super) bytes: &'b [u8],
    pub(super) at: usize,
}

impl<'b> Reader<'b> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'b [u8], ImageError> {
        let end = self.at.checked_add(n).ok_or(ImageError::Truncated)?;
        let b = self.bytes.get(self.at..end).ok_or(ImageError::Truncated)?;
        self.at = end;
        Ok(b)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], ImageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(super) fn u8(&mut self) -> Result<u8, ImageError> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    pub(super) fn u16(&mut self) -> Result<u16, ImageError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, ImageError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, ImageError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(super) fn i64(&mut self) -> Result<i64, ImageError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(super) fn flag(&mut self, what: &'static str) -> Result<bool, ImageError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ImageError::Inconsistent(what)),
        }
    }
    pub(super) fn ip(&mut self) -> Result<IpAddr, ImageError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            _ => Err(ImageError::Inconsistent("an address family")),
        }
    }
    pub(super) fn addr(&mut self) -> Result<SocketAddr, ImageError> {
        let ip = self.ip()?;
        let port = self.u16()?;
        Ok(match ip {
            IpAddr::V4(a) => SocketAddr::from((a, port)),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, self.u32()?)),
        })
    }
}

/// `at` relative to `now`, in ms (negative when past).
pub(super) fn relative(at: Instant, now: Instant) -> i64 {
    let (a, n) = (at.as_millis(), now.as_millis());
    if a >= n {
        i64::try_from(a - n).unwrap_or(i64::MAX)
    } else {
        i64::try_from(n - a).map_or(i64::MIN, |d| -d)
    }
}

/// `now` moved by `ms` (never below the clock's origin).
pub(super) fn rebased(now: Instant, ms: i64) -> Instant {
    let n = now.as_millis();
    Instant::from_millis(if ms >= 0 {
        n.saturating_add(ms.unsigned_abs())
    } else {
        n.saturating_sub(ms.unsigned_abs())
    })
}

/// Time left until `at`, in ms (0 when past).
pub(super) fn left(at: Instant, now: Instant) -> u64 {
    at.as_millis().saturating_sub(now.as_millis())
}
