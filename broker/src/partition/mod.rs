//! One partition: its Raft group, its single-writer produce path and its fetch path.
//!
//! Produce (on the leader, D5–D7): the connection task validates the batch, checks every
//! record's partition and verifies the signatures (batch verification, on the blocking
//! pool) — in parallel across requests. The partition's writer task then takes requests one
//! at a time, in order: it drops duplicates by content id (the applied id index and its own
//! in-flight proposals), merges the causality token, stamps HLCs and proposes. It does not
//! wait for a proposal to commit before taking the next request: openraft batches
//! concurrent proposals into one append and one fsync.
//!
//! Fetch: any replica answers from its own log below its own high watermark (the end of
//! what it has applied, hence committed), zero-copy, long-polling on the high watermark. At
//! or past it, and for ListOffsets, only the serving leader answers (see `leadership`).
//!
//! Modules: `leadership` (who leads, serving, `NotLeader`), `integrity` (damaged ranges,
//! repair, scrub, skips), `retention`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use openraft::alias::OneshotReceiverOf;
use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use openraft::raft::ClientWriteResult;
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{BasicNode, ServerState};
use steme_protocol::assertion::IdHashing;
use steme_protocol::batch::patch_header;
use steme_protocol::messages::describe_topic::PartitionDescription;
use steme_protocol::messages::list_offsets::{ListOffsetsResponse, OffsetSpec};
use steme_protocol::messages::produce::{Existing, ProduceResponse};
use steme_protocol::{ApiError, AssertionId, BatchBuilder, ErrorCode, RecordBatch};
use steme_segments::{FileIo, FlushPolicy, Log, LogConfig};
use tokio::sync::{mpsc, oneshot, watch};

use crate::hlc::Clock;
use crate::peer::link::{Resolver, Transport};
use crate::raft::group::PartitionRaft;
use crate::raft::log_store::{GroupKind, GroupLog, LogStore, Syncer};
use crate::raft::network::Network;
use crate::raft::state_machine::{PartitionSm, PartitionState};
use crate::raft::types::{Applied, NodeId, Proposal, TypeConfig};

mod answer;
mod integrity;
mod leadership;
mod quiet;
mod reassign;
mod retention;
mod split;

use answer::answer;
pub use integrity::Repair;
use integrity::Repairer;
use leadership::on_lead;
pub use reassign::MoveStep;
use retention::retention_loop;
pub use split::WriterJob;

/// How long a produce request may wait for its batch to commit.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests queued for one partition's writer before connections wait.
const WRITER_QUEUE: usize = 1024;

/// A produce request that passed validation and verification.
pub struct ProduceJob {
    pub batch: RecordBatch,
    /// Content id of each record, computed once during verification.
    pub ids: Vec<AssertionId>,
    pub causality: Option<u64>,
    /// The topic's partition map the records were checked against (`None` for internal
    /// topics, which never grow).
    pub map: Option<crate::metadata::PartitionMap>,
    /// Records whose subject the topic's growth moved away from this partition (their
    /// indexes): taken only as duplicates (see `split`).
    pub moved: Vec<u32>,
    /// Per record (empty: none), where it is already stored in an older partition of its
    /// subject (`handlers::earlier`): acknowledged there, not stored again.
    pub earlier: Vec<Option<Existing>>,
    pub reply: oneshot::Sender<Result<ProduceResponse, ApiError>>,
}

/// Everything a partition needs from its broker.
#[derive(Clone)]
pub struct PartitionCtx {
    pub node_id: NodeId,
    /// The pace of copies to the replicas moves add (`reassign_bytes_per_sec`).
    pub throttle: Arc<crate::raft::throttle::MoveThrottle>,
    pub clock: Arc<Clock>,
    pub syncer: Syncer,
    pub raft_config: Arc<openraft::Config>,
    /// How often each partition checks its retention limits.
    pub retention_check: Duration,
    pub ack_before_sync: bool,
    /// Client addresses of the brokers, for `NotLeader` hints.
    pub brokers: Resolver,
    /// Peer-plane addresses of the brokers, for the group's membership.
    pub peers: Resolver,
    /// File I/O of every log (fault-injecting in tests).
    pub io: Arc<dyn FileIo>,
    /// The Raft transport to the other brokers.
    pub transport: Arc<Transport>,
    /// Where a replica reports `(group, term)` when it becomes leader.
    pub leaders: mpsc::UnboundedSender<(u64, u64)>,
    /// The broker's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled when the broker begins to stop: long polls answer at once.
    pub stopping: tokio_util::sync::CancellationToken,
}

/// Where a partition lives: what the metadata says about it.
#[derive(Debug, Clone)]
pub struct Placement {
    pub topic: String,
    pub partition: u32,
    pub group: u64,
    pub replicas: Vec<NodeId>,
    /// The broker's log settings with the topic's overrides (retention, segment size).
    pub log: LogConfig,
    /// What produce checks of the topic's records, checked again of a repair's copy.
    pub checks: RecordChecks,
}

/// What every record of a topic must pass: its subject hashes to its partition under one
/// of the topic's partition counts (`counts`, oldest first: a split partition holds
/// records checked against each), and with `verify`, its signature checks out.
#[derive(Debug, Clone)]
pub struct RecordChecks {
    pub verify: bool,
    pub counts: Arc<[u32]>,
}

/// A partition hosted by this broker.
pub struct Partition {
    pub topic: String,
    pub partition: u32,
    pub group: u64,
    /// The voters as the metadata last placed them, the preferred leader first (a move
    /// changes them: [`Partition::set_placement`]).
    replicas: std::sync::RwLock<Arc<[NodeId]>>,
    /// While the partition moves: the replicas it moves to.
    target: std::sync::RwLock<Option<Arc<[NodeId]>>>,
    /// The leader's last log index at the previous step of a move (see `reassign`).
    catch_up_mark: Mutex<Option<u64>>,
    raft: PartitionRaft,
    log: Arc<GroupLog>,
    state: Arc<PartitionState>,
    writer: mpsc::Sender<WriterJob>,
    ctx: PartitionCtx,
    /// What the topic's records must pass (a growth adds a partition count).
    checks: std::sync::RwLock<RecordChecks>,
    scrub: Mutex<integrity::ScrubState>,
    /// Damaged ranges the last repair round found no healthy copy of, by first index, with
    /// why (see `integrity`).
    quarantined: Mutex<HashMap<u64, String>>,
    /// Heartbeats and elections off while idle (see `quiet`).
    quiet: quiet::Quiet,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Partition({}-{}, group {})",
            self.topic, self.partition, self.group
        )
    }
}

/// Why a partition could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("partition log: {0}")]
    Log(#[from] steme_segments::Error),
    #[error("partition storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

impl Partition {
    /// Opens (recovering) or creates the partition in `dir` and starts its Raft group.
    ///
    /// `discard_after` reopens a partition whose storage failed: entries after the last
    /// index known durable are dropped, since after a failed fsync the page cache can no
    /// longer be trusted to match the disk (they were never reported durable to Raft).
    pub async fn open(
        ctx: PartitionCtx,
        dir: &Path,
        place: Placement,
        discard_after: Option<u64>,
    ) -> Result<Arc<Partition>, OpenError> {
        let Placement {
            topic,
            partition,
            group,
            replicas,
            log: mut log_config,
            checks,
        } = place;
        // The broker's syncer makes appends durable (group commit across partitions).
        log_config.flush = FlushPolicy::Never;
        let dir = dir.to_owned();
        let io = ctx.io.clone();
        let (log, report) = tokio::task::spawn_blocking(move || {
            let (mut log, report) = Log::open(&dir, log_config, io)?;
            if let Some(durable) = discard_after
                && log.last_index().is_some_and(|last| last > durable)
            {
                log.truncate_after(durable)?;
            }
            Ok::<_, steme_segments::Error>((log, report))
        })
        .await
        .map_err(std::io::Error::other)??;
        if let Some(cut) = &report.cut {
            tracing::warn!(%topic, partition, ?cut, "recovery cut a damaged log tail");
        }
        let glog = GroupLog::new(group, GroupKind::Partition, log)?;
        glog.set_sole_replica(replicas == [ctx.node_id]);
        let (sm, state) = PartitionSm::open(glog.clone())?;
        // Before the group starts, which reads every entry after the applied one: check
        // those (damage there would stop the group), and repair what is damaged from the
        // other replicas now if they answer, else in the background.
        let from = sm.applied_index().map_or(0, |i| i + 1);
        let reader = glog.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut at = from;
            while at < reader.next_index() {
                let step = reader.scrub(at, 64 << 20);
                if step.reached_end {
                    break;
                }
                at = step.next_index;
            }
        })
        .await
        .map_err(std::io::Error::other)?;
        let damaged = glog.reader.damaged();
        if !damaged.is_empty() {
            tracing::warn!(%topic, partition, ?damaged, "the log holds damaged ranges; repairing from replicas");
            let repairer = Repairer {
                ctx: &ctx,
                topic: &topic,
                partition,
                group,
                replicas: &replicas,
                log: &glog,
                checks: checks.clone(),
            };
            for d in &damaged {
                if let Err(why) = repairer.repair(d).await {
                    tracing::warn!(%topic, partition, damage = %d, why = ?why, "not repaired at open");
                }
            }
        }
        let store = LogStore::new(glog.clone(), ctx.syncer.clone(), ctx.ack_before_sync);
        let network = Network::throttled(ctx.transport.clone(), group, ctx.throttle.clone());
        let raft = PartitionRaft::new(ctx.node_id, ctx.raft_config.clone(), network, store, sm)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        // Started: from now on a damaged range its reads reach waits for the repair loop
        // (see `StoreReader`) instead of stopping the group.
        glog.set_await_repair(true);
        if !raft
            .is_initialized()
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?
        {
            let members: BTreeMap<NodeId, BasicNode> = replicas
                .iter()
                .map(|id| {
                    let addr = (ctx.peers)(*id).unwrap_or_default();
                    (*id, BasicNode { addr })
                })
                .collect();
            // Only the first replica initializes; the others join when it reaches them.
            if replicas.first() == Some(&ctx.node_id) {
                raft.initialize(members)
                    .await
                    .map_err(|e| OpenError::Raft(e.to_string()))?;
            }
        }
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let p = Arc::new(Partition {
            topic,
            partition,
            group,
            replicas: std::sync::RwLock::new(replicas.into()),
            target: std::sync::RwLock::new(None),
            catch_up_mark: Mutex::new(None),
            raft,
            log: glog,
            state,
            writer: tx,
            ctx,
            checks: std::sync::RwLock::new(checks),
            scrub: Mutex::default(),
            quarantined: Mutex::new(HashMap::new()),
            quiet: quiet::Quiet::new(),
        });
        tokio::spawn(Writer::new(p.clone()).run(rx));
        tokio::spawn(on_lead(Arc::downgrade(&p)));
        tokio::spawn(retention_loop(Arc::downgrade(&p), p.ctx.retention_check));
        Ok(p)
    }

    pub fn high_watermark(&self) -> u64 {
        self.state.high_watermark()
    }

    pub fn raft(&self) -> &PartitionRaft {
        &self.raft
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log.reader.log_start_offset()
    }

    /// The end of this replica's log, committed or not.
    pub fn log_end_offset(&self) -> u64 {
        self.log.reader.log_end_offset()
    }

    /// Queues a verified produce request for the writer.
    pub async fn produce(&self, job: ProduceJob) {
        if let Err(mpsc::error::SendError(WriterJob::Produce(job))) =
            self.writer.send(WriterJob::Produce(job)).await
        {
            let _ = job.reply.send(Err(ApiError::other(
                ErrorCode::ShuttingDown,
                format!("partition {}-{} is closing", self.topic, self.partition),
            )));
        }
    }

    /// Reads whole batches from `offset`, waiting up to `max_wait` for data beyond it.
    pub async fn fetch(
        &self,
        offset: u64,
        max_bytes: u32,
        max_wait: Duration,
    ) -> Result<FetchResult, ApiError> {
        let out_of_range = |p: &Partition| ApiError::OffsetOutOfRange {
            log_start: p.log_start_offset(),
            high_watermark: p.high_watermark(),
        };
        let hwm = self.high_watermark();
        if offset >= hwm {
            // Anything below this replica's high watermark is committed and may be read from
            // any replica; at or past it, only the serving leader knows where the log ends.
            self.check_serving()?;
        }
        if offset < self.log_start_offset() || offset > hwm {
            return Err(out_of_range(self));
        }
        if offset == hwm && !max_wait.is_zero() {
            let mut rx = self.state.high_watermark.subscribe();
            // A stopping broker answers what it has rather than hold its drain.
            tokio::select! {
                _ = tokio::time::timeout(max_wait, rx.wait_for(|h| *h > offset)) => {}
                () = self.ctx.stopping.cancelled() => {}
            }
        }
        let hwm = self.high_watermark();
        let read = self
            .log
            .reader
            .read_from_offset(offset, u64::from(max_bytes.max(1)), hwm)
            .map_err(|e| match e {
                steme_segments::Error::OffsetOutOfRange { .. } => out_of_range(self),
                steme_segments::Error::Damaged { damage, .. } => self.corrupt_data(&damage),
                other => ApiError::other(ErrorCode::Storage, other.to_string()),
            })?;
        Ok(FetchResult {
            high_watermark: hwm,
            log_start_offset: self.log_start_offset(),
            batches: read.batches,
        })
    }

    /// Earliest, latest, or the first offset at or after an HLC time.
    pub fn list_offsets(&self, spec: OffsetSpec) -> Result<ListOffsetsResponse, ApiError> {
        self.check_serving()?;
        let hwm = self.high_watermark();
        let start = self.log_start_offset();
        let offset = match spec {
            OffsetSpec::Earliest => start,
            OffsetSpec::Latest => hwm,
            OffsetSpec::AtOrAfterHlc(t) => self
                .log
                .reader
                .offset_for_time(t)
                .map_or(hwm, |o| o.clamp(start, hwm)),
        };
        Ok(ListOffsetsResponse {
            offset,
            hlc: (offset < hwm).then(|| self.hlc_at(offset)).flatten(),
            high_watermark: hwm,
            log_start_offset: start,
        })
    }

    /// The HLC of the record at `offset`, if it is in the log.
    fn hlc_at(&self, offset: u64) -> Option<u64> {
        let read = self.log.reader.read_from_offset(offset, 1, u64::MAX).ok()?;
        let first = read.batches.first()?;
        let h = steme_protocol::BatchHeader::parse(first).ok()?;
        (offset >= h.base_offset && offset < h.end_offset())
            .then(|| h.base_hlc + (offset - h.base_offset))
    }

    pub fn describe(&self) -> PartitionDescription {
        let (leader, epoch) = self.leader();
        PartitionDescription {
            partition: self.partition,
            leader,
            leader_epoch: epoch,
            replicas: self.replicas().to_vec(),
            log_start_offset: self.log_start_offset(),
            high_watermark: self.high_watermark(),
            log_end_offset: self.log_end_offset(),
            size_bytes: self.log.reader.size_bytes(),
            offline: None,
            damaged: self.damaged_ranges(),
            scrub: self.scrub_progress(),
            in_sync: self.in_sync_replicas(),
        }
    }

    /// Why the partition's Raft group stopped (a storage failure), if it did.
    pub fn failure(&self) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        // Stopped by `shutdown` is not a failure.
        m.running_state
            .as_ref()
            .err()
            .filter(|e| !matches!(e, openraft::error::Fatal::Stopped))
            .map(|e| e.to_string())
    }

    /// The last index known durable.
    pub fn durable_index(&self) -> Option<u64> {
        self.log.flusher.durable_index()
    }

    /// Stops the Raft group and flushes the log.
    pub async fn shutdown(&self) {
        // A Raft read waiting for a damaged range to be repaired gives up now, so that the
        // group's tasks can stop.
        self.log.set_await_repair(false);
        // Write the applied state down, so that a restart need not apply the tail again.
        let flushed = self
            .raft
            .with_state_machine(|sm: &mut PartitionSm| Box::pin(async move { sm.flush_applied() }))
            .await;
        if let Err(e) = flushed
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not write the applied state at shutdown");
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "raft shutdown");
        }
        if let Err(e) = self
            .log
            .flusher
            .flush()
            .and_then(|_| self.log.flusher.record_durable())
        {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "final flush failed");
        }
    }
}

/// What a fetch returns: batches as zero-copy slices of the segments.
pub struct FetchResult {
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub batches: Vec<Bytes>,
}

/// Where an in-flight proposal landed, once it has: `(base_offset, base_hlc)`.
type Landing = watch::Receiver<Option<Result<(u64, u64), ApiError>>>;

/// The outcome of one record of a produce request, as the writer decides it.
enum Fate {
    /// Appended, the `n`-th new record of this request.
    New(u64),
    /// Already in the log, committed.
    Existing(Existing),
    /// The `rank`-th record of an earlier proposal still in flight.
    InFlight(Landing, u64),
    /// Already in the log but not yet below the high watermark.
    Pending(u64),
    /// A repeat, within the same request, of its `n`-th new record.
    RepeatOf(u64),
}

/// Content ids of proposals not yet applied, with where their proposal will land.
type Inflight = HashMap<AssertionId, (Landing, u64), IdHashing>;

/// The single writer of one partition (see the module docs).
struct Writer {
    p: Arc<Partition>,
    /// Content ids of proposals not yet applied, with where their proposal will land.
    inflight: Arc<Mutex<Inflight>>,
    /// The term whose first entry this leader has applied (D5), if it is the current one.
    ready_term: Option<u64>,
    /// HLC of the last record stamped (applied or in flight).
    last_hlc: u64,
    /// The map epoch of the last split marker in the log (applied or in flight).
    map_epoch: u64,
}

impl Writer {
    fn new(p: Arc<Partition>) -> Writer {
        Writer {
            p,
            inflight: Arc::new(Mutex::new(HashMap::default())),
            ready_term: None,
            last_hlc: 0,
            map_epoch: 0,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<WriterJob>) {
        while let Some(job) = rx.recv().await {
            let ready = self.ensure_ready().await;
            match job {
                WriterJob::Produce(job) => match ready {
                    Ok(()) => self.handle(job).await,
                    Err(e) => {
                        let _ = job.reply.send(Err(e));
                    }
                },
                WriterJob::Mark(map) if ready.is_ok() => {
                    if let Err(e) = self.follow_map(&map).await {
                        tracing::debug!(topic = %self.p.topic, partition = self.p.partition, error = %e, "split marker not written");
                    }
                }
                WriterJob::Mark(_) => {}
            }
        }
    }

    /// A leader serves produce requests only after it has applied its log up to its own
    /// first entry of the term, so dedup and HLC stamping see everything before it (D5).
    async fn ensure_ready(&mut self) -> Result<(), ApiError> {
        let (state, term) = {
            let m = self.p.raft.metrics();
            let m = m.borrow_watched();
            (m.state, m.current_term)
        };
        if state != ServerState::Leader {
            self.ready_term = None;
            return Err(self.p.not_leader());
        }
        if self.ready_term == Some(term) {
            return Ok(());
        }
        // A blank entry of our own, applied: everything before it is committed and applied.
        // (A restarted single voter may resume its old term without a new first entry.)
        self.p.stir();
        self.p
            .raft
            .write_blank()
            .await
            .map_err(|_| self.p.not_leader())?;
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.last_hlc = self.p.state.last_hlc.load(Ordering::Acquire);
        self.map_epoch = self.p.state.split().map_or(0, |m| m.epoch);
        self.ready_term = Some(term);
        Ok(())
    }

    async fn handle(&mut self, job: ProduceJob) {
        let p = self.p.clone();
        if let Some(map) = &job.map
            && let Err(e) = self.follow_map(map).await
        {
            let _ = job.reply.send(Err(e));
            return;
        }
        if let Some(token) = job.causality
            && let Err(skew) = p.ctx.clock.observe(token)
        {
            let _ = job.reply.send(Err(ApiError::ClockSkew {
                broker_now: skew.broker_now,
            }));
            return;
        }
        let hwm = p.high_watermark();
        let mut fates = Vec::with_capacity(job.ids.len());
        let mut seen: HashSet<&AssertionId, IdHashing> =
            HashSet::with_capacity_and_hasher(job.ids.len(), IdHashing::default());
        let mut new_count = 0u64;
        {
            let inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            for (i, id) in job.ids.iter().enumerate() {
                let fate = if let Some(e) = job.earlier.get(i).copied().flatten() {
                    Fate::Existing(e)
                } else if let Some((landing, rank)) = inflight.get(id) {
                    Fate::InFlight(landing.clone(), *rank)
                } else if !seen.insert(id) {
                    // A second copy within this request: the first copy's offset.
                    let first = job.ids.iter().position(|x| x == id).expect("seen");
                    match &fates[first] {
                        Fate::New(n) | Fate::RepeatOf(n) => Fate::RepeatOf(*n),
                        Fate::Existing(e) => Fate::Existing(*e),
                        Fate::InFlight(l, r) => Fate::InFlight(l.clone(), *r),
                        Fate::Pending(o) => Fate::Pending(*o),
                    }
                } else if let Some(offset) = p.log.reader.lookup_id(id) {
                    if offset < hwm {
                        Fate::Existing(Existing {
                            offset,
                            hlc: p.hlc_at(offset).unwrap_or(0),
                            partition: None,
                        })
                    } else {
                        Fate::Pending(offset)
                    }
                } else {
                    new_count += 1;
                    Fate::New(new_count - 1)
                };
                fates.push(fate);
            }
        }
        if let Err(e) = split::only_duplicates_moved(&p, &job.moved, &fates) {
            let _ = job.reply.send(Err(e));
            return;
        }
        if new_count == 0 {
            tokio::spawn(answer(p, fates, None, job.reply));
            return;
        }
        // The batch to propose: the request's own bytes if every record is new, else a batch
        // of the new records only (records are copied as they are, never re-encoded).
        let mut buf = if new_count as usize == fates.len() {
            BytesMut::from(&job.batch.as_bytes()[..])
        } else {
            let mut b = BatchBuilder::with_capacity(job.batch.as_bytes().len());
            for (r, fate) in job.batch.records().zip(&fates) {
                if matches!(fate, Fate::New(_)) {
                    b.push_raw(r.assertion, r.signature);
                }
            }
            BytesMut::from(&b.finish()[..])
        };
        let base_hlc = p.ctx.clock.stamp(self.last_hlc, new_count as u32);
        self.last_hlc = base_hlc + new_count - 1;
        patch_header(&mut buf, 0, base_hlc, p.ctx.node_id);

        let (land_tx, land_rx) = watch::channel(None);
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            for (id, fate) in job.ids.iter().zip(&fates) {
                if let Fate::New(n) = fate {
                    inflight.insert(*id, (land_rx.clone(), *n));
                }
            }
        }
        let new_ids: Vec<AssertionId> = job
            .ids
            .iter()
            .zip(&fates)
            .filter(|(_, f)| matches!(f, Fate::New(_)))
            .map(|(id, _)| *id)
            .collect();
        let inflight = self.inflight.clone();
        // Submitted here, in stamping order, so that offsets follow HLCs (D6); only the wait
        // for commit and apply runs in its own task.
        let checked = Proposal::checked(buf.freeze(), &new_ids);
        let proposal = propose(&p, checked).await;
        tokio::spawn(async move {
            let landed = proposal.landed(&p).await;
            let _ = land_tx.send(Some(landed.clone()));
            {
                let mut map = inflight.lock().unwrap_or_else(|p| p.into_inner());
                for id in &new_ids {
                    map.remove(id);
                }
            }
            answer(p, fates, Some(landed), job.reply).await;
        });
    }
}

/// A submitted proposal, or why it could not be submitted.
enum Proposed {
    /// Waiting for apply; the commit notice is held so openraft can deliver it.
    Submitted(
        OneshotReceiverOf<TypeConfig, ClientWriteResult<TypeConfig>>,
        OneshotReceiverOf<TypeConfig, crate::raft::types::LogId>,
    ),
    Failed(ApiError),
}

/// Submits a stamped batch to the Raft group (returns once it is queued, in order).
async fn propose(p: &Partition, batch: Proposal) -> Proposed {
    p.stir();
    let (responder, commit, complete) = ProgressResponder::new();
    match p.raft.client_write_ff(batch, Some(responder)).await {
        Ok(()) => Proposed::Submitted(complete, commit),
        Err(e) => Proposed::Failed(ApiError::other(ErrorCode::Storage, e.to_string())),
    }
}

impl Proposed {
    /// Waits until the batch is committed and applied: where it landed.
    async fn landed(self, p: &Partition) -> Result<(u64, u64), ApiError> {
        let rx = match self {
            Proposed::Failed(e) => return Err(e),
            Proposed::Submitted(rx, _commit) => rx,
        };
        match tokio::time::timeout(PRODUCE_TIMEOUT, rx).await {
            Err(_) => Err(ApiError::other(
                ErrorCode::Timeout,
                format!("batch not committed within {PRODUCE_TIMEOUT:?}"),
            )),
            Ok(Err(_)) => {
                // The group stopped before applying the batch: say why if its storage failed.
                let mut m = p.raft.metrics();
                let stopped = m.wait_until(|m| m.running_state.is_err());
                let _ = tokio::time::timeout(Duration::from_millis(500), stopped).await;
                Err(match p.failure() {
                    Some(reason) => ApiError::other(
                        ErrorCode::Storage,
                        format!("partition storage failed: {reason}"),
                    ),
                    None => ApiError::other(
                        ErrorCode::ShuttingDown,
                        "the partition's Raft group stopped before the batch was applied",
                    ),
                })
            }
            Ok(Ok(Ok(resp))) => match resp.data {
                Applied::Batch {
                    base_offset,
                    base_hlc,
                    ..
                } => Ok((base_offset, base_hlc)),
                other => Err(ApiError::other(
                    ErrorCode::Internal,
                    format!("batch applied as {other:?}"),
                )),
            },
            Ok(Ok(Err(ClientWriteError::ForwardToLeader(_))))
            | Ok(Ok(Err(ClientWriteError::LogEntryDiscarded(_)))) => Err(p.not_leader()),
            Ok(Ok(Err(e))) => Err(ApiError::other(ErrorCode::Storage, e.to_string())),
        }
    }
}
