//! The allocation table: slots in caller-provided storage, an open-addressing index
//! from 5-tuple to slot kept inside the same slots (two index entries per slot, so
//! the index is always twice the table and at most half full), and an intrusive
//! free list, so lookups and inserts are O(1) and nothing is allocated.

use core::hash::{Hash, Hasher};

use super::allocation::Allocation;
use crate::FiveTuple;

/// One slot of allocation storage: room for one allocation, and two entries of
/// the table's index. Create storage with [`Slot::EMPTY`], for example
/// `[Slot::EMPTY; 16]` on a board or `vec![Slot::EMPTY; 10_000]` on a host.
#[derive(Debug, Clone)]
pub struct Slot<const P: usize, const C: usize> {
    generation: u32,
    next_free: u32,
    index: [u32; 2],
    pub(crate) alloc: Option<Allocation<P, C>>,
}

impl<const P: usize, const C: usize> Slot<P, C> {
    /// An empty slot.
    pub const EMPTY: Slot<P, C> = Slot {
        generation: 0,
        next_free: u32::MAX,
        index: [EMPTY; 2],
        alloc: None,
    };

    /// The slot's generation: bumped each time it is freed, so stale handles miss.
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }
}

const EMPTY: u32 = 0;
const TOMBSTONE: u32 = 1;
const NONE: u32 = u32::MAX;

/// A keyed hasher (multiply-xorshift), seeded from the caller's randomness so that
/// clients cannot choose addresses that collide.
pub(crate) struct KeyedHasher(pub(crate) u64);

impl Hasher for KeyedHasher {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(chunk) {
                *d = *s;
            }
            self.0 = (self.0 ^ u64::from_le_bytes(w))
                .rotate_left(29)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
}

/// Allocations by slot, and an index by 5-tuple.
#[derive(Debug)]
pub(crate) struct Table<S, const P: usize, const C: usize> {
    slots: S,
    free_head: u32,
    live: usize,
    tombstones: usize,
    seed: u64,
}

impl<S, const P: usize, const C: usize> Table<S, P, C>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// Wraps the storage.
    pub(crate) fn new(mut slots: S, seed: u64) -> Self {
        let n = slots.as_ref().len();
        for (i, s) in slots.as_mut().iter_mut().enumerate() {
            s.alloc = None;
            s.index = [EMPTY; 2];
            s.next_free = if i + 1 < n { (i + 1) as u32 } else { NONE };
        }
        Table {
            slots,
            free_head: if n > 0 { 0 } else { NONE },
            live: 0,
            tombstones: 0,
            seed,
        }
    }

    /// Entries of the index: two per slot.
    fn index_len(&self) -> usize {
        self.slots.as_ref().len() * 2
    }

    /// Index entry `pos`.
    fn entry(&self, pos: usize) -> Option<u32> {
        self.slots
            .as_ref()
            .get(pos / 2)
            .and_then(|s| s.index.get(pos % 2))
            .copied()
    }

    fn set_entry(&mut self, pos: usize, value: u32) {
        if let Some(e) = self
            .slots
            .as_mut()
            .get_mut(pos / 2)
            .and_then(|s| s.index.get_mut(pos % 2))
        {
            *e = value;
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.as_ref().len()
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    fn hash(&self, t: &FiveTuple) -> usize {
        let mut h = KeyedHasher(self.seed);
        t.hash(&mut h);
        h.finish() as usize
    }

    /// The slot holding the allocation of `t`.
    pub(crate) fn find(&self, t: &FiveTuple) -> Option<usize> {
        let len = self.index_len();
        if len == 0 {
            return None;
        }
        let mut pos = self.hash(t) % len;
        for _ in 0..len {
            match self.entry(pos) {
                Some(EMPTY) | None => return None,
                Some(TOMBSTONE) => {}
                Some(e) => {
                    let slot = (e - 2) as usize;
                    if self.get(slot).is_some_and(|a| a.tuple == *t) {
                        return Some(slot);
                    }
                }
            }
            pos = (pos + 1) % len;
        }
        None
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&Allocation<P, C>> {
        self.slots.as_ref().get(slot).and_then(|s| s.alloc.as_ref())
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut Allocation<P, C>> {
        self.slots
            .as_mut()
            .get_mut(slot)
            .and_then(|s| s.alloc.as_mut())
    }

    /// The slot's current generation.
    pub(crate) fn generation(&self, slot: usize) -> Option<u32> {
        self.slots.as_ref().get(slot).map(Slot::generation)
    }

    /// The slot the next insert will use, if any is free.
    pub(crate) fn next_free(&self) -> Option<usize> {
        (self.free_head != NONE && self.index_has_room()).then_some(self.free_head as usize)
    }

    fn index_has_room(&self) -> bool {
        // Keep the index at most half full so probes stay short.
        (self.live + self.tombstones + 1) * 2 <= self.index_len()
    }

    /// Stores `a` in the slot [`Self::next_free`] returned. Returns the slot.
    pub(crate) fn insert(&mut self, a: Allocation<P, C>) -> Option<usize> {
        let slot = self.next_free()?;
        let len = self.index_len();
        let mut pos = self.hash(&a.tuple) % len;
        let entry = loop {
            match self.entry(pos) {
                Some(EMPTY) => break pos,
                Some(TOMBSTONE) => {
                    self.tombstones -= 1;
                    break pos;
                }
                Some(_) => pos = (pos + 1) % len,
                None => return None,
            }
        };
        let s = self.slots.as_mut().get_mut(slot)?;
        self.free_head = s.next_free;
        s.next_free = NONE;
        s.alloc = Some(a);
        self.set_entry(entry, slot as u32 + 2);
        self.live += 1;
        Some(slot)
    }

    /// Removes and returns the allocation in `slot`.
    pub(crate) fn remove(&mut self, slot: usize) -> Option<Allocation<P, C>> {
        let tuple = self.get(slot)?.tuple;
        let len = self.index_len();
        let mut pos = self.hash(&tuple) % len;
        for _ in 0..len {
            match self.entry(pos) {
                Some(EMPTY) | None => break,
                Some(e) if e == slot as u32 + 2 => {
                    self.set_entry(pos, TOMBSTONE);
                    self.tombstones += 1;
                    break;
                }
                Some(_) => pos = (pos + 1) % len,
            }
        }
        let head = self.free_head;
        let s = self.slots.as_mut().get_mut(slot)?;
        let a = s.alloc.take();
        s.generation = s.generation.wrapping_add(1);
        s.next_free = head;
        self.free_head = slot as u32;
        self.live -= 1;
        // Tombstones lengthen probes, and must never make a table with free slots
        // look full.
        if self.tombstones * 4 > len || !self.index_has_room() {
            self.rebuild_index();
        }
        a
    }

    /// Lengthens the storage through `lengthen` (which appends empty slots and
    /// must not shorten it), then threads the new slots onto the free list and
    /// spreads the index over the new length. Slots, and so handles, keep their
    /// numbers and generations. Returns the new length.
    #[cfg(any(feature = "std", test))]
    pub(crate) fn grow(&mut self, lengthen: impl FnOnce(&mut S)) -> usize {
        let old = self.capacity();
        lengthen(&mut self.slots);
        let new = self.capacity();
        if new <= old {
            return new;
        }
        let head = self.free_head;
        for (i, s) in self.slots.as_mut().iter_mut().enumerate().skip(old) {
            s.alloc = None;
            s.next_free = if i + 1 < new { (i + 1) as u32 } else { head };
        }
        self.free_head = old as u32;
        self.rebuild_index();
        new
    }

    /// Re-inserts every live allocation, clearing tombstones.
    fn rebuild_index(&mut self) {
        for s in self.slots.as_mut() {
            s.index = [EMPTY; 2];
        }
        self.tombstones = 0;
        let len = self.index_len();
        for slot in 0..self.slots.as_ref().len() {
            let Some(t) = self.get(slot).map(|a| a.tuple) else {
                continue;
            };
            let mut pos = self.hash(&t) % len;
            while self.entry(pos).is_some_and(|e| e != EMPTY) {
                pos = (pos + 1) % len;
            }
            self.set_entry(pos, slot as u32 + 2);
        }
    }

    /// Every occupied slot and its allocation.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Allocation<P, C>)> {
        self.slots
            .as_ref()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.alloc.as_ref().map(|a| (i, a)))
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::Transport;
    use crate::server::bandwidth::TokenBucket;

    fn alloc(port: u16) -> Allocation<1, 1> {
        Allocation {
            tuple: FiveTuple {
                client: core::net::SocketAddr::from(([198, 51, 100, 1], port)),
                server: core::net::SocketAddr::from(([192, 0, 2, 1], 3478)),
                transport: Transport::Udp,
                socket: 0,
            },
            relays: [None, None],
            username: heapless::String::new(),
            created: crate::Instant::from_secs(0),
            expires: crate::Instant::from_secs(600),
            permissions: heapless::Vec::new(),
            channels: heapless::Vec::new(),
            traffic: Default::default(),
            buckets: [TokenBucket::new(); 2],
            allocate_tid: stun_core::TransactionId::new([0; 12]),
            token: None,
            v6_refused: false,
            tcp: false,
        }
    }

    #[test]
    fn every_slot_is_usable_through_churn() {
        let mut t: Table<[Slot<1, 1>; 4], 1, 1> = Table::new([const { Slot::EMPTY }; 4], 7);
        let mut port = 1;
        let mut slots = heapless::Vec::<usize, 4>::new();
        for _ in 0..4 {
            slots.push(t.insert(alloc(port)).unwrap()).unwrap();
            port += 1;
        }
        assert!(t.next_free().is_none(), "full");
        // Remove and re-add, many times: the table never looks full with a free slot.
        for round in 0..100 {
            let victim = slots[round % 4];
            let tuple = t.get(victim).unwrap().tuple;
            assert!(t.remove(victim).is_some());
            assert!(t.find(&tuple).is_none());
            let s = t.insert(alloc(port)).expect("a free slot is usable");
            slots[round % 4] = s;
            assert_eq!(t.find(&alloc(port).tuple), Some(s));
            port += 1;
        }
        assert_eq!(t.len(), 4);
        for (_, a) in t.iter() {
            assert_eq!(
                t.find(&a.tuple).and_then(|s| t.get(s)).map(|b| b.tuple),
                Some(a.tuple)
            );
        }
    }

    #[test]
    fn growing_keeps_slots_and_frees_the_new_ones() {
        let mut t: Table<heapless::Vec<Slot<1, 1>, 16>, 1, 1> = Table::new(
            heapless::Vec::from_slice(&[const { Slot::EMPTY }; 4]).unwrap(),
            7,
        );
        let mut held = heapless::Vec::<(usize, FiveTuple), 16>::new();
        for port in 1..=4 {
            let a = alloc(port);
            held.push((t.insert(a.clone()).unwrap(), a.tuple)).unwrap();
        }
        // One freed before the growth: its generation moves on and stays.
        let (freed, _) = held.swap_remove(0);
        assert!(t.remove(freed).is_some());
        let generation = t.generation(freed);
        assert!(t.insert(alloc(99)).is_some_and(|s| s == freed));
        assert!(t.remove(freed).is_some());
        assert_eq!(t.generation(freed), generation.map(|g| g + 1));
        let grown = t.grow(|v| while v.push(Slot::EMPTY).is_ok() {});
        assert_eq!(grown, 16);
        assert_eq!(t.capacity(), 16);
        assert_eq!(t.generation(freed), generation.map(|g| g + 1));
        for (slot, tuple) in &held {
            assert_eq!(
                t.find(tuple),
                Some(*slot),
                "kept its slot through the growth"
            );
        }
        // Every free slot, old and new, takes an allocation.
        for port in 10..23 {
            let a = alloc(port);
            let slot = t.insert(a.clone()).expect("room after the growth");
            held.push((slot, a.tuple)).unwrap();
        }
        assert!(t.next_free().is_none(), "all 16 taken");
        assert_eq!(t.len(), 16);
        for (slot, tuple) in &held {
            assert_eq!(t.find(tuple), Some(*slot));
        }
        // Shortening is no growth: nothing changes.
        assert_eq!(t.grow(|_| {}), 16);
    }
}
