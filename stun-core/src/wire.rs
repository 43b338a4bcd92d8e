//! Checked big-endian reads and writes over byte slices, and STUN padding.
//!
//! Every helper returns `None` instead of panicking when the slice is too short, so
//! the parsers above it can turn a short buffer into a precise error.

/// Rounds `len` up to the next multiple of four (STUN and ChannelData padding).
#[inline]
pub(crate) const fn pad4(len: usize) -> usize {
    (len + 3) & !3
}

#[inline]
pub(crate) fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

#[inline]
pub(crate) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Copies `src` into `dst` at `at`; `None` when it does not fit.
#[inline]
pub(crate) fn put(dst: &mut [u8], at: usize, src: &[u8]) -> Option<()> {
    dst.get_mut(at..at.checked_add(src.len())?)?
        .copy_from_slice(src);
    Some(())
}

#[inline]
pub(crate) fn put_u16(dst: &mut [u8], at: usize, v: u16) -> Option<()> {
    put(dst, at, &v.to_be_bytes())
}

#[inline]
pub(crate) fn put_u32(dst: &mut [u8], at: usize, v: u32) -> Option<()> {
    put(dst, at, &v.to_be_bytes())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let b = [1u8, 2, 3, 4, 5];
        assert_eq!(u16_at(&b, 0), Some(0x0102));
        assert_eq!(u16_at(&b, 4), None);
        assert_eq!(u32_at(&b, 1), Some(0x0203_0405));
        assert_eq!(u32_at(&b, 2), None);
        assert_eq!(u32_at(&b, usize::MAX), None);
    }

    #[test]
    fn padding() {
        assert_eq!(pad4(0), 0);
        assert_eq!(pad4(1), 4);
        assert_eq!(pad4(4), 4);
        assert_eq!(pad4(5), 8);
    }

    #[test]
    fn writes_are_checked() {
        let mut b = [0u8; 4];
        assert_eq!(put_u16(&mut b, 2, 0xabcd), Some(()));
        assert_eq!(b, [0, 0, 0xab, 0xcd]);
        assert_eq!(put_u32(&mut b, 1, 1), None);
    }
}
