//! Token buckets for unauthenticated answers, so the server cannot be turned into a
//! reflector: one per source address (in a fixed table), and one over all sources,
//! which also holds when an attacker cycles through more addresses than the table
//! has room for. Past its budget, a source gets silence.

use core::net::IpAddr;

use crate::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    ip: Option<IpAddr>,
    /// Tokens in thousandths.
    milli_tokens: u32,
    last: Instant,
}

/// `N` buckets; a new address takes the bucket unused longest.
#[derive(Debug, Clone)]
pub struct RateLimiter<const N: usize> {
    buckets: [Bucket; N],
    burst: u32,
    per_sec: u32,
    global: Bucket,
    global_per_sec: u32,
}

impl<const N: usize> RateLimiter<N> {
    /// Allows `burst` at once and `per_sec` a second after that, per address, and
    /// `global_per_sec` a second (with a burst of as many) over all addresses.
    pub const fn new(burst: u32, per_sec: u32, global_per_sec: u32) -> Self {
        const EMPTY: Bucket = Bucket {
            ip: None,
            milli_tokens: 0,
            last: Instant::from_millis(0),
        };
        RateLimiter {
            buckets: [EMPTY; N],
            burst,
            per_sec,
            global: Bucket {
                milli_tokens: global_per_sec.saturating_mul(1000),
                ..EMPTY
            },
            global_per_sec,
        }
    }

    /// Takes a token for `ip` (and one from the global budget); false when either
    /// budget is spent.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let g = &mut self.global;
        let ms = now.millis_since(g.last).min(u64::from(u32::MAX)) as u32;
        g.milli_tokens = g
            .milli_tokens
            .saturating_add(ms.saturating_mul(self.global_per_sec))
            .min(self.global_per_sec.saturating_mul(1000));
        g.last = now;
        if g.milli_tokens < 1000 {
            return false;
        }
        if !self.allow_source(ip, now) {
            return false;
        }
        self.global.milli_tokens -= 1000;
        true
    }

    fn allow_source(&mut self, ip: IpAddr, now: Instant) -> bool {
        let cap = self.burst.saturating_mul(1000);
        let rate = self.per_sec;
        let mut oldest: Option<&mut Bucket> = None;
        for b in self.buckets.iter_mut() {
            if b.ip == Some(ip) {
                let ms = now.millis_since(b.last).min(u64::from(u32::MAX)) as u32;
                b.milli_tokens = b
                    .milli_tokens
                    .saturating_add(ms.saturating_mul(rate))
                    .min(cap);
                b.last = now;
                if b.milli_tokens >= 1000 {
                    b.milli_tokens -= 1000;
                    return true;
                }
                return false;
            }
            match &oldest {
                Some(o) if o.last <= b.last => {}
                _ => oldest = Some(b),
            }
        }
        match oldest {
            Some(b) if cap >= 1000 => {
                *b = Bucket {
                    ip: Some(ip),
                    milli_tokens: cap - 1000,
                    last: now,
                };
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn burst_then_refill_per_address() {
        let mut r: RateLimiter<4> = RateLimiter::new(3, 2, 1000);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = Instant::from_secs(100);
        assert!(r.allow(a, t));
        assert!(r.allow(a, t));
        assert!(r.allow(a, t));
        assert!(!r.allow(a, t));
        assert!(r.allow(b, t), "other addresses have their own budget");
        assert!(!r.allow(a, t.plus_millis(400)));
        assert!(r.allow(a, t.plus_millis(600)));
    }

    #[test]
    fn global_budget_holds_against_many_sources() {
        let mut r: RateLimiter<2> = RateLimiter::new(5, 5, 10);
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
    fn table_full_recycles_the_oldest() {
        let mut r: RateLimiter<2> = RateLimiter::new(1, 1, 1000);
        let t = Instant::from_secs(1);
        for i in 0..10u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            assert!(r.allow(ip, t.plus_millis(u64::from(i))));
        }
    }
}
