//! Per-source-address token buckets in a fixed table, so unauthenticated requests
//! cannot turn the server into a reflector: past its budget, a source gets silence.

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
}

impl<const N: usize> RateLimiter<N> {
    /// Allows `burst` at once and `per_sec` a second after that, per address.
    pub const fn new(burst: u32, per_sec: u32) -> Self {
        RateLimiter {
            buckets: [Bucket {
                ip: None,
                milli_tokens: 0,
                last: Instant::from_millis(0),
            }; N],
            burst,
            per_sec,
        }
    }

    /// Takes a token for `ip`; false when its budget is spent.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
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
        let mut r: RateLimiter<4> = RateLimiter::new(3, 2);
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
    fn table_full_recycles_the_oldest() {
        let mut r: RateLimiter<2> = RateLimiter::new(1, 1);
        let t = Instant::from_secs(1);
        for i in 0..10u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            assert!(r.allow(ip, t.plus_millis(u64::from(i))));
        }
    }
}
