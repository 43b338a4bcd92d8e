//! Bandwidth limits: token buckets of bytes per second with a burst, on the
//! caller's clock, and the admission rule that keeps a node's total under its
//! capacity by refusing new allocations rather than dropping existing media.
//!
//! - **Per allocation** ([`Config::allocation_bandwidth`](super::Config)): each
//!   allocation holds two buckets, one per direction (client to peers, peers to
//!   the client); a packet that finds its bucket short is dropped and counted in
//!   [`Traffic`](super::Traffic) and [`Counters::bandwidth_dropped`](super::Counters).
//! - **Per user** ([`Config::user_bandwidth`](super::Config)): all allocations of
//!   a user (the user part of a time-limited credential) share two buckets,
//!   which the host keeps (a sharded host shares them between its shards) and
//!   charges with [`TokenBucket::take`] when the server asks
//!   ([`Host::user_bandwidth`](super::Host::user_bandwidth)).
//! - **Capacity** ([`Config::capacity_bytes_per_sec`](super::Config)): the
//!   server measures what it relayed over the last second; while that plus one
//!   allocation's limit would pass the capacity, an Allocate is refused as at
//!   capacity (508, or 300 to the alternate server). Media of existing
//!   allocations is never dropped for it.
//!
//! Routes of the kernel fast path are not announced while a per-allocation or
//! per-user limit is set: every packet is then metered here.
//!
//! ```
//! use turn_core::server::{Bandwidth, TokenBucket};
//! use turn_core::Instant;
//! let rate = Bandwidth::new(10_000, 2_000); // 10 kB/s, bursts of 2 kB
//! let mut bucket = TokenBucket::new();
//! let t = Instant::from_secs(1);
//! assert!(bucket.take(t, rate, 1_500));
//! assert!(!bucket.take(t, rate, 1_500), "500 bytes left of the burst");
//! assert!(bucket.take(t.plus_millis(100), rate, 1_500), "1000 more after 100 ms");
//! ```

use crate::Instant;

/// A rate limit: bytes per second, and how many bytes may pass at once after a
/// quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Bandwidth {
    /// Sustained bytes per second (payload bytes, as in [`Traffic`](super::Traffic)).
    pub bytes_per_sec: u32,
    /// The bucket's size: the largest burst. At least one full-size datagram
    /// ([`MIN_BURST`]) or nothing of that size could ever pass.
    pub burst_bytes: u32,
}

/// The smallest burst a [`Bandwidth`] may have: a datagram of a 1500-byte MTU.
pub const MIN_BURST: u32 = 1500;

impl Bandwidth {
    /// `bytes_per_sec` sustained, `burst_bytes` at once.
    pub const fn new(bytes_per_sec: u32, burst_bytes: u32) -> Bandwidth {
        Bandwidth {
            bytes_per_sec,
            burst_bytes,
        }
    }

    /// Whether the limit can be met by anything: a non-zero rate and a burst of
    /// at least [`MIN_BURST`].
    pub const fn is_valid(&self) -> bool {
        self.bytes_per_sec > 0 && self.burst_bytes >= MIN_BURST
    }
}

/// A token bucket of bytes: starts full, refills at a [`Bandwidth`]'s rate up to
/// its burst. Time is the caller's; a clock that goes back refills nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenBucket {
    /// Tokens in thousandths of a byte; `u64::MAX` marks a bucket never used.
    milli: u64,
    last: Instant,
}

impl Default for TokenBucket {
    fn default() -> Self {
        TokenBucket::new()
    }
}

impl TokenBucket {
    /// A full bucket.
    pub const fn new() -> TokenBucket {
        TokenBucket {
            milli: u64::MAX,
            last: Instant::from_millis(0),
        }
    }

    /// Refills for the time since the last call and takes `bytes` if there are
    /// that many; otherwise takes nothing and says no.
    pub fn take(&mut self, now: Instant, rate: Bandwidth, bytes: usize) -> bool {
        let cap = u64::from(rate.burst_bytes) * 1000;
        if self.milli == u64::MAX {
            self.milli = cap;
            self.last = now;
        } else {
            // bytes_per_sec bytes a second is bytes_per_sec thousandths a ms.
            let refill = now
                .millis_since(self.last)
                .saturating_mul(u64::from(rate.bytes_per_sec));
            self.milli = self.milli.saturating_add(refill).min(cap);
        }
        // Only forward: a step back must not earn the same time twice.
        if now > self.last {
            self.last = now;
        }
        let want = (bytes as u64).saturating_mul(1000);
        if self.milli >= want {
            self.milli -= want;
            true
        } else {
            false
        }
    }

    /// Its tokens (thousandths of a byte; `u64::MAX` for a bucket never used)
    /// and when it was last charged: what a state image keeps.
    pub(crate) fn parts(&self) -> (u64, Instant) {
        (self.milli, self.last)
    }

    /// A bucket from its [`parts`](TokenBucket::parts).
    pub(crate) fn from_parts(milli: u64, last: Instant) -> TokenBucket {
        TokenBucket { milli, last }
    }

    /// When the bucket was last charged (to prune idle ones: a bucket idle for
    /// its burst's refill time is as good as a new one).
    pub fn last_used(&self) -> Instant {
        self.last
    }
}

/// What the server relayed over its last whole second, for admission against
/// a capacity.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Throughput {
    /// Start of the current second and the byte total then.
    start: Option<(Instant, u64)>,
    /// Bytes per second over the last whole second measured.
    rate: u64,
}

impl Throughput {
    /// Feeds the server's running byte total; returns the rate.
    pub(crate) fn sample(&mut self, now: Instant, total: u64) -> u64 {
        match self.start {
            Some((t, _)) if now.millis_since(t) < 1000 => {}
            Some((t, bytes)) => {
                let ms = now.millis_since(t).max(1);
                self.rate = total.saturating_sub(bytes).saturating_mul(1000) / ms;
                self.start = Some((now, total));
            }
            None => self.start = Some((now, total)),
        }
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_a_sender_to_its_rate_over_time() {
        // 100 kB/s, offered 250 kB/s in 1000-byte packets every 4 ms for 10 s.
        let rate = Bandwidth::new(100_000, 10_000);
        let mut b = TokenBucket::new();
        let mut passed = 0u64;
        for i in 0..2500u64 {
            if b.take(Instant::from_millis(1000 + i * 4), rate, 1000) {
                passed += 1000;
            }
        }
        // 10 s at 100 kB/s, plus the initial burst.
        let expected = 10 * 100_000 + 10_000;
        assert!(passed.abs_diff(expected) <= 2000, "{passed} vs {expected}");
    }

    #[test]
    fn under_the_rate_nothing_is_dropped() {
        let rate = Bandwidth::new(100_000, 10_000);
        let mut b = TokenBucket::new();
        for i in 0..1000u64 {
            assert!(b.take(Instant::from_millis(5 + i * 20), rate, 1000), "{i}");
        }
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let rate = Bandwidth::new(1_000_000, 1500);
        let mut b = TokenBucket::new();
        assert!(b.take(Instant::from_secs(100), rate, 1500));
        assert!(!b.take(Instant::from_secs(50), rate, 1));
        assert!(!b.take(Instant::from_secs(100), rate, 1));
        assert!(b.take(Instant::from_millis(100_002), rate, 1500));
    }

    #[test]
    fn throughput_over_the_last_second() {
        let mut t = Throughput::default();
        assert_eq!(t.sample(Instant::from_secs(10), 0), 0);
        assert_eq!(t.sample(Instant::from_millis(10_500), 400), 0);
        assert_eq!(t.sample(Instant::from_secs(12), 4000), 2000);
        assert_eq!(t.sample(Instant::from_millis(12_100), 9000), 2000);
    }
}
