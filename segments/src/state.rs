//! The state the writer ([`crate::Log`]), readers ([`crate::LogReader`]) and flushers
//! ([`crate::Flusher`]) share: the segments, and the small locks of group commit.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::damage::Registry;
use crate::format::DurablePoint;
use crate::idmap::IdMap;
use crate::io::FileIo;
use crate::segment::Segment;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the readers see: the segments, oldest first; the last one is active.
pub(crate) struct State {
    pub segments: Vec<Segment>,
    /// Term of the last entry (0 if the log holds none).
    pub last_term: u64,
    /// Bumped by every change to the segments other than a roll (see `crate::idmap`).
    pub ids_epoch: u64,
}

impl State {
    pub fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    pub fn start_index(&self) -> u64 {
        self.segments[0].header.base_index
    }

    pub fn start_offset(&self) -> u64 {
        self.segments[0].base_offset()
    }

    pub fn next_index(&self) -> u64 {
        self.active().summary.last_index.wrapping_add(1)
    }

    pub fn end_offset(&self) -> u64 {
        self.active().summary.end_offset
    }

    pub fn last_index(&self) -> Option<u64> {
        let next = self.next_index();
        (next > self.start_index()).then(|| next - 1)
    }

    /// The segment holding Raft index `index`, if any.
    pub fn segment_for_index(&self, index: u64) -> Option<&Segment> {
        let i = self
            .segments
            .partition_point(|s| s.header.base_index <= index);
        let seg = self.segments.get(i.checked_sub(1)?)?;
        (!seg.is_empty() && index <= seg.summary.last_index).then_some(seg)
    }

    /// Position in `segments` of the segment whose offsets include `offset`.
    pub fn segment_for_offset(&self, offset: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.base_offset() <= offset);
        i.checked_sub(1)
    }

    /// Term of the entry before `index` (0 if there is none, or it cannot be read).
    pub fn term_before(&self, index: u64) -> u64 {
        index
            .checked_sub(1)
            .and_then(|i| self.segment_for_index(i)?.find_index(i))
            .map_or(0, |f| f.header.term)
    }

    /// The log's end as a durable point (the caller knows it is synced).
    pub fn end_point(&self) -> DurablePoint {
        let a = self.active();
        DurablePoint {
            segment: a.base_offset(),
            position: a.summary.size,
            next_index: self.next_index(),
            last_term: self.last_term,
            end_offset: self.end_offset(),
        }
    }

    /// Segments were removed, or a segment's ids replaced: the id map must look again.
    pub(crate) fn segments_changed(&mut self) {
        self.ids_epoch += 1;
    }

    pub(crate) fn recompute_last_term(&mut self) {
        self.last_term = self
            .segments
            .iter()
            .rev()
            .find(|s| !s.is_empty())
            .map_or(0, |s| s.summary.last_term);
    }
}

/// Everything the writer, readers and flushers share.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub io: Arc<dyn FileIo>,
    pub state: RwLock<State>,
    pub sync: Mutex<SyncState>,
    pub sync_cond: Cond,
    /// Serialises flushes (the sync lock is not held while a flush runs).
    pub flush_lock: Mutex<()>,
    pub durable: Mutex<DurableState>,
    pub durable_cond: Cond,
    /// Known damaged ranges (lock order: after the state lock, never before it).
    pub damage: Mutex<Registry>,
    /// The sealed segments' ids in one table (lock order: after the state lock).
    pub ids: Mutex<IdMap>,
    /// Sequence number of the last metadata file write that landed; held while writing.
    pub meta_written: Mutex<u64>,
}

impl Shared {
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn index_before(&self, next: u64) -> Option<u64> {
        next.checked_sub(1)
    }

    pub(crate) fn damage(&self) -> MutexGuard<'_, Registry> {
        lock(&self.damage)
    }
}

/// A file with bytes that a flush must sync.
#[derive(Debug, Clone)]
pub(crate) struct SyncTarget {
    pub file: Arc<File>,
    pub path: PathBuf,
}

#[derive(Debug)]
pub(crate) struct SyncState {
    /// Files written since the last flush other than the active segment (segments sealed
    /// since, their index files).
    pub pending: Vec<SyncTarget>,
    pub active: SyncTarget,
    /// One past the last appended index.
    pub appended_next: u64,
    /// Bumped by every truncation and reset: a flush that started before one must not
    /// publish its captured index.
    pub epoch: u64,
    pub unflushed_bytes: u64,
    pub first_unflushed: Option<Instant>,
    /// Tells the interval thread to exit.
    pub stop: bool,
}

#[derive(Debug)]
pub(crate) struct DurableState {
    /// Every index below this is durable.
    pub next: u64,
    /// The latest point known durable, and the one last written to a segment's slot (which
    /// lags by one flush: a slot may only name a point already synced).
    pub point: Option<DurablePoint>,
    pub recorded: Option<DurablePoint>,
    pub poisoned: Option<String>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while holding one of these locks left plain data behind;
    // the invariants that matter (poison, durable index) are re-checked by every user.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the condvar type in one place for `Shared`.
pub(crate) type Cond = Condvar;
