//! The partition state machine (D2): applying an entry advances the high watermark, wakes
//! fetchers and answers the producer with where its batch landed.
//!
//! The state is tiny — the last applied log id, the membership, the high watermark and the
//! last HLC — because the records themselves are the log. It is persisted (lazily; applying
//! again is idempotent) so a restart does not re-apply the whole retained log, and a
//! snapshot is the same few fields: what a follower that fell behind retention needs to
//! continue from the retention boundary.
//!
//! ```text
//! applied / snapshot record
//!   last_applied opt<term u64, index u64> | high_watermark u64 | last_hlc u64
//!   | log_start_offset u64 | membership_log_id opt<term u64, index u64> | membership
//!   | split opt<epoch u64, index u64, offset u64, hlc u64>
//! ```
//!
//! `split` is the last split marker applied (see [`super::marker`]): its epoch, Raft index,
//! and the offset and HLC where it fell. Records written before it was known have none.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use openraft::EntryPayload;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use steme_protocol::BatchHeader;
use steme_protocol::wire::{Reader, put_option};
use tokio::sync::watch;

use super::log_store::{GroupLog, META_APPLIED, io_err};
use super::types::{
    Applied, LogId, Proposal, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, log_id, term_of,
};
use super::{codec, marker};

const META_SNAPSHOT: &str = "partition.snapshot";
/// How often the applied state is written down (a restart re-applies at most this much).
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// What the produce and fetch paths read from the state machine.
#[derive(Debug)]
pub struct PartitionState {
    /// End offset of the last applied batch: consumers see offsets below it. Fetchers
    /// long-poll on it.
    pub high_watermark: watch::Sender<u64>,
    /// HLC of the last applied record.
    pub last_hlc: AtomicU64,
    /// Where retention wants the next snapshot: `(raft index, offset after it)`, the last
    /// entry of the last segment to delete (D2). openraft purges the log up to every
    /// snapshot it builds, so a snapshot is only ever built at such a boundary.
    pub retention_boundary: std::sync::Mutex<Option<(u64, u64)>>,
    /// The term in which this replica, as leader, has applied an entry of its own: from then
    /// on its high watermark covers everything acknowledged before it (0: none yet).
    pub serving_term: AtomicU64,
    /// The last split marker applied.
    pub split: std::sync::Mutex<Option<SplitMark>>,
}

/// Where a split marker fell in a partition's log: its split point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMark {
    /// The topic's map epoch the marker is for.
    pub epoch: u64,
    /// Its Raft index.
    pub index: u64,
    /// The offset of the first record after it.
    pub offset: u64,
    /// The HLC of the last record before it (0 if none).
    pub hlc: u64,
}

impl PartitionState {
    pub fn new(high_watermark: u64, last_hlc: u64) -> Arc<PartitionState> {
        Arc::new(PartitionState {
            high_watermark: watch::Sender::new(high_watermark),
            last_hlc: AtomicU64::new(last_hlc),
            retention_boundary: std::sync::Mutex::new(None),
            serving_term: AtomicU64::new(0),
            split: std::sync::Mutex::new(None),
        })
    }

    /// The last split marker applied.
    pub fn split(&self) -> Option<SplitMark> {
        *self.split.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }
}

/// The persisted fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppliedRecord {
    pub last_applied: Option<LogId>,
    pub high_watermark: u64,
    pub last_hlc: u64,
    pub log_start_offset: u64,
    pub membership: StoredMembership,
    pub split: Option<SplitMark>,
}

impl AppliedRecord {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        let put_id = |b: &mut BytesMut, id: &LogId| {
            b.put_u64_le(term_of(id));
            b.put_u64_le(id.index);
        };
        put_option(&mut out, self.last_applied.as_ref(), put_id);
        out.put_u64_le(self.high_watermark);
        out.put_u64_le(self.last_hlc);
        out.put_u64_le(self.log_start_offset);
        put_option(&mut out, self.membership.log_id().as_ref(), put_id);
        codec::encode_membership(self.membership.membership(), &mut out);
        put_option(&mut out, self.split.as_ref(), |b, m| {
            b.put_u64_le(m.epoch);
            b.put_u64_le(m.index);
            b.put_u64_le(m.offset);
            b.put_u64_le(m.hlc);
        });
        out.freeze()
    }

    pub fn decode(b: Bytes) -> io::Result<AppliedRecord> {
        let mut r = Reader::new(b);
        let get_id = |r: &mut Reader| Ok(log_id(r.u64()?, r.u64()?));
        let last_applied = r.option(get_id).map_err(io_err)?;
        let high_watermark = r.u64().map_err(io_err)?;
        let last_hlc = r.u64().map_err(io_err)?;
        let log_start_offset = r.u64().map_err(io_err)?;
        let membership_id = r.option(get_id).map_err(io_err)?;
        let membership = codec::decode_membership(&mut r).map_err(io_err)?;
        // Absent in what brokers wrote before splits existed.
        let split = if r.remaining() == 0 {
            None
        } else {
            r.option(|r| {
                Ok(SplitMark {
                    epoch: r.u64()?,
                    index: r.u64()?,
                    offset: r.u64()?,
                    hlc: r.u64()?,
                })
            })
            .map_err(io_err)?
        };
        r.finish().map_err(io_err)?;
        Ok(AppliedRecord {
            last_applied,
            high_watermark,
            last_hlc,
            log_start_offset,
            membership: StoredMembership::new(membership_id, membership),
            split,
        })
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
        }
    }
}

/// The state machine of one partition group.
pub struct PartitionSm {
    log: Arc<GroupLog>,
    state: Arc<PartitionState>,
    applied: AppliedRecord,
    /// Recent memberships, oldest first, so a snapshot at an earlier boundary carries the
    /// membership in force there.
    memberships: Vec<StoredMembership>,
    last_persist: Instant,
    dirty: bool,
}

impl std::fmt::Debug for PartitionSm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionSm")
            .field("group", &self.log.group_id)
            .field("applied", &self.applied.last_applied)
            .finish()
    }
}

impl PartitionSm {
    /// Loads the persisted applied state and snapshot of `log`.
    pub fn open(log: Arc<GroupLog>) -> io::Result<(PartitionSm, Arc<PartitionState>)> {
        let applied = {
            let l = log.lock();
            let decode = |key| {
                l.meta_get(key)
                    .map(|b| AppliedRecord::decode(Bytes::copy_from_slice(b)))
                    .transpose()
            };
            let applied = decode(META_APPLIED)?;
            let snapshot = decode(META_SNAPSHOT)?;
            // The applied state is written lazily; a snapshot (taken at a retention
            // boundary, with the log purged up to it) may be newer. Start from the newer.
            match (applied, snapshot) {
                (Some(a), Some(s)) if s.last_applied > a.last_applied => s,
                (Some(a), _) => a,
                (None, Some(s)) => s,
                (None, None) => AppliedRecord {
                    log_start_offset: l.log_start_offset(),
                    high_watermark: l.log_start_offset(),
                    ..AppliedRecord::default()
                },
            }
        };
        // The high watermark never passes the log end: consumers must never be promised
        // offsets the log does not hold. (Damage keeps its place in the log, so this only
        // fires if records vanished without a trace, which recovery refuses to do.)
        let end = log.reader.log_end_offset();
        if applied.high_watermark > end {
            tracing::error!(
                group = log.group_id,
                high_watermark = applied.high_watermark,
                log_end = end,
                "applied state is ahead of the log; holding the high watermark at the log end"
            );
        }
        let state = PartitionState::new(applied.high_watermark.min(end), applied.last_hlc);
        *state.split.lock().unwrap_or_else(|p| p.into_inner()) = applied.split;
        Ok((
            PartitionSm {
                log,
                state: state.clone(),
                memberships: vec![applied.membership.clone()],
                applied,
                last_persist: Instant::now(),
                dirty: false,
            },
            state,
        ))
    }

    /// The last index applied, as persisted (entries after it are read again on start).
    pub fn applied_index(&self) -> Option<u64> {
        self.applied.last_applied.map(|id| id.index)
    }

    fn persist(&mut self) -> io::Result<()> {
        let enc = self.applied.encode();
        // Prepared under the log's lock, written (two fsyncs) after releasing it, so the
        // appends this lock serialises never wait for it.
        let write = self
            .log
            .lock()
            .prepare_meta(&[(META_APPLIED, Some(&enc[..]))])
            .map_err(io_err)?;
        write.commit().map_err(io_err)?;
        self.last_persist = Instant::now();
        self.dirty = false;
        Ok(())
    }

    /// Writes the applied state now (at shutdown).
    pub fn flush_applied(&mut self) -> io::Result<()> {
        if self.dirty { self.persist() } else { Ok(()) }
    }

    fn publish(&self) {
        self.state
            .last_hlc
            .store(self.applied.last_hlc, Ordering::Release);
        *self.state.split.lock().unwrap_or_else(|p| p.into_inner()) = self.applied.split;
        self.state.high_watermark.send_if_modified(|hwm| {
            let changed = *hwm != self.applied.high_watermark;
            *hwm = self.applied.high_watermark;
            changed
        });
    }
}

impl PartitionSm {
    /// The state as it was right after entry `index`, whose records end at `end_offset`.
    fn record_at(&self, index: u64, end_offset: u64) -> Option<AppliedRecord> {
        let term = self.log.reader.term_at(index)?;
        let membership = self
            .memberships
            .iter()
            .rev()
            .find(|m| m.log_id().is_none_or(|id| id.index <= index))
            .cloned()
            .unwrap_or_default();
        let last_hlc = last_hlc_before(&self.log, end_offset).unwrap_or(0);
        Some(AppliedRecord {
            last_applied: Some(log_id(term, index)),
            high_watermark: end_offset,
            last_hlc,
            log_start_offset: end_offset,
            membership,
            // A marker after the boundary is applied again by whoever installs this.
            split: self.applied.split.filter(|m| m.index <= index),
        })
    }
}

/// HLC of the record just before `offset`.
fn last_hlc_before(log: &GroupLog, offset: u64) -> Option<u64> {
    let at = offset.checked_sub(1)?;
    let read = log.reader.read_from_offset(at, 1, u64::MAX).ok()?;
    let h = BatchHeader::parse(read.batches.first()?).ok()?;
    (at >= h.base_offset && at < h.end_offset()).then(|| h.base_hlc + (at - h.base_offset))
}

impl RaftStateMachine<TypeConfig> for PartitionSm {
    type SnapshotData = Bytes;
    type SnapshotBuilder = PartitionSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let applied = match entry.payload {
                EntryPayload::Normal(Proposal { bytes, .. }) if marker::is_marker(&bytes) => {
                    let epoch = marker::decode(&bytes).ok_or_else(|| {
                        io::Error::other(format!(
                            "malformed split marker at index {}",
                            entry.log_id.index
                        ))
                    })?;
                    self.applied.split = Some(SplitMark {
                        epoch,
                        index: entry.log_id.index,
                        offset: self.applied.high_watermark,
                        hlc: self.applied.last_hlc,
                    });
                    Applied::Control
                }
                EntryPayload::Normal(Proposal { bytes, .. }) => {
                    let h = BatchHeader::parse(&bytes).map_err(io_err)?;
                    self.applied.high_watermark = h.end_offset();
                    self.applied.last_hlc = h.last_hlc();
                    Applied::Batch {
                        base_offset: h.base_offset,
                        base_hlc: h.base_hlc,
                        record_count: h.record_count,
                    }
                }
                EntryPayload::Blank => Applied::Control,
                EntryPayload::Membership(m) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    self.memberships.push(self.applied.membership.clone());
                    if self.memberships.len() > 8 {
                        self.memberships.remove(0);
                    }
                    Applied::Control
                }
            };
            self.applied.last_applied = Some(entry.log_id);
            self.dirty = true;
            if let Some(r) = responder {
                r.send(applied);
            }
        }
        if let Some(id) = &self.applied.last_applied {
            self.log.forget_applied(id.index);
        }
        // Wake fetchers and producers once per applied run, not once per entry.
        self.publish();
        // Hash the new records into the content-id index here, off the append path, on
        // every replica (a follower that becomes leader then has nothing to catch up).
        self.log.reader.index_ids();
        if self.last_persist.elapsed() >= PERSIST_EVERY {
            self.persist()?;
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(
        &mut self,
        force: bool,
    ) -> Option<PartitionSnapshotBuilder> {
        let pending = self
            .state
            .retention_boundary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        // Only retention (or a follower that needs one) makes a snapshot.
        if !force && !pending {
            return None;
        }
        Some(self.get_snapshot_builder().await)
    }

    async fn get_snapshot_builder(&mut self) -> PartitionSnapshotBuilder {
        let boundary = self
            .state
            .retention_boundary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let applied_index = self.applied.last_applied.map(|id| id.index);
        // At the retention boundary when retention asked for this snapshot; otherwise
        // (openraft building one for a follower when none exists) at the applied state, as
        // openraft's contract requires. With `SnapshotPolicy::Never` nothing else builds one.
        let at = boundary
            .filter(|(index, _)| applied_index.is_some_and(|a| a >= *index))
            .and_then(|(index, end_offset)| self.record_at(index, end_offset))
            .unwrap_or_else(|| self.applied.clone());
        PartitionSnapshotBuilder {
            log: self.log.clone(),
            at,
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Bytes,
    ) -> Result<(), io::Error> {
        let rec = AppliedRecord::decode(snapshot.clone())?;
        if rec.last_applied != meta.last_log_id {
            return Err(io::Error::other(format!(
                "snapshot data is for {:?} but its meta says {:?}",
                rec.last_applied, meta.last_log_id
            )));
        }
        {
            let mut log = self.log.lock();
            let next_index = rec.last_applied.as_ref().map_or(0, |id| id.index + 1);
            // The log already continues the snapshot if it holds the snapshot's last entry
            // (same term), or if that entry was purged and the log goes on right after it.
            let continues = rec.last_applied.as_ref().is_none_or(|id| {
                match self.log.reader.term_at(id.index) {
                    Some(term) => term == term_of(id),
                    None => log.next_index() > id.index && log.first_index() <= id.index + 1,
                }
            });
            if !continues {
                // Our log does not reach the snapshot (we fell behind retention): continue
                // from the snapshot's boundary with the leader's offsets.
                log.reset(next_index, rec.high_watermark).map_err(io_err)?;
                self.log.forget_all();
            }
            log.set_meta(&[(META_SNAPSHOT, Some(&snapshot[..]))])
                .map_err(io_err)?;
        }
        self.applied = rec;
        self.persist()?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        // The builder persists every snapshot it makes; the latest is the current one.
        let stored = self
            .log
            .lock()
            .meta_get(META_SNAPSHOT)
            .map(Bytes::copy_from_slice);
        let Some(enc) = stored else {
            return Ok(None);
        };
        let rec = AppliedRecord::decode(enc.clone())?;
        Ok(Some(Snapshot {
            meta: rec.snapshot_meta(),
            snapshot: enc,
        }))
    }
}

/// Builds a snapshot of the partition state at the moment it was created.
pub struct PartitionSnapshotBuilder {
    log: Arc<GroupLog>,
    /// The state the snapshot captures.
    at: AppliedRecord,
}

impl RaftSnapshotBuilder<TypeConfig> for PartitionSnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let enc = self.at.encode();
        self.log
            .lock()
            .set_meta(&[(META_SNAPSHOT, Some(&enc[..]))])
            .map_err(io_err)?;
        Ok(Snapshot {
            meta: self.at.snapshot_meta(),
            snapshot: enc,
        })
    }
}
