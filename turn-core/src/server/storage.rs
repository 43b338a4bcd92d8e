//! Storage that grows. On a board the allocation table is a fixed array; on a
//! host it can be a `Vec` that starts small and lengthens as allocations come
//! ([`Server::make_room`]), so the memory a server holds follows the
//! allocations it holds, not the most it may ever hold. Growing keeps every
//! slot's number and generation, so relay handles stay valid.

use std::vec::Vec;

use super::{Server, Slot};

/// The fewest slots a growth adds.
pub const GROW_MIN: usize = 64;

/// The most slots a table may have (slot numbers and index entries are `u32`).
const SLOTS_MAX: usize = (u32::MAX / 2) as usize - 1;

impl<const P: usize, const C: usize, const T: usize> Server<Vec<Slot<P, C>>, P, C, T> {
    /// Makes room for the next allocation: when every slot is taken, lengthens
    /// the storage by a quarter (at least [`GROW_MIN`] slots), never past
    /// `max`. While a slot is free it only looks, so a host calls it before
    /// each packet from a client. Returns the slots held; an allocation asked
    /// for with all `max` taken gets 508 as from a fixed table.
    ///
    /// ```
    /// # use turn_core::server::{Config, Server, Slot};
    /// let mut cfg = Config::new("example.org");
    /// cfg.relay_v4 = Some("192.0.2.10".parse().unwrap());
    /// // Room for 100,000 allocations, memory for 64 until they come.
    /// let mut server: Server<_, 4, 4> =
    ///     Server::new(cfg, vec![Slot::EMPTY; 64], [7; 32]).unwrap();
    /// assert_eq!(server.make_room(100_000), 64, "a slot is free: nothing to do");
    /// ```
    pub fn make_room(&mut self, max: usize) -> usize {
        let held = self.table.capacity();
        if held >= max || self.table.next_free().is_some() {
            return held;
        }
        self.reserve_slots(held.saturating_add((held / 4).max(GROW_MIN)).min(max))
    }

    /// Lengthens the storage to at least `len` slots (fewer than 2^31), for
    /// example before [`Server::read_image`] with the count
    /// [`image::allocations_in`](super::image::allocations_in) read. Memory
    /// the system will not give leaves it as it was. Returns the slots held.
    pub fn reserve_slots(&mut self, len: usize) -> usize {
        let len = len.min(SLOTS_MAX);
        self.table.grow(|slots| {
            let more = len.saturating_sub(slots.len());
            if more > 0 && slots.try_reserve_exact(more).is_ok() {
                slots.resize(len, Slot::EMPTY);
            }
        })
    }
}
