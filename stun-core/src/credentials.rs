//! Credentials: the keys that MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 are
//! computed with (RFC 8489 §9), USERHASH, and the time-limited shared-secret scheme
//! of TURN REST deployments (draft-uberti-behave-turn-rest), which Cisco Meeting
//! Server's `sharedSecret` field also uses.
//!
//! Strings are used as given: RFC 8489 asks for the OpaqueString profile of PRECIS
//! (RFC 8265), which leaves ASCII and NFC-normalised text unchanged; callers with
//! other input should normalise it first.

use core::fmt;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// A long-term key for PASSWORD-ALGORITHM MD5 (and for RFC 5389 peers).
pub type LongTermKey = [u8; 16];

/// The short-term key: the password itself (RFC 8489 §9.1.1).
pub fn short_term_key(password: &str) -> &[u8] {
    password.as_bytes()
}

/// MD5(username ":" realm ":" password): the RFC 5389 long-term key (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> LongTermKey {
    let mut h = Md5::new();
    for part in [username, ":", realm, ":", password] {
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// SHA-256(username ":" realm ":" password): the key for PASSWORD-ALGORITHM 0x0002.
pub fn long_term_key_sha256(username: &str, realm: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [username, ":", realm, ":", password] {
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// SHA-256(username ":" realm): the USERHASH value (RFC 8489 §14.4).
pub fn userhash(username: &str, realm: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [username, ":", realm] {
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// A password algorithm of RFC 8489 §18.5: how a long-term key is derived from
/// the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Algorithm {
    /// MD5 (0x0001), the RFC 5389 key, with MESSAGE-INTEGRITY (HMAC-SHA1).
    Md5,
    /// SHA-256 (0x0002), with MESSAGE-INTEGRITY-SHA256.
    Sha256,
}

impl Algorithm {
    /// The number in PASSWORD-ALGORITHM and PASSWORD-ALGORITHMS.
    pub const fn number(self) -> u16 {
        match self {
            Algorithm::Md5 => 0x0001,
            Algorithm::Sha256 => 0x0002,
        }
    }

    /// The algorithm numbered `n`, if it is a registered one.
    pub const fn from_number(n: u16) -> Option<Algorithm> {
        match n {
            0x0001 => Some(Algorithm::Md5),
            0x0002 => Some(Algorithm::Sha256),
            _ => None,
        }
    }
}

/// A long-term key of either password algorithm.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// MD5(username ":" realm ":" password).
    Md5(LongTermKey),
    /// SHA-256(username ":" realm ":" password).
    Sha256([u8; 32]),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key::{:?}(..)", self.algorithm())
    }
}

impl Key {
    /// Derives the key of `algorithm` from the credentials.
    ///
    /// ```
    /// use stun_core::credentials::{Algorithm, Key, long_term_key};
    /// let k = Key::derive(Algorithm::Md5, "alice", "example.org", "pw");
    /// assert_eq!(k.as_bytes(), &long_term_key("alice", "example.org", "pw")[..]);
    /// assert_eq!(Key::derive(Algorithm::Sha256, "alice", "example.org", "pw").as_bytes().len(), 32);
    /// ```
    pub fn derive(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> Key {
        match algorithm {
            Algorithm::Md5 => Key::Md5(long_term_key(username, realm, password)),
            Algorithm::Sha256 => Key::Sha256(long_term_key_sha256(username, realm, password)),
        }
    }

    /// Which algorithm it is for.
    pub const fn algorithm(&self) -> Algorithm {
        match self {
            Key::Md5(_) => Algorithm::Md5,
            Key::Sha256(_) => Algorithm::Sha256,
        }
    }

    /// The key's bytes: what MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 is keyed with.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Md5(k) => k,
            Key::Sha256(k) => k,
        }
    }
}

impl From<LongTermKey> for Key {
    fn from(k: LongTermKey) -> Key {
        Key::Md5(k)
    }
}

/// Why a time-limited credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CredentialError {
    /// The username carries no expiry (`expiry:user` or `expiry`).
    NoExpiry,
    /// The credential expired.
    Expired {
        /// Expiry carried by the username (UNIX seconds).
        expiry: u64,
        /// The time the caller passed in (UNIX seconds).
        now: u64,
    },
    /// The output buffer for a username is too small.
    BufferTooSmall,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CredentialError::NoExpiry => f.write_str(
                "username has no expiry timestamp (time-limited credentials use `expiry:user`)",
            ),
            CredentialError::Expired { expiry, now } => write!(
                f,
                "time-limited credential expired {} s ago (expiry {expiry}, now {now}); \
                 check the clocks of the issuer and the relay",
                now.saturating_sub(expiry)
            ),
            CredentialError::BufferTooSmall => f.write_str("buffer too small for the username"),
        }
    }
}

impl core::error::Error for CredentialError {}

/// A time-limited username, split into its expiry and user parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TimeLimitedUsername<'a> {
    /// Expiry, UNIX seconds.
    pub expiry: u64,
    /// The user part (may be empty).
    pub user: &'a str,
}

fn parse_expiry(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl<'a> TimeLimitedUsername<'a> {
    /// Splits `expiry:user`, or a bare `expiry`. The `user:expiry` order that some
    /// issuers use is accepted too.
    pub fn parse(username: &'a str) -> Result<Self, CredentialError> {
        if let Some(expiry) = parse_expiry(username) {
            return Ok(TimeLimitedUsername { expiry, user: "" });
        }
        if let Some((head, tail)) = username.split_once(':')
            && let Some(expiry) = parse_expiry(head)
        {
            return Ok(TimeLimitedUsername { expiry, user: tail });
        }
        if let Some((head, tail)) = username.rsplit_once(':')
            && let Some(expiry) = parse_expiry(tail)
        {
            return Ok(TimeLimitedUsername { expiry, user: head });
        }
        Err(CredentialError::NoExpiry)
    }

    /// Writes `expiry:user` into `out` and returns it as text.
    pub fn write(expiry: u64, user: &str, out: &'a mut [u8]) -> Result<&'a str, CredentialError> {
        let mut digits = [0u8; 20];
        let mut n = expiry;
        let mut i = digits.len();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        let digits = digits.get(i..).unwrap_or(&[]);
        let total = digits.len() + usize::from(!user.is_empty()) * (1 + user.len());
        let dst = out
            .get_mut(..total)
            .ok_or(CredentialError::BufferTooSmall)?;
        let (d, rest) = dst.split_at_mut(digits.len());
        d.copy_from_slice(digits);
        if let Some((colon, u)) = rest.split_first_mut() {
            *colon = b':';
            u.copy_from_slice(user.as_bytes());
        }
        core::str::from_utf8(dst).map_err(|_| CredentialError::BufferTooSmall)
    }
}

/// The password of a time-limited credential: base64(HMAC-SHA1(secret, username)),
/// 28 ASCII characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TimeLimitedPassword([u8; 28]);

impl TimeLimitedPassword {
    /// The password text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for TimeLimitedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TimeLimitedPassword(..)")
    }
}

/// A shared secret for time-limited credentials (TURN REST API scheme).
///
/// The issuer (a web application, or the meeting server) and every relay of a
/// cluster hold the same secret; the relay recomputes the password from the
/// username, so it keeps no per-user state.
#[derive(Clone, Copy)]
pub struct SharedSecret<'a>(&'a [u8]);

impl fmt::Debug for SharedSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl<'a> SharedSecret<'a> {
    /// Wraps the secret's bytes.
    pub const fn new(secret: &'a [u8]) -> Self {
        SharedSecret(secret)
    }

    /// The password for `username`.
    pub fn password(&self, username: &str) -> TimeLimitedPassword {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(self.0)
            .unwrap_or_else(|_| <Hmac<Sha1> as KeyInit>::new(&Default::default()));
        mac.update(username.as_bytes());
        let tag: [u8; 20] = mac.finalize().into_bytes().into();
        let mut out = [0u8; 28];
        // 20 bytes always encode to exactly 28 base64 characters.
        let _ = base64::engine::general_purpose::STANDARD.encode_slice(tag, &mut out);
        TimeLimitedPassword(out)
    }

    /// Checks that `username` carries an expiry later than `now_unix` (seconds).
    pub fn check<'u>(
        &self,
        username: &'u str,
        now_unix: u64,
    ) -> Result<TimeLimitedUsername<'u>, CredentialError> {
        let parsed = TimeLimitedUsername::parse(username)?;
        if parsed.expiry < now_unix {
            return Err(CredentialError::Expired {
                expiry: parsed.expiry,
                now: now_unix,
            });
        }
        Ok(parsed)
    }

    /// The long-term key for `username` in `realm`: MD5 over the derived password.
    pub fn long_term_key(&self, username: &str, realm: &str) -> LongTermKey {
        long_term_key(username, realm, self.password(username).as_str())
    }

    /// The key of `algorithm` for `username` in `realm`, over the derived password.
    pub fn key(&self, algorithm: Algorithm, username: &str, realm: &str) -> Key {
        Key::derive(algorithm, username, realm, self.password(username).as_str())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn long_term_key_rfc5769() {
        // RFC 5769 §2.4: username "マトリックス", realm "example.org", password
        // "TheMatrIX" (after SASLprep of "The<U+00AD>M<U+00AA>tr<U+2168>").
        let key = long_term_key(
            "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}",
            "example.org",
            "TheMatrIX",
        );
        assert_eq!(
            key,
            [
                0xe8, 0xca, 0x7a, 0xd5, 0x9d, 0x5e, 0xb0, 0x51, 0x8e, 0x31, 0x29, 0x11, 0xd2, 0xda,
                0xb2, 0xa9
            ]
        );
    }

    #[test]
    fn time_limited_usernames() {
        assert_eq!(
            TimeLimitedUsername::parse("1700000000:alice").unwrap(),
            TimeLimitedUsername {
                expiry: 1_700_000_000,
                user: "alice"
            }
        );
        assert_eq!(
            TimeLimitedUsername::parse("alice:1700000000").unwrap(),
            TimeLimitedUsername {
                expiry: 1_700_000_000,
                user: "alice"
            }
        );
        assert_eq!(TimeLimitedUsername::parse("1700000000").unwrap().user, "");
        assert_eq!(
            TimeLimitedUsername::parse("alice"),
            Err(CredentialError::NoExpiry)
        );
        assert_eq!(
            TimeLimitedUsername::parse("+17:a"),
            Err(CredentialError::NoExpiry)
        );
        assert_eq!(
            TimeLimitedUsername::parse("99999999999999999999999:a"),
            Err(CredentialError::NoExpiry)
        );
        let mut buf = [0u8; 32];
        assert_eq!(
            TimeLimitedUsername::write(1_700_000_000, "bob", &mut buf).unwrap(),
            "1700000000:bob"
        );
        let mut buf = [0u8; 32];
        assert_eq!(TimeLimitedUsername::write(0, "", &mut buf).unwrap(), "0");
        let mut small = [0u8; 4];
        assert_eq!(
            TimeLimitedUsername::write(12345, "", &mut small),
            Err(CredentialError::BufferTooSmall)
        );
    }

    #[test]
    fn shared_secret() {
        // Computed independently with Python's hmac and base64 modules:
        // base64(HMAC-SHA1("north", "1234567890:alice")).
        let secret = SharedSecret::new(b"north");
        let p = secret.password("1234567890:alice");
        assert_eq!(p.as_str(), "VqaISA+2BxkCw1VepQhRdTergGA=");
        assert_ne!(p, secret.password("1234567891:alice"));
        assert!(secret.check("1234567890:alice", 1_234_567_890).is_ok());
        assert_eq!(
            secret.check("1234567890:alice", 1_234_567_891),
            Err(CredentialError::Expired {
                expiry: 1_234_567_890,
                now: 1_234_567_891
            })
        );
    }

    #[test]
    fn userhash_rfc8489_b1() {
        // RFC 8489 Appendix B.1: USERHASH of "マトリックス" in realm "example.org".
        let h = userhash(
            "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}",
            "example.org",
        );
        assert_eq!(
            h,
            [
                0x4a, 0x3c, 0xf3, 0x8f, 0xef, 0x69, 0x92, 0xbd, 0xa9, 0x52, 0xc6, 0x78, 0x04, 0x17,
                0xda, 0x0f, 0x24, 0x81, 0x94, 0x15, 0x56, 0x9e, 0x60, 0xb2, 0x05, 0xc4, 0x6e, 0x41,
                0x40, 0x7f, 0x17, 0x04
            ]
        );
    }
}
