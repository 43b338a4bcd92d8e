//! One request's retransmission timer, shared by the client's transactions and
//! the selector's probes: RFC 8489 §6.2.1 over UDP (RTO doubling, Rc
//! transmissions, a last wait of Rm × RTO), one wait of Ti (39.5 s) over TCP
//! and TLS, where the stream retransmits.

use super::{RC, RM, RTO_MS, TCP_TIMEOUT_MS};
use crate::Instant;

/// What a timeout means for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Not yet due (or waiting to be sent).
    Wait,
    /// Due: send it again ([`Retransmit::is_pending`] is now true).
    Resend,
    /// No answer after every transmission: give up.
    GiveUp,
}

/// When a request is sent, and sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retransmit {
    first_sent: Option<Instant>,
    next_send: Instant,
    transmissions: u32,
    rto_ms: u64,
    pending: bool,
}

impl Retransmit {
    /// A request to send now, for the first time.
    pub(crate) fn new(now: Instant) -> Retransmit {
        Retransmit {
            first_sent: None,
            next_send: now,
            transmissions: 0,
            rto_ms: RTO_MS,
            pending: true,
        }
    }

    /// Whether it waits to be sent.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending
    }

    /// Notes a transmission at `now` and sets when the next one is due.
    pub(crate) fn sent(&mut self, now: Instant, stream: bool) {
        self.pending = false;
        self.transmissions += 1;
        self.first_sent.get_or_insert(now);
        if !stream && self.transmissions > 1 {
            self.rto_ms = self.rto_ms.saturating_mul(2);
        }
        self.next_send = if stream {
            now.plus_millis(TCP_TIMEOUT_MS)
        } else if self.transmissions >= RC {
            now.plus_millis(RTO_MS * RM)
        } else {
            now.plus_millis(self.rto_ms)
        };
    }

    /// When it is next due, once sent.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (!self.pending).then_some(self.next_send)
    }

    /// What `now` means for it; a due request becomes pending again.
    pub(crate) fn expire(&mut self, now: Instant, stream: bool) -> Expiry {
        if self.pending || now < self.next_send {
            return Expiry::Wait;
        }
        if stream || self.transmissions >= RC {
            return Expiry::GiveUp;
        }
        self.pending = true;
        Expiry::Resend
    }

    /// The round trip an answer at `now` measures: exact when it was sent once;
    /// with `estimate`, the time since the first transmission over the
    /// transmissions (a rough figure) otherwise.
    pub(crate) fn rtt_ms(&self, now: Instant, estimate: bool) -> Option<u64> {
        let sent = self.first_sent?;
        match self.transmissions {
            1 => Some(now.millis_since(sent)),
            n if estimate => Some(now.millis_since(sent) / u64::from(n.max(1))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_follows_rfc8489_and_a_stream_waits_once() {
        let t0 = Instant::from_millis(1_000);
        let mut r = Retransmit::new(t0);
        let mut now = t0;
        let mut gaps = [0u64; 7];
        for gap in &mut gaps {
            assert!(r.is_pending());
            r.sent(now, false);
            let due = r.deadline().unwrap();
            *gap = due.millis_since(now);
            let before = Instant::from_millis(due.as_millis() - 1);
            assert_eq!(r.expire(before, false), Expiry::Wait);
            now = due;
            let e = r.expire(now, false);
            if e == Expiry::GiveUp {
                break;
            }
            assert_eq!(e, Expiry::Resend);
        }
        // RFC 8489 §6.2.1: 0, 500, 1500, 3500, 7500, 15500, 31500, then 39500.
        assert_eq!(gaps, [500, 1000, 2000, 4000, 8000, 16000, 8000]);
        assert_eq!(r.expire(now, false), Expiry::GiveUp);

        let mut s = Retransmit::new(t0);
        s.sent(t0, true);
        assert_eq!(s.deadline(), Some(t0.plus_millis(TCP_TIMEOUT_MS)));
        assert_eq!(
            s.expire(t0.plus_millis(TCP_TIMEOUT_MS), true),
            Expiry::GiveUp
        );
    }

    #[test]
    fn the_rtt_is_exact_only_for_one_transmission() {
        let t0 = Instant::from_millis(0);
        let mut r = Retransmit::new(t0);
        assert_eq!(r.rtt_ms(t0, true), None);
        r.sent(t0, false);
        assert_eq!(r.rtt_ms(t0.plus_millis(40), false), Some(40));
        assert_eq!(r.expire(t0.plus_millis(500), false), Expiry::Resend);
        r.sent(t0.plus_millis(500), false);
        assert_eq!(r.rtt_ms(t0.plus_millis(600), false), None);
        assert_eq!(r.rtt_ms(t0.plus_millis(600), true), Some(300));
    }
}
