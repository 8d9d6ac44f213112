//! The writer: [`Log`] appends, rolls, truncates, purges, keeps metadata, and recovers on
//! open. Readers ([`crate::LogReader`]) and flushers ([`Flusher`]) share its state.

use std::fs::{self, File};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;

use crate::config::{FlushPolicy, LogConfig, RecoveryPolicy};
use crate::damage::{DAMAGE_FILE, Registry};
use crate::error::{Error, Result};
use crate::files::{create_segment, write_file_atomically};
use crate::flush::Flusher;
use crate::format::{
    Checkpoint, DURABLE_SLOT_POS, MetaFile, SEGMENT_HEADER_LEN, SegmentHeader, encode_ids_file,
    encode_index_file,
};
use crate::io::FileIo;
use crate::reader::LogReader;
use crate::recovery::Recovery;
pub use crate::recovery::{Cut, RecoveryReport};
use crate::segment::{IdIndex, SparseIndex, ids_path, index_path, parse_segment_name, read_small};
use crate::state::{Cond, DurableState, Shared, State, SyncState, SyncTarget, lock, now_ms};

mod append;
mod meta;
mod repair;
mod truncate;

pub use append::{Appended, NewEntry, Payload};
pub use meta::MetaWrite;

const META_FILE: &str = "meta";
const TMP_SUFFIX: &str = "tmp";
/// How far past the write position the active file's blocks are kept allocated.
const ALLOCATE_AHEAD: u64 = 8 << 20;

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
