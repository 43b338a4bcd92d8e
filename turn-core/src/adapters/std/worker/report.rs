//! What a worker tells the operator: one log line per refused client (naming
//! the user and what to check, escaped, rate-limited) and per allocation made
//! and ended, and the same as [`RelayEvent`]s for the embedder.

use crate::adapters::std::prelude::*;

use log::{debug, info, warn};
use stun_core::Message;
use stun_core::attributes::Username;
use stun_core::escape::Escaped;

use crate::FiveTuple;
use crate::server::{Event, Refusal};

use super::super::events::RelayEvent;
use super::super::shared::Shared;
use super::super::stats::Username as Name;
use super::super::usage::UsageRecord;
use super::Worker;
use stun_core::escape::{Held, LineBudget};

/// Logs (and reports as an event) a refused client, naming the user and what
/// to check. Refusals that are routine (a first 401, a packet for no
/// allocation) are logged at debug level only and not reported. Lines draw on
/// `logs`: the worker's budget for requests refused with an answer, or the one
/// for packets dropped without one (a media stream toward a peer that cannot
/// be reached would otherwise write a line per packet).
pub(super) fn refused(
    logs: &mut LineBudget,
    shared: &Shared,
    worker: usize,
    tuple: &FiveTuple,
    packet: &[u8],
    why: Refusal,
) {
    let notable = why.is_notable();
    let event = notable && shared.events.wanted();
    let line = if notable {
        log::log_enabled!(log::Level::Info)
    } else {
        log::log_enabled!(log::Level::Debug)
    };
    if !event && !line {
        return;
    }
    let msg = Message::new_checked(packet).ok();
    let user = msg
        .as_ref()
        .and_then(|m| m.attribute::<Username>().ok().flatten())
        .map(|u| u.0);
    if event {
        shared.events.push(RelayEvent::Refused {
            worker,
            tuple: *tuple,
            username: user.and_then(|u| Name::try_from(u).ok()),
            refusal: why,
        });
    }
    if !line {
        return;
    }
    let Some(held) = logs.allow(shared.clock.now().as_millis()) else {
        return;
    };
    let method = msg.as_ref().map(|m| m.method());
    let user = user
        .map(|u| format!(" user `{}`", Escaped::new(u)))
        .unwrap_or_default();
    let what = method.map_or_else(|| "packet".to_string(), |m| m.to_string());
    let text = format!(
        "{} {}{user} {what}: {why}{}",
        tuple.transport.name(),
        tuple.client,
        Held(held)
    );
    if notable {
        info!("{text}");
    } else {
        debug!("{text}");
    }
}

/// How long a stop waits in all for room in the event queue for its usage
/// records (when the embedder reads the queue).
const STOP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

impl Worker {
    /// Logs allocations created and ended, and reports them as events (an
    /// ended one with its usage record).
    pub(super) fn report_events(&mut self) {
        while let Some(e) = self.turn.poll_event() {
            self.report(e);
        }
        if let Some((addr, e)) = self.relays.last_error.take() {
            // EMFILE and ENFILE: the open-file limits, not the addresses.
            let hint = match e.raw_os_error() {
                Some(24 | 23) => {
                    "raise the open-file limit (LimitNOFILE=) or lower the quota total"
                }
                _ => "check relay_ip and relay_range",
            };
            warn!("cannot bind a relay socket on {addr}: {e} ({hint})");
            if self.shared.events.wanted() {
                self.shared.events.push(RelayEvent::RelaySocketFailed {
                    worker: self.id,
                    local: addr,
                    error: e.kind(),
                });
            }
        }
    }

    /// Ends every allocation left (the relay stops), each with its line.
    pub(super) fn stop_allocations(&mut self) {
        let mut ended = Vec::new();
        let mut host = host_of!(self);
        self.turn.stop(&mut host, |turn| {
            ended.extend(core::iter::from_fn(|| turn.poll_event()));
        });
        // Records wait for room until then, all of them together.
        self.stopping = Some(std::time::Instant::now() + STOP_PATIENCE);
        for e in ended {
            self.report(e);
        }
    }

    /// Logs one event and reports it; an allocation that ended gets what the
    /// kernel relayed for it added, and its usage record.
    fn report(&mut self, #[allow(unused_mut)] mut e: Event) {
        // (Only UDP allocations have kernel routes: a TCP client on the same
        // address pair takes nothing of theirs.)
        #[cfg(feature = "xdp")]
        if let Event::Ended { tuple, traffic, .. } = &mut e
            && tuple.transport == crate::Transport::Udp
        {
            let key = (tuple.client, tuple.server);
            let kernel = &mut self.relays.kernel_ended;
            while let Some(i) = kernel.iter().position(|(k, _)| *k == key) {
                let (_, n) = kernel.swap_remove(i);
                traffic.to_peer_packets += n[0];
                traffic.to_peer_bytes += n[1];
                traffic.from_peer_packets += n[2];
                traffic.from_peer_bytes += n[3];
            }
        }
        let shared = &self.shared;
        match UsageRecord::of(&shared.clock, self.turn.config(), &e) {
            Some(record) => {
                info!("{record}");
                if shared.events.wanted() {
                    // At a stop, the records wait for room (nothing else does).
                    let until = self.stopping.unwrap_or_else(std::time::Instant::now);
                    shared.events.push_until(
                        RelayEvent::Usage {
                            worker: self.id,
                            record,
                        },
                        until,
                    );
                }
            }
            None => {
                if let Event::Allocated {
                    tuple,
                    username,
                    relayed,
                    lifetime,
                } = &e
                {
                    info!(
                        "{} {}: allocation for `{}` relayed at {relayed} ({lifetime} s)",
                        tuple.transport.name(),
                        tuple.client,
                        Escaped::new(username)
                    );
                }
            }
        }
        if shared.events.wanted() {
            shared.events.push(RelayEvent::Allocation {
                worker: self.id,
                event: e,
            });
        }
    }
}
