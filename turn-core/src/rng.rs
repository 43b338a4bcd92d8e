//! Unpredictable values the machines make themselves: transaction ids (RFC 8489
//! §5 asks for cryptographically random ones, so that an off-path attacker cannot
//! forge a response or an indication) come from a ChaCha12 stream keyed with
//! randomness the caller supplied, one 64-byte block per five ids.

use chacha20::ChaCha12Rng;
use hmac::{Hmac, KeyInit, Mac};
use rand_core::{Rng, SeedableRng};
use sha1::Sha1;
use stun_core::TransactionId;

/// A stream of transaction ids (and other random words) from a 32-byte seed.
pub(crate) struct Random(ChaCha12Rng);

impl core::fmt::Debug for Random {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Random(..)")
    }
}

impl Random {
    /// Keyed with `seed`, which must come from a secure random source.
    pub(crate) fn new(seed: [u8; 32]) -> Random {
        Random(ChaCha12Rng::from_seed(seed))
    }

    /// Fills `buf` from the stream.
    #[cfg(feature = "std")]
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }

    /// The next transaction id.
    pub(crate) fn tid(&mut self) -> TransactionId {
        let mut id = [0u8; 12];
        self.0.fill_bytes(&mut id);
        TransactionId::new(id)
    }
}

/// A key for one purpose (`label`) derived from a secret: HMAC-SHA1(secret,
/// label || i) for i = 0, 1, cut to 32 bytes. Keys for different purposes are
/// independent, so nothing one reveals helps to guess another.
pub(crate) fn derive(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(20).enumerate() {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| <Hmac<Sha1> as KeyInit>::new(&Default::default()));
        mac.update(label);
        mac.update(&[i as u8]);
        let block: [u8; 20] = mac.finalize().into_bytes().into();
        for (o, b) in chunk.iter_mut().zip(block) {
            *o = b;
        }
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ids_differ_and_depend_on_the_seed() {
        let mut a = Random::new([1; 32]);
        let mut b = Random::new([2; 32]);
        let ids: heapless::Vec<TransactionId, 64> = (0..64).map(|_| a.tid()).collect();
        for (i, x) in ids.iter().enumerate() {
            assert!(ids.iter().skip(i + 1).all(|y| y != x));
        }
        assert_ne!(Random::new([1; 32]).tid(), b.tid());
        assert_eq!(Random::new([1; 32]).tid(), ids[0]);
        // No simple relation between consecutive ids (as a counter XOR a base
        // would have): their XORs differ.
        let x = |p: &TransactionId, q: &TransactionId| -> [u8; 12] {
            let mut o = [0u8; 12];
            for ((o, p), q) in o.iter_mut().zip(p.as_bytes()).zip(q.as_bytes()) {
                *o = p ^ q;
            }
            o
        };
        assert_ne!(x(&ids[0], &ids[1]), x(&ids[1], &ids[2]));
    }

    #[test]
    fn derived_keys_are_independent() {
        let s = [9; 32];
        assert_ne!(derive(&s, b"tid"), derive(&s, b"table"));
        assert_eq!(derive(&s, b"tid"), derive(&s, b"tid"));
        assert_ne!(derive(&s, b"tid"), derive(&[8; 32], b"tid"));
    }
}
