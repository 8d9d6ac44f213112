//! The Raft log store of a group: the group's segment log *is* its Raft log (D2).
//!
//! Record batches are stored as received (the segment log sets their base offset from the
//! log prefix on append, identically on every replica); blank, membership and metadata
//! entries are control entries. The vote, the last purged log id and the state machine's
//! applied log id are small metadata written atomically by the segment log.
//!
//! Appends are written to the page cache at once and made durable by the broker's
//! [`Syncer`]: one thread per disk that fsyncs each log once for every append queued behind
//! it (group commit), and only then fires openraft's `IOFlushed` callbacks.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use bytes::BytesMut;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, RaftLogReader};
use steme_segments::{EntryKind, Flusher, Log, LogReader, Payload};

use super::codec::{self, Control};
use super::recent::Recent;
use super::types::{Entry, LogId, Proposal, TypeConfig, Vote, log_id, term_of};

pub const META_VOTE: &str = "raft.vote";
pub const META_PURGED: &str = "raft.purged";
pub const META_APPLIED: &str = "raft.applied";

/// What a group's normal entries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// A partition: normal entries are record batches that take offsets.
    Partition,
    /// The metadata group: normal entries are commands, stored as control entries.
    Metadata,
}

/// One group's segment log, shared by its log store, state machine and the partition's
/// produce and fetch paths.
pub struct GroupLog {
    pub group_id: u64,
    pub kind: GroupKind,
    /// The single writer. A std mutex: every critical section is a short page-cache write or
    /// a metadata update, never an fsync (those run on the [`Syncer`] through `flusher`).
    log: Mutex<Log>,
    pub reader: LogReader,
    pub flusher: Flusher,
    /// One past the last purged index: reads below it are refused even while the segment
    /// holding them is still on disk (purging drops whole segments only).
    purged_next: AtomicU64,
    /// Whether openraft's own reads may see a damaged range as blank entries: only for a
    /// group with a single voter, which never sends its log to anyone, so that it can
    /// apply past damage it has no other copy of (see [`GroupLog::set_sole_replica`]).
    sole_replica: std::sync::atomic::AtomicBool,
    /// Whether openraft's reads of a damaged range wait for the repair loop to rewrite it
    /// from a replica instead of failing (a failed read stops the Raft group for good):
    /// set for a partition while its group runs. See [`StoreReader`].
    await_repair: std::sync::atomic::AtomicBool,
    /// Appended, not yet applied entries, served to openraft's reads without reading the
    /// log again (see [`Recent`]).
    recent: Mutex<Recent>,
}

impl Debug for GroupLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupLog")
            .field("group_id", &self.group_id)
            .field("kind", &self.kind)
            .finish()
    }
}

pub fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

impl GroupLog {
    pub fn new(group_id: u64, kind: GroupKind, log: Log) -> io::Result<Arc<GroupLog>> {
        let purged_next = match log.meta_get(META_PURGED) {
            Some(b) => codec::decode_log_id(b).map_err(io_err)?.index + 1,
            None => 0,
        };
        Ok(Arc::new(GroupLog {
            group_id,
            kind,
            reader: log.reader(),
            flusher: log.flusher(),
            log: Mutex::new(log),
            purged_next: AtomicU64::new(purged_next),
            sole_replica: std::sync::atomic::AtomicBool::new(false),
            await_repair: std::sync::atomic::AtomicBool::new(false),
            recent: Mutex::new(Recent::default()),
        }))
    }

    /// Marks the group as having this one voter. Its Raft reads then see an unrepairable
    /// damaged range as blank entries, so it starts, applies past the range (the high
    /// watermark reaches the log end) and serves everything else; consumers that reach
    /// the range get `CorruptData`. Never for a group with other replicas: they would be
    /// sent blanks in place of records.
    pub fn set_sole_replica(&self, sole: bool) {
        self.sole_replica.store(sole, Ordering::Release);
    }

    /// Whether openraft's reads of a damaged range wait until it is repaired: from when the
    /// partition's group runs (its repair loop rewrites damaged ranges from replicas) until
    /// it stops (a waiting read then fails within [`DAMAGE_RETRY`], so the group's tasks
    /// can end).
    pub fn set_await_repair(&self, on: bool) {
        self.await_repair.store(on, Ordering::Release);
    }

    /// Locks the writer. A poisoned lock means a writer panicked mid-update; the log's own
    /// state is still consistent (every update checks before it writes), so carry on.
    pub fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries up to `index` are applied: openraft reads them from the log from now on.
    pub fn forget_applied(&self, index: u64) {
        self.recent().forget_upto(index);
    }

    /// The log was reset (a snapshot installed past it): nothing held is in it any more.
    pub fn forget_all(&self) {
        self.recent().clear();
    }

    pub fn meta_log_id(&self, key: &str) -> io::Result<Option<LogId>> {
        match self.lock().meta_get(key) {
            Some(b) => codec::decode_log_id(b).map(Some).map_err(io_err),
            None => Ok(None),
        }
    }

    pub fn set_meta_log_id(&self, key: &str, id: &LogId) -> io::Result<()> {
        let enc = codec::encode_log_id(id);
        self.lock()
            .set_meta(&[(key, Some(&enc[..]))])
            .map_err(io_err)
    }

    fn read_vote(&self) -> io::Result<Option<Vote>> {
        match self.lock().meta_get(META_VOTE) {
            Some(b) => codec::decode_vote(b).map(Some).map_err(io_err),
            None => Ok(None),
        }
    }

    /// Reads entries `[start, end)` as openraft entries; batch payloads borrow the mmap.
    fn entries(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        // Purging drops whole segments only; entries at or below the purged id may still be
        // on disk but are no longer part of the Raft log.
        let first = self
            .reader
            .first_index()
            .max(self.purged_next.load(Ordering::Acquire));
        let next = self.reader.next_index();
        let (start, end) = (start.max(first), end.min(next));
        if start >= end {
            return Ok(Vec::new());
        }
        if let Some(held) = self.recent().get(start, end, |i| self.reader.term_at(i)) {
            return Ok(held);
        }
        if !self.sole_replica.load(Ordering::Acquire) {
            let raw = self.reader.read_entries(start..end).map_err(io_err)?;
            return self.to_entries(raw);
        }
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            match self.reader.read_entries(at..end) {
                Ok(raw) => {
                    out.extend(self.to_entries(raw)?);
                    break;
                }
                Err(steme_segments::Error::Damaged { damage, .. })
                    if damage.indexes.start <= at =>
                {
                    // Terms never decrease: the damaged entries have the term of the
                    // first intact entry after them (the log's last term at its end).
                    let upto = damage.indexes.end.min(end);
                    let term = self
                        .reader
                        .term_at(damage.indexes.end)
                        .unwrap_or_else(|| self.lock().last_term());
                    out.extend((at..upto).map(|index| Entry {
                        log_id: log_id(term, index),
                        payload: EntryPayload::Blank,
                    }));
                    at = upto;
                }
                Err(steme_segments::Error::Damaged { damage, .. }) => {
                    let raw = self
                        .reader
                        .read_entries(at..damage.indexes.start)
                        .map_err(io_err)?;
                    out.extend(self.to_entries(raw)?);
                    at = damage.indexes.start;
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(out)
    }

    fn to_entries(&self, raw: Vec<steme_segments::Entry>) -> io::Result<Vec<Entry>> {
        raw.into_iter()
            .map(|e| {
                let payload = match e.kind {
                    EntryKind::Batch => EntryPayload::Normal(Proposal::new(e.payload)),
                    EntryKind::Control => match codec::decode_control(e.payload).map_err(io_err)? {
                        Control::Blank => EntryPayload::Blank,
                        Control::Membership(m) => EntryPayload::Membership(m),
                        Control::App(b) => EntryPayload::Normal(Proposal::new(b)),
                    },
                };
                Ok(Entry {
                    log_id: log_id(e.term, e.index),
                    payload,
                })
            })
            .collect()
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// A request to make a log durable up to `index` and then complete `done`.
struct SyncRequest {
    log: Arc<GroupLog>,
    index: u64,
    done: IOFlushed<TypeConfig>,
}

/// Group commit for every log on one disk: a thread that takes all pending sync requests,
/// fsyncs each log once, and completes the callbacks that the sync covered.
#[derive(Clone)]
pub struct Syncer {
    tx: mpsc::Sender<SyncRequest>,
}

/// Where the syncer records each fsync's latency.
pub type FsyncLatency = prometheus_client::metrics::histogram::Histogram;

impl Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Syncer")
    }
}

impl Syncer {
    pub fn start(fsync: FsyncLatency) -> io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<SyncRequest>();
        std::thread::Builder::new()
            .name("steme-syncer".into())
            .spawn(move || sync_loop(rx, &fsync))?;
        Ok(Syncer { tx })
    }

    fn request(&self, req: SyncRequest) {
        if let Err(mpsc::SendError(req)) = self.tx.send(req) {
            req.done
                .io_completed(Err(io::Error::other("the syncer thread has stopped")));
        }
    }
}

/// An append waiting for its sync: its index and openraft's callback.
type Waiting = (u64, IOFlushed<TypeConfig>);

/// How long the syncer waits for more appends before it records the latest durable point
/// of the logs it synced (each sync records the point of the one before it, so under load
/// this costs nothing; when a log goes idle, one more small sync makes every acknowledged
/// entry known durable on the next open).
const RECORD_WHEN_IDLE: std::time::Duration = std::time::Duration::from_millis(20);

fn sync_loop(rx: mpsc::Receiver<SyncRequest>, fsync: &FsyncLatency) {
    let mut behind: HashMap<u64, Arc<GroupLog>> = HashMap::new();
    loop {
        let first = match rx.recv_timeout(RECORD_WHEN_IDLE) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                for (_, log) in behind.drain() {
                    if let Err(e) = log.flusher.record_durable() {
                        tracing::error!(group = log.group_id, error = %e, "recording the durable point failed; the log refuses writes");
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut by_group: HashMap<u64, (Arc<GroupLog>, Vec<Waiting>)> = HashMap::new();
        for req in std::iter::once(first).chain(rx.try_iter()) {
            by_group
                .entry(req.log.group_id)
                .or_insert_with(|| (req.log.clone(), Vec::new()))
                .1
                .push((req.index, req.done));
        }
        for (group, (log, _)) in &by_group {
            behind.insert(*group, log.clone());
        }
        // Independent logs sync in parallel, up to SYNC_THREADS at once (one fsync each
        // covers every append made to it before it started): a round of many logs costs
        // about its slowest syncs, not their sum.
        let mut round: Vec<(Arc<GroupLog>, Vec<Waiting>)> = by_group.into_values().collect();
        let per_thread = round.len().div_ceil(SYNC_THREADS);
        std::thread::scope(|s| {
            while round.len() > per_thread {
                let part = round.split_off(round.len() - per_thread);
                s.spawn(move || {
                    part.into_iter()
                        .for_each(|(log, w)| sync_one(&log, w, fsync));
                });
            }
            round
                .into_iter()
                .for_each(|(log, w)| sync_one(&log, w, fsync));
        });
    }
}

/// Threads (the syncer's own included) that sync logs at once in one round.
const SYNC_THREADS: usize = 4;

/// Syncs one log and answers the appends waiting for it.
fn sync_one(log: &GroupLog, waiting: Vec<Waiting>, fsync: &FsyncLatency) {
    let started = std::time::Instant::now();
    let flushed = log.flusher.flush();
    fsync.observe(started.elapsed().as_secs_f64());
    match flushed {
        Ok(durable) => {
            let durable = durable.unwrap_or(0);
            for (index, done) in waiting {
                if index <= durable {
                    done.io_completed(Ok(()));
                } else {
                    // Truncated and re-appended meanwhile: the sync did not cover it.
                    done.io_completed(Err(io::Error::other(format!(
                        "group {}: index {index} not durable after sync (durable {durable})",
                        log.group_id
                    ))));
                }
            }
        }
        Err(e) => {
            tracing::error!(group = log.group_id, error = %e, "fsync failed; the log refuses writes");
            let msg = e.to_string();
            for (_, done) in waiting {
                done.io_completed(Err(io::Error::other(msg.clone())));
            }
        }
    }
}

/// openraft's view of a group's log.
#[derive(Debug, Clone)]
pub struct LogStore {
    log: Arc<GroupLog>,
    syncer: Syncer,
    /// Acknowledge appends before they are synced (`flush = interval`): faster, and loses
    /// the last interval's appends on power failure.
    ack_before_sync: bool,
}

impl LogStore {
    pub fn new(log: Arc<GroupLog>, syncer: Syncer, ack_before_sync: bool) -> LogStore {
        LogStore {
            log,
            syncer,
            ack_before_sync,
        }
    }
}

/// How often a Raft read blocked on a damaged range tries again.
const DAMAGE_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
/// How often a Raft read blocked on a damaged range says so.
const DAMAGE_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a read failed on a damaged range (see `steme_segments::Error::Damaged`).
fn is_damage(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<steme_segments::Error>())
        .is_some_and(|e| matches!(e, steme_segments::Error::Damaged { .. }))
}

/// The log reader openraft hands to replication and apply tasks. Once the group runs
/// ([`GroupLog::set_await_repair`]), a read that reaches a damaged range waits for its
/// repair.
#[derive(Debug, Clone)]
pub struct StoreReader {
    log: Arc<GroupLog>,
}

impl RaftLogReader<TypeConfig> for StoreReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        let (mut waited, mut report_at) = (false, std::time::Instant::now());
        loop {
            match self.log.entries(start, end) {
                Err(e) if is_damage(&e) && self.log.await_repair.load(Ordering::Acquire) => {
                    // Failing would stop the group for good. The range is recorded as
                    // damaged, so the repair loop hands leadership over (a leader cannot
                    // send it) and rewrites it from a replica; a replication stream
                    // waiting here ends with the leadership. Committed entries are on a
                    // majority, so a healthy copy exists unless a majority is damaged, and
                    // then waiting — quarantined, reported — is all that is safe.
                    if std::time::Instant::now() >= report_at {
                        tracing::warn!(group = self.log.group_id, start, end, error = %e, "a raft read waits for a damaged range to be repaired");
                        report_at = std::time::Instant::now() + DAMAGE_REPORT_EVERY;
                    }
                    waited = true;
                    tokio::time::sleep(DAMAGE_RETRY).await;
                }
                r => {
                    if waited {
                        tracing::info!(
                            group = self.log.group_id,
                            start,
                            end,
                            "a raft read went on after its damaged range was repaired"
                        );
                    }
                    return r;
                }
            }
        }
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.log.read_vote()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = StoreReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged = self.log.meta_log_id(META_PURGED)?;
        let purged_next = self.log.purged_next.load(Ordering::Acquire);
        let last = {
            let log = self.log.lock();
            log.last_index()
                .filter(|i| *i >= purged_next)
                .map(|i| log_id(log.last_term(), i))
        };
        Ok(LogState {
            last_log_id: last.or(purged),
            last_purged_log_id: purged,
        })
    }

    async fn get_log_reader(&mut self) -> StoreReader {
        StoreReader {
            log: self.log.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let enc = codec::encode_vote(vote);
        self.log
            .lock()
            .set_meta(&[(META_VOTE, Some(&enc[..]))])
            .map_err(io_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut last = None;
        {
            let mut log = self.log.lock();
            for entry in entries {
                let log_id = entry.log_id;
                let index = log_id.index;
                let term = term_of(&log_id);
                if log.last_index().is_none() && index != log.next_index() {
                    // An empty log may begin at any index (a follower whose first entries
                    // come after a purge or snapshot); offsets carry on from where they are.
                    let end = log.log_end_offset();
                    log.reset(index, end).map_err(io_err)?;
                    self.log.forget_all();
                }
                let written = match entry.payload {
                    EntryPayload::Normal(Proposal {
                        bytes,
                        ids,
                        crc_checked,
                    }) if self.log.kind == GroupKind::Partition
                        && !super::marker::is_marker(&bytes) =>
                    {
                        // The log patches base_offset and the CRC in place. The proposal's
                        // buffer is reused when nothing else holds it; otherwise (a follower's
                        // or a shared entry) it is copied once here.
                        let mut buf = bytes
                            .try_into_mut()
                            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                        // The leader's own batch was checked and hashed by its produce
                        // handler; a replica's copy is checked here, its one CRC pass, and
                        // indexed by the ids its leader sent along if it did.
                        let payload = match (&ids, crc_checked) {
                            (Some(ids), true) => Payload::Checked {
                                batch: &mut buf,
                                ids,
                            },
                            (Some(ids), false) => Payload::Hinted {
                                batch: &mut buf,
                                ids,
                            },
                            (None, _) => Payload::Batch(&mut buf),
                        };
                        log.append(index, term, payload).map_err(io_err)?;
                        // As stored (with the base offset this log gave it), keeping the
                        // ids for the followers it is sent to.
                        EntryPayload::Normal(Proposal::hinted(buf.freeze(), ids))
                    }
                    // A metadata command, or a partition's split marker: no offsets.
                    EntryPayload::Normal(Proposal { bytes, .. }) => {
                        let enc = codec::encode_control(&Control::App(bytes.clone()));
                        log.append(index, term, Payload::Control(&enc))
                            .map_err(io_err)?;
                        EntryPayload::Normal(Proposal::new(bytes))
                    }
                    EntryPayload::Blank => {
                        let enc = codec::encode_control(&Control::Blank);
                        log.append(index, term, Payload::Control(&enc))
                            .map_err(io_err)?;
                        EntryPayload::Blank
                    }
                    EntryPayload::Membership(m) => {
                        let enc = codec::encode_control(&Control::Membership(m.clone()));
                        log.append(index, term, Payload::Control(&enc))
                            .map_err(io_err)?;
                        EntryPayload::Membership(m)
                    }
                };
                // Only partitions forget their entries when applied; the metadata group's
                // state machine does not hold the log, so its reads stay on the log.
                if self.log.kind == GroupKind::Partition {
                    self.log.recent().push(Entry {
                        log_id,
                        payload: written,
                    });
                }
                last = Some(index);
            }
        }
        match last {
            Some(index) if !self.ack_before_sync => self.syncer.request(SyncRequest {
                log: self.log.clone(),
                index,
                done: callback,
            }),
            _ => callback.io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let mut log = self.log.lock();
        match &last_log_id {
            Some(id) => self.log.recent().forget_from(id.index + 1),
            None => self.log.forget_all(),
        }
        match last_log_id {
            Some(id) => log.truncate_after(id.index).map_err(io_err),
            None => {
                // Every entry goes: keep only what was purged.
                let first_removed = log
                    .first_index()
                    .max(self.log.purged_next.load(Ordering::Acquire));
                log.truncate_from(first_removed).map_err(io_err)
            }
        }
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let enc = codec::encode_log_id(&upto);
        let mut log = self.log.lock();
        log.set_meta(&[(META_PURGED, Some(&enc[..]))])
            .map_err(io_err)?;
        self.log
            .purged_next
            .fetch_max(upto.index + 1, Ordering::AcqRel);
        self.log.recent().forget_upto(upto.index);
        match log.last_index() {
            // Purging past the last entry (a snapshot beyond the log): the log empties and
            // the next entry follows the purged one.
            Some(last) if upto.index > last => {
                self.log.forget_all();
                let end = log.log_end_offset();
                log.reset(upto.index + 1, end).map_err(io_err)
            }
            None if upto.index >= log.next_index() => {
                self.log.forget_all();
                let end = log.log_end_offset();
                log.reset(upto.index + 1, end).map_err(io_err)
            }
            None => Ok(()),
            Some(_) => log.purge_upto(upto.index).map_err(io_err),
        }
    }
}
