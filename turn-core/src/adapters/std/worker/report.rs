//! What a worker tells the operator: one log line per refused client (naming
//! the user and what to check, escaped, rate-limited) and per allocation made
//! and ended, and the same as [`RelayEvent`]s for the embedder.

use crate::adapters::std::prelude::*;

use log::{debug, info, warn};
use stun_core::Message;
use stun_core::attributes::Username;
use stun_core::escape::Escaped;

use crate::FiveTuple;
use crate::server::{EndReason, Event, Refusal};

use super::super::events::RelayEvent;
use super::super::shared::Shared;
use super::super::stats::Username as Name;
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

impl Worker {
    /// Logs allocations created and ended, and reports them as events.
    pub(super) fn report_events(&mut self) {
        while let Some(e) = self.turn.poll_event() {
            report_event(&self.shared, self.id, e);
        }
        if let Some((addr, e)) = self.relays.last_error.take() {
            warn!("cannot bind a relay socket on {addr}: {e} (check relay_ip and relay_range)");
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
        let (shared, id) = (self.shared.clone(), self.id);
        let mut host = host_of!(self);
        self.turn.stop(&mut host, |turn| {
            while let Some(e) = turn.poll_event() {
                report_event(&shared, id, e);
            }
        });
    }
}

/// Logs an allocation made or ended, and reports it as an event.
fn report_event(shared: &Shared, worker: usize, e: Event) {
    match &e {
        Event::Allocated {
            tuple,
            username,
            relayed,
            lifetime,
        } => info!(
            "{} {}: allocation for `{}` relayed at {relayed} ({lifetime} s)",
            tuple.transport.name(),
            tuple.client,
            Escaped::new(username)
        ),
        Event::Ended {
            tuple,
            username,
            reason,
            traffic,
        } => info!(
            "{} {}: allocation of `{}` ended ({}): relayed {} packets / {} bytes \
                     to peers, {} / {} from peers",
            tuple.transport.name(),
            tuple.client,
            Escaped::new(username),
            match reason {
                EndReason::Expired => "expired",
                EndReason::Released => "released by the client",
                EndReason::ConnectionClosed => "connection closed",
                EndReason::Stopped => "cut: the server stopped",
            },
            traffic.to_peer_packets,
            traffic.to_peer_bytes,
            traffic.from_peer_packets,
            traffic.from_peer_bytes
        ),
    }
    if shared.events.wanted() {
        shared
            .events
            .push(RelayEvent::Allocation { worker, event: e });
    }
}
