//! Stateless nonces: the server keeps no table, yet a nonce is bound to the client's
//! IP address and goes stale after a configured time.
//!
//! A nonce is 24 hex characters: the issue time in seconds (8) and the first 8
//! bytes of HMAC-SHA1(secret, time || client IP) (16). Any node holding the secret
//! can check it, so a cluster needs no shared state.

use core::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::Instant;

/// Length of a nonce in characters.
pub const NONCE_LEN: usize = 24;

/// A nonce's text.
pub type NonceText = heapless::String<NONCE_LEN>;

/// What a client's nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NonceCheck {
    /// Issued by us to this IP, and fresh.
    Valid,
    /// Issued by us to this IP, but older than the lifetime.
    Stale,
    /// Not one of ours (or for another IP).
    Invalid,
}

/// Issues and checks nonces with a secret the caller draws at start.
#[derive(Clone)]
pub struct Nonces {
    secret: [u8; 32],
    lifetime_secs: u64,
}

impl core::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Nonces")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl Nonces {
    /// Nonces keyed with `secret`, stale after `lifetime_secs`.
    pub const fn new(secret: [u8; 32], lifetime_secs: u64) -> Nonces {
        Nonces {
            secret,
            lifetime_secs,
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

    /// A fresh nonce for a client at `ip`.
    pub fn issue(&self, now: Instant, ip: &IpAddr) -> NonceText {
        let issued = now.as_secs() as u32;
        let mut s = NonceText::new();
        for b in issued
            .to_be_bytes()
            .iter()
            .chain(self.tag(issued, ip).iter())
        {
            for nibble in [b >> 4, b & 0xf] {
                let c = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                let _ = s.push(char::from(c));
            }
        }
        s
    }

    /// Checks a nonce a client at `ip` sent back.
    pub fn check(&self, nonce: &str, now: Instant, ip: &IpAddr) -> NonceCheck {
        let b = nonce.as_bytes();
        if b.len() != NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let mut raw = [0u8; NONCE_LEN / 2];
        for (i, r) in raw.iter_mut().enumerate() {
            match (
                b.get(2 * i).copied().and_then(hex_val),
                b.get(2 * i + 1).copied().and_then(hex_val),
            ) {
                (Some(h), Some(l)) => *r = (h << 4) | l,
                _ => return NonceCheck::Invalid,
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
        let n = Nonces::new([7; 32], 600);
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        let t = Instant::from_secs(1_764_000_000);
        let nonce = n.issue(t, &ip);
        assert_eq!(nonce.len(), NONCE_LEN);
        assert_eq!(n.check(&nonce, t, &ip), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, t.plus_secs(600), &ip), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, t.plus_secs(601), &ip), NonceCheck::Stale);
        let other: IpAddr = "198.51.100.5".parse().unwrap();
        assert_eq!(n.check(&nonce, t, &other), NonceCheck::Invalid);
        let other_secret = Nonces::new([8; 32], 600);
        assert_eq!(other_secret.check(&nonce, t, &ip), NonceCheck::Invalid);
        assert_eq!(n.check("zz", t, &ip), NonceCheck::Invalid);
        assert_eq!(
            n.check(&nonce.to_ascii_uppercase_heapless(), t, &ip),
            NonceCheck::Invalid
        );
        // Issued in the future (forged time field): invalid.
        let future = n.issue(t.plus_secs(3600), &ip);
        assert_eq!(n.check(&future, t, &ip), NonceCheck::Invalid);
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
