//! One segment in memory: its mapping, its summary, its sparse index and its id index, and
//! every lookup inside it. Lookups run under the log's read lock and only look at bytes
//! below the segment's published logical end (`summary.size`).

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use steme_protocol::batch::{
    BatchHeader, HEADER_LEN as BATCH_HEADER_LEN, RECORD_ASSERTION_OFFSET, RECORD_LEN_SIZE,
};

use crate::format::{
    FRAME_HEADER_LEN, FrameHeader, INDEX_FOOTER_LEN, IdTable, SEGMENT_HEADER_LEN, SPARSE_ENTRY_LEN,
    SegmentHeader, SegmentSummary, SparseEntry, decode_index_footer, encode_ids_file, id_prefix,
    peek_batch, u32_at,
};
use crate::sys::map_file;

/// The one place that names a segment file: `{base_offset:020}.log`.
pub fn segment_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

/// The sealed segment's sparse index and summary, next to its log.
pub fn index_path(dir: &Path, base_offset: u64) -> PathBuf {
    segment_path(dir, base_offset).with_extension("index")
}

/// The sealed segment's id index, next to its log.
pub fn ids_path(dir: &Path, base_offset: u64) -> PathBuf {
    segment_path(dir, base_offset).with_extension("ids")
}

/// Parses a segment file name back into its base offset.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Ids are BLAKE3 output: their prefix is already a good hash, so the active map skips
/// SipHash.
#[derive(Default)]
pub(crate) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The active segment's id index: id prefix → relative offset of its first record, plus
/// later records sharing a prefix (a duplicate append, or a 2^-64 prefix collision).
#[derive(Default)]
pub(crate) struct ActiveIds {
    map: HashMap<u64, u32, BuildHasherDefault<PrefixHasher>>,
    overflow: HashMap<u64, Vec<u32>, BuildHasherDefault<PrefixHasher>>,
}

/// A temporary name next to `path` that no other writer in this process (or another
/// process) uses; `*.tmp` leftovers are deleted on open.
pub(crate) fn unique_tmp(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn lock_ids(m: &Mutex<ActiveIdIndex>) -> MutexGuard<'_, ActiveIdIndex> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sealed segment's id table: its `.ids` file if that is intact and belongs to this
/// content, else rebuilt by hashing the records of `used` and written back (so it lives in
/// the page cache, not the heap). Writing is best effort: it is a cache.
pub(crate) fn load_or_build_ids(
    dir: &Path,
    base: u64,
    fingerprint: u64,
    used: &[u8],
    holes: &[std::ops::Range<u64>],
) -> IdTable {
    let path = ids_path(dir, base);
    let end = fingerprint;
    if let Some(t) = read_mapped(&path).and_then(|b| IdTable::parse(b, base, end).ok()) {
        return t;
    }
    let mut all = Vec::new();
    prefixes_between(used, SEGMENT_HEADER_LEN, base, holes, &mut all);
    let file = encode_ids_file(base, end, &mut all);
    // A name no other thread uses: two threads may build the same table at once, and
    // neither may truncate a file the other has already renamed into place and mapped.
    let tmp = unique_tmp(&path);
    let persisted = std::fs::write(&tmp, &file)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .is_ok();
    if persisted && let Some(t) = read_mapped(&path).and_then(|b| IdTable::parse(b, base, end).ok())
    {
        return t;
    }
    IdTable::parse(Bytes::from(file), base, end).expect("a freshly encoded id table parses")
}

impl IdIndex {
    pub fn sealed() -> IdIndex {
        IdIndex::Sealed(Arc::new(OnceLock::new()))
    }

    pub fn active(ids: ActiveIds, indexed_to: usize) -> IdIndex {
        IdIndex::Active(Arc::new(Mutex::new(ActiveIdIndex {
            ids,
            indexed_to,
            generation: 0,
        })))
    }
}

impl ActiveIds {
    pub fn insert(&mut self, prefix: u64, rel: u32) {
        match self.map.entry(prefix) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.overflow.entry(prefix).or_default().push(rel)
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(rel);
            }
        }
    }

    /// Relative offsets with this prefix, ascending.
    pub fn candidates(&self, prefix: u64, out: &mut Vec<u32>) {
        if let Some(&rel) = self.map.get(&prefix) {
            out.push(rel);
            if let Some(more) = self.overflow.get(&prefix) {
                out.extend_from_slice(more);
            }
        }
    }

    /// Forgets every record at relative offset `rel_end` or later. A prefix's overflow
    /// entries are all later than its map entry, so they go with it.
    pub fn truncate(&mut self, rel_end: u32) {
        self.map.retain(|_, rel| *rel < rel_end);
        self.overflow.retain(|_, rels| {
            rels.retain(|&r| r < rel_end);
            !rels.is_empty()
        });
    }

    pub fn to_vec(&self) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> = self.map.iter().map(|(&p, &r)| (p, r)).collect();
        for (&p, rels) in &self.overflow {
            v.extend(rels.iter().map(|&r| (p, r)));
        }
        v
    }
}

/// The active segment's id index and how far into the segment it reaches.
///
/// The append path never hashes records (BLAKE3 of every 200-byte record costs more than
/// writing it). Ids are indexed by [`crate::LogReader::index_ids`] — meant to be called by
/// the apply loop, on its own thread, without blocking appends — and whatever is left is
/// indexed by the next lookup, at roll and at close. Every lookup first catches up to the
/// logical end, so its answer is exact for everything appended before it started.
///
/// Lock order: the log's state lock, then this mutex; never the other way round.
#[derive(Default)]
pub(crate) struct ActiveIdIndex {
    pub ids: ActiveIds,
    /// Byte position in the segment up to which records are indexed.
    pub indexed_to: usize,
    /// Bumped by truncation, so a catch-up computed over bytes that changed is discarded.
    pub generation: u64,
}

pub(crate) enum SparseIndex {
    /// Built as the segment is written.
    Active(Vec<u8>),
    /// Loaded on first use from the `.index` file, or rebuilt from the log if that is
    /// missing or damaged.
    Sealed(OnceLock<Bytes>),
}

pub(crate) enum IdIndex {
    Active(Arc<Mutex<ActiveIdIndex>>),
    /// Loaded on first use from the `.ids` file, or rebuilt from the log (and the file
    /// written). Shared so [`crate::LogReader::index_ids`] can build it without a lock.
    Sealed(Arc<OnceLock<IdTable>>),
}

/// A frame below the logical end, read without re-checking CRCs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameView {
    pub pos: usize,
    pub header: FrameHeader,
    /// The batch header, for batch entries.
    pub batch: Option<BatchHeader>,
}

impl FrameView {
    pub fn payload(&self) -> std::ops::Range<usize> {
        let start = self.pos + FRAME_HEADER_LEN;
        start..start + self.header.payload_len as usize
    }

    pub fn next(&self) -> usize {
        self.payload().end
    }
}

pub(crate) struct Segment {
    pub header: SegmentHeader,
    pub dir: PathBuf,
    /// The whole mapping of the file; reads are slices of it.
    pub data: Bytes,
    pub summary: SegmentSummary,
    pub sparse: SparseIndex,
    pub ids: IdIndex,
    pub interval: u64,
    /// Byte ranges of damaged frames (see [`crate::Damage`]), ascending: walks jump over
    /// them, so the frames after a damaged range stay readable.
    pub holes: Vec<std::ops::Range<u64>>,
}

impl Segment {
    /// A segment that has just been created or recovered and is written to next.
    pub fn new_active(dir: &Path, header: SegmentHeader, data: Bytes, interval: u64) -> Segment {
        Segment {
            header,
            dir: dir.to_path_buf(),
            data,
            summary: SegmentSummary {
                base_offset: header.base_offset,
                base_index: header.base_index,
                last_index: header.base_index.wrapping_sub(1),
                last_term: 0,
                end_offset: header.base_offset,
                size: SEGMENT_HEADER_LEN as u64,
                max_hlc: 0,
                created_ms: header.created_ms,
                last_append_ms: header.created_ms,
            },
            sparse: SparseIndex::Active(Vec::new()),
            ids: IdIndex::active(ActiveIds::default(), SEGMENT_HEADER_LEN),
            interval,
            holes: Vec::new(),
        }
    }

    /// A sealed segment known from its `.index` footer; tables load lazily.
    pub fn new_sealed(
        dir: &Path,
        header: SegmentHeader,
        data: Bytes,
        summary: SegmentSummary,
        interval: u64,
    ) -> Segment {
        Segment {
            header,
            dir: dir.to_path_buf(),
            data,
            summary,
            sparse: SparseIndex::Sealed(OnceLock::new()),
            ids: IdIndex::sealed(),
            interval,
            holes: Vec::new(),
        }
    }

    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    pub fn is_empty(&self) -> bool {
        self.summary.is_empty()
    }

    pub fn has_records(&self) -> bool {
        self.summary.end_offset > self.summary.base_offset
    }

    pub fn log_path(&self) -> PathBuf {
        segment_path(&self.dir, self.base_offset())
    }

    /// The bytes below the logical end.
    pub fn used(&self) -> &[u8] {
        &self.data[..self.summary.size as usize]
    }

    /// Records one frame just written (or recovered) at `pos` in the summary and sparse
    /// index (ids are indexed lazily, see [`ActiveIdIndex`]).
    pub fn apply_frame(
        &mut self,
        pos: u64,
        h: &FrameHeader,
        batch: Option<&BatchHeader>,
        now_ms: u64,
    ) {
        if let SparseIndex::Active(table) = &mut self.sparse {
            let n = table.len() / SPARSE_ENTRY_LEN;
            let due = n == 0 || pos - SparseEntry::at(table, n - 1).position >= self.interval;
            if due {
                SparseEntry {
                    index: h.index,
                    offset: self.summary.end_offset,
                    position: pos,
                    hlc_floor: self.summary.max_hlc,
                }
                .encode_into(table);
            }
        }
        let s = &mut self.summary;
        s.size = pos + h.frame_len();
        s.last_index = h.index;
        s.last_term = h.term;
        if let Some(b) = batch {
            s.end_offset = b.end_offset();
            s.max_hlc = s.max_hlc.max(b.last_hlc());
        }
        s.last_append_ms = now_ms;
    }

    /// Indexes the content id prefixes of the frame just appended at `pos..end`, as its appender
    /// gave them (`first` is its base offset; no ids for a frame without records), when
    /// every byte before it is indexed. Otherwise, or when the ids are unknown, the
    /// catch-up hashes the records later, in order.
    pub fn index_appended(&self, pos: u64, end: u64, first: u64, ids: Option<&[u64]>) {
        let (IdIndex::Active(m), Some(ids)) = (&self.ids, ids) else {
            return;
        };
        let mut g = lock_ids(m);
        if g.indexed_to as u64 != pos {
            return;
        }
        if !ids.is_empty() {
            let Some(rel) = first.checked_sub(self.base_offset()) else {
                return;
            };
            for (i, &prefix) in ids.iter().enumerate() {
                g.ids.insert(prefix, (rel + i as u64) as u32);
            }
        }
        g.indexed_to = end as usize;
    }

    /// Adds a damaged byte range to jump over, replacing the holes it covers.
    pub fn add_hole(&mut self, h: std::ops::Range<u64>) {
        self.holes
            .retain(|x| !(h.start <= x.start && x.end <= h.end));
        if !self
            .holes
            .iter()
            .any(|x| x.start <= h.start && h.end <= x.end)
        {
            self.holes.push(h);
            self.holes.sort_by_key(|x| x.start);
        }
    }

    /// Records a damaged range found while recovering this segment: walks jump over it,
    /// and the summary and sparse index go on at its end as if its entries were there.
    /// `term` is the term of its last entry when known (0 otherwise).
    pub fn skip_damage(&mut self, d: &crate::Damage, term: u64) {
        self.add_hole(d.positions.clone());
        let s = &mut self.summary;
        s.size = d.positions.end;
        s.last_index = d.indexes.end.wrapping_sub(1);
        s.end_offset = d.offsets.end;
        if term > 0 {
            s.last_term = term;
        }
        if let SparseIndex::Active(table) = &mut self.sparse
            && d.ends_at_frame
        {
            SparseEntry {
                index: d.indexes.end,
                offset: d.offsets.end,
                position: d.positions.end,
                hlc_floor: s.max_hlc,
            }
            .encode_into(table);
        }
    }

    /// Frames from `pos` to the logical end, jumping over known holes. Frames are read
    /// without CRC checks; readers that serve bytes check them (see `reader`).
    pub fn frames_from(&self, pos: usize) -> impl Iterator<Item = FrameView> + '_ {
        frames_in(self.used(), pos, &self.holes)
    }

    /// Where a walk at `pos` really continues: past the hole `pos` falls in, if any.
    pub fn skip_holes(&self, pos: usize) -> usize {
        skip_holes(&self.holes, pos)
    }

    pub fn sparse_table(&self) -> &[u8] {
        match &self.sparse {
            SparseIndex::Active(t) => t,
            SparseIndex::Sealed(cell) => cell.get_or_init(|| {
                self.load_sparse()
                    .unwrap_or_else(|| Bytes::from(self.rebuild_sparse()))
            }),
        }
    }

    fn load_sparse(&self) -> Option<Bytes> {
        let bytes = read_mapped(&index_path(&self.dir, self.base_offset()))?;
        let footer = bytes.get(bytes.len().checked_sub(INDEX_FOOTER_LEN)?..)?;
        let (summary, count, crc) = decode_index_footer(footer, bytes.len() as u64).ok()?;
        let entries = bytes.slice(..count as usize * SPARSE_ENTRY_LEN);
        (summary == self.summary && crc32fast::hash(&entries) == crc).then_some(entries)
    }

    /// Sparse entries for the frames below the logical end, exactly as appends make them.
    pub fn rebuild_sparse(&self) -> Vec<u8> {
        let mut table = Vec::new();
        let mut end_offset = self.summary.base_offset;
        let mut max_hlc = 0u64;
        let mut last_pos: Option<u64> = None;
        for f in self.frames_from(SEGMENT_HEADER_LEN) {
            let pos = f.pos as u64;
            if last_pos.is_none_or(|lp| pos - lp >= self.interval) {
                SparseEntry {
                    index: f.header.index,
                    offset: end_offset,
                    position: pos,
                    hlc_floor: max_hlc,
                }
                .encode_into(&mut table);
                last_pos = Some(pos);
            }
            if let Some(b) = f.batch {
                end_offset = b.end_offset();
                max_hlc = max_hlc.max(b.last_hlc());
            }
        }
        table
    }

    fn id_table(&self) -> Option<&IdTable> {
        match &self.ids {
            IdIndex::Active(_) => None,
            IdIndex::Sealed(cell) => Some(cell.get_or_init(|| {
                load_or_build_ids(
                    &self.dir,
                    self.base_offset(),
                    self.summary.fingerprint(),
                    self.used(),
                    &self.holes,
                )
            })),
        }
    }

    /// Whether the active id index covers every record (so `.ids` can be written without
    /// hashing).
    pub fn ids_complete(&self) -> bool {
        match &self.ids {
            IdIndex::Active(m) => lock_ids(m).indexed_to >= self.summary.size as usize,
            IdIndex::Sealed(_) => true,
        }
    }

    /// The active id index, caught up to the logical end (hashing what is left under
    /// the caller's state lock; normally little, see [`ActiveIdIndex`]).
    fn active_ids(&self) -> Option<MutexGuard<'_, ActiveIdIndex>> {
        let IdIndex::Active(m) = &self.ids else {
            return None;
        };
        let mut g = lock_ids(m);
        let size = self.summary.size as usize;
        if g.indexed_to < size {
            let mut out = Vec::new();
            prefixes_between(
                self.used(),
                g.indexed_to,
                self.base_offset(),
                &self.holes,
                &mut out,
            );
            for (p, rel) in out {
                g.ids.insert(p, rel);
            }
            g.indexed_to = size;
        }
        Some(g)
    }

    /// The id index entries, for writing the `.ids` file.
    pub fn id_entries(&self) -> Vec<(u64, u32)> {
        match &self.ids {
            IdIndex::Active(_) => self
                .active_ids()
                .map(|g| g.ids.to_vec())
                .unwrap_or_default(),
            IdIndex::Sealed(_) => self
                .id_table()
                .map(|t| t.entries().collect())
                .unwrap_or_default(),
        }
    }

    /// Candidate offsets (absolute, ascending) of records whose id has `id`'s prefix.
    pub fn id_candidates(&self, id: &[u8; 32], out: &mut Vec<u64>) {
        let mut rel = Vec::new();
        match &self.ids {
            IdIndex::Active(_) => {
                if let Some(g) = self.active_ids() {
                    g.ids.candidates(id_prefix(id), &mut rel)
                }
            }
            IdIndex::Sealed(_) => {
                if let Some(t) = self.id_table() {
                    t.candidates(id_prefix(id), &mut rel)
                }
            }
        }
        out.extend(rel.into_iter().map(|r| self.base_offset() + u64::from(r)));
    }

    /// The last sparse entry for which `before(entry)` holds, or the segment's start:
    /// `(position, index, offset)` of a frame boundary to walk from.
    pub fn scan_point(&self, before: impl Fn(&SparseEntry) -> bool) -> (usize, u64, u64) {
        let table = self.sparse_table();
        let n = table.len() / SPARSE_ENTRY_LEN;
        let i = partition(n, |i| before(&SparseEntry::at(table, i)));
        match i.checked_sub(1) {
            Some(i) => {
                let e = SparseEntry::at(table, i);
                (e.position as usize, e.index, e.offset)
            }
            None => (
                SEGMENT_HEADER_LEN,
                self.header.base_index,
                self.header.base_offset,
            ),
        }
    }

    /// Where to start scanning for the first frame whose `key` reaches a target: the
    /// position of the last sparse entry for which `before(entry)` holds.
    fn scan_start(&self, before: impl Fn(&SparseEntry) -> bool) -> usize {
        self.scan_point(before).0
    }

    /// The frame holding Raft index `index`.
    pub fn find_index(&self, index: u64) -> Option<FrameView> {
        let start = self.scan_start(|e| e.index <= index);
        self.frames_from(start)
            .take_while(|f| f.header.index <= index)
            .find(|f| f.header.index == index)
    }

    /// The batch frame holding `offset`, or the first batch after it.
    pub fn find_offset(&self, offset: u64) -> Option<FrameView> {
        let start = self.scan_start(|e| e.offset <= offset);
        self.frames_from(start)
            .find(|f| f.batch.is_some_and(|b| b.end_offset() > offset))
    }

    /// The first offset whose HLC is at least `t` (by the running maximum), if any record
    /// of this segment reaches `t`.
    pub fn find_time(&self, t: u64) -> Option<u64> {
        if self.summary.max_hlc < t || !self.has_records() {
            return None;
        }
        let start = self.scan_start(|e| e.hlc_floor < t);
        self.frames_from(start).find_map(|f| {
            let b = f.batch?;
            (b.last_hlc() >= t).then(|| b.base_offset + t.saturating_sub(b.base_hlc))
        })
    }

    /// The canonical assertion bytes of the record at `offset`.
    pub fn assertion_at(&self, offset: u64) -> Option<&[u8]> {
        let f = self.find_offset(offset)?;
        let b = f.batch?;
        let skip = offset.checked_sub(b.base_offset)?;
        let batch = &self.used()[f.payload()];
        let mut pos = BATCH_HEADER_LEN;
        for _ in 0..skip {
            let len = u32_at(batch.get(pos..pos + RECORD_LEN_SIZE)?, 0) as usize;
            pos += RECORD_LEN_SIZE + len;
        }
        let len = u32_at(batch.get(pos..pos + RECORD_LEN_SIZE)?, 0) as usize;
        batch.get(pos + RECORD_ASSERTION_OFFSET..pos + RECORD_LEN_SIZE + len)
    }
}

/// How many of `0..n` satisfy `pred`, for a predicate true on a prefix (binary search).
fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The frame at `pos` of `used` (bytes below a logical end), read without CRC checks.
/// Bounds-checked: damaged or changing bytes end the walk, never panic.
pub(crate) fn frame_in(used: &[u8], pos: usize) -> Option<FrameView> {
    let header = FrameHeader::peek(used.get(pos..)?)?;
    let end = pos + FRAME_HEADER_LEN + header.payload_len as usize;
    if end > used.len() {
        return None;
    }
    let batch = match header.kind {
        crate::EntryKind::Batch => Some(peek_batch(&used[pos + FRAME_HEADER_LEN..end])?),
        crate::EntryKind::Control => None,
    };
    Some(FrameView { pos, header, batch })
}

/// Frames of `used` from `pos` on, jumping over `holes` (byte ranges, ascending).
pub(crate) fn frames_in<'a>(
    used: &'a [u8],
    pos: usize,
    holes: &'a [std::ops::Range<u64>],
) -> impl Iterator<Item = FrameView> + 'a {
    let mut at = pos;
    std::iter::from_fn(move || {
        at = skip_holes(holes, at);
        let f = frame_in(used, at)?;
        at = f.next();
        Some(f)
    })
}

fn skip_holes(holes: &[std::ops::Range<u64>], mut pos: usize) -> usize {
    while let Some(h) = holes.iter().find(|h| h.contains(&(pos as u64))) {
        pos = h.end as usize;
    }
    pos
}

/// `(id prefix, offset relative to base)` of every record in the frames of `used` from
/// `from` on.
pub(crate) fn prefixes_between(
    used: &[u8],
    from: usize,
    base: u64,
    holes: &[std::ops::Range<u64>],
    out: &mut Vec<(u64, u32)>,
) {
    for f in frames_in(used, from, holes) {
        if let Some(b) = f.batch
            && let Some(rel) = b.base_offset.checked_sub(base)
        {
            record_prefixes(&used[f.payload()], rel as u32, out);
        }
    }
}

/// Appends `(id prefix, rel + i)` for every record `i` of a batch payload. The payload was
/// validated, so its record framing is sound; a short read simply stops.
pub(crate) fn record_prefixes(batch: &[u8], rel: u32, out: &mut Vec<(u64, u32)>) {
    let mut pos = BATCH_HEADER_LEN;
    let mut i = 0u32;
    while let Some(len_bytes) = batch.get(pos..pos + RECORD_LEN_SIZE) {
        let len = u32_at(len_bytes, 0) as usize;
        let Some(assertion) = batch.get(pos + RECORD_ASSERTION_OFFSET..pos + RECORD_LEN_SIZE + len)
        else {
            break;
        };
        out.push((id_prefix(blake3_hash(assertion).as_bytes()), rel + i));
        pos += RECORD_LEN_SIZE + len;
        i += 1;
    }
}

fn blake3_hash(b: &[u8]) -> steme_protocol::AssertionId {
    steme_protocol::AssertionId::of(b)
}

/// Maps a whole small file; `None` if it is missing or unreadable (the caller rebuilds).
fn read_mapped(path: &Path) -> Option<Bytes> {
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() == 0 {
        return Some(Bytes::new());
    }
    map_file(&file).ok()
}

/// Reads a whole small file into memory.
pub(crate) fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_ids_keep_first_offset_and_all_duplicates() {
        let mut ids = ActiveIds::default();
        ids.insert(7, 3);
        ids.insert(9, 4);
        ids.insert(7, 10);
        ids.insert(7, 12);
        let mut out = Vec::new();
        ids.candidates(7, &mut out);
        assert_eq!(out, vec![3, 10, 12]);
        ids.truncate(11);
        out.clear();
        ids.candidates(7, &mut out);
        assert_eq!(out, vec![3, 10]);
        ids.truncate(4);
        out.clear();
        ids.candidates(7, &mut out);
        ids.candidates(9, &mut out);
        assert_eq!(out, vec![3]);
        let mut all = ids.to_vec();
        all.sort_unstable();
        assert_eq!(all, vec![(7, 3)]);
    }

    #[test]
    fn segment_names_roundtrip() {
        let p = segment_path(Path::new("/x"), 123);
        assert_eq!(p, Path::new("/x/00000000000000000123.log"));
        assert_eq!(parse_segment_name("00000000000000000123.log"), Some(123));
        assert_eq!(parse_segment_name("123.log"), None);
        assert_eq!(parse_segment_name("0000000000000000012a.log"), None);
        assert_eq!(
            index_path(Path::new("/x"), 5),
            Path::new("/x/00000000000000000005.index")
        );
        assert_eq!(
            ids_path(Path::new("/x"), 5),
            Path::new("/x/00000000000000000005.ids")
        );
        assert_ne!(unique_tmp(&p), unique_tmp(&p));
    }
}
