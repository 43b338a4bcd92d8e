//! Budgets for unauthenticated answers (401, 438), so the server cannot be turned
//! into a reflector, without turning away an office of browsers behind one NAT.
//!
//! - **Per source**: token buckets in a fixed array indexed by a keyed hash of the
//!   source IP. A bucket is never evicted, so a spoofer cycling through other
//!   addresses cannot refill a victim's budget; two sources that collide share one
//!   budget, which can only make each get less.
//! - **Over all sources**: one bucket, which also bounds a flood spread over more
//!   addresses than there are buckets.
//! - **Verified sources**: an address that completed an authenticated request
//!   (its nonce was bound to it, so it receives what is sent there, and it holds
//!   credentials) is not a reflection victim: until its nonce's lifetime runs
//!   out it has a budget of its own, far larger (`verified_per_sec`, as a rate
//!   and a burst), and the global budget does not count it. A thousand
//!   participants behind one office NAT are then served as fast as they ask, once
//!   the first of them has authenticated; a spoofer can aim at most that budget's
//!   answers at an address that is an active client, and nothing more at any
//!   other.
//!
//! Past a budget, the source gets silence.

use core::hash::{Hash, Hasher};

use core::net::IpAddr;

use super::table::KeyedHasher;
use crate::Instant;

/// Per-source buckets.
pub(crate) const SOURCE_BUCKETS: usize = 256;
/// Verified sources remembered at once.
pub(crate) const VERIFIED_MAX: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in thousandths; `u32::MAX` marks a bucket never used (it starts full).
    milli_tokens: u32,
    last: Instant,
}

impl Bucket {
    const UNUSED: Bucket = Bucket {
        milli_tokens: u32::MAX,
        last: Instant::from_millis(0),
    };

    /// Refills at `per_sec` up to `cap` (thousandths) and takes one token.
    fn take(&mut self, now: Instant, per_sec: u32, cap: u32) -> bool {
        if self.milli_tokens == u32::MAX {
            self.milli_tokens = cap;
        } else {
            let ms = now.millis_since(self.last).min(u64::from(u32::MAX)) as u32;
            self.milli_tokens = self
                .milli_tokens
                .saturating_add(ms.saturating_mul(per_sec))
                .min(cap);
        }
        self.last = now;
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// A verified source, until when it stays verified, and its budget.
#[derive(Debug, Clone, Copy)]
struct Verified {
    ip: IpAddr,
    until: Instant,
    bucket: Bucket,
}

/// The budgets of unauthenticated answers (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    buckets: [Bucket; SOURCE_BUCKETS],
    verified: heapless::Vec<Verified, VERIFIED_MAX>,
    burst: u32,
    per_sec: u32,
    global: Bucket,
    global_per_sec: u32,
    verified_per_sec: u32,
    seed: u64,
}

impl RateLimiter {
    /// Allows `burst` at once and `per_sec` a second after that, per address, and
    /// `global_per_sec` a second (with a burst of as many) over all addresses;
    /// a verified address gets `verified_per_sec` (and as large a burst) instead.
    /// `seed` keys the hash of addresses to buckets (draw it at random).
    pub(crate) const fn new(
        burst: u32,
        per_sec: u32,
        global_per_sec: u32,
        verified_per_sec: u32,
        seed: u64,
    ) -> Self {
        RateLimiter {
            buckets: [Bucket::UNUSED; SOURCE_BUCKETS],
            verified: heapless::Vec::new(),
            burst,
            per_sec,
            global: Bucket::UNUSED,
            global_per_sec,
            verified_per_sec,
            seed,
        }
    }

    /// New budgets, keeping what each source has spent.
    pub(crate) fn set_rates(
        &mut self,
        burst: u32,
        per_sec: u32,
        global_per_sec: u32,
        verified_per_sec: u32,
    ) {
        self.burst = burst;
        self.per_sec = per_sec;
        self.global_per_sec = global_per_sec;
        self.verified_per_sec = verified_per_sec;
    }

    fn bucket(&mut self, ip: &IpAddr) -> Option<&mut Bucket> {
        let mut h = KeyedHasher(self.seed);
        ip.hash(&mut h);
        let i = (h.finish() % SOURCE_BUCKETS as u64) as usize;
        self.buckets.get_mut(i)
    }

    /// Takes a token for `ip` (and one from the global budget); false when either
    /// budget is spent. A verified source takes from its own budget only.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.verified_per_sec;
        if let Some(v) = self
            .verified
            .iter_mut()
            .find(|v| v.ip == ip && now < v.until)
        {
            return v.bucket.take(now, rate, rate.saturating_mul(1000));
        }
        let global_cap = self.global_per_sec.saturating_mul(1000);
        let mut global = self.global;
        if !global.take(now, self.global_per_sec, global_cap) {
            self.global = global;
            return false;
        }
        let (per_sec, cap) = (self.per_sec, self.burst.saturating_mul(1000));
        if !self.bucket(&ip).is_some_and(|b| b.take(now, per_sec, cap)) {
            // The global token is not spent on a refused answer.
            return false;
        }
        self.global = global;
        true
    }

    /// Whether `ip` completed an authenticated request recently enough.
    #[cfg(test)]
    pub(crate) fn is_verified(&self, ip: IpAddr, now: Instant) -> bool {
        self.verified.iter().any(|v| v.ip == ip && now < v.until)
    }

    /// Records that `ip` completed an authenticated request: it stays verified
    /// until `until`. When the table is full, the entry that ends first makes
    /// room (that source is budgeted again, which is safe).
    pub(crate) fn verify(&mut self, ip: IpAddr, until: Instant) {
        if let Some(v) = self.verified.iter_mut().find(|v| v.ip == ip) {
            v.until = v.until.max(until);
            return;
        }
        let entry = Verified {
            ip,
            until,
            bucket: Bucket::UNUSED,
        };
        if let Err(entry) = self.verified.push(entry) {
            let first = self
                .verified
                .iter_mut()
                .min_by_key(|v| v.until)
                .filter(|v| v.until < until);
            if let Some(v) = first {
                *v = entry;
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn burst_then_refill_per_address() {
        let mut r = RateLimiter::new(3, 2, 1000, 10_000, 7);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::from_secs(100);
        assert!(r.allow(a, t));
        assert!(r.allow(a, t));
        assert!(r.allow(a, t));
        assert!(!r.allow(a, t));
        assert!(!r.allow(a, t.plus_millis(400)));
        assert!(r.allow(a, t.plus_millis(600)));
        // Some other address (not in `a`'s bucket) has its own budget.
        let other = (2..=255u8)
            .map(|i| IpAddr::from([192, 0, 2, i]))
            .find(|b| {
                let mut probe = r.clone();
                probe.allow(*b, t.plus_millis(600))
            })
            .unwrap();
        assert!(r.allow(other, t.plus_millis(600)));
    }

    #[test]
    fn global_budget_holds_against_many_sources() {
        let mut r = RateLimiter::new(5, 5, 10, 10_000, 1);
        let t = Instant::from_secs(1);
        let answered = (0..1000u32)
            .filter(|i| r.allow(IpAddr::from(i.to_be_bytes()), t))
            .count();
        assert_eq!(answered, 10);
        let later = t.plus_secs(1);
        let answered = (0..1000u32)
            .filter(|i| r.allow(IpAddr::from(i.to_be_bytes()), later))
            .count();
        assert_eq!(answered, 10);
    }

    #[test]
    fn cycling_other_addresses_never_refills_a_victim() {
        let mut r = RateLimiter::new(5, 1, 1_000_000, 10_000, 99);
        let victim: IpAddr = "198.51.100.9".parse().unwrap();
        let t = Instant::from_secs(10);
        let first = (0..20).filter(|_| r.allow(victim, t)).count();
        assert_eq!(first, 5);
        // A spoofer cycles through far more addresses than there are buckets.
        for i in 0..(SOURCE_BUCKETS as u32 * 8) {
            let _ = r.allow(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t);
        }
        // The victim's budget is as spent as it was (a colliding spoofer may have
        // spent it further, never refilled it).
        assert!(!r.allow(victim, t));
    }

    #[test]
    fn a_verified_source_is_not_budgeted_until_its_time_ends() {
        let mut r = RateLimiter::new(2, 1, 10, 1000, 3);
        let nat: IpAddr = "203.0.113.77".parse().unwrap();
        let t = Instant::from_secs(50);
        assert_eq!((0..10).filter(|_| r.allow(nat, t)).count(), 2);
        r.verify(nat, t.plus_secs(600));
        // Its own budget: 1000 at once, past the global budget of 10.
        assert_eq!((0..5000).filter(|_| r.allow(nat, t)).count(), 1000);
        assert_eq!(
            (0..5000)
                .filter(|_| r.allow(nat, t.plus_millis(500)))
                .count(),
            500
        );
        // Others still have the global budget.
        assert!(r.allow("198.51.100.1".parse().unwrap(), t));
        let after = t.plus_secs(600);
        assert!(!r.is_verified(nat, after));
        assert!(r.allow(nat, after), "budgeted again, with what refilled");
    }

    #[test]
    fn a_full_verified_table_replaces_the_entry_that_ends_first() {
        let mut r = RateLimiter::new(1, 1, 1_000_000, 10_000, 3);
        let t = Instant::from_secs(1);
        for i in 0..VERIFIED_MAX as u32 {
            r.verify(
                IpAddr::from(i.to_be_bytes()),
                t.plus_secs(100 + u64::from(i)),
            );
        }
        let newcomer: IpAddr = "198.51.100.1".parse().unwrap();
        r.verify(newcomer, t.plus_secs(1000));
        assert!(r.is_verified(newcomer, t));
        assert!(!r.is_verified(IpAddr::from(0u32.to_be_bytes()), t));
        assert!(r.is_verified(IpAddr::from(1u32.to_be_bytes()), t));
    }
}
