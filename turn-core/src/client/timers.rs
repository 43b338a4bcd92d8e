//! The client's timers: retransmissions (RFC 8489 §6.2.1 over UDP; one long
//! wait over TCP), giving up, and the refreshes of the allocation, its
//! permissions and its channels.

use super::retransmit::Expiry;
use super::{CHANNEL_REFRESH_SECS, PERMISSION_REFRESH_SECS, RTO_MS};
use super::{Client, ClientEvent, Failure, RequestKind, State};
use crate::Instant;

impl<const P: usize, const C: usize> Client<P, C> {
    /// When [`Client::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self
            .transactions
            .iter()
            .filter_map(|t| t.timer.deadline())
            .min();
        // Refreshes happen only while allocated (see `handle_timeout`).
        if self.state != State::Allocated {
            return tx;
        }
        let perms = self.permissions.iter().map(|p| p.refresh_at).min();
        let chans = self
            .channels
            .iter()
            .filter(|c| c.bound)
            .map(|c| c.refresh_at)
            .min();
        [tx, self.refresh_at, perms, chans]
            .into_iter()
            .flatten()
            .min()
    }

    /// Retransmits, gives up on transactions, and refreshes what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stream = self.cfg.transport.is_stream();
        let mut i = 0;
        while let Some(t) = self.transactions.get_mut(i) {
            if t.timer.expire(now, stream) == Expiry::GiveUp {
                let t = self.transactions.swap_remove(i);
                self.fail(t.kind, Failure::Timeout);
                continue;
            }
            i += 1;
        }
        if self.state != State::Allocated {
            return;
        }
        // A refresh that cannot start now (too many requests in flight) is tried
        // again one RTO later, never dropped.
        let retry = now.plus_millis(RTO_MS);
        if self.refresh_at.is_some_and(|r| now >= r) {
            self.refresh_at = match self.start(now, RequestKind::Refresh(self.cfg.lifetime_secs)) {
                Ok(()) => None,
                Err(_) => Some(retry),
            };
        }
        for k in 0..self.permissions.len() {
            if let Some(p) = self
                .permissions
                .get(k)
                .copied()
                .filter(|p| now >= p.refresh_at)
            {
                let started = self.start(now, RequestKind::Permission(p.ip)).is_ok();
                if let Some(p) = self.permissions.get_mut(k) {
                    p.refresh_at = if started {
                        now.plus_secs(PERMISSION_REFRESH_SECS)
                    } else {
                        retry
                    };
                }
            }
        }
        for k in 0..self.channels.len() {
            if let Some(c) = self
                .channels
                .get(k)
                .copied()
                .filter(|c| c.bound && now >= c.refresh_at)
            {
                let started = self
                    .start(now, RequestKind::ChannelBind(c.number, c.peer))
                    .is_ok();
                if let Some(c) = self.channels.get_mut(k) {
                    c.refresh_at = if started {
                        now.plus_secs(CHANNEL_REFRESH_SECS)
                    } else {
                        retry
                    };
                }
            }
        }
    }

    pub(super) fn fail(&mut self, kind: RequestKind, failure: Failure) {
        match kind {
            RequestKind::Allocate => self.state = State::Failed,
            RequestKind::Refresh(_) => {
                if self.state == State::Allocated {
                    self.state = State::Failed;
                }
            }
            RequestKind::Permission(ip) => self.permissions.retain(|p| p.ip != ip),
            RequestKind::ChannelBind(n, _) => self.channels.retain(|c| c.number != n || c.bound),
            RequestKind::Connect(_) => {}
        }
        self.push_event(ClientEvent::Failed {
            request: kind,
            failure,
        });
    }
}

/// When to refresh an allocation granted `lifetime` seconds at `now`: a minute
/// before it runs out, or at half of short lifetimes.
pub(super) fn refresh_time(now: Instant, lifetime: u32) -> Instant {
    let l = u64::from(lifetime);
    now.plus_secs(if l > 120 { l - 60 } else { l / 2 })
}
