//! [`LogReader`]: concurrent, zero-copy reads by Raft index, offset, time and content id.
//!
//! Every returned [`Bytes`] is a slice of a segment's mapping (`Bytes::from_owner`), never a
//! copy; it keeps the mapping alive after the segment is rolled, purged or deleted.
//!
//! Reads by offset return one `Bytes` per batch ([`OffsetRead::batches`]): on disk each
//! batch is preceded by its entry frame header and control entries sit between batches, so
//! consecutive batches are not contiguous. A response writer sends them with one vectored
//! write; no batch byte is copied.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use steme_protocol::AssertionId;

use crate::checked::Walk;
use crate::damage::Damage;
use crate::error::{Error, Result};
use crate::format::EntryKind;
use crate::format::id_prefix;
use crate::segment::{FrameView, Segment};
use crate::segment::{IdIndex, load_or_build_ids, prefixes_between};
use crate::state::{Shared, lock};

/// Id-table entries [`LogReader::index_ids`] loads into the id map per call: about a
/// millisecond of work, so the apply loop is never held up long.
pub const LOAD_BUDGET: usize = 64 * 1024;

/// The id map's size ([`LogReader::id_map_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapStats {
    /// Ids of loaded segments in the map.
    pub entries: u64,
    /// Heap bytes it holds: 10.7–21.3 per entry.
    pub memory_bytes: u64,
    /// Sealed segments loaded completely (the oldest ones).
    pub loaded_segments: usize,
    pub sealed_segments: usize,
}

/// One entry read back by Raft index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    /// The record batch exactly as stored (base offset set), or the control bytes.
    pub payload: Bytes,
}

/// Batches read by offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetRead {
    /// Whole batches, in offset order, each a zero-copy slice of a segment.
    pub batches: Vec<Bytes>,
    /// The offset after the last batch returned (the next fetch position); the requested
    /// offset when nothing was returned.
    pub next_offset: u64,
    /// Sum of the batch lengths.
    pub bytes: u64,
}

/// A cloneable, thread-safe reader of a [`crate::Log`].
#[derive(Clone)]
pub struct LogReader {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl LogReader {
    /// First Raft index held (the log start index).
    pub fn first_index(&self) -> u64 {
        self.shared.read().start_index()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.shared.read().last_index()
    }

    pub fn next_index(&self) -> u64 {
        self.shared.read().next_index()
    }

    pub fn log_start_offset(&self) -> u64 {
        self.shared.read().start_offset()
    }

    pub fn log_end_offset(&self) -> u64 {
        self.shared.read().end_offset()
    }

    /// Bytes of log data on disk (every segment's logical size, headers included).
    pub fn size_bytes(&self) -> u64 {
        self.shared
            .read()
            .segments
            .iter()
            .map(|s| s.summary.size)
            .sum()
    }

    /// The last index known durable.
    pub fn durable_index(&self) -> Option<u64> {
        self.shared.index_before(self.shared.durable_next())
    }

    /// Term of the entry at `index`, if the log holds it.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        let st = self.shared.read();
        let seg = st.segment_for_index(index)?;
        seg.find_index(index).map(|f| f.header.term)
    }

    /// Entries with Raft indexes in `range`, clamped to the end of the log, each checked
    /// (see `checked`). A range that starts below the log start is an error (those
    /// entries were purged); one that reaches a damaged range is [`Error::Damaged`].
    pub fn read_entries(&self, range: Range<u64>) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.walk_entries(range, |seg, f| {
            out.push(Entry {
                index: f.header.index,
                term: f.header.term,
                kind: f.header.kind,
                payload: seg.data.slice(f.payload()),
            })
        })?;
        Ok(out)
    }

    /// The entries in `range` as their stored frames (header and payload), each checked:
    /// what a replica repairing this range writes in place of its damaged bytes. Stops
    /// before the frame that would pass `max_bytes` (the first is returned whatever its
    /// size), so a caller reads a long range in pieces.
    pub fn read_frames(&self, range: Range<u64>, max_bytes: u64) -> Result<Vec<Bytes>> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut end = range.end;
        // Frames are small next to a budget in MiB: find where the budget runs out by
        // walking headers first, then read exactly that range checked.
        {
            let st = self.shared.read();
            let mut index = range.start;
            while index < end {
                let Some(seg) = st.segment_for_index(index) else {
                    break;
                };
                let Some(f) = seg.find_index(index) else {
                    break;
                };
                let mut stop = false;
                for f in seg.frames_from(f.pos) {
                    let len = (f.next() - f.pos) as u64;
                    if index >= end || (index > range.start && bytes + len > max_bytes) {
                        stop = true;
                        break;
                    }
                    bytes += len;
                    index += 1;
                }
                if stop || index <= seg.summary.last_index {
                    break;
                }
            }
            end = end.min(index.max(range.start + 1));
        }
        self.walk_entries(range.start..end, |seg, f| {
            out.push(seg.data.slice(f.pos..f.next()))
        })?;
        Ok(out)
    }

    fn walk_entries(
        &self,
        range: Range<u64>,
        mut each: impl FnMut(&Segment, &FrameView),
    ) -> Result<()> {
        let st = self.shared.read();
        let (first, next) = (st.start_index(), st.next_index());
        let end = range.end.min(next);
        if range.start >= end {
            return Ok(());
        }
        if range.start < first {
            return Err(Error::IndexOutOfRange {
                index: range.start,
                first,
                next,
            });
        }
        if let Some(d) = self.shared.damage().first_from_index(range.start)
            && d.indexes.start < end
        {
            return Err(self.damage_error(d.clone()));
        }
        let mut index = range.start;
        let mut found = None;
        'segments: while index < end {
            let seg =
                st.segment_for_index(index)
                    .ok_or(Error::IndexOutOfRange { index, first, next })?;
            for step in Walk::at_index(seg, index) {
                match step {
                    Err(d) => {
                        found = Some(d);
                        break 'segments;
                    }
                    Ok(f) if f.header.index < index => {}
                    Ok(f) => {
                        each(seg, &f);
                        index += 1;
                        if index >= end {
                            break 'segments;
                        }
                    }
                }
            }
            if index <= seg.summary.last_index {
                break;
            }
        }
        drop(st);
        if let Some(d) = found {
            return Err(self.register(d));
        }
        if index < end {
            return Err(Error::IndexOutOfRange { index, first, next });
        }
        Ok(())
    }

    /// Whole batches starting with the one that holds `offset`, in order, until adding the
    /// next would pass `max_bytes` (the first batch is returned whatever its size) or end
    /// above `upper_bound` (exclusive; the high watermark). Control entries are skipped.
    /// Every batch is checked first; the batches before a damaged range are returned, and
    /// a read that starts in one is [`Error::Damaged`].
    pub fn read_from_offset(
        &self,
        offset: u64,
        max_bytes: u64,
        upper_bound: u64,
    ) -> Result<OffsetRead> {
        let st = self.shared.read();
        let (start, end) = (st.start_offset(), st.end_offset());
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange { offset, start, end });
        }
        let mut out = OffsetRead {
            next_offset: offset,
            ..OffsetRead::default()
        };
        let mut limit = upper_bound.min(end);
        if offset >= limit {
            return Ok(out);
        }
        if let Some(d) = self.shared.damage().first_from_offset(offset) {
            if d.offsets.start <= offset {
                return Err(self.damage_error(d.clone()));
            }
            limit = limit.min(d.offsets.start);
        }
        let Some(first) = st.segment_for_offset(offset) else {
            return Ok(out);
        };
        let mut found = None;
        let mut stopped = false;
        'segments: for (i, seg) in st.segments.iter().enumerate().skip(first) {
            let walk = if i == first {
                Walk::at_offset(seg, offset)
            } else {
                Walk::at_offset(seg, seg.base_offset())
            };
            for step in walk {
                let f = match step {
                    Ok(f) => f,
                    Err(d) => {
                        found = Some(d);
                        break 'segments;
                    }
                };
                let Some(b) = f.batch else { continue };
                if b.end_offset() <= offset {
                    continue;
                }
                let len = u64::from(f.header.payload_len);
                if b.end_offset() > limit
                    || (!out.batches.is_empty() && out.bytes + len > max_bytes)
                {
                    stopped = true;
                    break 'segments;
                }
                out.batches.push(seg.data.slice(f.payload()));
                out.bytes += len;
                out.next_offset = b.end_offset();
            }
        }
        drop(st);
        match found {
            Some(d) if out.batches.is_empty() => Err(self.register(d)),
            Some(d) => {
                // Serve what came before it; the next read starts in it and fails.
                self.register(d);
                Ok(out)
            }
            None if out.batches.is_empty() && !stopped => Err(Error::Corrupt {
                path: self.shared.dir.clone(),
                position: 0,
                reason: format!("no batch holds offset {offset}, below the end {limit}"),
            }),
            None => Ok(out),
        }
    }

    /// Every damaged range known (found by reads, scrubs or recovery, not yet repaired).
    pub fn damaged(&self) -> Vec<Damage> {
        self.shared.damage().ranges.clone()
    }

    fn damage_error(&self, d: Damage) -> Error {
        Error::Damaged {
            dir: self.shared.dir.clone(),
            damage: Box::new(d),
        }
    }

    /// Records newly found damage (see [`Shared::register`]) and returns it as an error.
    fn register(&self, d: Damage) -> Error {
        self.shared.register(d.clone());
        self.damage_error(d)
    }

    /// The first offset whose record HLC is at or after `hlc` (by the running maximum, so
    /// "at or after time T" even if a batch were out of order), or `None` if no record
    /// reaches it.
    pub fn offset_for_time(&self, hlc: u64) -> Option<u64> {
        let st = self.shared.read();
        st.segments
            .iter()
            .find(|s| s.has_records() && s.summary.max_hlc >= hlc)
            .and_then(|s| s.find_time(hlc))
    }

    /// Brings the active segment's id index up to the log end, hashing the new records
    /// without holding any lock the writer needs (see the crate docs), and loads up to
    /// [`LOAD_BUDGET`] more entries of sealed segments into the id map (see `crate::idmap`).
    /// The apply loop calls this after each applied run. Returns how many entries it
    /// indexed or loaded.
    pub fn index_ids(&self) -> usize {
        self.index_active_ids() + self.load_sealed_ids(LOAD_BUDGET)
    }

    /// Loads up to `budget` entries of sealed segments' id tables into the id map, oldest
    /// segment first. A table missing its `.ids` file is built here, hashing outside every
    /// lock; entries are inserted under the map's lock only, so appends never wait.
    fn load_sealed_ids(&self, mut budget: usize) -> usize {
        let mut n = 0;
        while budget > 0 {
            let (next, build) = {
                let st = self.shared.read();
                let mut map = lock(&self.shared.ids);
                map.reconcile(&st);
                let Some(next) = map.next_load(&st) else {
                    break;
                };
                let seg = &st.segments[next.position];
                let build = next.cell.get().is_none().then(|| {
                    (
                        seg.dir.clone(),
                        seg.base_offset(),
                        seg.summary.fingerprint(),
                        seg.data.slice(..seg.summary.size as usize),
                        seg.holes.clone(),
                    )
                });
                (next, build)
            };
            let table = next.cell.get_or_init(|| {
                let (dir, base, end, used, holes) = build.expect("not built: its inputs");
                load_or_build_ids(&dir, base, end, &used, &holes)
            });
            let k = lock(&self.shared.ids).load_chunk(&next, table, budget);
            if k == 0 {
                break;
            }
            budget -= k;
            n += k;
        }
        n
    }

    fn index_active_ids(&self) -> usize {
        let (ids, data, size, base, from, generation, holes) = {
            let st = self.shared.read();
            let seg = st.active();
            let IdIndex::Active(ids) = &seg.ids else {
                return 0;
            };
            let g = lock(ids);
            (
                ids.clone(),
                seg.data.clone(),
                seg.summary.size as usize,
                seg.base_offset(),
                g.indexed_to,
                g.generation,
                seg.holes.clone(),
            )
        };
        if from >= size {
            return 0;
        }
        // Bytes below the published end only change by truncation, which bumps the
        // generation: then this work is dropped.
        let mut out = Vec::new();
        prefixes_between(&data[..size.min(data.len())], from, base, &holes, &mut out);
        let st = self.shared.read();
        let IdIndex::Active(now) = &st.active().ids else {
            return 0;
        };
        if !Arc::ptr_eq(now, &ids) {
            return 0; // rolled meanwhile; the roll indexed it
        }
        let mut g = lock(&ids);
        if g.generation != generation || g.indexed_to != from {
            return 0;
        }
        let n = out.len();
        for (p, rel) in out {
            g.ids.insert(p, rel);
        }
        g.indexed_to = size;
        n
    }

    /// What the id map holds (see `crate::idmap`).
    pub fn id_map_stats(&self) -> IdMapStats {
        let st = self.shared.read();
        let mut map = lock(&self.shared.ids);
        map.reconcile(&st);
        IdMapStats {
            entries: map.live() as u64,
            memory_bytes: map.memory_bytes() as u64,
            loaded_segments: map.complete_len(),
            sealed_segments: st.segments.len() - 1,
        }
    }

    /// The offset of the first record in the retained log whose content id is `id`. Exact:
    /// candidates are confirmed by hashing the stored record.
    ///
    /// Costs the same for any number of segments once the sealed ones are in the id map:
    /// one probe of the map, one of the active segment's, and a search of each segment the
    /// map names (normally none). Segments not yet loaded are searched one by one.
    pub fn lookup_id(&self, id: &AssertionId) -> Option<u64> {
        self.index_active_ids();
        let prefix = id_prefix(id.as_bytes());
        let st = self.shared.read();
        let sealed = st.segments.len() - 1;
        // Loaded segments the map names; rarely more than one.
        let mut named = Vec::new();
        let complete = {
            let mut map = lock(&self.shared.ids);
            map.reconcile(&st);
            let complete = map.complete_len();
            map.candidates(prefix, |pos| {
                if pos < complete {
                    named.push(pos)
                }
            });
            complete
        };
        named.sort_unstable();
        named.dedup();
        let mut candidates = Vec::new();
        let positions = named.into_iter().chain(complete..=sealed);
        for pos in positions {
            let seg = &st.segments[pos];
            candidates.clear();
            seg.id_candidates(id.as_bytes(), &mut candidates);
            for &offset in &candidates {
                if seg
                    .assertion_at(offset)
                    .is_some_and(|a| AssertionId::of(a) == *id)
                {
                    return Some(offset);
                }
            }
        }
        None
    }
}
