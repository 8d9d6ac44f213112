//! Repair: a damaged range rewritten in place from a healthy replica's copy.
//!
//! Every replica stores an entry as the same bytes (D2: the frame header is made of the
//! index, term, kind and length; the batch is the leader's, with its base offset patched
//! identically everywhere), so the healthy copy of a range fits exactly where the damaged
//! bytes lie. The copy is checked as recovery checks a log — every frame's CRCs and batch,
//! indexes, terms and base offsets — and must match the range's indexes and offsets at both
//! ends, before a byte is written. It is then written, synced, and only then is the range
//! forgotten; a crash midway leaves it damaged (still failing its checks) and known.

use std::fs::File;
use std::sync::Arc;

use super::Log;
use crate::damage::{Damage, Skip};
use crate::error::{Error, Result};
use crate::files::write_file_atomically;
use crate::format::{FrameHeader, encode_index_file};
use crate::segment::{IdIndex, SparseIndex, ids_path, index_path, prefixes_between, segment_path};
use crate::state::lock;
use crate::sys::map_file;

impl Log {
    /// Replaces the damaged range that starts at Raft index `first_index` with `frames`,
    /// a healthy replica's stored frames for exactly its entries (see
    /// [`crate::LogReader::read_frames`]). Refused ([`Error::RepairRefused`]) unless they
    /// check out and fit; nothing is written then.
    pub fn repair(&mut self, first_index: u64, frames: &[u8]) -> Result<Damage> {
        self.shared.check_writable()?;
        let refuse = |reason: String| Error::RepairRefused {
            dir: self.shared.dir.clone(),
            reason,
        };
        let d = self
            .shared
            .damage()
            .ranges
            .iter()
            .find(|d| d.indexes.start == first_index)
            .cloned()
            .ok_or_else(|| refuse(format!("no damaged range starts at index {first_index}")))?;
        let term_before = self.shared.read().term_before(d.indexes.start);
        check_frames(&d, frames, term_before).map_err(refuse)?;
        let len = frames.len() as u64;
        let want = d.positions.end - d.positions.start;
        if len < want || (d.ends_at_frame && len != want) {
            return Err(refuse(format!(
                "the copy is {len} bytes, the damaged range {want}{}",
                if d.ends_at_frame { "" } else { " or more" }
            )));
        }
        let path = segment_path(&self.shared.dir, d.segment);
        let file = self.segment_file(d.segment)?;
        if let Err(e) = self
            .shared
            .io
            .write_at(&file, d.positions.start, &[frames])
            .and_then(|()| self.shared.io.sync_data(&file))
        {
            self.shared
                .poison(format!("repair of {} failed: {e}", path.display()));
            return Err(Error::io("repair", &path)(e));
        }
        let end = d.positions.start + len;
        {
            let mut st = self.shared.write();
            let active = st.active().base_offset() == d.segment;
            let seg = st
                .segments
                .iter_mut()
                .find(|s| s.base_offset() == d.segment)
                .ok_or_else(|| refuse("the damaged segment is gone".into()))?;
            if end > seg.data.len() as u64 {
                seg.data = map_file(&file).map_err(Error::io("map", &path))?;
            }
            seg.holes
                .retain(|h| !(d.positions.start <= h.start && h.end <= d.positions.end));
            seg.summary.size = seg.summary.size.max(end);
            // The records' times were unknown while damaged.
            let max_hlc = seg
                .frames_from(crate::format::SEGMENT_HEADER_LEN)
                .filter_map(|f| f.batch.map(|b| b.last_hlc()))
                .max();
            seg.summary.max_hlc = seg.summary.max_hlc.max(max_hlc.unwrap_or(0));
            // The id index skipped the damaged records: index them now.
            let mut ids = Vec::new();
            let used = &seg.data[..end as usize];
            prefixes_between(used, d.positions.start as usize, d.segment, &[], &mut ids);
            ids.retain(|&(_, rel)| d.segment + u64::from(rel) < d.offsets.end);
            match &seg.ids {
                IdIndex::Active(m) => {
                    let mut g = lock(m);
                    for (p, rel) in ids {
                        g.ids.insert(p, rel);
                    }
                }
                IdIndex::Sealed(_) => {
                    let _ = std::fs::remove_file(ids_path(&self.shared.dir, d.segment));
                    seg.ids = IdIndex::sealed();
                }
            }
            if !active && let SparseIndex::Sealed(_) = seg.sparse {
                // The summary may have grown; the sparse index is rebuilt from the log.
                let table = seg.rebuild_sparse();
                let bytes = encode_index_file(&table, &seg.summary);
                let _ = write_file_atomically(
                    self.shared.io.as_ref(),
                    &index_path(&self.shared.dir, d.segment),
                    &bytes,
                    true,
                );
                seg.sparse = SparseIndex::Sealed(std::sync::OnceLock::new());
            }
            st.segments_changed();
        }
        {
            let mut r = self.shared.damage();
            r.ranges.retain(|x| x.indexes.start != d.indexes.start);
            r.save(self.shared.io.as_ref(), &self.shared.dir)
                .map_err(Error::io("write damage file", &self.shared.dir))?;
        }
        Ok(d)
    }

    /// Records that the damaged range starting at Raft index `first_index` is given up
    /// (an operator's decision, once no replica has a healthy copy), with when and why,
    /// in the `damage` file before it returns. Nothing is deleted: the range stays in
    /// place, failing its reads with the skip named, and a repair still replaces it if a
    /// healthy copy turns up.
    pub fn record_skip(&mut self, first_index: u64, skip: Skip) -> Result<Damage> {
        self.shared.check_writable()?;
        let mut r = self.shared.damage();
        let before = r.clone();
        let d = r
            .ranges
            .iter_mut()
            .find(|d| d.indexes.start == first_index)
            .ok_or_else(|| Error::NoSuchDamage {
                dir: self.shared.dir.clone(),
                first_index,
            })?;
        d.skipped = Some(skip);
        let d = d.clone();
        if let Err(e) = r.save(self.shared.io.as_ref(), &self.shared.dir) {
            *r = before;
            return Err(Error::io("write damage file", &self.shared.dir)(e));
        }
        Ok(d)
    }

    /// The open file of segment `base`: the active one, or opened for writing.
    fn segment_file(&self, base: u64) -> Result<Arc<File>> {
        if self.shared.read().active().base_offset() == base {
            return Ok(self.active_file.clone());
        }
        let path = segment_path(&self.shared.dir, base);
        File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map(Arc::new)
            .map_err(Error::io("open", &path))
    }
}

/// Checks a copy of a damaged range's entries: intact frames, consecutive indexes covering
/// exactly the range, terms that never decrease, batches that chain from the range's first
/// offset to its last.
fn check_frames(d: &Damage, mut b: &[u8], term_before: u64) -> Result<(), String> {
    let (mut index, mut offset, mut term) = (d.indexes.start, d.offsets.start, term_before);
    while !b.is_empty() {
        let (h, batch) = FrameHeader::check(b).map_err(|e| format!("entry {index}: {e}"))?;
        if h.index != index {
            return Err(format!("entry {} where {index} was due", h.index));
        }
        if h.term < term {
            return Err(format!("entry {index}: term {} after {term}", h.term));
        }
        if let Some(batch) = batch {
            if batch.base_offset != offset {
                return Err(format!(
                    "entry {index}: base offset {} where {offset} was due",
                    batch.base_offset
                ));
            }
            offset = batch.end_offset();
        }
        term = h.term;
        index += 1;
        b = &b[h.frame_len() as usize..];
    }
    if index != d.indexes.end || offset != d.offsets.end {
        return Err(format!(
            "the copy ends at index {index} offset {offset}, the range at {} / {}",
            d.indexes.end, d.offsets.end
        ));
    }
    Ok(())
}
