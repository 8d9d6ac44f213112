//! Consumer group coordination (D10).
//!
//! Groups live in the internal topic [`GROUPS_TOPIC`]: group `g` belongs to its partition
//! `partition_for(g, n)`, and the leader of that partition is `g`'s coordinator. Every
//! durable change to a group — its membership and assignment, committed offsets, deletion —
//! is a record (a [`GroupRecord`] as JSON, in an assertion about the group, signed by the
//! broker) appended to that partition through its Raft group, like any produce. So group
//! state is replicated and survives the coordinator's broker: the next leader of the
//! partition replays it (once it has committed its whole log) and carries on.
//!
//! A coordinator changes a group by working on a copy, storing the record, and only then
//! keeping the copy; a coordinator that lost its leadership cannot store, so it cannot
//! change anything. Requests for one coordinator are served one at a time.
//!
//! The partition stays cheap to load whatever the groups' age: now and then the coordinator
//! stores a snapshot of its whole state, and a new coordinator replays from the last one
//! (`snapshot` says why no committed offset is lost).
//!
//! Modules: `state` (one group and the rules that change it), `replay` (records read back,
//! trusting only brokers' signatures), `snapshot` (compaction by snapshot records, the
//! fold), `load` (where a replay starts, and the replay).

pub mod load;
pub mod replay;
pub mod snapshot;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use steme_protocol::messages::commit_offsets::{
    CommitOffsetsRequest, CommitOffsetsResponse, PartitionResult,
};
use steme_protocol::messages::describe_group::{
    DescribeGroupResponse, MemberDescription, PartitionLag,
};
use steme_protocol::messages::fetch_offsets::{
    CommittedOffset, FetchOffsetsRequest, FetchOffsetsResponse,
};
use steme_protocol::messages::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use steme_protocol::messages::list_groups::{GroupListing, GroupState};
use steme_protocol::{
    ApiError, Assertion, BatchBuilder, ErrorCode, RecordBatch, SignedAssertion, SigningKey, Value,
};
use tokio::sync::{Mutex, oneshot};

use self::state::{Beat, Group, Tp, from_topic_partitions, to_topic_partitions};
pub use self::state::{CommitRecord, GroupRecord};
pub use self::state::{SplitGate, TopicView, Topics};
use crate::partition::{Partition, ProduceJob};

/// The internal topic that holds every consumer group.
pub const GROUPS_TOPIC: &str = "__groups";
/// The predicate of group records.
const PREDICATE: &str = "steme.group";
/// How long a new coordinator may wait for its partition to commit its whole log.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A record as stored: unique per coordinator term and sequence, so that two equal changes
/// (commit 5, commit 6, commit 5) are two records, not a duplicate.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    term: u64,
    seq: u64,
    record: GroupRecord,
    /// The first offset of the last snapshot before this record (`snapshot`); absent in
    /// records written before snapshots existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_snapshot: Option<u64>,
}

/// The groups of one partition of [`GROUPS_TOPIC`], served while this broker leads it.
pub struct Coordinator {
    part: Arc<Partition>,
    /// The partition's term when this coordinator loaded it.
    term: u64,
    groups: Mutex<HashMap<String, Group>>,
    key: SigningKey,
    seq: AtomicU64,
    policy: snapshot::Policy,
    /// Where the last snapshot is and what was stored since. A std mutex: held for a few
    /// loads and stores, never across an await.
    compaction: std::sync::Mutex<Compaction>,
}

#[derive(Debug)]
struct Compaction {
    last_snapshot: Option<u64>,
    since: u64,
    /// After a failed snapshot, the value of `since` the next interval counts from.
    retry_after: u64,
    loaded_records: u64,
}

/// How a coordinator loaded and compacts its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionStats {
    /// Trusted records its load replayed.
    pub loaded_records: u64,
    /// Where the last snapshot it knows of starts.
    pub last_snapshot: Option<u64>,
    /// Records stored since that snapshot.
    pub since_snapshot: u64,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_coordinator(message: String) -> ApiError {
    ApiError::other(ErrorCode::NotCoordinator, message)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Coordinator {
    /// Replays the partition into group state once the partition has committed its log:
    /// from its last snapshot, or from its log start without one ([`load`](mod@load)).
    /// Only records signed by one of the `trusted` broker keys are replayed ([`replay`]).
    pub async fn load(
        part: Arc<Partition>,
        term: u64,
        key: SigningKey,
        trusted: replay::Trusted,
    ) -> Result<Self, ApiError> {
        Self::load_with(part, term, key, trusted, snapshot::Policy::default()).await
    }

    /// [`load`](Self::load) with a snapshot policy of its own.
    pub async fn load_with(
        part: Arc<Partition>,
        term: u64,
        key: SigningKey,
        trusted: replay::Trusted,
        policy: snapshot::Policy,
    ) -> Result<Self, ApiError> {
        let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
        loop {
            if part.leader().1 != term {
                return Err(not_coordinator(format!(
                    "leadership of coordinator partition {} changed while loading",
                    part.partition
                )));
            }
            let d = part.describe();
            if d.high_watermark == d.log_end_offset {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(not_coordinator(format!(
                    "coordinator partition {} is still loading",
                    part.partition
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = Instant::now();
        let loaded = load::load(part.as_ref(), Arc::new(trusted)).await?;
        let fold = loaded.fold;
        let (records, since, snapshot_at) = (fold.records, fold.since_snapshot, fold.snapshot_at);
        let groups = fold.into_groups();
        tracing::info!(
            partition = part.partition,
            term,
            groups = groups.len(),
            records,
            from = loaded.from,
            from_snapshot = loaded.from_snapshot,
            elapsed = ?started.elapsed(),
            "coordinator loaded"
        );
        let c = Coordinator {
            part,
            term,
            groups: Mutex::new(groups),
            key,
            seq: AtomicU64::new(0),
            policy,
            compaction: std::sync::Mutex::new(Compaction {
                last_snapshot: snapshot_at,
                since,
                retry_after: 0,
                loaded_records: records,
            }),
        };
        {
            // A long tail (a partition written before snapshots) is compacted at once.
            let groups = c.groups.lock().await;
            c.maybe_snapshot(&groups).await;
        }
        Ok(c)
    }

    /// How the last load and the compaction since went.
    pub fn compaction(&self) -> CompactionStats {
        let c = lock(&self.compaction);
        CompactionStats {
            loaded_records: c.loaded_records,
            last_snapshot: c.last_snapshot,
            since_snapshot: c.since,
        }
    }

    /// Writes a snapshot of `groups` if one is due. The caller holds the groups lock, so
    /// the snapshot holds every change stored before it. A failed snapshot is logged: the
    /// records it would have summed up stay, and the next try waits as many records again
    /// (a state too large for one entry costs one try per interval, not one per change).
    async fn maybe_snapshot(&self, groups: &HashMap<String, Group>) {
        let (since, retry_after) = {
            let c = lock(&self.compaction);
            (c.since, c.retry_after)
        };
        if since < retry_after
            || !self
                .policy
                .due(since - retry_after, snapshot::entries(groups))
        {
            return;
        }
        let parts = snapshot::snapshot_records(groups, self.policy.part_bytes);
        let n = parts.len();
        let records = parts
            .into_iter()
            .map(|r| (snapshot::SUBJECT.to_owned(), r))
            .collect::<Vec<_>>();
        match self.store_many(records).await {
            Ok(base_offset) => {
                let mut c = lock(&self.compaction);
                c.last_snapshot = Some(base_offset);
                c.since = 0;
                c.retry_after = 0;
                tracing::debug!(
                    partition = self.part.partition,
                    offset = base_offset,
                    parts = n,
                    "groups snapshot written"
                );
            }
            Err(e) => {
                let mut c = lock(&self.compaction);
                c.retry_after = c.since;
                tracing::warn!(
                    partition = self.part.partition,
                    error = %e,
                    "could not write a groups snapshot; will try again"
                )
            }
        }
    }

    /// Stores a record about `group` and waits until it is committed.
    async fn store(&self, group: &str, record: GroupRecord) -> Result<(), ApiError> {
        self.store_many(vec![(group.to_owned(), record)]).await?;
        Ok(())
    }

    /// Stores records (about their groups) in one batch, hence one Raft entry, and waits
    /// until it is committed. Returns the offset of the first.
    async fn store_many(&self, records: Vec<(String, GroupRecord)>) -> Result<u64, ApiError> {
        let last_snapshot = lock(&self.compaction).last_snapshot;
        let mut b = BatchBuilder::with_capacity(512);
        let mut ids = Vec::with_capacity(records.len());
        let n = records.len() as u64;
        for (group, record) in records {
            let meta = RecordMeta {
                partition: self.part.partition,
                term: self.term,
                seq: self.seq.fetch_add(1, Ordering::Relaxed),
                last_snapshot,
            };
            let signed = sign_record(&self.key, meta, group, record)?;
            b.push(&signed);
            ids.push(signed.id());
        }
        let batch = RecordBatch::new(b.finish())
            .map_err(|e| ApiError::other(ErrorCode::Internal, e.to_string()))?;
        let (reply, rx) = oneshot::channel();
        self.part
            .produce(ProduceJob {
                batch,
                ids,
                causality: None,
                map: None,
                moved: Vec::new(),
                earlier: Vec::new(),
                reply,
            })
            .await;
        match rx.await {
            Ok(Ok(r)) => {
                lock(&self.compaction).since += n;
                Ok(r.base_offset)
            }
            Ok(Err(e)) if e.code() == ErrorCode::NotLeader => Err(not_coordinator(format!(
                "this broker no longer coordinates partition {}",
                self.part.partition
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ApiError::other(
                ErrorCode::ShuttingDown,
                "coordinator closing",
            )),
        }
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// Whether this broker (`me`) still leads the partition in the term this coordinator
    /// loaded.
    pub fn is_current(&self, me: u64) -> bool {
        self.part.leader() == (Some(me), self.term)
    }

    /// Every group's committed offset in every partition: `(group, (topic, partition),
    /// offset)`.
    pub async fn committed_offsets(&self) -> Vec<(String, Tp, u64)> {
        let groups = self.groups.lock().await;
        groups
            .iter()
            .flat_map(|(name, g)| {
                g.offsets
                    .iter()
                    .map(|(tp, c)| (name.clone(), tp.clone(), c.offset))
            })
            .collect()
    }

    pub fn is_for(&self, part: &Arc<Partition>, term: u64) -> bool {
        Arc::ptr_eq(&self.part, part) && self.term == term
    }

    pub async fn heartbeat(
        &self,
        r: HeartbeatRequest,
        topics: &Topics<'_>,
    ) -> Result<HeartbeatResponse, ApiError> {
        let timeout = Duration::from_millis(u64::from(r.session_timeout_ms.clamp(1_000, 600_000)));
        let beat = Beat {
            member_id: r.member_id,
            instance_id: r.instance_id,
            member_epoch: r.member_epoch,
            session_timeout: timeout,
            subscription: r.subscription.into_iter().collect(),
            owned: from_topic_partitions(&r.owned),
        };
        let mut groups = self.groups.lock().await;
        let mut g = groups.get(&r.group).cloned().unwrap_or_default();
        let new_id = || {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            format!("{}-{}", r.group, hex::encode(b))
        };
        let (answer, changed) = g.heartbeat(beat, Instant::now(), new_id, topics)?;
        if changed {
            self.store(&r.group, g.members_record()).await?;
        }
        groups.insert(r.group, g);
        if changed {
            self.maybe_snapshot(&groups).await;
        }
        Ok(HeartbeatResponse {
            member_id: answer.member_id,
            member_epoch: answer.member_epoch,
            heartbeat_interval_ms: (timeout.as_millis() / 5).clamp(100, 1_000) as u32,
            assignment: answer.assignment.as_ref().map(to_topic_partitions),
        })
    }

    pub async fn leave(
        &self,
        group: &str,
        member_id: &str,
        topics: &Topics<'_>,
    ) -> Result<(), ApiError> {
        let mut groups = self.groups.lock().await;
        let Some(mut g) = groups.get(group).cloned() else {
            return Ok(());
        };
        if g.remove(member_id, topics) {
            self.store(group, g.members_record()).await?;
            groups.insert(group.to_owned(), g);
            self.maybe_snapshot(&groups).await;
        }
        Ok(())
    }

    /// Removes members whose session ended.
    pub async fn expire(&self, topics: &Topics<'_>) {
        let mut groups = self.groups.lock().await;
        let now = Instant::now();
        let names: Vec<String> = groups.keys().cloned().collect();
        for name in names {
            let mut g = groups[&name].clone();
            let gone = g.expired(now);
            if gone.is_empty() {
                continue;
            }
            for id in &gone {
                g.remove(id, topics);
            }
            match self.store(&name, g.members_record()).await {
                Ok(()) => {
                    tracing::info!(group = %name, members = ?gone, "members' sessions ended; partitions reassigned");
                    groups.insert(name, g);
                }
                Err(e) => {
                    tracing::warn!(group = %name, error = %e, "could not store expired members")
                }
            }
        }
        self.maybe_snapshot(&groups).await;
    }

    pub async fn commit(&self, r: CommitOffsetsRequest) -> Result<CommitOffsetsResponse, ApiError> {
        let mut groups = self.groups.lock().await;
        let g = groups.get(&r.group).cloned().unwrap_or_default();
        if !r.member_id.is_empty() && !g.members.contains_key(&r.member_id) {
            return Err(ApiError::other(
                ErrorCode::UnknownMember,
                format!(
                    "member {} is not in group {} (expired or left)",
                    r.member_id, r.group
                ),
            ));
        }
        let mut results = Vec::with_capacity(r.offsets.len());
        let mut accepted = Vec::new();
        for o in &r.offsets {
            let tp: Tp = (o.topic.clone(), o.partition);
            let code = match g.may_commit(&r.member_id, r.member_epoch, &tp) {
                Ok(()) => {
                    accepted.push(CommitRecord {
                        topic: o.topic.clone(),
                        partition: o.partition,
                        offset: o.offset,
                        metadata: o.metadata.clone(),
                    });
                    ErrorCode::None
                }
                Err(code) => code,
            };
            results.push(PartitionResult {
                topic: o.topic.clone(),
                partition: o.partition,
                error: code as u16,
            });
        }
        if !accepted.is_empty() {
            let record = GroupRecord::Commit { offsets: accepted };
            self.store(&r.group, record.clone()).await?;
            let mut g = g;
            g.replay(record, Instant::now());
            groups.insert(r.group, g);
            self.maybe_snapshot(&groups).await;
        }
        Ok(CommitOffsetsResponse { results })
    }

    pub async fn fetch_offsets(&self, r: FetchOffsetsRequest) -> FetchOffsetsResponse {
        let groups = self.groups.lock().await;
        let g = groups.get(&r.group);
        let wanted: Option<BTreeSet<Tp>> = r.partitions.as_deref().map(from_topic_partitions);
        let mut offsets = Vec::new();
        match wanted {
            Some(w) => {
                for tp in w {
                    let c = g.and_then(|g| g.offsets.get(&tp));
                    offsets.push(CommittedOffset {
                        topic: tp.0,
                        partition: tp.1,
                        offset: c.map(|c| c.offset),
                        metadata: c.map(|c| c.metadata.clone()).unwrap_or_default(),
                    });
                }
            }
            None => {
                for (tp, c) in g.map(|g| &g.offsets).into_iter().flatten() {
                    offsets.push(CommittedOffset {
                        topic: tp.0.clone(),
                        partition: tp.1,
                        offset: Some(c.offset),
                        metadata: c.metadata.clone(),
                    });
                }
            }
        }
        FetchOffsetsResponse { offsets }
    }

    pub async fn delete(&self, group: &str) -> Result<(), ApiError> {
        let mut groups = self.groups.lock().await;
        match groups.get(group) {
            None => Err(ApiError::other(
                ErrorCode::UnknownGroup,
                format!("no group {group}"),
            )),
            Some(g) if !g.members.is_empty() => Err(ApiError::other(
                ErrorCode::GroupNotEmpty,
                format!(
                    "group {group} has {} members; stop them first",
                    g.members.len()
                ),
            )),
            Some(_) => {
                self.store(group, GroupRecord::Delete).await?;
                groups.remove(group);
                self.maybe_snapshot(&groups).await;
                Ok(())
            }
        }
    }

    pub async fn list(&self) -> Vec<GroupListing> {
        let groups = self.groups.lock().await;
        groups
            .iter()
            .map(|(name, g)| GroupListing {
                group: name.clone(),
                state: group_state(g),
                members: g.members.len() as u32,
            })
            .collect()
    }

    /// The partitions a description of `group` covers: every partition of every topic it
    /// subscribes to or has committed offsets of.
    pub async fn described_partitions(
        &self,
        group: &str,
        topics: &Topics<'_>,
    ) -> Result<BTreeSet<Tp>, ApiError> {
        let groups = self.groups.lock().await;
        let g = groups
            .get(group)
            .ok_or_else(|| ApiError::other(ErrorCode::UnknownGroup, format!("no group {group}")))?;
        // Every partition of a topic the group reads or has read: a partition without a
        // commit still has lag.
        let read: BTreeSet<&String> = g
            .offsets
            .keys()
            .map(|(t, _)| t)
            .chain(g.members.values().flat_map(|m| &m.subscription))
            .collect();
        let mut tps: BTreeSet<Tp> = g.offsets.keys().cloned().collect();
        for t in read {
            for p in 0..topics(t).map_or(0, |v| v.partitions) {
                tps.insert((t.clone(), p));
            }
        }
        Ok(tps)
    }

    /// The group, its committed offsets and lags, given the described partitions' high
    /// watermarks where known (a partition whose high watermark is unknown has no lag yet).
    pub async fn describe(
        &self,
        group: &str,
        coordinator: u64,
        high_watermarks: &HashMap<Tp, Option<u64>>,
    ) -> Result<DescribeGroupResponse, ApiError> {
        let g = self
            .groups
            .lock()
            .await
            .get(group)
            .cloned()
            .ok_or_else(|| ApiError::other(ErrorCode::UnknownGroup, format!("no group {group}")))?;
        let mut tps: BTreeSet<Tp> = g.offsets.keys().cloned().collect();
        tps.extend(high_watermarks.keys().cloned());
        let mut offsets = Vec::new();
        let mut lag_of: HashMap<Tp, u64> = HashMap::new();
        for tp in tps {
            let committed = g.offsets.get(&tp).map(|c| c.offset);
            let hwm = high_watermarks.get(&tp).copied().flatten();
            let lag = hwm.map_or(0, |h| h.saturating_sub(committed.unwrap_or(0)));
            lag_of.insert(tp.clone(), lag);
            offsets.push(PartitionLag {
                owner: g.owner(&tp).map(str::to_owned),
                topic: tp.0,
                partition: tp.1,
                committed,
                high_watermark: hwm,
                lag,
            });
        }
        let members = g
            .members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                member_epoch: m.member_epoch,
                subscription: m.subscription.iter().cloned().collect(),
                assignment: to_topic_partitions(&m.assigned),
                lag: m
                    .assigned
                    .iter()
                    .map(|tp| lag_of.get(tp).copied().unwrap_or(0))
                    .sum(),
            })
            .collect();
        Ok(DescribeGroupResponse {
            group: group.to_owned(),
            state: group_state(&g),
            epoch: g.epoch,
            coordinator,
            members,
            offsets,
        })
    }
}

fn group_state(g: &Group) -> GroupState {
    if g.members.is_empty() {
        GroupState::Empty
    } else if g.is_stable() {
        GroupState::Stable
    } else {
        GroupState::Reconciling
    }
}

/// Where a record is stored and what its coordinator knew when it stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// The partition of the groups topic.
    pub partition: u32,
    /// The coordinator's term.
    pub term: u64,
    /// Its sequence within the term.
    pub seq: u64,
    /// The first offset of the last snapshot before the record.
    pub last_snapshot: Option<u64>,
}

/// A group record about `group` as stored: an assertion signed by the broker's key.
pub fn sign_record(
    key: &SigningKey,
    meta: RecordMeta,
    group: String,
    record: GroupRecord,
) -> Result<SignedAssertion, ApiError> {
    let stored = Stored {
        term: meta.term,
        seq: meta.seq,
        record,
        last_snapshot: meta.last_snapshot,
    };
    let json = serde_json::to_string(&stored)
        .map_err(|e| ApiError::other(ErrorCode::Internal, e.to_string()))?;
    Assertion {
        subject: group,
        predicate: PREDICATE.to_owned(),
        object: Value::Text(json),
        source: format!("coordinator-{}", meta.partition),
        confidence: None,
        supersedes: None,
        issued_at: now_ms(),
    }
    .sign(key)
    .map_err(|e| ApiError::other(ErrorCode::Internal, e.to_string()))
}

/// A group record decoded from an assertion.
struct Decoded {
    group: String,
    record: GroupRecord,
    signer: [u8; 32],
    last_snapshot: Option<u64>,
}

/// A group record from an assertion's canonical bytes.
fn decode_record(canonical: &[u8]) -> Option<Decoded> {
    let (a, signer) = Assertion::decode(canonical).ok()?;
    if a.predicate != PREDICATE {
        return None;
    }
    let Value::Text(json) = &a.object else {
        return None;
    };
    let stored: Stored = serde_json::from_str(json).ok()?;
    Some(Decoded {
        group: a.subject,
        record: stored.record,
        signer,
        last_snapshot: stored.last_snapshot,
    })
}
