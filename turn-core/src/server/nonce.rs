//! Stateless nonces: the server keeps no table, yet a nonce is bound to the client's
//! IP address and goes stale after a configured time.
//!
//! A nonce is the nonce cookie of RFC 8489 §9.2 (`obMatJos2` and the base64 of the
//! security features the server offers: password algorithms, username
//! anonymity), then 16 base64 characters of 12 bytes: the issue time in seconds
//! (4) and the first 8 bytes of HMAC-SHA1(secret, time || client IP). Any node
//! holding the secret can check it, so a cluster needs no shared state. A 401
//! carrying it stays under four times the size of the smallest request that earns
//! one.

use core::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::UnixTime;

/// Length of a nonce's part after the cookie, in characters.
pub(crate) const NONCE_LEN: usize = 16;
/// Length of the nonce cookie: `obMatJos2` and 4 base64 characters.
pub(crate) const COOKIE_LEN: usize = 13;

/// A nonce's text.
pub(crate) type NonceText = heapless::String<{ COOKIE_LEN + NONCE_LEN }>;

/// The STUN security features of RFC 8489 §18.1 that a nonce cookie announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) struct SecurityFeatures {
    /// Bit 0: PASSWORD-ALGORITHMS negotiation.
    pub(crate) password_algorithms: bool,
    /// Bit 1: username anonymity (USERHASH).
    pub(crate) username_anonymity: bool,
}

impl SecurityFeatures {
    /// The cookie: `obMatJos2` then the base64 of the 24-bit feature set, bit 0
    /// being the most significant bit of its first byte.
    pub(crate) fn cookie(&self) -> [u8; COOKIE_LEN] {
        let mut c = *b"obMatJos2AAAA";
        // The first base64 character carries the top six bits of the first byte:
        // bit 0 (0x80) is 32 in base64's alphabet, bit 1 (0x40) is 16.
        let index =
            usize::from(self.password_algorithms) * 32 + usize::from(self.username_anonymity) * 16;
        if let (Some(slot), Some(ch)) = (c.get_mut(9), BASE64.get(index)) {
            *slot = *ch;
        }
        c
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// What a client's nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum NonceCheck {
    /// Issued by us to this IP, and fresh.
    Valid,
    /// Issued by us to this IP, but older than the lifetime.
    Stale,
    /// Not one of ours (or for another IP).
    Invalid,
}

/// Issues and checks nonces with a secret the caller draws at start.
#[derive(Clone)]
pub(crate) struct Nonces {
    secret: [u8; 32],
    lifetime_secs: u64,
    cookie: [u8; COOKIE_LEN],
}

impl core::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Nonces")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

/// The base64 value of a character, if it is one.
fn base64_val(c: u8) -> Option<u32> {
    BASE64.iter().position(|&b| b == c).map(|i| i as u32)
}

impl Nonces {
    /// Nonces keyed with `secret`, stale after `lifetime_secs`, announcing
    /// `features` in their cookie.
    pub(crate) fn new(secret: [u8; 32], lifetime_secs: u64, features: SecurityFeatures) -> Nonces {
        Nonces {
            secret,
            lifetime_secs,
            cookie: features.cookie(),
        }
    }

    fn tag(&self, issued: u32, ip: &IpAddr) -> [u8; 8] {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| <Hmac<Sha1> as KeyInit>::new(&Default::default()));
        mac.update(&issued.to_be_bytes());
        match ip {
            IpAddr::V4(a) => mac.update(&a.octets()),
            IpAddr::V6(a) => mac.update(&a.octets()),
        }
        let full: [u8; 20] = mac.finalize().into_bytes().into();
        let mut out = [0u8; 8];
        for (o, f) in out.iter_mut().zip(full) {
            *o = f;
        }
        out
    }

    /// A fresh nonce for a client at `ip`, issued at wall-clock time `now` (any
    /// node of a cluster can check it against its own clock).
    /// The same secret with a new lifetime and security features (nonces issued
    /// before stay valid for the new lifetime).
    pub(crate) fn reconfigure(&mut self, lifetime_secs: u64, features: SecurityFeatures) {
        *self = Nonces::new(self.secret, lifetime_secs, features);
    }

    /// The key nonces are made and checked with (a state image carries it).
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// Takes `secret` as the key (a state image's): nonces another process
    /// issued with it stay valid.
    pub(crate) fn set_secret(&mut self, secret: [u8; 32]) {
        self.secret = secret;
    }

    /// A fresh nonce for `ip`.
    pub(crate) fn issue(&self, now: UnixTime, ip: &IpAddr) -> NonceText {
        let issued = now.as_secs() as u32;
        let mut s = NonceText::new();
        for c in self.cookie {
            let _ = s.push(char::from(c));
        }
        let mut raw = [0u8; 12];
        let tag = self.tag(issued, ip);
        for (r, b) in raw
            .iter_mut()
            .zip(issued.to_be_bytes().iter().chain(tag.iter()))
        {
            *r = *b;
        }
        for group in raw.chunks(3) {
            let n = group.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b));
            for shift in [18, 12, 6, 0] {
                let c = BASE64
                    .get(((n >> shift) & 63) as usize)
                    .copied()
                    .unwrap_or(b'A');
                let _ = s.push(char::from(c));
            }
        }
        s
    }

    /// Checks a nonce a client at `ip` sent back.
    pub(crate) fn check(&self, nonce: &str, now: UnixTime, ip: &IpAddr) -> NonceCheck {
        let Some(b) = nonce.as_bytes().strip_prefix(&self.cookie[..]) else {
            return NonceCheck::Invalid;
        };
        if b.len() != NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let mut raw = [0u8; 12];
        for (group, out) in b.chunks(4).zip(raw.chunks_mut(3)) {
            let mut n = 0u32;
            for &c in group {
                match base64_val(c) {
                    Some(v) => n = (n << 6) | v,
                    None => return NonceCheck::Invalid,
                }
            }
            for (o, shift) in out.iter_mut().zip([16, 8, 0]) {
                *o = (n >> shift) as u8;
            }
        }
        let [t0, t1, t2, t3, tag @ ..] = raw;
        let issued = u32::from_be_bytes([t0, t1, t2, t3]);
        // Constant-time comparison of the tag.
        let expected = self.tag(issued, ip);
        let diff = expected
            .iter()
            .zip(tag.iter())
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        if diff != 0 {
            return NonceCheck::Invalid;
        }
        let now_s = now.as_secs() as u32;
        let age = now_s.wrapping_sub(issued);
        // A nonce from the future (beyond a little clock skew between nodes) is not ours.
        if issued.wrapping_sub(now_s) < u32::MAX / 2 && issued.wrapping_sub(now_s) > 30 {
            return NonceCheck::Invalid;
        }
        if u64::from(age) > self.lifetime_secs && age < u32::MAX / 2 {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn issue_check_stale() {
        let n = Nonces::new([7; 32], 600, SecurityFeatures::default());
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        let t = UnixTime(1_764_000_000);
        let nonce = n.issue(t, &ip);
        assert_eq!(nonce.len(), COOKIE_LEN + NONCE_LEN);
        assert!(nonce.starts_with("obMatJos2AAAA"));
        assert_eq!(n.check(&nonce, t, &ip), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, UnixTime(t.0 + 600), &ip), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, UnixTime(t.0 + 601), &ip), NonceCheck::Stale);
        let other: IpAddr = "198.51.100.5".parse().unwrap();
        assert_eq!(n.check(&nonce, t, &other), NonceCheck::Invalid);
        let other_secret = Nonces::new([8; 32], 600, SecurityFeatures::default());
        assert_eq!(other_secret.check(&nonce, t, &ip), NonceCheck::Invalid);
        assert_eq!(n.check("zz", t, &ip), NonceCheck::Invalid);
        assert_eq!(
            n.check(&nonce.to_ascii_uppercase_heapless(), t, &ip),
            NonceCheck::Invalid
        );
        // Issued in the future (forged time field): invalid.
        let future = n.issue(UnixTime(t.0 + 3600), &ip);
        assert_eq!(n.check(&future, t, &ip), NonceCheck::Invalid);
        // Without its cookie, or with another one: not ours.
        assert_eq!(n.check(&nonce[COOKIE_LEN..], t, &ip), NonceCheck::Invalid);
        let other_features = Nonces::new(
            [7; 32],
            600,
            SecurityFeatures {
                password_algorithms: true,
                username_anonymity: false,
            },
        );
        assert_eq!(other_features.check(&nonce, t, &ip), NonceCheck::Invalid);
    }

    #[test]
    fn cookies_of_rfc8489() {
        let cookie = |password_algorithms, username_anonymity| {
            SecurityFeatures {
                password_algorithms,
                username_anonymity,
            }
            .cookie()
        };
        // base64 of 0x000000, 0x800000, 0x400000 and 0xc00000.
        assert_eq!(&cookie(false, false), b"obMatJos2AAAA");
        assert_eq!(&cookie(true, false), b"obMatJos2gAAA");
        assert_eq!(&cookie(false, true), b"obMatJos2QAAA");
        assert_eq!(&cookie(true, true), b"obMatJos2wAAA");
    }

    trait Upper {
        fn to_ascii_uppercase_heapless(&self) -> NonceText;
    }

    impl Upper for NonceText {
        fn to_ascii_uppercase_heapless(&self) -> NonceText {
            let mut s = NonceText::new();
            for c in self.chars() {
                let _ = s.push(c.to_ascii_uppercase());
            }
            s
        }
    }
}
