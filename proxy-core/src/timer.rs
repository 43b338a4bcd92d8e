//! Read deadlines against slow clients (slowloris): the whole request head must
//! arrive within one deadline, and a body may not stall longer than another. Time
//! is milliseconds the caller passes in.

use crate::refusal::{Reason, Refusal};

/// Deadlines, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From the first byte of a request to the end of its head.
    pub head_ms: u64,
    /// Longest pause between body bytes.
    pub body_idle_ms: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            head_ms: 10_000,
            body_idle_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body,
    Idle,
}

/// The deadline of the request being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimer {
    deadlines: Deadlines,
    phase: Phase,
    deadline: u64,
}

impl RequestTimer {
    /// A request starts at `now`.
    pub fn new(deadlines: Deadlines, now: u64) -> Self {
        RequestTimer {
            deadlines,
            phase: Phase::Head,
            deadline: now.saturating_add(deadlines.head_ms),
        }
    }

    /// The head arrived; body bytes are expected.
    pub fn head_done(&mut self, now: u64) {
        self.phase = Phase::Body;
        self.deadline = now.saturating_add(self.deadlines.body_idle_ms);
    }

    /// Body bytes arrived at `now`.
    pub fn body_progress(&mut self, now: u64) {
        if self.phase == Phase::Body {
            self.deadline = now.saturating_add(self.deadlines.body_idle_ms);
        }
    }

    /// The request was read completely; nothing more is timed.
    pub fn done(&mut self) {
        self.phase = Phase::Idle;
    }

    /// When the current deadline falls, if one is running.
    pub fn poll_timeout(&self) -> Option<u64> {
        (self.phase != Phase::Idle).then_some(self.deadline)
    }

    /// The refusal to answer with if the deadline has passed at `now`.
    pub fn check(&self, now: u64) -> Result<(), Refusal> {
        match self.phase {
            Phase::Idle => Ok(()),
            _ if now < self.deadline => Ok(()),
            Phase::Head => Err(Refusal::new(Reason::HeaderTimeout)),
            Phase::Body => Err(Refusal::new(Reason::BodyTimeout)),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn head_and_body_deadlines() {
        let d = Deadlines {
            head_ms: 100,
            body_idle_ms: 50,
        };
        let mut t = RequestTimer::new(d, 1000);
        assert!(t.check(1099).is_ok());
        assert_eq!(t.check(1100).unwrap_err().status, 408);
        t.head_done(1050);
        assert!(t.check(1099).is_ok());
        t.body_progress(1099);
        assert!(t.check(1148).is_ok());
        assert_eq!(t.check(1149).unwrap_err().reason, Reason::BodyTimeout);
        t.done();
        assert_eq!(t.poll_timeout(), None);
        assert!(t.check(99_999).is_ok());
    }
}
