//! Truncation (Raft overwriting an uncommitted tail), purge (retention and snapshots),
//! reset (a snapshot beyond the log) and the retention plan.

use std::fs::{self, File};
use std::sync::Arc;

use super::{Log, PurgePlan};
use crate::error::{Error, Result};
use crate::files::{create_segment, make_active, remove_segment_files, zero_range};
use crate::format::{
    Checkpoint, DurablePoint, SEGMENT_HEADER_LEN, SPARSE_ENTRY_LEN, SegmentHeader, SparseEntry,
};
use crate::segment::{IdIndex, Segment, SparseIndex, ids_path, index_path, segment_path};
use crate::state::{SyncTarget, lock, now_ms};

impl Log {
    /// Removes every entry after `index` (the uncommitted tail a new leader overwrites).
    /// Same as [`Log::truncate_from`]`(index + 1)`.
    pub fn truncate_after(&mut self, index: u64) -> Result<()> {
        match index.checked_add(1) {
            Some(first_removed) => self.truncate_from(first_removed),
            None => Ok(()),
        }
    }

    /// Removes every entry at `first_removed` and after; `first_removed` may be
    /// `first_index()` to empty the log. The durable index drops below `first_removed`.
    ///
    /// Bytes of the removed entries are zeroed in place (files never shrink under a
    /// mapping), so a reader still holding `Bytes` of a removed entry sees them change.
    /// Raft only truncates entries that were never committed, which consumers (reading
    /// below the high watermark) never see.
    pub fn truncate_from(&mut self, first_removed: u64) -> Result<()> {
        self.shared.check_writable()?;
        let (start, next) = {
            let st = self.shared.read();
            (st.start_index(), st.next_index())
        };
        if first_removed >= next {
            return Ok(());
        }
        if first_removed < start {
            return Err(Error::IndexOutOfRange {
                index: first_removed,
                first: start,
                next,
            });
        }
        let cut_index = first_removed;
        // Segment k keeps entries up to `index`; later segments go.
        let (k, cut_pos, old_size) = {
            let st = self.shared.read();
            let k = st
                .segments
                .partition_point(|s| s.header.base_index <= cut_index)
                - 1;
            let seg = &st.segments[k];
            let pos = if seg.header.base_index == cut_index {
                SEGMENT_HEADER_LEN as u64
            } else {
                seg.find_index(cut_index)
                    .map(|f| f.pos as u64)
                    .ok_or_else(|| Error::Corrupt {
                        path: seg.log_path(),
                        position: 0,
                        reason: format!("index {cut_index} not found in its segment"),
                    })?
            };
            (k, pos, seg.summary.size)
        };
        let (k_base, later) = {
            let st = self.shared.read();
            let later: Vec<u64> = st.segments[k + 1..]
                .iter()
                .map(|s| s.base_offset())
                .collect();
            (st.segments[k].base_offset(), later)
        };
        // The checkpoint must not vouch for bytes about to change.
        if let Some(cp) = self.meta.recovery
            && (cp.segment > k_base || (cp.segment == k_base && cp.position > cut_pos))
        {
            self.meta.recovery = Some(Checkpoint {
                segment: k_base,
                position: SEGMENT_HEADER_LEN as u64,
            });
            self.write_meta()?;
        }
        let dir = self.shared.dir.clone();
        let _ = fs::remove_file(index_path(&dir, k_base));
        let _ = fs::remove_file(ids_path(&dir, k_base));
        // Make segment k the active one.
        let is_active = later.is_empty();
        let file = if is_active {
            self.active_file.clone()
        } else {
            let path = segment_path(&dir, k_base);
            Arc::new(
                File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(Error::io("open", &path))?,
            )
        };
        let zero_to = if is_active { self.written_to } else { old_size };
        {
            let mut st = self.shared.write();
            st.segments.truncate(k + 1);
            st.segments_changed();
            let seg = st.active_mut();
            make_active(seg);
            truncate_segment(seg, cut_pos);
            st.recompute_last_term();
        }
        {
            let mut s = lock(&self.shared.sync);
            s.epoch += 1;
            s.appended_next = cut_index;
            s.active = SyncTarget {
                file: file.clone(),
                path: segment_path(&dir, k_base),
            };
            let mut d = lock(&self.shared.durable);
            d.next = d.next.min(cut_index);
        }
        self.active_file = file;
        self.allocated_to = 0;
        self.written_to = cut_pos;
        self.lower_durable_point(&later)?;
        let path = segment_path(&dir, k_base);
        if let Err(e) = zero_range(self.shared.io.as_ref(), &self.active_file, cut_pos, zero_to) {
            self.shared.poison(format!(
                "zeroing truncated tail of {} failed: {e}",
                path.display()
            ));
            return Err(Error::io("write", path)(e));
        }
        for base in &later {
            remove_segment_files(&dir, *base);
        }
        // The removals (later segments, stale index files of segment k) must be durable
        // before new entries are: a resurrected file would describe entries that no
        // longer exist.
        {
            if let Err(e) = self.shared.io.sync_dir(&dir) {
                self.shared
                    .poison(format!("fsync of {} failed: {e}", dir.display()));
                return Err(Error::io("fsync directory", &dir)(e));
            }
        }
        Ok(())
    }

    /// After a truncation: if the recorded durable point lies past the new end, records
    /// the new end instead — in the active segment and in every segment about to be
    /// deleted — and syncs them before any byte is zeroed or file removed. Otherwise a
    /// crash midway would leave a slot naming entries that no longer exist, and the next
    /// open would take their absence for damage.
    fn lower_durable_point(&mut self, later: &[u64]) -> Result<()> {
        let end = self.shared.read().end_point();
        let lower = {
            let mut d = lock(&self.shared.durable);
            let past = |p: Option<DurablePoint>| {
                p.is_some_and(|p| (p.segment, p.position) > (end.segment, end.position))
            };
            if past(d.point) {
                d.point = Some(end);
            }
            let lower = past(d.recorded);
            if lower {
                d.recorded = Some(end);
            }
            lower
        };
        if !lower {
            return Ok(());
        }
        let dir = self.shared.dir.clone();
        let mut targets = vec![SyncTarget {
            file: self.active_file.clone(),
            path: segment_path(&dir, end.segment),
        }];
        for &base in later {
            let path = segment_path(&dir, base);
            if let Ok(file) = File::options().read(true).write(true).open(&path) {
                targets.push(SyncTarget {
                    file: Arc::new(file),
                    path,
                });
            }
        }
        for t in &targets {
            self.shared.write_slot(t, &end)?;
            if let Err(e) = self.shared.io.sync_data(&t.file) {
                self.shared
                    .poison(format!("fdatasync of {} failed: {e}", t.path.display()));
                return Err(Error::io("fdatasync", &t.path)(e));
            }
        }
        Ok(())
    }

    /// Deletes every sealed segment whose entries are all at or below `index`, advancing
    /// the log start. If `index` is the last entry, the whole log goes and it restarts
    /// empty at `index + 1` and the current end offset. Indexes past the end are refused:
    /// use [`Log::reset`] after installing a snapshot from a leader.
    pub fn purge_upto(&mut self, index: u64) -> Result<()> {
        self.shared.check_writable()?;
        let (last, end, start) = {
            let st = self.shared.read();
            (st.last_index(), st.end_offset(), st.start_index())
        };
        match last {
            None if index < start => return Ok(()),
            Some(last) if index == last => return self.reset(last + 1, end),
            Some(last) if index > last => {
                return Err(Error::PurgeBeyondEnd {
                    index,
                    last: Some(last),
                });
            }
            None => return Err(Error::PurgeBeyondEnd { index, last: None }),
            Some(_) => {}
        }
        let victims = {
            let st = self.shared.read();
            let sealed = &st.segments[..st.segments.len() - 1];
            sealed
                .iter()
                .take_while(|s| s.summary.last_index <= index && s.holes.is_empty())
                .count()
        };
        self.drop_oldest(victims)
    }

    fn drop_oldest(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (bases, new_start) = {
            let st = self.shared.read();
            let bases: Vec<u64> = st.segments[..n].iter().map(|s| s.base_offset()).collect();
            let first = &st.segments[n];
            (bases, (first.header.base_index, first.base_offset()))
        };
        self.meta.log_start_index = new_start.0;
        self.meta.log_start_offset = new_start.1;
        if let Some(cp) = self.meta.recovery
            && cp.segment < new_start.1
        {
            self.meta.recovery = Some(Checkpoint {
                segment: new_start.1,
                position: SEGMENT_HEADER_LEN as u64,
            });
        }
        self.write_meta()?;
        {
            let mut st = self.shared.write();
            st.segments.drain(..n);
            st.segments_changed();
        }
        for base in bases {
            remove_segment_files(&self.shared.dir, base);
        }
        Ok(())
    }

    /// Drops the whole log and restarts it empty: the next append must carry
    /// `next_index`, and its records start at `next_offset`. For a follower that installs
    /// a snapshot beyond its log. The new start is recorded first, so a crash midway
    /// finishes the reset on the next open.
    pub fn reset(&mut self, next_index: u64, next_offset: u64) -> Result<()> {
        self.shared.check_writable()?;
        let dir = self.shared.dir.clone();
        self.meta.log_start_index = next_index;
        self.meta.log_start_offset = next_offset;
        self.meta.recovery = None;
        self.write_meta()?;
        let bases: Vec<u64> = self
            .shared
            .read()
            .segments
            .iter()
            .map(|s| s.base_offset())
            .collect();
        for base in bases {
            remove_segment_files(&dir, base);
        }
        let (seg, file) = create_segment(
            &dir,
            &self.cfg,
            self.shared.io.as_ref(),
            SegmentHeader {
                base_offset: next_offset,
                base_index: next_index,
                created_ms: now_ms(),
            },
        )?;
        let file = Arc::new(file);
        let path = seg.log_path();
        {
            let mut st = self.shared.write();
            st.segments = vec![seg];
            st.last_term = 0;
            st.segments_changed();
        }
        {
            let mut s = lock(&self.shared.sync);
            s.epoch += 1;
            s.pending.clear();
            s.appended_next = next_index;
            s.active = SyncTarget {
                file: file.clone(),
                path,
            };
            let mut d = lock(&self.shared.durable);
            d.next = next_index;
        }
        self.active_file = file;
        self.allocated_to = 0;
        self.written_to = SEGMENT_HEADER_LEN as u64;
        if let Err(e) = self.shared.io.sync_dir(&dir) {
            self.shared
                .poison(format!("fsync of {} failed: {e}", dir.display()));
            return Err(Error::io("fsync directory", &dir)(e));
        }
        self.checkpoint()
    }

    /// Changes the retention limits [`Log::retention_plan`] plans by from its next call (a
    /// topic's retention altered while the log is open). Deletes nothing by itself.
    pub fn set_retention(
        &mut self,
        retention_bytes: Option<u64>,
        retention_age: Option<std::time::Duration>,
    ) {
        self.cfg.retention_bytes = retention_bytes;
        self.cfg.retention_age = retention_age;
    }

    /// What retention would delete now (by `retention_bytes` and `retention_age`, whole
    /// sealed segments only, oldest first), without deleting anything.
    pub fn retention_plan(&self, now_ms: u64) -> Option<PurgePlan> {
        let st = self.shared.read();
        let sealed = &st.segments[..st.segments.len() - 1];
        let total: u64 = st.segments.iter().map(|s| s.summary.size).sum();
        let mut freed = 0u64;
        let mut n = 0usize;
        for s in sealed {
            if !s.holes.is_empty() {
                // Never delete damage before it is repaired (or knowingly skipped).
                break;
            }
            let too_big = self
                .cfg
                .retention_bytes
                .is_some_and(|max| total - freed > max);
            let too_old = self.cfg.retention_age.is_some_and(|age| {
                now_ms.saturating_sub(s.summary.last_append_ms) > age.as_millis() as u64
            });
            if !(too_big || too_old) {
                break;
            }
            freed += s.summary.size;
            n += 1;
        }
        (n > 0).then(|| PurgePlan {
            upto_index: st.segments[n - 1].summary.last_index,
            new_log_start_offset: st.segments[n].base_offset(),
            segments: n,
            bytes: freed,
        })
    }
}

impl Log {
    /// What deleting every whole sealed segment below `offset` would delete (a compacted
    /// log whose records before `offset` are superseded), without deleting anything. A
    /// segment with a damaged range, and every one after it, is kept.
    pub fn plan_below(&self, offset: u64) -> Option<PurgePlan> {
        let st = self.shared.read();
        let mut n = 0usize;
        let mut freed = 0u64;
        // Segment `n` may go when the one after it starts at or before `offset`.
        while n + 1 < st.segments.len()
            && st.segments[n + 1].base_offset() <= offset
            && st.segments[n].holes.is_empty()
        {
            freed += st.segments[n].summary.size;
            n += 1;
        }
        (n > 0).then(|| PurgePlan {
            upto_index: st.segments[n - 1].summary.last_index,
            new_log_start_offset: st.segments[n].base_offset(),
            segments: n,
            bytes: freed,
        })
    }
}

/// Cuts an active segment's summary and tables back to the frame boundary `cut`.
fn truncate_segment(seg: &mut Segment, cut: u64) {
    let mut end_offset = seg.base_offset();
    let mut max_hlc = 0;
    let mut last: Option<(u64, u64)> = None;
    let start = {
        let table = seg.sparse_table();
        let n = table.len() / SPARSE_ENTRY_LEN;
        let i = (0..n)
            .rev()
            .find(|&i| SparseEntry::at(table, i).position < cut);
        i.map(|i| SparseEntry::at(table, i))
    };
    let from = match start {
        Some(e) => {
            end_offset = e.offset;
            max_hlc = e.hlc_floor;
            e.position as usize
        }
        None => SEGMENT_HEADER_LEN,
    };
    for f in seg.frames_from(from) {
        if f.pos as u64 >= cut {
            break;
        }
        last = Some((f.header.index, f.header.term));
        if let Some(b) = f.batch {
            end_offset = b.end_offset();
            max_hlc = max_hlc.max(b.last_hlc());
        }
    }
    let s = &mut seg.summary;
    s.size = cut;
    s.end_offset = end_offset;
    s.max_hlc = max_hlc;
    match last {
        Some((index, term)) => {
            s.last_index = index;
            s.last_term = term;
        }
        None => {
            s.last_index = s.base_index.wrapping_sub(1);
            s.last_term = 0;
        }
    }
    if let SparseIndex::Active(table) = &mut seg.sparse {
        let keep = (0..table.len() / SPARSE_ENTRY_LEN)
            .take_while(|&i| SparseEntry::at(table, i).position < cut)
            .count();
        table.truncate(keep * SPARSE_ENTRY_LEN);
    }
    let rel_end = (end_offset - seg.base_offset()) as u32;
    if let IdIndex::Active(m) = &seg.ids {
        let mut g = lock(m);
        g.ids.truncate(rel_end);
        g.indexed_to = g.indexed_to.min(cut as usize);
        g.generation += 1;
    }
}
