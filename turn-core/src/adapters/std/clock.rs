//! The relay's two clocks, as the core wants them: a monotonic [`Instant`] for
//! every timer (a wall-clock step moves no lifetime), and [`UnixTime`] read
//! from the system clock where nonces and time-limited credentials need it.

use std::time::{Duration, SystemTime};

use crate::{Instant, UnixTime};

/// Monotonic milliseconds since the relay started, and the wall clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: std::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: std::time::Instant::now(),
        }
    }

    /// Now, on the monotonic clock.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_millis(millis(self.start.elapsed()))
    }

    /// Nanoseconds since the origin.
    #[cfg(feature = "xdp")]
    pub(crate) fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The std instant of a core instant, for poll timeouts.
    pub(crate) fn to_std(self, t: Instant) -> std::time::Instant {
        self.start + Duration::from_millis(t.as_millis())
    }
}

/// The wall clock now (0 before 1970, which no server lives in).
pub(crate) fn unix_now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_instants_map_back_to_std_instants() {
        let c = Clock::new();
        let before = std::time::Instant::now();
        let t = c.now().plus_secs(5);
        let after = std::time::Instant::now();
        let back = c.to_std(t);
        // Millisecond resolution: within a millisecond of the read's window.
        assert!(
            back + Duration::from_millis(1) >= before + Duration::from_secs(5)
                && back <= after + Duration::from_secs(5),
            "{back:?} not 5 s after [{before:?}, {after:?}]"
        );
        assert!(unix_now().as_secs() > 1_700_000_000);
    }
}
