//! The group consumer: members sharing a group id split a topic's partitions, commit their
//! progress, and take over each other's partitions when one leaves or dies (D10).
//!
//! The broker coordinates (see `steme-broker`'s `groups` module): a member heartbeats with
//! what it owns and receives what it should own. When a partition is taken away, the member
//! commits how far it got, stops reading it, and reports the release on an early heartbeat;
//! only then does the coordinator hand the partition to its new owner, which starts at that
//! committed offset. Partitions that do not move are never paused.
//!
//! Delivery is at least once: [`GroupConsumer::poll`] marks the records it returns as
//! processed, and what is processed is committed on the next poll after the auto-commit
//! interval, on revocation, on [`commit`](GroupConsumer::commit) and on
//! [`close`](GroupConsumer::close). Heartbeats go from a background task, so slow processing
//! between polls does not cost the membership; a new assignment the task receives is applied
//! (revoked partitions committed and released, new ones started) on the next `poll`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), steme_client::ClientError> {
//! use std::time::Duration;
//! use steme_client::{GroupConfig, GroupConsumer};
//!
//! let mut member = GroupConsumer::join("127.0.0.1:9092", "facts", GroupConfig::new("indexers")).await?;
//! loop {
//!     for record in member.poll(Duration::from_secs(1)).await? {
//!         println!("{}@{}", record.partition(), record.offset());
//!     }
//! }
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use steme_protocol::messages::commit_offsets::{CommitOffsetsRequest, OffsetCommit};
use steme_protocol::messages::delete_group::DeleteGroupRequest;
use steme_protocol::messages::describe_group::{DescribeGroupRequest, DescribeGroupResponse};
use steme_protocol::messages::fetch_offsets::{CommittedOffset, FetchOffsetsRequest};
use steme_protocol::messages::heartbeat::{HeartbeatRequest, TopicPartitions};
use steme_protocol::messages::leave_group::LeaveGroupRequest;
use steme_protocol::messages::list_groups::{GroupListing, ListGroupsRequest};
use steme_protocol::messages::list_offsets::OffsetSpec;
use steme_protocol::{ApiError, ErrorCode, RequestBody, partition_for};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::consumer::{Consumer, ConsumerConfig, Position, Record};
use crate::error::ClientError;

/// The internal topic that holds consumer groups; its leaders coordinate them.
pub const GROUPS_TOPIC: &str = "__groups";

/// How long a group request may keep looking for the coordinator.
const COORDINATOR_DEADLINE: Duration = Duration::from_secs(30);

/// Group consumer settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group: String,
    /// A stable name for this instance: coming back within the session timeout keeps its
    /// partitions without a rebalance (static membership).
    pub instance_id: Option<String>,
    /// Without a heartbeat for this long, the member is removed and its partitions move.
    pub session_timeout: Duration,
    /// Commit processed offsets this often (from `poll`); `None` = only explicit commits,
    /// revocations and close.
    pub auto_commit: Option<Duration>,
    /// Where a partition without a committed offset starts.
    pub no_offset: Position,
    pub consumer: ConsumerConfig,
}

impl GroupConfig {
    pub fn new(group: &str) -> GroupConfig {
        GroupConfig {
            group: group.to_owned(),
            instance_id: None,
            session_timeout: Duration::from_secs(10),
            auto_commit: Some(Duration::from_secs(1)),
            no_offset: Position::Earliest,
            consumer: ConsumerConfig::default(),
        }
    }
}

/// A change of the member's partitions, as told to the rebalance callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    /// These partitions are now this member's (reading starts at their committed offsets).
    Assigned(Vec<u32>),
    /// These partitions were taken away (their processed offsets were committed first,
    /// unless the member was fenced).
    Revoked(Vec<u32>),
}

type Callback = Box<dyn FnMut(&Rebalance) + Send + Sync>;

/// What a member and its heartbeat task share.
#[derive(Debug, Default)]
struct Membership {
    member_id: String,
    member_epoch: u32,
    /// The partitions the member holds, as its heartbeats report them.
    owned: BTreeSet<u32>,
    /// A new assignment from the coordinator, for `poll` to apply.
    pending: Option<BTreeSet<u32>>,
    /// The coordinator no longer knows the member: `poll` drops every partition.
    fenced: bool,
    /// A heartbeat failure `poll` must return (not one that a retry can fix).
    error: Option<ClientError>,
}

type Shared = std::sync::Arc<std::sync::Mutex<Membership>>;

fn lock(m: &Shared) -> std::sync::MutexGuard<'_, Membership> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One member of a consumer group reading one topic.
pub struct GroupConsumer {
    cluster: Cluster,
    config: GroupConfig,
    topic: String,
    consumer: Consumer,
    /// The partitions `poll` reads (mirrored into `membership.owned`).
    owned: BTreeSet<u32>,
    membership: Shared,
    /// Wakes the heartbeat task for an early heartbeat (a release to report).
    wake: std::sync::Arc<tokio::sync::Notify>,
    heartbeats: tokio::task::JoinHandle<()>,
    /// Next offset to commit per owned partition (after records `poll` returned).
    processed: BTreeMap<u32, u64>,
    committed: BTreeMap<u32, u64>,
    next_auto_commit: Instant,
    on_rebalance: Option<Callback>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group)
            .field("topic", &self.topic)
            .field("membership", &*lock(&self.membership))
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Bootstraps from `bootstrap` and joins `config.group` to read `topic`.
    pub async fn join(
        bootstrap: &str,
        topic: &str,
        config: GroupConfig,
    ) -> Result<GroupConsumer, ClientError> {
        let cluster = Cluster::connect(bootstrap, config.consumer.client.clone()).await?;
        GroupConsumer::new(cluster, topic, config).await
    }

    /// A member over an existing cluster handle; its heartbeat task joins the group now.
    pub async fn new(
        cluster: Cluster,
        topic: &str,
        config: GroupConfig,
    ) -> Result<GroupConsumer, ClientError> {
        cluster.partition_count(topic).await?;
        let consumer = Consumer::new(cluster.clone(), config.consumer.clone());
        let now = Instant::now();
        let membership = Shared::default();
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let heartbeats = tokio::spawn(heartbeat_loop(
            cluster.clone(),
            config.clone(),
            topic.to_owned(),
            membership.clone(),
            wake.clone(),
        ));
        Ok(GroupConsumer {
            cluster,
            topic: topic.to_owned(),
            consumer,
            owned: BTreeSet::new(),
            membership,
            wake,
            heartbeats,
            processed: BTreeMap::new(),
            committed: BTreeMap::new(),
            next_auto_commit: now + config.auto_commit.unwrap_or(Duration::MAX / 4),
            on_rebalance: None,
            config,
        })
    }

    /// Called with every change of this member's partitions, from `poll`.
    pub fn on_rebalance(&mut self, f: impl FnMut(&Rebalance) + Send + Sync + 'static) {
        self.on_rebalance = Some(Box::new(f));
    }

    /// The member id the coordinator gave (empty until it answered).
    pub fn member_id(&self) -> String {
        lock(&self.membership).member_id.clone()
    }

    fn identity(&self) -> (String, u32) {
        let m = lock(&self.membership);
        (m.member_id.clone(), m.member_epoch)
    }

    /// The partitions this member reads now.
    pub fn assignment(&self) -> Vec<u32> {
        self.owned.iter().copied().collect()
    }

    /// Records from this member's partitions, waiting up to `max_wait`; assignment changes
    /// and auto-commits happen here.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<Record>, ClientError> {
        let deadline = Instant::now() + max_wait;
        loop {
            self.sync().await?;
            if self.config.auto_commit.is_some() && Instant::now() >= self.next_auto_commit {
                if let Err(e) = self.commit().await {
                    tracing::warn!(group = %self.config.group, error = %e, "auto-commit failed");
                }
                self.next_auto_commit =
                    Instant::now() + self.config.auto_commit.unwrap_or_default();
            }
            // Wake at least this often to apply what the heartbeat task received.
            let until = deadline
                .min(Instant::now() + Duration::from_millis(100))
                .max(Instant::now());
            let records = if self.owned.is_empty() {
                tokio::time::sleep_until(until).await;
                Vec::new()
            } else {
                self.consumer.poll(until - Instant::now()).await?
            };
            for r in &records {
                self.processed.insert(r.partition(), r.offset() + 1);
            }
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Whether a partition of this member is retrying fetches that brought no records
    /// although records exist; see [`Consumer::is_stalled`].
    pub fn is_stalled(&self) -> bool {
        self.consumer.is_stalled()
    }

    /// Commits what `poll` has returned so far, and waits for it.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.commit_with_metadata("").await
    }

    /// The commit of what `poll` returned and is not committed yet, with `metadata`.
    fn commit_request(&self, metadata: &str) -> CommitOffsetsRequest {
        let (member_id, member_epoch) = self.identity();
        CommitOffsetsRequest {
            group: self.config.group.clone(),
            member_id,
            member_epoch,
            offsets: self
                .processed
                .iter()
                .filter(|(p, o)| self.committed.get(p) != Some(o))
                .map(|(p, o)| OffsetCommit {
                    topic: self.topic.clone(),
                    partition: *p,
                    offset: *o,
                    metadata: metadata.to_owned(),
                })
                .collect(),
        }
    }

    /// [`commit`](Self::commit), keeping `metadata` (free text) with each offset.
    pub async fn commit_with_metadata(&mut self, metadata: &str) -> Result<(), ClientError> {
        let req = self.commit_request(metadata);
        if req.offsets.is_empty() {
            return Ok(());
        }
        let resp = call_coordinator(&self.cluster, &self.config.group, &req).await?;
        let mut first_refusal = None;
        for (r, o) in resp.results.iter().zip(&req.offsets) {
            if r.error == ErrorCode::None as u16 {
                self.committed.insert(o.partition, o.offset);
            } else {
                first_refusal.get_or_insert((o.partition, r.error));
            }
        }
        match first_refusal {
            None => Ok(()),
            Some((p, code)) => Err(ClientError::Api(ApiError::other(
                ErrorCode::try_from(code).unwrap_or(ErrorCode::Unknown),
                format!("commit of partition {p} refused"),
            ))),
        }
    }

    /// Treats the records of `partition` from `offset` on as not processed: they are read
    /// again and not committed (for a caller that stops part-way through a poll's records).
    pub async fn rewind(&mut self, partition: u32, offset: u64) -> Result<(), ClientError> {
        if !self.owned.contains(&partition) {
            return Ok(());
        }
        if self.processed.get(&partition).is_some_and(|&o| o > offset) {
            self.processed.insert(partition, offset);
        }
        self.consumer
            .seek(partition, Position::Offset(offset))
            .await?;
        Ok(())
    }

    /// Starts a commit of what `poll` has returned so far without waiting for it.
    pub fn commit_async(&self) -> tokio::task::JoinHandle<Result<(), ClientError>> {
        let req = self.commit_request("");
        let cluster = self.cluster.clone();
        let group = self.config.group.clone();
        tokio::spawn(async move {
            if req.offsets.is_empty() {
                return Ok(());
            }
            call_coordinator(&cluster, &group, &req).await.map(drop)
        })
    }

    /// Commits, gives up its partitions (the rebalance callback is told), leaves the group
    /// (its partitions move at once), and ends.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.heartbeats.abort();
        let committed = self.commit().await;
        let released: Vec<u32> = std::mem::take(&mut self.owned).into_iter().collect();
        if !released.is_empty() {
            self.notify(&Rebalance::Revoked(released));
        }
        let (member_id, member_epoch) = self.identity();
        if !member_id.is_empty() {
            let req = LeaveGroupRequest {
                group: self.config.group.clone(),
                member_id,
                member_epoch,
            };
            call_coordinator(&self.cluster, &self.config.group, &req).await?;
        }
        committed
    }

    /// Turns the member into a stream of records (polling with `max_wait`); it ends after
    /// the first error.
    pub fn into_stream(
        self,
        max_wait: Duration,
    ) -> impl futures::Stream<Item = Result<Record, ClientError>> {
        futures::stream::unfold(
            (self, std::collections::VecDeque::new(), false),
            move |(mut member, mut buf, failed)| async move {
                if failed {
                    return None;
                }
                loop {
                    if let Some(r) = buf.pop_front() {
                        return Some((Ok(r), (member, buf, false)));
                    }
                    match member.poll(max_wait).await {
                        Ok(records) => buf.extend(records),
                        Err(e) => return Some((Err(e), (member, buf, true))),
                    }
                }
            },
        )
    }

    /// Asks for a heartbeat now and applies what the coordinator has said so far, without
    /// reading (to let members settle before they consume, say).
    pub async fn rebalance(&mut self) -> Result<(), ClientError> {
        self.wake.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.sync().await
    }

    /// Applies what the heartbeat task learned: a fence, a new assignment, an error.
    async fn sync(&mut self) -> Result<(), ClientError> {
        let (fenced, pending, error) = {
            let mut m = lock(&self.membership);
            (
                std::mem::take(&mut m.fenced),
                m.pending.take(),
                m.error.take(),
            )
        };
        if let Some(e) = error {
            return Err(e);
        }
        if fenced {
            self.fenced();
        }
        if let Some(new) = pending {
            self.apply(new).await?;
        }
        Ok(())
    }

    /// Moves to a new assignment: commits and releases what was taken away, then starts
    /// the new partitions at their committed offsets.
    async fn apply(&mut self, new: BTreeSet<u32>) -> Result<(), ClientError> {
        let revoked: Vec<u32> = self.owned.difference(&new).copied().collect();
        let added: Vec<u32> = new.difference(&self.owned).copied().collect();
        if !revoked.is_empty() {
            if let Err(e) = self.commit().await {
                tracing::warn!(group = %self.config.group, error = %e, "commit before release failed");
            }
            for p in &revoked {
                self.consumer.remove_partition(*p);
                self.owned.remove(p);
                self.processed.remove(p);
                self.committed.remove(p);
            }
            self.notify(&Rebalance::Revoked(revoked));
            // Report the release now, so the partitions' new owners can start.
            lock(&self.membership).owned = self.owned.clone();
            self.wake.notify_one();
        }
        if !added.is_empty() {
            let committed = self.fetch_committed(&added).await?;
            for p in &added {
                let start = committed
                    .get(p)
                    .copied()
                    .flatten()
                    .map_or(self.config.no_offset, Position::Offset);
                self.consumer.add_partition(&self.topic, *p, start)?;
                self.owned.insert(*p);
            }
            lock(&self.membership).owned = self.owned.clone();
            self.notify(&Rebalance::Assigned(added));
        }
        Ok(())
    }

    async fn fetch_committed(
        &self,
        partitions: &[u32],
    ) -> Result<BTreeMap<u32, Option<u64>>, ClientError> {
        let req = FetchOffsetsRequest {
            group: self.config.group.clone(),
            partitions: Some(vec![TopicPartitions {
                topic: self.topic.clone(),
                partitions: partitions.to_vec(),
            }]),
        };
        let resp = call_coordinator(&self.cluster, &self.config.group, &req).await?;
        Ok(resp
            .offsets
            .into_iter()
            .filter(|o: &CommittedOffset| o.topic == self.topic)
            .map(|o| (o.partition, o.offset))
            .collect())
    }

    /// The coordinator no longer knows this member: drop every partition (without committing:
    /// they may already be someone else's); the heartbeat task joins again.
    fn fenced(&mut self) {
        let lost: Vec<u32> = self.owned.iter().copied().collect();
        for p in &lost {
            self.consumer.remove_partition(*p);
        }
        self.owned.clear();
        self.processed.clear();
        self.committed.clear();
        lock(&self.membership).owned.clear();
        if !lost.is_empty() {
            self.notify(&Rebalance::Revoked(lost));
        }
    }

    fn notify(&mut self, event: &Rebalance) {
        tracing::info!(group = %self.config.group, ?event, "rebalance");
        if let Some(f) = &mut self.on_rebalance {
            f(event);
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

/// Heartbeats for one member until it is closed or dropped: reports what it owns, stores
/// any new assignment for `poll` to apply, and rejoins at once when fenced.
async fn heartbeat_loop(
    cluster: Cluster,
    config: GroupConfig,
    topic: String,
    membership: Shared,
    wake: std::sync::Arc<tokio::sync::Notify>,
) {
    let session_timeout_ms = config.session_timeout.as_millis().min(u32::MAX as u128) as u32;
    loop {
        let req = {
            let m = lock(&membership);
            HeartbeatRequest {
                group: config.group.clone(),
                member_id: m.member_id.clone(),
                instance_id: config.instance_id.clone(),
                member_epoch: m.member_epoch,
                session_timeout_ms,
                subscription: vec![topic.clone()],
                owned: vec![TopicPartitions {
                    topic: topic.clone(),
                    partitions: m.owned.iter().copied().collect(),
                }],
            }
        };
        let next = match call_coordinator(&cluster, &config.group, &req).await {
            Ok(resp) => {
                let mut m = lock(&membership);
                // Unless fenced meanwhile, this answer is the member's identity.
                if m.member_id == req.member_id {
                    m.member_id = resp.member_id;
                    m.member_epoch = resp.member_epoch;
                    if let Some(assignment) = resp.assignment {
                        m.pending = Some(
                            assignment
                                .iter()
                                .filter(|tp| tp.topic == topic)
                                .flat_map(|tp| tp.partitions.iter().copied())
                                .collect(),
                        );
                    }
                }
                Duration::from_millis(u64::from(resp.heartbeat_interval_ms.max(50)))
            }
            Err(e) if is_fenced(&e) => {
                tracing::info!(group = %config.group, member = %req.member_id, error = %e, "fenced; joining again");
                let mut m = lock(&membership);
                m.fenced = true;
                m.pending = None;
                m.member_id.clear();
                m.member_epoch = 0;
                Duration::ZERO
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(group = %config.group, error = %e, "heartbeat failed; retrying");
                Duration::from_millis(200)
            }
            Err(e) => {
                lock(&membership).error = Some(e);
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = wake.notified() => {}
        }
    }
}

fn is_fenced(e: &ClientError) -> bool {
    matches!(e, ClientError::Api(a) if matches!(a.code(), ErrorCode::FencedMember | ErrorCode::UnknownMember))
}

/// Sends a group request to the group's coordinator: the leader of the group's partition of
/// [`GROUPS_TOPIC`], found through metadata and retried while it moves.
pub async fn call_coordinator<R: RequestBody>(
    cluster: &Cluster,
    group: &str,
    req: &R,
) -> Result<R::Response, ClientError> {
    let timeout = cluster.config().request_timeout;
    let deadline = Instant::now() + COORDINATOR_DEADLINE;
    let mut attempt = 0u32;
    loop {
        let result = match cluster.partition_count(GROUPS_TOPIC).await {
            Ok(n) if n > 0 => {
                let p = partition_for(group, n);
                cluster.call_leader(GROUPS_TOPIC, p, req, timeout).await
            }
            // No groups topic yet: any broker creates it and says to look again.
            Ok(_) | Err(ClientError::UnknownTopic { .. }) => cluster.call_any(req).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                if let ClientError::Api(a) = &e
                    && a.code() == ErrorCode::NotCoordinator
                {
                    let _ = cluster.refresh(Some(&[GROUPS_TOPIC.to_owned()])).await;
                }
                let delay = cluster.config().reconnect_backoff.delay(attempt);
                attempt += 1;
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// Every group the cluster coordinates (each broker lists the groups it coordinates).
pub async fn list_groups(cluster: &Cluster) -> Result<Vec<GroupListing>, ClientError> {
    let meta = cluster.refresh(None).await?;
    let timeout = cluster.config().request_timeout;
    let mut out = Vec::new();
    for b in &meta.brokers {
        let conn = cluster.connection(&b.addr).await?;
        out.extend(conn.call(&ListGroupsRequest {}, timeout).await?.groups);
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out.dedup_by(|a, b| a.group == b.group);
    Ok(out)
}

/// A group's members, assignment, committed offsets and lag, from its coordinator.
///
/// The coordinator knows the high watermarks of the partitions its own broker hosts; the
/// others are asked of their leaders here (`ListOffsets`, latest), and the partitions' and
/// members' lags completed with them, as Kafka's admin client does. A partition whose leader
/// cannot be reached keeps an unknown high watermark and a lag of 0.
pub async fn describe_group(
    cluster: &Cluster,
    group: &str,
) -> Result<DescribeGroupResponse, ClientError> {
    let mut d = call_coordinator(
        cluster,
        group,
        &DescribeGroupRequest {
            group: group.to_owned(),
        },
    )
    .await?;
    complete_lags(cluster, &mut d).await;
    Ok(d)
}

/// Fills the high watermarks the coordinator left unknown and recomputes every lag.
async fn complete_lags(cluster: &Cluster, d: &mut DescribeGroupResponse) {
    let config = cluster.config();
    let asks = d
        .offsets
        .iter_mut()
        .filter(|o| o.high_watermark.is_none())
        .map(|o| async move {
            let latest = crate::consumer::list_offsets(
                cluster,
                &o.topic,
                o.partition,
                OffsetSpec::Latest,
                config.request_timeout,
                config.reconnect_backoff,
            )
            .await;
            match latest {
                Ok(r) => o.high_watermark = Some(r.high_watermark),
                Err(e) => tracing::debug!(
                    topic = %o.topic,
                    partition = o.partition,
                    error = %e,
                    "no high watermark for a group's partition"
                ),
            }
        });
    futures::future::join_all(asks).await;
    let mut lag_of: HashMap<(&str, u32), u64> = HashMap::new();
    for o in &mut d.offsets {
        o.lag = o
            .high_watermark
            .map_or(0, |h| h.saturating_sub(o.committed.unwrap_or(0)));
        lag_of.insert((o.topic.as_str(), o.partition), o.lag);
    }
    for m in &mut d.members {
        m.lag = m
            .assignment
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.as_str(), *p)))
            .map(|tp| lag_of.get(&tp).copied().unwrap_or(0))
            .sum();
    }
}

/// Deletes a group with no members, and its committed offsets.
pub async fn delete_group(cluster: &Cluster, group: &str) -> Result<(), ClientError> {
    call_coordinator(
        cluster,
        group,
        &DeleteGroupRequest {
            group: group.to_owned(),
        },
    )
    .await
    .map(drop)
}

/// Sets a group's committed offsets from outside the group (refused while it has members).
pub async fn reset_offsets(
    cluster: &Cluster,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<u32, u64>,
) -> Result<(), ClientError> {
    let req = CommitOffsetsRequest {
        group: group.to_owned(),
        member_id: String::new(),
        member_epoch: 0,
        offsets: offsets
            .iter()
            .map(|(p, o)| OffsetCommit {
                topic: topic.to_owned(),
                partition: *p,
                offset: *o,
                metadata: "reset".to_owned(),
            })
            .collect(),
    };
    let resp = call_coordinator(cluster, group, &req).await?;
    if let Some(bad) = resp
        .results
        .iter()
        .find(|r| r.error != ErrorCode::None as u16)
    {
        let code = ErrorCode::try_from(bad.error).unwrap_or(ErrorCode::Unknown);
        return Err(ClientError::Api(ApiError::other(
            code,
            format!(
                "reset of {}/{} refused ({code:?}); stop the group's members first",
                bad.topic, bad.partition
            ),
        )));
    }
    Ok(())
}
