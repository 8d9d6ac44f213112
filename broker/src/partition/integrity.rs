//! Integrity of a partition replica's log: damaged ranges (see `steme_segments::Damage`)
//! are reported, never served, and repaired from the other replicas over the peer plane.
//!
//! Every replica stores an entry as the same bytes, so a healthy replica's frames for a
//! damaged range fit it exactly. A repair asks each other replica in turn for them (in
//! pieces of [`READ_CHUNK`]), checks the copy — frame and batch CRCs, indexes, terms and
//! offsets against the range (the segment log), and record partitions, ids and signatures
//! where the topic verifies them (here) — and has the segment log write it in place.
//!
//! A leader with a damaged range hands leadership to another replica first: it could not
//! send those entries to a follower that needs them. With no healthy copy anywhere (one
//! replica, or every copy damaged) the range stays quarantined: reported, never served,
//! retried on every round, and everything else is served.

use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver;
use steme_protocol::messages::describe_topic::{DamagedRange, ScrubProgress, SkipRecord};
use steme_protocol::messages::skip_damage::MAX_REASON_LEN;
use steme_protocol::{ApiError, ErrorCode, RecordBatch};
use steme_segments::format::FrameHeader;
use steme_segments::{Damage, Skip};

use std::sync::Arc;

use super::{Partition, PartitionCtx, RecordChecks};
use crate::peer::link::LinkError;
use crate::raft::log_store::GroupLog;
use crate::raft::rpc::RaftRpc;
use crate::raft::types::NodeId;

/// Bytes of frames one read from a peer asks for.
const READ_CHUNK: u32 = 8 << 20;
/// How long one read from a peer may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a repair waits for the link to a peer to connect (just after a start).
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// The largest damaged range a repair copies at once (a segment is at most 1 GiB).
const MAX_COPY: usize = 1 << 30;

/// Where the scrubber is in this replica's log, and what it has done.
#[derive(Debug, Default)]
pub(super) struct ScrubState {
    /// Where the next step starts; 0 between passes.
    next_index: u64,
    pass_started: Option<Instant>,
    progress: ScrubProgress,
}

/// What became of one damaged range in a repair round.
#[derive(Debug)]
pub enum Repair {
    /// Rewritten from broker `from`'s copy.
    Repaired { damage: Damage, from: NodeId },
    /// No replica had a healthy copy: why, replica by replica.
    Quarantined { damage: Damage, why: Vec<String> },
}

impl Partition {
    /// The damaged ranges of this replica's log (found by reads, scrubs or recovery, not
    /// yet repaired).
    pub fn damaged(&self) -> Vec<Damage> {
        self.log.reader.damaged()
    }

    /// The scrubber's progress over this replica.
    pub(super) fn scrub_progress(&self) -> ScrubProgress {
        self.scrub
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .progress
    }

    /// One scrub step: re-verifies about `max_bytes` of this replica's log where the last
    /// step stopped (see `LogReader::scrub`). Blocking (CPU and page cache). Returns the
    /// bytes verified.
    pub fn scrub_step(&self, max_bytes: u64, interval: Duration) -> u64 {
        let from = {
            let st = self.scrub.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(started) = st.pass_started
                && st.next_index == 0
                && started.elapsed() < interval
            {
                return 0; // the next pass is not due yet
            }
            st.next_index
        };
        let step = self.log.reader.scrub(from, max_bytes);
        if let Some(d) = &step.found {
            tracing::error!(topic = %self.topic, partition = self.partition, damage = %d, "the scrubber found damage; repairing from replicas");
        }
        let mut st = self.scrub.lock().unwrap_or_else(|p| p.into_inner());
        if from == 0 || st.pass_started.is_none() {
            st.pass_started = Some(Instant::now());
        }
        // 0 marks "between passes" (the log start is found again by the next step).
        st.next_index = if step.reached_end { 0 } else { step.next_index };
        st.progress.verified_bytes += step.bytes;
        if step.reached_end {
            st.progress.passes += 1;
            st.progress.last_pass_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
        }
        step.bytes
    }

    /// The damaged ranges as `DescribeTopic` reports them.
    pub(super) fn damaged_ranges(&self) -> Vec<DamagedRange> {
        self.damaged()
            .into_iter()
            .map(|d| self.damaged_range(d))
            .collect()
    }

    fn damaged_range(&self, d: Damage) -> DamagedRange {
        DamagedRange {
            first_offset: d.offsets.start,
            end_offset: d.offsets.end,
            first_index: d.indexes.start,
            end_index: d.indexes.end,
            quarantined: self.quarantine_reason(d.indexes.start),
            reason: d.reason,
            skipped: d.skipped.map(|s| SkipRecord {
                at_ms: s.at_ms,
                reason: s.reason,
            }),
        }
    }

    /// Records an operator's decision to give up the quarantined damaged range of this
    /// replica that starts at `first_offset` (see [`steme_segments::Log::record_skip`]).
    /// Refused for a range a repair may still fix: one not quarantined by the last round.
    pub fn skip_damage(&self, first_offset: u64, reason: &str) -> Result<DamagedRange, ApiError> {
        let invalid = |message: String| ApiError::other(ErrorCode::InvalidRequest, message);
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON_LEN {
            return Err(invalid(format!(
                "a skip needs a reason of 1 to {MAX_REASON_LEN} bytes"
            )));
        }
        let name = format!("{}-{}", self.topic, self.partition);
        let node = self.ctx.node_id;
        let d = self
            .damaged()
            .into_iter()
            .find(|d| d.offsets.start == first_offset && !d.offsets.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "no damaged range of {name} on broker {node} starts at offset {first_offset}"
                ))
            })?;
        if self.quarantine_reason(d.indexes.start).is_none() {
            return Err(invalid(format!(
                "offsets {}..{} of {name} on broker {node} are not quarantined: a repair from \
                 a replica may still fix them; only a range no replica holds whole can be skipped",
                d.offsets.start, d.offsets.end
            )));
        }
        let skip = Skip {
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_millis() as u64),
            reason: reason.to_owned(),
        };
        let d = self
            .log
            .lock()
            .record_skip(d.indexes.start, skip)
            .map_err(|e| ApiError::other(ErrorCode::Storage, e.to_string()))?;
        tracing::warn!(topic = %self.topic, partition = self.partition, damage = %d, "an operator skipped a quarantined damaged range: its records are given up");
        Ok(self.damaged_range(d))
    }

    /// The last repair round's reason for each damaged range still here, by first index.
    pub fn quarantine_reason(&self, first_index: u64) -> Option<String> {
        self.quarantined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&first_index)
            .cloned()
    }

    /// The wire error for a fetch that reached a damaged range: it names the partition,
    /// the offsets, this broker and what the repair is doing about it — or, for a range an
    /// operator skipped, the record of the skip.
    pub(super) fn corrupt_data(&self, d: &Damage) -> ApiError {
        if let Some(skip) = &d.skipped {
            return ApiError::SkippedData {
                first_offset: d.offsets.start,
                end_offset: d.offsets.end,
                message: format!(
                    "partition {}-{} offsets {}..{} were damaged on broker {} ({}) and skipped \
                     by an operator at {} (unix ms): {}",
                    self.topic,
                    self.partition,
                    d.offsets.start,
                    d.offsets.end,
                    self.ctx.node_id,
                    d.reason,
                    skip.at_ms,
                    skip.reason
                ),
            };
        }
        let state = match self.quarantine_reason(d.indexes.start) {
            Some(why) => format!("quarantined, no healthy copy: {why}"),
            None => "needs repair from a replica".to_owned(),
        };
        ApiError::CorruptData {
            first_offset: d.offsets.start,
            end_offset: d.offsets.end,
            message: format!(
                "partition {}-{} offsets {}..{} are damaged on broker {} ({state}): {}",
                self.topic,
                self.partition,
                d.offsets.start,
                d.offsets.end,
                self.ctx.node_id,
                d.reason
            ),
        }
    }

    /// Serves a peer's frame read (see [`RaftRpc::ReadFrames`]): checked frames, or why
    /// not (this replica is damaged there too).
    pub fn read_frames(&self, range: std::ops::Range<u64>, max_bytes: u32) -> RaftRpc {
        match self.log.reader.read_frames(range, u64::from(max_bytes)) {
            Ok(frames) => RaftRpc::Frames(Bytes::from(frames.concat())),
            Err(e) => RaftRpc::Refused(format!(
                "broker {} cannot serve {}-{}: {e}",
                self.ctx.node_id, self.topic, self.partition
            )),
        }
    }

    /// One repair round over every damaged range (see the module docs).
    pub async fn repair(&self) -> Vec<Repair> {
        let damaged = self.damaged();
        if damaged.is_empty() {
            return Vec::new();
        }
        // Hand leadership over for new damage only: once a round has found no healthy copy
        // anywhere, the others are damaged there too, and moving leadership every round
        // would only make the partition unavailable.
        let new_damage = {
            let q = self.quarantined.lock().unwrap_or_else(|p| p.into_inner());
            damaged.iter().any(|d| !q.contains_key(&d.indexes.start))
        };
        if new_damage {
            self.hand_off_if_leading().await;
        }
        let repairer = Repairer {
            ctx: &self.ctx,
            topic: &self.topic,
            partition: self.partition,
            group: self.group,
            replicas: &self.replicas(),
            log: &self.log,
            checks: self.checks(),
        };
        let mut out = Vec::with_capacity(damaged.len());
        for damage in damaged {
            let result = repairer.repair(&damage).await;
            let mut q = self.quarantined.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(from) => {
                    q.remove(&damage.indexes.start);
                    out.push(Repair::Repaired { damage, from });
                }
                Err(why) => {
                    let reason = why.join("; ");
                    if q.insert(damage.indexes.start, reason.clone()).as_ref() != Some(&reason) {
                        tracing::error!(topic = %self.topic, partition = self.partition, %damage, %reason, "damaged range quarantined: no healthy copy");
                    }
                    out.push(Repair::Quarantined { damage, why });
                }
            }
        }
        out
    }

    /// A leader with damage hands leadership to the most caught-up other voter.
    async fn hand_off_if_leading(&self) {
        let target = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            if m.state != ServerState::Leader {
                return;
            }
            m.replication.as_ref().and_then(|r| {
                r.iter()
                    .filter(|(id, _)| **id != self.ctx.node_id)
                    .max_by_key(|(_, matched)| matched.map(|l| l.index))
                    .map(|(id, _)| *id)
            })
        };
        if let Some(to) = target {
            tracing::warn!(topic = %self.topic, partition = self.partition, to, "handing leadership over: this replica's log is damaged");
            self.stir();
            if let Err(e) = self.raft.trigger().transfer_leader(to).await {
                tracing::debug!(error = %e, "leader transfer");
            }
        }
    }
}

/// What a repair needs of a partition: usable before its Raft group starts.
pub(super) struct Repairer<'a> {
    pub ctx: &'a PartitionCtx,
    pub topic: &'a str,
    pub partition: u32,
    pub group: u64,
    pub replicas: &'a [NodeId],
    pub log: &'a Arc<GroupLog>,
    pub checks: RecordChecks,
}

impl Repairer<'_> {
    /// Repairs `damage` from the first other replica with a healthy copy: which one, or
    /// why each could not.
    pub async fn repair(&self, damage: &Damage) -> Result<NodeId, Vec<String>> {
        let mut why = Vec::new();
        for &peer in self.replicas.iter().filter(|&&r| r != self.ctx.node_id) {
            match self.repair_from(peer, damage).await {
                Ok(t) => {
                    tracing::info!(
                        topic = %self.topic,
                        partition = self.partition,
                        from = peer,
                        %damage,
                        bytes = t.bytes,
                        fetch_ms = t.fetch.as_millis() as u64,
                        check_ms = t.check.as_millis() as u64,
                        write_ms = t.write.as_millis() as u64,
                        "repaired a damaged range from a replica"
                    );
                    return Ok(peer);
                }
                Err(e) => why.push(format!("broker {peer}: {e}")),
            }
        }
        if why.is_empty() {
            why.push("no other replica holds the partition".to_owned());
        }
        Err(why)
    }

    /// Copies `damage`'s entries from `peer`, checks them and writes them in place.
    async fn repair_from(&self, peer: NodeId, damage: &Damage) -> Result<Timings, String> {
        let t0 = Instant::now();
        let mut copy = Vec::new();
        let mut from = damage.indexes.start;
        // Just after a start the link to the peer may still be connecting.
        let connect_by = Instant::now() + CONNECT_WAIT;
        while from < damage.indexes.end {
            let read = self
                .ctx
                .transport
                .read_frames(
                    peer,
                    self.group,
                    from..damage.indexes.end,
                    READ_CHUNK,
                    READ_TIMEOUT,
                )
                .await;
            let frames = match read {
                Ok(frames) => frames,
                Err(LinkError::NotConnected(_)) if Instant::now() < connect_by => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            from += whole_frames(&frames)?;
            copy.extend_from_slice(&frames);
            if copy.len() > MAX_COPY {
                return Err(format!("the copy exceeds {MAX_COPY} bytes"));
            }
        }
        let fetched = t0.elapsed();
        let log = self.log.clone();
        let (partition, checks, first) =
            (self.partition, self.checks.clone(), damage.indexes.start);
        tokio::task::spawn_blocking(move || {
            let t1 = Instant::now();
            check_records(&copy, partition, checks)?;
            let checked = t1.elapsed();
            log.lock().repair(first, &copy).map_err(|e| e.to_string())?;
            Ok(Timings {
                bytes: copy.len(),
                fetch: fetched,
                check: checked,
                write: t1.elapsed() - checked,
            })
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Where a repair's time went.
#[derive(Debug)]
struct Timings {
    bytes: usize,
    fetch: Duration,
    check: Duration,
    write: Duration,
}

/// How many whole frames `b` holds; an error if it ends inside one or holds none.
fn whole_frames(mut b: &[u8]) -> Result<u64, String> {
    let mut n = 0;
    while !b.is_empty() {
        let h = FrameHeader::peek(b).ok_or("the copy holds a bad frame header")?;
        let len = h.frame_len() as usize;
        if len > b.len() {
            return Err("the copy ends inside a frame".into());
        }
        b = &b[len..];
        n += 1;
    }
    if n == 0 {
        return Err("the copy holds no frame".into());
    }
    Ok(n)
}

/// What produce checks of every record, checked again of a copy: the partition its
/// subject hashes to and, where the topic verifies, its signature and canonical form.
/// Signatures dominate (tens of µs each), so the batches are checked on every core.
fn check_records(copy: &[u8], partition: u32, checks: RecordChecks) -> Result<(), String> {
    let mut batches = Vec::new();
    let mut b = copy;
    while let Ok((h, batch)) = FrameHeader::check(b) {
        let len = h.frame_len() as usize;
        if batch.is_some() {
            let offset = copy.len() - b.len();
            batches.push((
                h.index,
                offset + steme_segments::format::FRAME_HEADER_LEN,
                offset + len,
            ));
        }
        b = &b[len..];
    }
    if !b.is_empty() {
        // The segment log names the first bad frame; nothing is written.
        return Err("the copy holds a damaged frame".into());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = batches.len().div_ceil(threads).max(1);
    let checks = &checks;
    std::thread::scope(|scope| {
        let workers: Vec<_> = batches
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    for &(index, start, end) in chunk {
                        let bytes = Bytes::copy_from_slice(&copy[start..end]);
                        let batch =
                            RecordBatch::new(bytes).map_err(|e| format!("entry {index}: {e}"))?;
                        crate::handlers::produce::check_batch(
                            &batch,
                            partition,
                            crate::handlers::produce::Expect::AnyOf(&checks.counts),
                            checks.verify,
                        )
                        .map_err(|e| format!("entry {index}: {e}"))?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| "a check thread panicked".to_owned())?)
    })
}
