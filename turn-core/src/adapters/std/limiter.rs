//! A token bucket for log lines about refused clients, so a flood of bad packets
//! cannot flood the log: past the budget, lines are counted and the count is
//! reported with the next line that gets through.

use crate::adapters::std::prelude::*;

use std::time::Instant;

/// Allows `per_second` lines per second with bursts of the same size.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    per_second: f64,
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new(per_second: u32, now: Instant) -> Self {
        LogLimiter {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            last: now,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged now; `Some(n)` carries how many were dropped
    /// since the last one that was logged.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_counts_then_refills() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(3, t0);
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0), None);
        assert_eq!(l.allow(t0), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), Some(2));
    }
}
