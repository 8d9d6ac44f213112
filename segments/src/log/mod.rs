//! The writer: [`Log`] appends, rolls, truncates, purges, keeps metadata, and recovers on
//! open. Readers ([`crate::LogReader`]) and flushers ([`Flusher`]) share its state.

use std::fs::{self, File};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use steme_protocol::BatchError;
use steme_protocol::batch::{patch_base_offset, validate, validate_framing};

use crate::config::{FlushPolicy, LogConfig, RecoveryPolicy};
use crate::damage::{DAMAGE_FILE, Registry};
use crate::error::{Error, Result};
use crate::files::{create_segment, write_file_atomically};
use crate::flush::Flusher;
use crate::format::{
    Checkpoint, DURABLE_SLOT_POS, EntryKind, FRAME_HEADER_LEN, FrameHeader, MetaFile,
    SEGMENT_HEADER_LEN, SegmentHeader, encode_ids_file, encode_index_file,
};
use crate::io::FileIo;
use crate::reader::LogReader;
use crate::recovery::Recovery;
pub use crate::recovery::{Cut, RecoveryReport};
use crate::segment::{
    IdIndex, SparseIndex, ids_path, index_path, parse_segment_name, read_small, segment_path,
};
use crate::state::{Cond, DurableState, Shared, State, SyncState, SyncTarget, lock, now_ms};
use crate::sys::map_file;

mod meta;
mod repair;
mod truncate;

pub use meta::MetaWrite;

const META_FILE: &str = "meta";
const TMP_SUFFIX: &str = "tmp";
/// How far past the write position the active file's blocks are kept allocated.
const ALLOCATE_AHEAD: u64 = 8 << 20;

/// The payload of a new entry.
#[derive(Debug)]
pub enum Payload<'a> {
    /// A record batch, checked whole (framing and CRC) before it is stored. The log sets its
    /// `base_offset` (and corrects the CRC) in place; every other byte is stored as given.
    Batch(&'a mut [u8]),
    /// A record batch whose CRC the caller has just checked, with its records' content ids
    /// in order (a leader's copy of a producer's batch, which the broker validated and
    /// hashed). Only its framing is checked, and its ids are indexed as given rather than
    /// hashed again. A wrong CRC is not detected here, but it stays wrong on disk (see
    /// [`steme_protocol::batch::patch_header`]) and reads refuse the batch.
    Checked {
        batch: &'a mut [u8],
        ids: &'a [steme_protocol::AssertionId],
    },
    /// Opaque control bytes (membership, blank): stored with a CRC, takes no offset.
    Control(&'a [u8]),
}

/// One entry to append.
#[derive(Debug)]
pub struct NewEntry<'a> {
    pub index: u64,
    pub term: u64,
    pub payload: Payload<'a>,
}

/// Where an appended entry landed. For a control entry `base_offset == end_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub base_offset: u64,
    pub end_offset: u64,
}

/// Which sealed segments retention would delete, so the Raft layer can snapshot at the
/// boundary first and then call [`Log::purge_upto`]`(upto_index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgePlan {
    /// Last Raft index that would go.
    pub upto_index: u64,
    /// The log start offset afterwards (first offset kept).
    pub new_log_start_offset: u64,
    pub segments: usize,
    pub bytes: u64,
}

/// The on-disk log of one partition. One writer (`&mut self`); any number of
/// [`LogReader`]s and [`Flusher`]s on other threads.
pub struct Log {
    shared: Arc<Shared>,
    cfg: LogConfig,
    active_file: Arc<File>,
    /// Highest byte position ever written in the active file since it was opened: a
    /// truncation zeroes up to here.
    written_to: u64,
    /// Sequence number of the last metadata file write prepared (see [`MetaWrite`]).
    meta_seq: u64,
    /// How far the active file's blocks are allocated (see [`crate::sys::allocate`]); a
    /// hint, reset when the active file changes.
    allocated_to: u64,
    meta: MetaFile,
    interval_thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.read();
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .field("segments", &st.segments.len())
            .field("next_index", &st.next_index())
            .field("log_end_offset", &st.end_offset())
            .finish()
    }
}

/// Frame and index facts of an entry about to be written.
struct Planned<'a> {
    header: [u8; FRAME_HEADER_LEN],
    frame: FrameHeader,
    batch: Option<steme_protocol::BatchHeader>,
    /// The records' content ids, when the appender gave them (none for a control entry).
    ids: Option<&'a [steme_protocol::AssertionId]>,
}

impl Log {
    // -----------------------------------------------------------------------------------
    // Opening and recovery

    /// Opens (or creates) the log in `dir`, recovering its tail. See the crate docs for the
    /// recovery rules.
    pub fn open(
        dir: impl AsRef<Path>,
        cfg: LogConfig,
        io: Arc<dyn FileIo>,
    ) -> Result<(Log, RecoveryReport)> {
        cfg.check()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let meta_path = dir.join(META_FILE);
        let meta = match read_small(&meta_path) {
            Ok(b) => MetaFile::decode(&b).map_err(|reason| Error::BadMeta {
                path: meta_path.clone(),
                reason: reason.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetaFile::default(),
            Err(e) => return Err(Error::io("read", &meta_path)(e)),
        };
        let mut report = RecoveryReport::default();
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(TMP_SUFFIX) {
                let _ = fs::remove_file(entry.path());
            } else if let Some(base) = parse_segment_name(&name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut rec = Recovery {
            io: io.as_ref(),
            active_prefix_loaded: false,
            dir: &dir,
            cfg: &cfg,
            meta: &meta,
            report: &mut report,
            segments: Vec::new(),
            last_term: 0,
            active_file: None,
            durable: None,
            found: Vec::new(),
        };
        rec.run(&bases)?;
        let Recovery {
            segments,
            last_term,
            active_file,
            active_prefix_loaded,
            durable,
            found,
            ..
        } = rec;
        if cfg.recovery == RecoveryPolicy::FailOnCorruption
            && let Some(d) = found.first()
        {
            return Err(Error::Damaged {
                dir: dir.clone(),
                damage: Box::new(d.clone()),
            });
        }
        let mut log_meta = meta;
        if !active_prefix_loaded
            && let Some(cp) = &mut log_meta.recovery
            && segments
                .last()
                .is_some_and(|s| s.base_offset() <= cp.segment)
        {
            cp.position = SEGMENT_HEADER_LEN as u64;
        }
        let (mut segments, active_file) = match active_file {
            Some(f) => (segments, f),
            None => {
                // Empty directory (or everything removed): start at the recorded log start.
                let (seg, file) = create_segment(
                    &dir,
                    &cfg,
                    io.as_ref(),
                    SegmentHeader {
                        base_offset: log_meta.log_start_offset,
                        base_index: log_meta.log_start_index,
                        created_ms: now_ms(),
                    },
                )?;
                (vec![seg], file)
            }
        };
        let active_path = segments
            .last()
            .expect("recovery leaves an active segment")
            .log_path();
        io.sync_data(&active_file)
            .map_err(Error::io("fdatasync", &active_path))?;
        io.sync_dir(&dir)
            .map_err(Error::io("fsync directory", &dir))?;
        // Damaged ranges: recorded earlier (found by reads or scrubs, or by an earlier
        // open) and found now. Walks jump over them; they stay until repaired.
        let mut registry = Registry::load(&dir).unwrap_or_else(|reason| {
            report.damage_file_error = Some(reason);
            Registry::default()
        });
        let mut changed = false;
        for d in found {
            changed |= registry.add(d).is_some();
        }
        let (start, next) = (
            segments.first().map_or(0, |s| s.header.base_index),
            segments
                .last()
                .map_or(0, |s| s.summary.last_index.wrapping_add(1)),
        );
        let before = registry.ranges.len();
        registry.retain_within(start, next);
        changed |= registry.ranges.len() != before;
        for d in &registry.ranges {
            if let Some(seg) = segments.iter_mut().find(|s| s.base_offset() == d.segment) {
                seg.add_hole(d.positions.clone());
            }
        }
        if changed {
            registry
                .save(io.as_ref(), &dir)
                .map_err(Error::io("write damage file", dir.join(DAMAGE_FILE)))?;
        }
        report.damaged = registry.ranges.clone();
        report.durable = durable;
        let written_to = segments.last().map_or(0, |s| s.summary.size);
        let state = State {
            segments,
            last_term,
            ids_epoch: 0,
        };
        // Everything recovered is synced now: record it as the durable point (after the
        // sync above, so the slot never names bytes that were not yet durable).
        let point = state.end_point();
        if durable != Some(point) {
            io.write_at(&active_file, DURABLE_SLOT_POS as u64, &[&point.encode()])
                .and_then(|()| io.sync_data(&active_file))
                .map_err(Error::io("record durable point", &active_path))?;
        }
        let next = state.next_index();
        report.segments = state.segments.len();
        report.last_index = state.last_index();
        report.log_end_offset = state.end_offset();
        log_meta.log_start_index = state.start_index();
        log_meta.log_start_offset = state.start_offset();
        let active_file = Arc::new(active_file);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            io,
            state: RwLock::new(state),
            sync: Mutex::new(SyncState {
                pending: Vec::new(),
                active: SyncTarget {
                    file: active_file.clone(),
                    path: active_path,
                },
                appended_next: next,
                epoch: 0,
                unflushed_bytes: 0,
                first_unflushed: None,
                stop: false,
            }),
            sync_cond: Cond::new(),
            flush_lock: Mutex::new(()),
            durable: Mutex::new(DurableState {
                next,
                point: Some(point),
                recorded: Some(point),
                poisoned: None,
            }),
            durable_cond: Cond::new(),
            damage: Mutex::new(registry),
            ids: Mutex::new(Default::default()),
            meta_written: Mutex::new(0),
        });
        let mut log = Log {
            shared,
            cfg,
            active_file,
            written_to,
            allocated_to: 0,
            meta_seq: 0,
            meta: log_meta,
            interval_thread: None,
        };
        log.checkpoint()?;
        if let FlushPolicy::Interval { ms, bytes } = log.cfg.flush {
            let shared = log.shared.clone();
            let handle = std::thread::Builder::new()
                .name("steme-log-flusher".into())
                .spawn(move || shared.run_interval_flusher(ms, bytes))
                .map_err(Error::io("spawn flusher thread", &dir))?;
            log.interval_thread = Some(handle);
        }
        Ok((log, report))
    }

    // -----------------------------------------------------------------------------------
    // Handles and accessors

    /// A cloneable reader for other threads.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// A cloneable handle that syncs from any thread.
    pub fn flusher(&self) -> Flusher {
        Flusher {
            shared: self.shared.clone(),
        }
    }

    pub fn config(&self) -> &LogConfig {
        &self.cfg
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The index the next append must carry.
    pub fn next_index(&self) -> u64 {
        self.shared.read().next_index()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.shared.read().last_index()
    }

    /// Term of the last entry (0 when the log holds none).
    pub fn last_term(&self) -> u64 {
        self.shared.read().last_term
    }

    pub fn first_index(&self) -> u64 {
        self.shared.read().start_index()
    }

    pub fn log_start_offset(&self) -> u64 {
        self.shared.read().start_offset()
    }

    pub fn log_end_offset(&self) -> u64 {
        self.shared.read().end_offset()
    }

    /// The last index known durable (see [`Flusher`]).
    pub fn durable_index(&self) -> Option<u64> {
        self.shared.index_before(self.shared.durable_next())
    }

    /// Syncs now (any policy) and moves the recovery checkpoint past every segment that
    /// is now durable.
    pub fn flush(&mut self) -> Result<Option<u64>> {
        let durable = self.flusher().flush()?;
        self.shared.record_durable()?;
        self.checkpoint()?;
        Ok(durable)
    }

    // -----------------------------------------------------------------------------------
    // Appending

    /// Appends one entry. See [`Log::append_many`].
    pub fn append(&mut self, index: u64, term: u64, payload: Payload<'_>) -> Result<Appended> {
        let mut one = [NewEntry {
            index,
            term,
            payload,
        }];
        let done = self.append_many(&mut one)?;
        Ok(done[0])
    }

    /// Appends entries in order. Indexes must follow the log (`next_index()`), terms never
    /// decrease, batches must be valid. Every entry is checked before anything is written,
    /// so a bad entry appends nothing. Each batch's `base_offset` is set to the log end
    /// offset (patched in the caller's buffer, CRC included).
    ///
    /// The entries are durable once [`Log::durable_index`] reaches them: at once under
    /// [`FlushPolicy::EveryAppend`], at the next group commit otherwise. Any write or sync
    /// error poisons the log.
    pub fn append_many(&mut self, entries: &mut [NewEntry<'_>]) -> Result<Vec<Appended>> {
        self.shared.check_writable()?;
        let now = now_ms();
        let (mut next, mut term, mut end) = {
            let st = self.shared.read();
            (st.next_index(), st.last_term, st.end_offset())
        };
        let mut plan = Vec::with_capacity(entries.len());
        let mut done = Vec::with_capacity(entries.len());
        for e in entries.iter_mut() {
            if e.index != next {
                return Err(Error::NonConsecutiveIndex {
                    expected: next,
                    got: e.index,
                });
            }
            if e.term < term {
                return Err(Error::TermRegression {
                    index: e.index,
                    last: term,
                    got: e.term,
                });
            }
            let (bytes, kind): (&[u8], EntryKind) = match &e.payload {
                Payload::Batch(b) | Payload::Checked { batch: b, .. } => (&**b, EntryKind::Batch),
                Payload::Control(c) => (c, EntryKind::Control),
            };
            if bytes.len() as u64 > self.cfg.max_entry_bytes {
                return Err(Error::EntryTooLarge {
                    index: e.index,
                    len: bytes.len() as u64,
                    max: self.cfg.max_entry_bytes,
                });
            }
            let base = end;
            let mut batch = None;
            let mut ids = None;
            let invalid = |source| Error::InvalidBatch {
                index: e.index,
                source,
            };
            let stamped = match &mut e.payload {
                Payload::Batch(b) => Some((validate(b).map_err(invalid)?, b)),
                Payload::Checked {
                    batch: b,
                    ids: known,
                } => {
                    let h = validate_framing(b).map_err(invalid)?;
                    if known.len() != h.record_count as usize {
                        return Err(invalid(BatchError::CountMismatch {
                            offset: 0,
                            declared: h.record_count,
                            found: u32::try_from(known.len()).unwrap_or(u32::MAX),
                        }));
                    }
                    ids = Some(*known);
                    Some((h, b))
                }
                Payload::Control(_) => {
                    ids = Some(&[][..]);
                    None
                }
            };
            if let Some((mut h, b)) = stamped {
                patch_base_offset(b, base);
                h.base_offset = base;
                end = h.end_offset();
                batch = Some(h);
            }
            let payload: &[u8] = match &e.payload {
                Payload::Batch(b) | Payload::Checked { batch: b, .. } => b,
                Payload::Control(c) => c,
            };
            let frame = FrameHeader {
                payload_len: payload.len() as u32,
                index: e.index,
                term: e.term,
                kind,
            };
            plan.push(Planned {
                header: frame.encode(payload),
                frame,
                batch,
                ids,
            });
            done.push(Appended {
                index: e.index,
                base_offset: base,
                end_offset: end,
            });
            next += 1;
            term = e.term;
        }

        let mut i = 0;
        while i < plan.len() {
            if self.should_roll(&plan[i], now) {
                self.roll_at(now)?;
            }
            // Take as many entries as fit in the active segment (at least one).
            let (pos, base_offset) = {
                let st = self.shared.read();
                (st.active().summary.size, st.active().base_offset())
            };
            let mut j = i;
            let mut total = 0u64;
            while j < plan.len() {
                let len = plan[j].frame.frame_len();
                if j > i
                    && (pos + total + len > self.cfg.segment_bytes
                        || self.should_roll(&plan[j], now))
                {
                    break;
                }
                total += len;
                j += 1;
            }
            let mut bufs: Vec<&[u8]> = Vec::with_capacity(2 * (j - i));
            for (p, e) in plan[i..j].iter().zip(entries[i..j].iter()) {
                bufs.push(&p.header);
                bufs.push(match &e.payload {
                    Payload::Batch(b) | Payload::Checked { batch: b, .. } => b,
                    Payload::Control(c) => c,
                });
            }
            self.ensure_capacity(pos + total)?;
            let path = segment_path(&self.shared.dir, base_offset);
            if let Err(e) = self.shared.io.write_at(&self.active_file, pos, &bufs) {
                self.shared.poison(format!(
                    "write of {total} bytes at {pos} in {} failed: {e}",
                    path.display()
                ));
                return Err(Error::io("write", path)(e));
            }
            self.written_to = self.written_to.max(pos + total);
            {
                let mut st = self.shared.write();
                let seg = st.active_mut();
                let mut at = pos;
                for p in &plan[i..j] {
                    seg.apply_frame(at, &p.frame, p.batch.as_ref(), now);
                    let first = p.batch.map_or(0, |b| b.base_offset);
                    seg.index_appended(at, at + p.frame.frame_len(), first, p.ids);
                    at += p.frame.frame_len();
                }
                st.last_term = plan[j - 1].frame.term;
            }
            {
                let mut s = lock(&self.shared.sync);
                s.appended_next = plan[j - 1].frame.index + 1;
                let was_clean = s.first_unflushed.is_none();
                s.unflushed_bytes += total;
                s.first_unflushed.get_or_insert_with(Instant::now);
                if let FlushPolicy::Interval { bytes, .. } = self.cfg.flush
                    && (was_clean || s.unflushed_bytes >= bytes)
                {
                    self.shared.sync_cond.notify_all();
                }
            }
            i = j;
        }
        if self.cfg.flush == FlushPolicy::EveryAppend {
            // Acknowledged entries are known durable on the next open, at once: damage to
            // them is repaired, never cut as a torn tail.
            self.shared.flush()?;
            self.shared.record_durable()?;
        }
        Ok(done)
    }

    fn should_roll(&self, p: &Planned<'_>, now: u64) -> bool {
        let st = self.shared.read();
        let a = st.active();
        if !a.has_records() {
            // A segment is named by its base offset: one without records cannot be rolled
            // (the next would have the same name).
            return false;
        }
        let full = a.summary.size + p.frame.frame_len() > self.cfg.segment_bytes;
        let old = self
            .cfg
            .segment_age
            .is_some_and(|age| now.saturating_sub(a.header.created_ms) >= age.as_millis() as u64);
        let count = p.batch.map_or(0, |b| u64::from(b.record_count));
        let offsets_full = a.summary.end_offset + count - a.base_offset() > u64::from(u32::MAX);
        full || old || offsets_full
    }

    /// Grows the active file (never shrinks it) so that `end` bytes fit, remapping it.
    fn ensure_capacity(&mut self, end: u64) -> Result<()> {
        let (len, path) = {
            let st = self.shared.read();
            (st.active().data.len() as u64, st.active().log_path())
        };
        if end <= len {
            return self.allocate_ahead(end, &path);
        }
        let grow = if self.cfg.preallocate {
            self.cfg.segment_bytes
        } else {
            1 << 20
        };
        let new_len = end.max(len + grow).max(end.next_multiple_of(4096));
        self.active_file
            .set_len(new_len)
            .map_err(Error::io("extend", &path))?;
        let data = map_file(&self.active_file).map_err(Error::io("map", &path))?;
        self.shared.write().active_mut().data = data;
        self.allocate_ahead(end, &path)
    }

    /// Keeps the active file's blocks allocated [`ALLOCATE_AHEAD`] past `end`, so the
    /// group commit's `fdatasync` writes data, not block allocations (one `fallocate` per
    /// few MiB written).
    fn allocate_ahead(&mut self, end: u64, path: &std::path::Path) -> Result<()> {
        if end <= self.allocated_to {
            return Ok(());
        }
        let from = self.allocated_to.max(end.saturating_sub(1) / 4096 * 4096);
        let to = end + ALLOCATE_AHEAD;
        crate::sys::allocate(&self.active_file, from, to - from)
            .map_err(Error::io("allocate", path))?;
        self.allocated_to = to;
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end, if the active
    /// segment holds records (a segment without records cannot be rolled: it would share
    /// its name with the next). Returns whether it rolled.
    pub fn roll(&mut self) -> Result<bool> {
        self.shared.check_writable()?;
        if !self.shared.read().active().has_records() {
            return Ok(false);
        }
        self.roll_at(now_ms())?;
        Ok(true)
    }

    fn roll_at(&mut self, now: u64) -> Result<()> {
        let (header, old_base) = {
            let st = self.shared.read();
            (
                SegmentHeader {
                    base_offset: st.end_offset(),
                    base_index: st.next_index(),
                    created_ms: now,
                },
                st.active().base_offset(),
            )
        };
        let index_files = self.write_index_files(false, false)?;
        let (seg, file) =
            create_segment(&self.shared.dir, &self.cfg, self.shared.io.as_ref(), header)?;
        let file = Arc::new(file);
        let new_path = seg.log_path();
        {
            let mut st = self.shared.write();
            let old = st.active_mut();
            old.sparse = SparseIndex::Sealed(OnceLock::new());
            old.ids = IdIndex::sealed();
            st.segments.push(seg);
        }
        {
            let mut s = lock(&self.shared.sync);
            let old = std::mem::replace(
                &mut s.active,
                SyncTarget {
                    file: file.clone(),
                    path: new_path,
                },
            );
            s.pending.push(old);
            s.pending.extend(index_files);
        }
        debug_assert_ne!(old_base, header.base_offset);
        self.active_file = file;
        self.written_to = SEGMENT_HEADER_LEN as u64;
        self.allocated_to = 0;
        self.checkpoint()
    }

    /// Writes the active segment's `.index` file, and its `.ids` file if the id index is
    /// complete or `all_ids` (which hashes what is left) — at roll the writer does not
    /// hash: a missing `.ids` is built later by [`LogReader::index_ids`] or the first
    /// lookup. Files are written tmp + rename, so a mapping of an older version is never
    /// truncated. Errors are not fatal: a missing or damaged index file is rebuilt from the
    /// log. With `sync`, the files are synced now; otherwise they are returned for the
    /// next flush.
    fn write_index_files(&mut self, sync: bool, all_ids: bool) -> Result<Vec<SyncTarget>> {
        let (index, ids, base) = {
            let st = self.shared.read();
            let a = st.active();
            let SparseIndex::Active(table) = &a.sparse else {
                return Ok(Vec::new());
            };
            let ids = (all_ids || a.ids_complete()).then(|| {
                let mut pairs = a.id_entries();
                encode_ids_file(a.base_offset(), a.summary.fingerprint(), &mut pairs)
            });
            (encode_index_file(table, &a.summary), ids, a.base_offset())
        };
        let dir = self.shared.dir.clone();
        if ids.is_none() {
            let _ = fs::remove_file(ids_path(&dir, base));
        }
        let mut out = Vec::new();
        let files = [
            (index_path(&dir, base), Some(index)),
            (ids_path(&dir, base), ids),
        ];
        for (path, bytes) in files {
            let Some(bytes) = bytes else { continue };
            match write_file_atomically(self.shared.io.as_ref(), &path, &bytes, sync) {
                Ok(file) => out.push(SyncTarget {
                    file: Arc::new(file),
                    path,
                }),
                Err(_) => {
                    // Rebuilt from the log on first use.
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(out)
    }

    /// Advances the recovery checkpoint past every segment known durable, if it moved.
    fn checkpoint(&mut self) -> Result<()> {
        let durable = self.shared.durable_next();
        let cp = {
            let st = self.shared.read();
            let seg = st
                .segments
                .iter()
                .find(|s| {
                    s.summary.last_index.wrapping_add(1) > durable || std::ptr::eq(*s, st.active())
                })
                .unwrap_or_else(|| st.active());
            let keep_position = self
                .meta
                .recovery
                .filter(|cp| cp.segment == seg.base_offset())
                .map_or(SEGMENT_HEADER_LEN as u64, |cp| cp.position);
            Checkpoint {
                segment: seg.base_offset(),
                position: keep_position,
            }
        };
        if self.meta.recovery != Some(cp) {
            self.meta.recovery = Some(cp);
            self.write_meta()?;
        }
        Ok(())
    }

    /// Clean shutdown: syncs, persists the active segment's indexes and checkpoints its
    /// end, so the next open reads no frame.
    pub fn close(mut self) -> Result<()> {
        self.stop_interval_thread();
        self.shared.flush()?;
        self.shared.record_durable()?;
        let files = self.write_index_files(true, true)?;
        let (base, size, complete) = {
            let st = self.shared.read();
            (
                st.active().base_offset(),
                st.active().summary.size,
                files.len() == 2,
            )
        };
        self.checkpoint()?;
        if complete {
            self.meta.recovery = Some(Checkpoint {
                segment: base,
                position: size,
            });
            self.write_meta()?;
        }
        Ok(())
    }

    fn stop_interval_thread(&mut self) {
        if let Some(h) = self.interval_thread.take() {
            lock(&self.shared.sync).stop = true;
            self.shared.sync_cond.notify_all();
            let _ = h.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.stop_interval_thread();
    }
}
