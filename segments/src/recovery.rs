//! Recovery on open: which segments to trust, which to scan, where to cut, and what the
//! report says. The rules are in the crate docs and `segments/FORMAT.md`.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use crate::config::{LogConfig, RecoveryPolicy};
use crate::error::{Error, Result};
use crate::files::{make_active, remove_segment_files, write_file_atomically};
use crate::format::{
    FrameDamage, FrameHeader, INDEX_FOOTER_LEN, IdTable, MetaFile, SEGMENT_HEADER_LEN,
    SPARSE_ENTRY_LEN, SegmentHeader, decode_index_footer, encode_index_file,
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
        let mut headers = Vec::with_capacity(bases.len());
        let mut bad_header = None;
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_path(self.dir, base);
            match read_header(&path)? {
                Some(h) if h.base_offset == base => headers.push((base, h)),
                _ => {
                    // A torn segment creation (or worse): nothing from here on is trusted.
                    bad_header = Some(path);
                    for &b in &bases[i..] {
                        self.remove(b);
                    }
                    break;
                }
            }
        }
        // Segments left below the log start by an interrupted purge or reset.
        let first_kept = headers
            .iter()
            .position(|(_, h)| h.base_index >= start_index)
            .unwrap_or(headers.len());
        for &(base, _) in &headers[..first_kept] {
            self.remove(base);
        }
        let mut headers = headers.split_off(first_kept);
        if let Some((_, h)) = headers.first()
            && (h.base_index != start_index || h.base_offset != start_offset)
        {
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
            let end = self.scan(&mut seg, from, mtime);
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

    /// Checks frames from `from` on, applying each good one to `seg`.
    fn scan(&mut self, seg: &mut Segment, from: u64, mtime: u64) -> ScanEnd {
        let data = seg.data.clone();
        let mut pos = from as usize;
        let mut term = self.last_term;
        loop {
            let rest = data.get(pos..).unwrap_or(&[]);
            if rest.is_empty() {
                return ScanEnd::Clean;
            }
            let (h, batch) = match FrameHeader::check(rest) {
                Ok(x) => x,
                Err(FrameDamage::End) => return ScanEnd::Clean,
                Err(d) => {
                    return ScanEnd::Damaged {
                        position: pos as u64,
                        reason: d.to_string(),
                    };
                }
            };
            let expected = seg.summary.last_index.wrapping_add(1);
            let reason = if h.index != expected {
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
            if let Some(reason) = reason {
                return ScanEnd::Damaged {
                    position: pos as u64,
                    reason,
                };
            }
            seg.apply_frame(pos as u64, &h, batch.as_ref(), mtime);
            term = h.term;
            self.last_term = h.term;
            pos += h.frame_len() as usize;
        }
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

fn read_header(path: &Path) -> Result<Option<SegmentHeader>> {
    let file = File::open(path).map_err(Error::io("open", path))?;
    let mut b = [0u8; SEGMENT_HEADER_LEN];
    match file.read_exact_at(&mut b, 0) {
        Ok(()) => Ok(SegmentHeader::decode(&b).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

fn read_footer(path: &Path) -> Option<crate::format::SegmentSummary> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut f = [0u8; INDEX_FOOTER_LEN];
    file.read_exact_at(&mut f, len.checked_sub(INDEX_FOOTER_LEN as u64)?)
        .ok()?;
    decode_index_footer(&f, len).ok().map(|(s, _, _)| s)
}
