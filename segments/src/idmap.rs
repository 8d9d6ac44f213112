//! The content ids of every sealed segment in one in-memory table, so that an id lookup
//! costs the same whether the log holds one segment or fifty thousand.
//!
//! Each sealed segment still has its `.ids` file (Bloom filter and sorted prefixes), and the
//! active segment its hash map. Probing every segment's file for every record made dedup
//! cost grow with the retained log: after 531 segments a produce ran at 0.15× a fresh
//! topic's rate. This table answers "which segments may hold an id with this prefix?" in
//! one probe sequence; only those segments (normally none) are then searched and the
//! record confirmed by hashing it, as before. It may say "maybe", never "no" wrongly.
//!
//! # Layout: 8 bytes a slot, 10.7–21.3 bytes a record
//! Open addressing with linear probing over `u64` slots. A slot holds the id's 8-byte prefix
//! with its low 24 bits replaced by the segment's *ordinal* (0 marks an empty slot). The
//! other 40 bits, the tag, choose the home slot (so a rebuild can place a slot without the
//! full prefix), and a slot matches when its tag is the id's: a stranger matches with
//! probability 2⁻⁴⁰ per slot compared, and costs one wasted search of one segment. The table grows at ¾ full, so it is between ⅜ and ¾
//! full: 10.7 to 21.3 bytes per retained record ([`IdMap::memory_bytes`]).
//!
//! # Loading, not rebuilding, at start
//! Opening a log loads nothing, so a restart costs the same for any retained size. Sealed
//! segments are loaded oldest first, a bounded number of entries at a time, by
//! [`crate::LogReader::index_ids`] (the apply loop's call). Until a segment is loaded,
//! lookups search it directly, as they always did: loading changes the cost of a lookup,
//! never its answer.
//!
//! # Staying in step with the segments
//! Loaded segments are always a prefix of the sealed segments, in order, each named by its
//! id cell (`Arc` identity: a segment whose id table is replaced — truncated back into the
//! active segment, or repaired — has a new cell). Rolls only add segments at the end. Every
//! other change (retention, truncation, reset, repair) bumps [`State::ids_epoch`], and the
//! next [`IdMap::reconcile`] retires whatever no longer matches. Retired slots stay until
//! they are half of the table, then the table is rebuilt without them.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use crate::format::IdTable;
use crate::segment::{IdIndex, Segment};
use crate::state::State;

const ORD_BITS: u32 = 24;
const ORD_MASK: u64 = (1 << ORD_BITS) - 1;
const TAG_MASK: u64 = !ORD_MASK;
const MIN_SLOTS: usize = 1024;

/// One sealed segment in the table.
struct Loaded {
    ord: u32,
    cell: Arc<OnceLock<IdTable>>,
    /// Entries of its table inserted so far (all of them once complete).
    done: u64,
    total: u64,
    /// Slots it occupies (fewer than `done` if two of its entries share a prefix).
    slots: usize,
}

impl Loaded {
    fn complete(&self) -> bool {
        self.done >= self.total
    }
}

pub(crate) struct IdMap {
    slots: Vec<u64>,
    /// Occupied slots, live or retired.
    used: usize,
    /// Slots of retired segments.
    dead: usize,
    /// The loaded segments: the first `loaded.len()` sealed segments, in order; only the
    /// last may be incomplete. Ordinals ascend.
    loaded: VecDeque<Loaded>,
    next_ord: u32,
    /// The [`State::ids_epoch`] this map was last reconciled with.
    epoch: u64,
}

/// The sealed segment the loader works on next.
pub(crate) struct NextLoad {
    pub position: usize,
    pub cell: Arc<OnceLock<IdTable>>,
    /// The map's epoch when it was chosen: a chunk for an older epoch is dropped.
    pub epoch: u64,
}

fn sealed_cell(seg: &Segment) -> Option<&Arc<OnceLock<IdTable>>> {
    match &seg.ids {
        IdIndex::Sealed(cell) => Some(cell),
        IdIndex::Active(_) => None,
    }
}

impl Default for IdMap {
    fn default() -> Self {
        IdMap {
            slots: vec![0; MIN_SLOTS],
            used: 0,
            dead: 0,
            loaded: VecDeque::new(),
            next_ord: 1,
            epoch: 0,
        }
    }
}

impl IdMap {
    /// Heap bytes held by the table and its bookkeeping.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * 8 + self.loaded.len() * std::mem::size_of::<Loaded>()
    }

    /// Live entries (records of loaded segments, counting a shared prefix once).
    pub fn live(&self) -> usize {
        self.used - self.dead
    }

    /// How many leading sealed segments the table covers completely: lookups need not
    /// search them unless it names them.
    pub fn complete_len(&self) -> usize {
        self.loaded.len() - usize::from(self.loaded.back().is_some_and(|l| !l.complete()))
    }

    /// Brings the map in step with the segments after a change other than a roll.
    pub fn reconcile(&mut self, st: &State) {
        if self.epoch == st.ids_epoch {
            return;
        }
        self.epoch = st.ids_epoch;
        let sealed = &st.segments[..st.segments.len() - 1];
        // Retention and purges remove the oldest segments.
        let first = sealed.first().and_then(sealed_cell);
        while let Some(front) = self.loaded.front()
            && !first.is_some_and(|c| Arc::ptr_eq(c, &front.cell))
        {
            let gone = self.loaded.pop_front().expect("front");
            self.dead += gone.slots;
        }
        // Truncation, resets and repairs change or remove the newest, or any one.
        let keep = self
            .loaded
            .iter()
            .zip(sealed)
            .take_while(|(l, s)| sealed_cell(s).is_some_and(|c| Arc::ptr_eq(c, &l.cell)))
            .count();
        for gone in self.loaded.drain(keep..) {
            self.dead += gone.slots;
        }
        if self.dead * 2 > self.used {
            self.rebuild(0);
        }
    }

    /// The next sealed segment to load, if any is not complete.
    pub fn next_load(&self, st: &State) -> Option<NextLoad> {
        debug_assert_eq!(self.epoch, st.ids_epoch, "reconcile first");
        let position = self.complete_len();
        let cell = sealed_cell(st.segments[..st.segments.len() - 1].get(position)?)?;
        Some(NextLoad {
            position,
            cell: cell.clone(),
            epoch: self.epoch,
        })
    }

    /// Inserts up to `budget` more entries of the segment `next` named; returns how many
    /// (0 if the map changed since `next` was chosen, or the segment is complete).
    pub fn load_chunk(&mut self, next: &NextLoad, table: &IdTable, budget: usize) -> usize {
        if next.epoch != self.epoch || self.complete_len() != next.position {
            return 0;
        }
        if self.loaded.len() == next.position {
            if self.next_ord > ORD_MASK as u32 {
                // Ordinals are spent (16.7M segments loaded by this process): start over.
                *self = IdMap {
                    epoch: self.epoch,
                    ..IdMap::default()
                };
                return 0;
            }
            self.loaded.push_back(Loaded {
                ord: self.next_ord,
                cell: next.cell.clone(),
                done: 0,
                total: table.len(),
                slots: 0,
            });
            self.next_ord += 1;
        }
        let back = self.loaded.back().expect("pushed");
        if !Arc::ptr_eq(&back.cell, &next.cell) {
            return 0;
        }
        let (ord, from) = (back.ord, back.done);
        let n = (back.total - from).min(budget as u64);
        let mut added = 0;
        for (prefix, _) in table.entries().skip(from as usize).take(n as usize) {
            added += usize::from(self.insert(prefix, ord));
        }
        let back = self.loaded.back_mut().expect("pushed");
        back.done += n;
        back.slots += added;
        n as usize
    }

    /// Positions (in the segment list) of loaded segments that may hold an id with this
    /// prefix, in no particular order, possibly repeated.
    pub fn candidates(&self, prefix: u64, mut each: impl FnMut(usize)) {
        let mask = self.slots.len() - 1;
        let mut i = home(prefix) & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return;
            }
            if s & TAG_MASK == prefix & TAG_MASK {
                let ord = (s & ORD_MASK) as u32;
                if let Ok(pos) = self.loaded.binary_search_by_key(&ord, |l| l.ord) {
                    each(pos);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds a slot unless the same one is there; true if added.
    fn insert(&mut self, prefix: u64, ord: u32) -> bool {
        if (self.used + 1) * 4 > self.slots.len() * 3 {
            self.rebuild(self.slots.len() * 2);
        }
        let v = (prefix & TAG_MASK) | u64::from(ord);
        let added = place(&mut self.slots, v);
        self.used += usize::from(added);
        added
    }

    /// A fresh table of at least `min` slots, under ¾ full, holding only the live entries.
    fn rebuild(&mut self, min: usize) {
        let live = self.live();
        let mut n = min.max(MIN_SLOTS).next_power_of_two();
        while (live + 1) * 4 > n * 3 {
            n *= 2;
        }
        let mut slots = vec![0u64; n];
        let mut used = 0;
        for &s in &self.slots {
            if s == 0 {
                continue;
            }
            let ord = (s & ORD_MASK) as u32;
            if self.loaded.binary_search_by_key(&ord, |l| l.ord).is_err() {
                continue;
            }
            used += usize::from(place(&mut slots, s));
        }
        self.slots = slots;
        self.used = used;
        self.dead = 0;
    }
}

/// Where the run of a prefix (or a slot, which keeps the same bits) starts: from the tag,
/// the bits a slot keeps, so a rebuild can place a slot without its full prefix.
fn home(prefix_or_slot: u64) -> usize {
    (prefix_or_slot >> ORD_BITS) as usize
}

/// Puts `v` in the first free slot of its run, unless it is already there.
fn place(slots: &mut [u64], v: u64) -> bool {
    let mask = slots.len() - 1;
    let mut i = home(v) & mask;
    loop {
        match slots[i] {
            0 => {
                slots[i] = v;
                return true;
            }
            s if s == v => return false,
            _ => i = (i + 1) & mask,
        }
    }
}
