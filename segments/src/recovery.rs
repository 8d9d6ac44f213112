//! Recovery on open: which segments to trust, which to scan, where to cut, and what the
//! report says. The rules are in the crate docs and `segments/FORMAT.md`.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use crate::config::{LogConfig, RecoveryPolicy};
use crate::damage::Damage;
use crate::error::{Error, Result};
use crate::files::{create_segment, make_active, remove_segment_files, write_file_atomically};
use crate::format::{
    DURABLE_SLOT_POS, DurablePoint, FIXED_HEADER_LEN, FRAME_HEADER_LEN, FRAME_MAGIC, FrameDamage,
    FrameHeader, INDEX_FOOTER_LEN, IdTable, MetaFile, SEGMENT_HEADER_LEN, SPARSE_ENTRY_LEN,
    SegmentHeader, decode_index_footer, encode_index_file,
};
use crate::io::FileIo;
use crate::segment::{
    ActiveIds, IdIndex, Segment, SparseIndex, ids_path, index_path, read_small, segment_path,
};
use crate::sys::map_file;

/// What recovery cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment file that was cut.
    pub segment: PathBuf,
    /// Byte position in it where the log now ends.
    pub position: u64,
    /// The first Raft index that was not kept.
    pub first_lost_index: u64,
    pub reason: String,
}

/// What [`crate::Log::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the log after recovery.
    pub segments: usize,
    /// Base offsets of the segments whose frames were read and checked.
    pub scanned_segments: Vec<u64>,
    pub scanned_bytes: u64,
    /// Base offsets of sealed segments whose index files were rebuilt.
    pub rebuilt_indexes: Vec<u64>,
    /// Set when a damaged tail was cut off.
    pub cut: Option<Cut>,
    /// Segment files deleted: after a cut, below the log start, or left by an interrupted
    /// purge or reset.
    pub removed_segments: Vec<PathBuf>,
    pub last_index: Option<u64>,
    pub log_end_offset: u64,
    /// The latest durable point recorded in a segment slot: damage below it was found as
    /// corruption (kept as a damaged range), never cut.
    pub durable: Option<DurablePoint>,
    /// Every damaged range known after open: found now, or recorded earlier and not yet
    /// repaired.
    pub damaged: Vec<Damage>,
    /// Segment headers that were damaged below the durable point and rewritten from the
    /// file name and the previous segment (a header holds no record).
    pub repaired_headers: Vec<u64>,
    /// Set when the `damage` file could not be read: ranges it listed are found again by
    /// reads and scrubs (their bytes still fail their checks).
    pub damage_file_error: Option<String>,
}

pub(crate) struct Recovery<'a> {
    pub(crate) io: &'a dyn FileIo,
    /// Whether the active segment's checkpointed prefix came from its index files.
    pub(crate) active_prefix_loaded: bool,
    pub(crate) dir: &'a Path,
    pub(crate) cfg: &'a LogConfig,
    pub(crate) meta: &'a MetaFile,
    pub(crate) report: &'a mut RecoveryReport,
    pub(crate) segments: Vec<Segment>,
    pub(crate) last_term: u64,
    pub(crate) active_file: Option<File>,
    /// The latest durable point recorded in any kept segment.
    pub(crate) durable: Option<DurablePoint>,
    /// Damaged ranges found by this recovery.
    pub(crate) found: Vec<Damage>,
}

/// Where intact entries resume after a damaged range.
struct Anchor {
    position: u64,
    index: u64,
    offset: u64,
    /// Term of the last entry before the anchor, when known (0 otherwise).
    term: u64,
    /// Whether a frame starts exactly at `position` (else the range runs to the end of the
    /// segment's data).
    exact: bool,
}

/// Where the scan of one segment stopped.
enum ScanEnd {
    Clean,
    Damaged { position: u64, reason: String },
}

impl Recovery<'_> {
    pub(crate) fn run(&mut self, bases: &[u64]) -> Result<()> {
        let start_index = self.meta.log_start_index;
        let start_offset = self.meta.log_start_offset;
        // Headers and durable-point slots. A bad header below the latest durable point is
        // damage (rebuilt below); past it, it is a torn segment creation.
        let mut read = Vec::with_capacity(bases.len());
        for &base in bases {
            let (h, slot) = read_header(&segment_path(self.dir, base))?;
            read.push((base, h.filter(|h| h.base_offset == base), slot));
        }
        // Only segments of the current log count (not leftovers of a purge or reset).
        self.durable = read
            .iter()
            .filter(|(base, h, _)| match h {
                Some(h) => h.base_index >= start_index,
                None => *base >= start_offset,
            })
            .filter_map(|(_, _, slot)| *slot)
            .max();
        let mut headers = Vec::with_capacity(bases.len());
        let mut bad_header = None;
        for (i, &(base, h, _)) in read.iter().enumerate() {
            if h.is_none() && !self.below_durable(base, FIXED_HEADER_LEN as u64) {
                bad_header = Some(segment_path(self.dir, base));
                for &(b, _, _) in &read[i..] {
                    self.remove(b);
                }
                break;
            }
            headers.push((base, h));
        }
        // Segments left below the log start by an interrupted purge or reset.
        let first_kept = headers
            .iter()
            .position(|&(base, h)| match h {
                Some(h) => h.base_index >= start_index,
                None => base >= start_offset,
            })
            .unwrap_or(headers.len());
        for &(base, _) in &headers[..first_kept] {
            self.remove(base);
        }
        let mut headers = headers.split_off(first_kept);
        if let Some(&(_, Some(h))) = headers.first()
            && (h.base_index != start_index || h.base_offset != start_offset)
            && !(h.base_index > start_index
                && h.base_offset > start_offset
                && self.below_durable(h.base_offset, FIXED_HEADER_LEN as u64))
        {
            // (A first segment past the start and below the durable point is not a reset:
            // the segments before it are missing, and are recreated as damage below.)
            let path = segment_path(self.dir, h.base_offset);
            if self.cfg.recovery == RecoveryPolicy::FailOnCorruption {
                return Err(Error::Corrupt {
                    path,
                    position: 0,
                    reason: format!(
                        "log starts at index {} offset {}, metadata says {start_index} / {start_offset}",
                        h.base_index, h.base_offset
                    ),
                });
            }
            // An interrupted reset: the metadata already names the new start.
            for (base, _) in headers.drain(..) {
                self.remove(base);
            }
        }

        let cp = self.meta.recovery;
        let (mut next_index, mut end_offset) = (start_index, start_offset);
        let mut cut_earlier = false;
        let n = headers.len();
        for (i, &(base, header)) in headers.iter().enumerate() {
            let last = i + 1 == n;
            let path = segment_path(self.dir, base);
            let header = match header {
                Some(h) => h,
                None => self.rebuild_header(base, next_index)?,
            };
            if header.base_index != next_index || header.base_offset != end_offset {
                let reason = format!(
                    "segment starts at index {} offset {}, expected {next_index} / {end_offset}",
                    header.base_index, header.base_offset
                );
                if self.below_durable(base, FIXED_HEADER_LEN as u64)
                    && header.base_index > next_index
                    && header.base_offset > end_offset
                {
                    // A durable segment is gone (deleted underneath us): put an empty one in
                    // its place whose entries are one damaged range, to be repaired.
                    self.recreate_missing(next_index, end_offset, header, reason)?;
                    next_index = header.base_index;
                    end_offset = header.base_offset;
                } else if self.below_durable(base, FIXED_HEADER_LEN as u64) {
                    // Entries that were durable are missing: nothing may be cut over them.
                    return Err(Error::Corrupt {
                        path,
                        position: 0,
                        reason: format!("{reason}, below the durable point {:?}", self.durable),
                    });
                }
            }
            if header.base_index != next_index || header.base_offset != end_offset {
                let reason = format!(
                    "segment starts at index {} offset {}, expected {next_index} / {end_offset}",
                    header.base_index, header.base_offset
                );
                self.damage(&path, 0, next_index, reason)?;
                for &(b, _) in &headers[i..] {
                    self.remove(b);
                }
                cut_earlier = true;
                // The previous (sealed) segment ends the log now: it becomes active.
                if let Some(mut prev) = self.segments.pop() {
                    let prev_path = prev.log_path();
                    let file = File::options()
                        .read(true)
                        .write(true)
                        .open(&prev_path)
                        .map_err(Error::io("open", &prev_path))?;
                    make_active(&mut prev);
                    self.active_prefix_loaded = false;
                    self.finish_active(prev, file)?;
                }
                break;
            }
            let file = File::options()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(Error::io("open", &path))?;
            let data = map_file(&file).map_err(Error::io("map", &path))?;
            let mtime = file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(header.created_ms, |d| d.as_millis() as u64);
            let trusted = cp.is_some_and(|cp| base < cp.segment);
            if trusted
                && !last
                && let Some(seg) = self.load_sealed(header, data.clone())
            {
                next_index = seg.summary.last_index.wrapping_add(1);
                end_offset = seg.summary.end_offset;
                if !seg.is_empty() {
                    self.last_term = seg.summary.last_term;
                }
                self.segments.push(seg);
                continue;
            }
            // Scan: from the checkpoint inside this segment if its index files match it,
            // else from the header.
            let mut seg =
                Segment::new_active(self.dir, header, data, self.cfg.index_interval_bytes);
            let mut from = SEGMENT_HEADER_LEN as u64;
            if let Some(cp) = cp
                && cp.segment == base
                && cp.position > SEGMENT_HEADER_LEN as u64
                && self.load_prefix(&mut seg, cp.position)
            {
                from = cp.position;
                if !seg.is_empty() {
                    self.last_term = seg.summary.last_term;
                }
            }
            self.report.scanned_segments.push(base);
            let next_header = headers.get(i + 1).and_then(|(_, h)| *h);
            let end = self.scan(&mut seg, from, mtime, next_header);
            self.report.scanned_bytes += seg.summary.size - from;
            next_index = seg.summary.last_index.wrapping_add(1);
            end_offset = seg.summary.end_offset;
            let cut = match end {
                ScanEnd::Clean => false,
                ScanEnd::Damaged { position, reason } => {
                    self.damage(&path, position, next_index, reason)?;
                    cut_earlier = true;
                    true
                }
            };
            if last || cut {
                for &(b, _) in &headers[i + 1..] {
                    self.remove(b);
                }
                self.active_prefix_loaded = from > SEGMENT_HEADER_LEN as u64;
                self.finish_active(seg, file)?;
                break;
            }
            // A sealed segment that had to be scanned: it may hold bytes that were never
            // synced (they survived a process crash in the page cache). Sync them, so the
            // checkpoint can move past it, and persist its rebuilt indexes.
            self.io
                .sync_data(&file)
                .map_err(Error::io("fdatasync", &path))?;
            self.seal_rebuilt(&mut seg);
            self.segments.push(seg);
        }
        if let Some(path) = bad_header
            && !cut_earlier
        {
            self.damage(&path, 0, next_index, "bad segment header".into())?;
        }
        Ok(())
    }

    /// Makes `seg` the active segment: drops our read mapping, zeroes everything past
    /// the logical end (a torn tail, or stale frames a later write could otherwise
    /// revive), preallocates and maps it again.
    fn finish_active(&mut self, mut seg: Segment, file: File) -> Result<()> {
        let path = seg.log_path();
        let size = seg.summary.size;
        seg.data = Bytes::new();
        let len = file.metadata().map_err(Error::io("stat", &path))?.len();
        if len > size {
            file.set_len(size).map_err(Error::io("truncate", &path))?;
        }
        let want = if self.cfg.preallocate {
            self.cfg.segment_bytes.max(size)
        } else {
            size.next_multiple_of(4096).max(size + 4096)
        };
        file.set_len(want).map_err(Error::io("extend", &path))?;
        seg.data = map_file(&file).map_err(Error::io("map", &path))?;
        if !self.active_prefix_loaded {
            // Index files of the active segment describe an older state.
            let base = seg.base_offset();
            let _ = fs::remove_file(index_path(self.dir, base));
            let _ = fs::remove_file(ids_path(self.dir, base));
        }
        self.segments.push(seg);
        self.active_file = Some(file);
        Ok(())
    }

    fn remove(&mut self, base: u64) {
        remove_segment_files(self.dir, base);
        self.report
            .removed_segments
            .push(segment_path(self.dir, base));
    }

    fn damage(
        &mut self,
        path: &Path,
        position: u64,
        first_lost_index: u64,
        reason: String,
    ) -> Result<()> {
        if self.cfg.recovery == RecoveryPolicy::FailOnCorruption {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                position,
                reason,
            });
        }
        if self.report.cut.is_none() {
            self.report.cut = Some(Cut {
                segment: path.to_path_buf(),
                position,
                first_lost_index,
                reason,
            });
        }
        Ok(())
    }

    /// A sealed segment from its `.index` footer, if the footer is intact and fits.
    fn load_sealed(&self, header: SegmentHeader, data: Bytes) -> Option<Segment> {
        let summary = read_footer(&index_path(self.dir, header.base_offset))?;
        let fits = summary.base_offset == header.base_offset
            && summary.base_index == header.base_index
            && summary.size <= data.len() as u64
            && summary.size >= SEGMENT_HEADER_LEN as u64;
        fits.then(|| {
            Segment::new_sealed(
                self.dir,
                header,
                data,
                summary,
                self.cfg.index_interval_bytes,
            )
        })
    }

    /// Loads the checkpointed prefix `[0, position)` of a segment from its index files.
    fn load_prefix(&self, seg: &mut Segment, position: u64) -> bool {
        let base = seg.base_offset();
        let Some(bytes) = read_small(&index_path(self.dir, base)).ok() else {
            return false;
        };
        let Some(footer_at) = bytes.len().checked_sub(INDEX_FOOTER_LEN) else {
            return false;
        };
        let Ok((summary, count, crc)) =
            decode_index_footer(&bytes[footer_at..], bytes.len() as u64)
        else {
            return false;
        };
        let entries = &bytes[..count as usize * SPARSE_ENTRY_LEN];
        if summary.size != position
            || summary.base_offset != base
            || summary.base_index != seg.header.base_index
            || position > seg.data.len() as u64
            || crc32fast::hash(entries) != crc
        {
            return false;
        }
        let Some(ids) = read_small(&ids_path(self.dir, base))
            .ok()
            .and_then(|b| IdTable::parse(Bytes::from(b), base, summary.fingerprint()).ok())
        else {
            return false;
        };
        let mut active = ActiveIds::default();
        for (p, rel) in ids.entries() {
            active.insert(p, rel);
        }
        seg.summary = summary;
        seg.sparse = SparseIndex::Active(entries.to_vec());
        seg.ids = IdIndex::active(active, position as usize);
        true
    }

    /// Checks frames from `from` on, applying each good one to `seg`. Damage below the
    /// durable point becomes a damaged range (the scan goes on past it); damage past it is
    /// where the scan stops (a torn tail, cut by the caller).
    fn scan(
        &mut self,
        seg: &mut Segment,
        from: u64,
        mtime: u64,
        next: Option<SegmentHeader>,
    ) -> ScanEnd {
        let data = seg.data.clone();
        let base = seg.base_offset();
        let mut pos = from as usize;
        let mut term = self.last_term;
        loop {
            let rest = data.get(pos..).unwrap_or(&[]);
            let expected = seg.summary.last_index.wrapping_add(1);
            // The data of a segment before the durable one may end anywhere the next
            // segment takes over from.
            let continues = next.is_some_and(|n| {
                n.base_index == expected && n.base_offset == seg.summary.end_offset
            });
            let reason = match FrameHeader::check(rest) {
                Err(FrameDamage::End) if !self.below_durable(base, pos as u64) || continues => {
                    return ScanEnd::Clean;
                }
                Err(FrameDamage::End) if rest.is_empty() => Some(format!(
                    "the file ends at byte {pos}, below the durable point (shortened underneath?)"
                )),
                Err(FrameDamage::End) => {
                    Some("zeros below the durable point (data missing)".to_owned())
                }
                Err(d) => Some(d.to_string()),
                Ok((h, batch)) => {
                    let bad = if h.index != expected {
                        Some(format!(
                            "index gap: found {} where {expected} was due",
                            h.index
                        ))
                    } else if h.term < term {
                        Some(format!("term regression: {} after {term}", h.term))
                    } else if batch.is_some_and(|b| b.base_offset != seg.summary.end_offset) {
                        Some(format!(
                            "batch base offset {} where {} was due",
                            batch.map_or(0, |b| b.base_offset),
                            seg.summary.end_offset
                        ))
                    } else if batch
                        .is_some_and(|b| b.end_offset() - seg.base_offset() > u64::from(u32::MAX))
                    {
                        Some("segment holds more than 2^32 offsets".to_owned())
                    } else {
                        None
                    };
                    if bad.is_none() {
                        seg.apply_frame(pos as u64, &h, batch.as_ref(), mtime);
                        term = h.term;
                        self.last_term = h.term;
                        pos += h.frame_len() as usize;
                        continue;
                    }
                    bad
                }
            };
            let reason = reason.unwrap_or_default();
            if !self.below_durable(base, pos as u64) {
                return ScanEnd::Damaged {
                    position: pos as u64,
                    reason,
                };
            }
            // Corruption: these entries were durable. Keep their place, find where intact
            // entries resume, and go on from there.
            let Some(anchor) = self.find_anchor(seg, pos as u64, expected, next) else {
                return ScanEnd::Damaged {
                    position: pos as u64,
                    reason: format!(
                        "{reason} (below the durable point, and nothing after it is intact)"
                    ),
                };
            };
            let damage = Damage {
                segment: base,
                positions: pos as u64..anchor.position,
                indexes: expected..anchor.index,
                offsets: seg.summary.end_offset..anchor.offset,
                ends_at_frame: anchor.exact,
                reason,
                skipped: None,
            };
            seg.skip_damage(&damage, anchor.term);
            if anchor.term > 0 {
                term = term.max(anchor.term);
                self.last_term = term;
            }
            self.found.push(damage);
            pos = anchor.position as usize;
            if !anchor.exact {
                return ScanEnd::Clean;
            }
        }
    }

    /// A durable segment that is missing, recreated empty (sealed, its summary spanning
    /// the entries up to the next segment) with its whole content one damaged range.
    fn recreate_missing(
        &mut self,
        index: u64,
        offset: u64,
        next: SegmentHeader,
        reason: String,
    ) -> Result<()> {
        let header = SegmentHeader {
            base_offset: offset,
            base_index: index,
            created_ms: crate::state::now_ms(),
        };
        let (mut seg, file) = create_segment(self.dir, self.cfg, self.io, header)?;
        let path = seg.log_path();
        self.io
            .sync_data(&file)
            .map_err(Error::io("fdatasync", &path))?;
        let start = SEGMENT_HEADER_LEN as u64;
        let damage = Damage {
            segment: offset,
            positions: start..start,
            indexes: index..next.base_index,
            offsets: offset..next.base_offset,
            ends_at_frame: false,
            reason: format!("segment file missing: {reason}"),
            skipped: None,
        };
        seg.skip_damage(&damage, 0);
        self.seal_rebuilt(&mut seg);
        self.found.push(damage);
        self.segments.push(seg);
        Ok(())
    }

    /// Whether byte `position` of segment `base` lies below the latest durable point.
    fn below_durable(&self, base: u64, position: u64) -> bool {
        self.durable
            .is_some_and(|d| (base, position) < (d.segment, d.position))
    }

    /// Where intact entries resume after damage at `pos` (which should hold index
    /// `index`): the next intact batch frame of the segment, else the durable point if it
    /// lies further on in this segment, else the start of the next segment.
    fn find_anchor(
        &self,
        seg: &Segment,
        pos: u64,
        index: u64,
        next: Option<SegmentHeader>,
    ) -> Option<Anchor> {
        let data = &seg.data[..];
        let base = seg.base_offset();
        let d = self.durable?;
        let limit = if d.segment == base {
            (d.position as usize).min(data.len())
        } else {
            data.len()
        };
        let magic = FRAME_MAGIC.to_le_bytes();
        let mut q = pos as usize + 1;
        while q + magic.len() <= limit {
            if data[q..q + magic.len()] == magic
                && let Ok((h, Some(b))) = FrameHeader::check(&data[q..])
                && h.index >= index
                && b.base_offset >= seg.summary.end_offset
                && h.index - index <= (q as u64 - pos) / FRAME_HEADER_LEN as u64
            {
                return Some(Anchor {
                    position: q as u64,
                    index: h.index,
                    offset: b.base_offset,
                    term: 0,
                    exact: true,
                });
            }
            q += 1;
        }
        if d.segment == base && d.position > pos {
            return Some(Anchor {
                position: d.position,
                index: d.next_index,
                offset: d.end_offset,
                term: d.last_term,
                exact: true,
            });
        }
        let next = next?;
        // The damage runs to the end of this segment's data: the last byte that is not zero.
        let end = data
            .iter()
            .rposition(|&b| b != 0)
            .map_or(pos, |i| i as u64 + 1);
        Some(Anchor {
            position: end.max(pos + 1),
            index: next.base_index,
            offset: next.base_offset,
            term: 0,
            exact: false,
        })
    }

    /// A segment header damaged below the durable point, rebuilt: the base offset is in the
    /// file name and the base index follows the previous segment. Only the fixed header is
    /// written; the durable-point slot is left alone.
    fn rebuild_header(&mut self, base: u64, base_index: u64) -> Result<SegmentHeader> {
        let path = segment_path(self.dir, base);
        let header = SegmentHeader {
            base_offset: base,
            base_index,
            created_ms: crate::state::now_ms(),
        };
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        self.io
            .write_at(&file, 0, &[&header.encode()[..FIXED_HEADER_LEN]])
            .and_then(|()| self.io.sync_data(&file))
            .map_err(Error::io("rewrite segment header", &path))?;
        self.report.repaired_headers.push(base);
        Ok(header)
    }

    /// Writes the index files of a sealed segment rebuilt by a scan and seals it.
    fn seal_rebuilt(&mut self, seg: &mut Segment) {
        let base = seg.base_offset();
        if let SparseIndex::Active(table) = &seg.sparse {
            // The sparse index only; ids are hashed later, off the open path (a stale
            // `.ids` is refused by its end offset, a missing one is rebuilt on demand).
            let index = encode_index_file(table, &seg.summary);
            if write_file_atomically(self.io, &index_path(self.dir, base), &index, true).is_ok() {
                self.report.rebuilt_indexes.push(base);
            }
        }
        seg.sparse = SparseIndex::Sealed(std::sync::OnceLock::new());
        seg.ids = IdIndex::sealed();
    }
}

/// A segment's fixed header (`None` if damaged or short) and its durable-point slot.
fn read_header(path: &Path) -> Result<(Option<SegmentHeader>, Option<DurablePoint>)> {
    let file = File::open(path).map_err(Error::io("open", path))?;
    let mut b = [0u8; SEGMENT_HEADER_LEN];
    let mut got = 0;
    while got < b.len() {
        match file.read_at(&mut b[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path)(e)),
        }
    }
    let header = SegmentHeader::decode(&b[..got]).ok();
    let slot = DurablePoint::decode(&b[DURABLE_SLOT_POS..got.max(DURABLE_SLOT_POS)]);
    Ok((header, slot))
}

fn read_footer(path: &Path) -> Option<crate::format::SegmentSummary> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut f = [0u8; INDEX_FOOTER_LEN];
    file.read_exact_at(&mut f, len.checked_sub(INDEX_FOOTER_LEN as u64)?)
        .ok()?;
    decode_index_footer(&f, len).ok().map(|(s, _, _)| s)
}
