//! Read deadlines against slow clients (slowloris), as a state machine over the
//! caller's milliseconds:
//!
//! - **Idle**: between requests on a kept-alive connection, the client has
//!   [`Deadlines::idle_ms`] to start the next one; past it the connection is
//!   closed without an answer.
//! - **Head**: from a request's first byte (not from the start of the idle time
//!   before it), the whole head must arrive within [`Deadlines::head_ms`].
//! - **Body**: no pause longer than [`Deadlines::body_idle_ms`], and, after a
//!   grace time of [`Deadlines::body_grace_ms`], on average at least
//!   [`Deadlines::body_min_rate`] bytes a second: a client that sends a byte every
//!   few seconds is cut, one that sends slowly but steadily is not.

use crate::refusal::{Reason, Refusal};

/// Deadlines, in milliseconds (and a rate in bytes per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From the first byte of a request to the end of its head.
    pub head_ms: u64,
    /// Longest pause between body bytes.
    pub body_idle_ms: u64,
    /// How long a body may take before the minimum rate applies.
    pub body_grace_ms: u64,
    /// Least average body rate after the grace time, bytes per second (0: none).
    pub body_min_rate: u64,
    /// Longest wait for the next request on a kept-alive connection.
    pub idle_ms: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            head_ms: 10_000,
            body_idle_ms: 30_000,
            body_grace_ms: 10_000,
            body_min_rate: 512,
            idle_ms: 120_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's first byte until the deadline.
    Idle { deadline: u64 },
    /// Reading a head that must be whole by the deadline.
    Head { deadline: u64 },
    /// Reading a body that started at `start`; `received` bytes so far, the last
    /// at `last`.
    Body {
        start: u64,
        last: u64,
        received: u64,
    },
    /// Nothing is timed.
    Done,
}

/// What a passed deadline means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The kept-alive connection idled out: close it, without an answer.
    Idle,
    /// Answer with this refusal (408), then close.
    Refuse(Refusal),
}

/// The deadline of the request being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimer {
    deadlines: Deadlines,
    phase: Phase,
}

impl RequestTimer {
    /// A request whose first byte arrives at `now` (the head phase).
    pub fn new(deadlines: Deadlines, now: u64) -> Self {
        RequestTimer {
            deadlines,
            phase: Phase::Head {
                deadline: now.saturating_add(deadlines.head_ms),
            },
        }
    }

    /// Waiting from `now` for the next request of a kept-alive connection.
    pub fn idle(deadlines: Deadlines, now: u64) -> Self {
        RequestTimer {
            deadlines,
            phase: Phase::Idle {
                deadline: now.saturating_add(deadlines.idle_ms),
            },
        }
    }

    /// Bytes of the request arrived at `now`: an idle wait becomes the head phase,
    /// timed from now.
    pub fn bytes_arrived(&mut self, now: u64) {
        if let Phase::Idle { .. } = self.phase {
            self.phase = Phase::Head {
                deadline: now.saturating_add(self.deadlines.head_ms),
            };
        }
    }

    /// The head arrived at `now`; body bytes are expected.
    pub fn head_done(&mut self, now: u64) {
        self.phase = Phase::Body {
            start: now,
            last: now,
            received: 0,
        };
    }

    /// `bytes` of the body arrived at `now`.
    pub fn body_progress(&mut self, now: u64, bytes: u64) {
        if let Phase::Body { last, received, .. } = &mut self.phase {
            *last = now;
            *received = received.saturating_add(bytes);
        }
    }

    /// The request was read completely; nothing more is timed.
    pub fn done(&mut self) {
        self.phase = Phase::Done;
    }

    /// When the body falls below the minimum rate if nothing more arrives.
    fn rate_deadline(&self, start: u64, received: u64) -> Option<u64> {
        let rate = self.deadlines.body_min_rate;
        (rate > 0).then(|| {
            start
                .saturating_add(self.deadlines.body_grace_ms)
                .saturating_add(received.saturating_mul(1000) / rate)
        })
    }

    /// When the current deadline falls, if one is running.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Idle { deadline } | Phase::Head { deadline } => Some(deadline),
            Phase::Body {
                start,
                last,
                received,
            } => {
                let idle = last.saturating_add(self.deadlines.body_idle_ms);
                Some(
                    self.rate_deadline(start, received)
                        .map_or(idle, |r| r.min(idle)),
                )
            }
            Phase::Done => None,
        }
    }

    /// What to do if the deadline has passed at `now`.
    pub fn check(&self, now: u64) -> Result<(), Expired> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        Err(match self.phase {
            Phase::Idle { .. } => Expired::Idle,
            Phase::Head { .. } => Expired::Refuse(Refusal::new(Reason::HeaderTimeout)),
            Phase::Body { last, .. } if now >= last.saturating_add(self.deadlines.body_idle_ms) => {
                Expired::Refuse(Refusal::new(Reason::BodyTimeout))
            }
            _ => Expired::Refuse(Refusal::new(Reason::BodyTooSlow)),
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const D: Deadlines = Deadlines {
        head_ms: 100,
        body_idle_ms: 50,
        body_grace_ms: 200,
        body_min_rate: 1000,
        idle_ms: 5_000,
    };

    #[test]
    fn head_and_body_deadlines() {
        let mut t = RequestTimer::new(D, 1000);
        assert!(t.check(1099).is_ok());
        assert_eq!(
            t.check(1100),
            Err(Expired::Refuse(Refusal::new(Reason::HeaderTimeout)))
        );
        t.head_done(1050);
        assert!(t.check(1099).is_ok());
        t.body_progress(1099, 10);
        assert!(t.check(1148).is_ok());
        assert_eq!(
            t.check(1149),
            Err(Expired::Refuse(Refusal::new(Reason::BodyTimeout)))
        );
        t.done();
        assert_eq!(t.poll_timeout(), None);
        assert!(t.check(99_999).is_ok());
    }

    #[test]
    fn the_head_timer_starts_at_the_first_byte_not_at_idle() {
        // A kept-alive connection idles for 4.9 s, then a request starts: it has
        // the whole head time from its first byte.
        let mut t = RequestTimer::idle(D, 0);
        assert!(t.check(4_900).is_ok());
        t.bytes_arrived(4_900);
        assert!(t.check(4_999).is_ok());
        assert_eq!(t.poll_timeout(), Some(5_000));
        assert!(t.check(5_000).is_err());
        // Without a byte, the idle wait ends the connection silently.
        let t = RequestTimer::idle(D, 0);
        assert_eq!(t.check(5_000), Err(Expired::Idle));
        // Later bytes of the same head do not restart it.
        let mut t = RequestTimer::new(D, 10);
        t.bytes_arrived(90);
        assert!(t.check(110).is_err());
    }

    #[test]
    fn a_slow_body_is_cut_and_a_steady_one_is_not() {
        // A byte every 40 ms (25 B/s) never pauses past 50 ms, but falls below
        // 1000 B/s once the 200 ms grace ends.
        let mut t = RequestTimer::new(D, 0);
        t.head_done(0);
        let mut now = 0;
        let cut = loop {
            now += 40;
            if let Err(e) = t.check(now) {
                break (now, e);
            }
            t.body_progress(now, 1);
        };
        assert_eq!(cut.1, Expired::Refuse(Refusal::new(Reason::BodyTooSlow)));
        assert!(cut.0 > 200 && cut.0 <= 280, "cut at {}", cut.0);
        // 100 bytes every 40 ms (2500 B/s) goes on for as long as it lasts.
        let mut t = RequestTimer::new(D, 0);
        t.head_done(0);
        for i in 1..=1000 {
            assert!(t.check(i * 40).is_ok(), "at {}", i * 40);
            t.body_progress(i * 40, 100);
        }
        // A rate of 0 turns the minimum off.
        let mut t = RequestTimer::new(
            Deadlines {
                body_min_rate: 0,
                ..D
            },
            0,
        );
        t.head_done(0);
        for i in 1..=100 {
            assert!(t.check(i * 40).is_ok());
            t.body_progress(i * 40, 1);
        }
    }
}
