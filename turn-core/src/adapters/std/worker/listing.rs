//! What a worker publishes for [`StatsHandle`](super::super::StatsHandle): its
//! summary each second, and while someone reads them, the list of its
//! allocations.
//!
//! The list is built on the worker's own thread a part at a time,
//! [`LIST_SLOTS`] slots of its table between two looks for packets, into the
//! list it published the time before (reused once no reader holds it), and
//! swapped in under the lock when complete: tens of thousands of allocations
//! are listed without holding up the packets of any of them for longer than a
//! part takes, and the lock is held for a swap.

use crate::adapters::std::prelude::*;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::Instant;

use super::super::stats::{AllocationStats, WorkerStats};
use super::Worker;

/// Table slots listed between two looks for packets: a part costs at most
/// this many allocations' entries (a few hundred nanoseconds each; the
/// table's first size, so a larger table is listed in parts).
pub(super) const LIST_SLOTS: usize = 256;

impl Worker {
    /// Whether someone reads the allocations (see `StatsHandle::stats`).
    pub(super) fn listing_wanted(&self, now: Instant) -> bool {
        self.shared.listing_until_ms.load(Ordering::Acquire) > now.as_millis()
    }

    /// Publishes this worker's summary and, while someone reads them, starts
    /// listing its allocations again (unless a list is still being built);
    /// when nobody reads them, the lists are let go.
    pub(super) fn publish(&mut self, now: Instant) {
        let listing = self.listing_wanted(now);
        let summary = WorkerStats {
            worker: self.id,
            counters: *self.turn.counters(),
            allocations: self.turn.allocation_count(),
            capacity: self.max_slots,
            slots: self.turn.capacity(),
            connections: self.open_conns + self.tcp_relays.bound,
            handed_off: self.handed_off,
            client_datagrams: self.outboxes.iter().map(|o| o.datagrams).sum(),
            client_sends: self.outboxes.iter().map(|o| o.syscalls).sum(),
            peer_datagrams: self.peer_run.datagrams,
            peer_sends: self.peer_run.sends,
        };
        let mut all = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.get_mut(self.id) {
            slot.worker = summary;
            if !listing {
                slot.allocations = None;
                slot.listed = false;
            }
            slot.running = true;
        }
        drop(all);
        if !listing {
            self.spare_listing = None;
            self.building = None;
        } else if self.building.is_none() {
            self.start_listing();
        }
        self.listing = listing;
    }

    /// Starts a list in the spare one: the list published before the one shown
    /// now, when no reader holds it still; else a new one.
    fn start_listing(&mut self) {
        let fresh = || Arc::new(Vec::with_capacity(self.turn.allocation_count()));
        let spare = self.spare_listing.get_or_insert_with(fresh);
        if Arc::get_mut(spare).is_none() {
            // A reader still copies it: it keeps that one.
            *spare = fresh();
        }
        if let Some(list) = Arc::get_mut(spare) {
            list.clear();
        }
        self.building = Some(0);
    }

    /// Lists the next [`LIST_SLOTS`] slots of the table into the list being
    /// built, if there is one; after the last, publishes it (swapped in under
    /// the lock; the one it replaces becomes the spare).
    pub(super) fn go_on_listing(&mut self, now: Instant) {
        let Some(from) = self.building else { return };
        let to = from.saturating_add(LIST_SLOTS);
        let id = self.id;
        // The spare is this worker's alone while it builds: never shared.
        if let Some(list) = self.spare_listing.as_mut().and_then(Arc::get_mut) {
            list.extend(
                self.turn
                    .allocations_in(from..to)
                    .map(|a| AllocationStats::of(id, a, now)),
            );
        }
        if to < self.turn.capacity() {
            self.building = Some(to);
            return;
        }
        self.building = None;
        let mut all = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.get_mut(id) {
            core::mem::swap(&mut slot.allocations, &mut self.spare_listing);
            slot.listed = true;
        }
    }
}
