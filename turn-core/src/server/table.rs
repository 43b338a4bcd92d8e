//! The allocation table: slots in caller-provided storage, an open-addressing index
//! from 5-tuple to slot (also in caller storage), and an intrusive free list, so
//! lookups and inserts are O(1) and nothing is allocated.

use core::hash::{Hash, Hasher};

use super::allocation::Allocation;
use crate::FiveTuple;

/// One slot of allocation storage. Create storage with [`Slot::EMPTY`], for example
/// `[Slot::EMPTY; 16]` on a board or `vec![Slot::EMPTY; 10_000]` on a host.
#[derive(Debug, Clone)]
pub struct Slot<const P: usize, const C: usize> {
    generation: u32,
    next_free: u32,
    pub(crate) alloc: Option<Allocation<P, C>>,
}

impl<const P: usize, const C: usize> Slot<P, C> {
    /// An empty slot.
    pub const EMPTY: Slot<P, C> = Slot {
        generation: 0,
        next_free: u32::MAX,
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
pub(crate) struct Table<S, I, const P: usize, const C: usize> {
    slots: S,
    index: I,
    free_head: u32,
    live: usize,
    tombstones: usize,
    seed: u64,
}

impl<S, I, const P: usize, const C: usize> Table<S, I, P, C>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
    I: AsRef<[u32]> + AsMut<[u32]>,
{
    /// Wraps the storage; `index` should have at least twice as many entries as
    /// `slots` has slots.
    pub(crate) fn new(mut slots: S, mut index: I, seed: u64) -> Self {
        let n = slots.as_ref().len();
        for (i, s) in slots.as_mut().iter_mut().enumerate() {
            s.alloc = None;
            s.next_free = if i + 1 < n { (i + 1) as u32 } else { NONE };
        }
        index.as_mut().fill(EMPTY);
        Table {
            slots,
            index,
            free_head: if n > 0 { 0 } else { NONE },
            live: 0,
            tombstones: 0,
            seed,
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
        let index = self.index.as_ref();
        let len = index.len();
        if len == 0 {
            return None;
        }
        let mut pos = self.hash(t) % len;
        for _ in 0..len {
            match index.get(pos).copied() {
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
        (self.live + self.tombstones + 1) * 2 <= self.index.as_ref().len()
    }

    /// Stores `a` in the slot [`Self::next_free`] returned. Returns the slot.
    pub(crate) fn insert(&mut self, a: Allocation<P, C>) -> Option<usize> {
        let slot = self.next_free()?;
        let mut pos = self.hash(&a.tuple) % self.index.as_ref().len();
        let entry = loop {
            match self.index.as_ref().get(pos).copied() {
                Some(EMPTY) => break pos,
                Some(TOMBSTONE) => {
                    self.tombstones -= 1;
                    break pos;
                }
                Some(_) => pos = (pos + 1) % self.index.as_ref().len(),
                None => return None,
            }
        };
        let s = self.slots.as_mut().get_mut(slot)?;
        self.free_head = s.next_free;
        s.next_free = NONE;
        s.alloc = Some(a);
        if let Some(e) = self.index.as_mut().get_mut(entry) {
            *e = slot as u32 + 2;
        }
        self.live += 1;
        Some(slot)
    }

    /// Removes and returns the allocation in `slot`.
    pub(crate) fn remove(&mut self, slot: usize) -> Option<Allocation<P, C>> {
        let tuple = self.get(slot)?.tuple;
        let len = self.index.as_ref().len();
        let mut pos = self.hash(&tuple) % len;
        for _ in 0..len {
            match self.index.as_ref().get(pos).copied() {
                Some(EMPTY) | None => break,
                Some(e) if e == slot as u32 + 2 => {
                    if let Some(e) = self.index.as_mut().get_mut(pos) {
                        *e = TOMBSTONE;
                    }
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
        if self.tombstones * 4 > len {
            self.rebuild_index();
        }
        a
    }

    /// Re-inserts every live allocation, clearing tombstones.
    fn rebuild_index(&mut self) {
        self.index.as_mut().fill(EMPTY);
        self.tombstones = 0;
        let len = self.index.as_ref().len();
        for slot in 0..self.slots.as_ref().len() {
            let Some(t) = self.get(slot).map(|a| a.tuple) else {
                continue;
            };
            let mut pos = self.hash(&t) % len;
            while self.index.as_ref().get(pos).is_some_and(|e| *e != EMPTY) {
                pos = (pos + 1) % len;
            }
            if let Some(e) = self.index.as_mut().get_mut(pos) {
                *e = slot as u32 + 2;
            }
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
