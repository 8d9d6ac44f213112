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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use steme_protocol::messages::commit_offsets::{CommitOffsetsRequest, OffsetCommit};
use steme_protocol::messages::fetch_offsets::{CommittedOffset, FetchOffsetsRequest};
use steme_protocol::messages::heartbeat::{HeartbeatRequest, TopicPartitions};
use steme_protocol::messages::leave_group::LeaveGroupRequest;
use steme_protocol::{ApiError, ErrorCode, RequestBody, partition_for};
use tokio::time::Instant;

mod admin;
#[cfg(test)]
mod tests;
pub use admin::{delete_group, describe_group, list_groups, reset_offsets};

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
    /// The group id.
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
    /// Settings of the consumer that reads the member's partitions.
    pub consumer: ConsumerConfig,
}

impl GroupConfig {
    /// Settings with defaults for `group`: a 10 s session, auto-commit every second, new partitions from the earliest offset.
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
    /// Records read and not yet handed out (a [`stream`](Self::stream) dropped between
    /// two of a poll's records leaves the rest here): not processed, returned first.
    unread: VecDeque<Record>,
    committed: BTreeMap<u32, u64>,
    next_auto_commit: Instant,
    on_rebalance: Option<Callback>,
    /// The topic's partition count when this member joined: a partition beyond it was
    /// added by a growth since, so every record in it is newer than the member.
    partitions_at_join: u32,
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
        let partitions_at_join = cluster.partition_count(topic).await?;
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
            unread: VecDeque::new(),
            committed: BTreeMap::new(),
            next_auto_commit: now + config.auto_commit.unwrap_or(Duration::MAX / 4),
            on_rebalance: None,
            partitions_at_join,
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
    /// and auto-commits happen here. The records returned count as processed: the next
    /// commit covers them.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel-safe: it can be a `tokio::select!` branch or run under
    /// `tokio::time::timeout`. If it is dropped before it returns, no record is lost or
    /// marked processed (the next call returns what this one would have), and an
    /// assignment received from the coordinator stays pending until a call applies it
    /// whole; a commit it had started may or may not have reached the coordinator, which is
    /// harmless (commits are idempotent and the next one repeats it).
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<Record>, ClientError> {
        let records = if self.unread.is_empty() {
            self.read(max_wait).await?
        } else {
            self.unread.drain(..).collect()
        };
        for r in &records {
            self.mark_processed(r);
        }
        Ok(records)
    }

    fn mark_processed(&mut self, r: &Record) {
        self.processed.insert(r.partition(), r.offset() + 1);
    }

    /// What [`poll`](Self::poll) reads, without marking it processed. Cancel-safe: records
    /// exist only after the last await.
    async fn read(&mut self, max_wait: Duration) -> Result<Vec<Record>, ClientError> {
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
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if dropped, the commit may or may not have been stored, and the next
    /// commit sends the same offsets again.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.commit_with_metadata("").await
    }

    /// The commit of what `poll` returned and is not committed yet, with `metadata`. A
    /// partition that has returned nothing yet commits where it stands (the start its
    /// reset policy chose, once known), as Kafka's auto-commit does: a group reading from
    /// `latest` then shows it has read an old partition past its split point, and is
    /// given the partitions its topic grew by (`topic add-partitions`).
    fn commit_request(&self, metadata: &str) -> CommitOffsetsRequest {
        let (member_id, member_epoch) = self.identity();
        let standing: BTreeMap<u32, u64> = self
            .owned
            .iter()
            .filter(|p| !self.processed.contains_key(p))
            .filter(|p| !self.unread.iter().any(|r| r.partition() == **p))
            .filter_map(|p| self.consumer.position(*p).map(|o| (*p, o)))
            .collect();
        CommitOffsetsRequest {
            group: self.config.group.clone(),
            member_id,
            member_epoch,
            offsets: self
                .processed
                .iter()
                .chain(&standing)
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
        self.unread
            .retain(|r| r.partition() != partition || r.offset() < offset);
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
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropped before it returns, the member may not have left the group,
    /// and its partitions move only after the session timeout.
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

    /// A stream of this member's records, polling with `max_wait`, that borrows the member:
    /// once the stream is dropped, [`commit`](Self::commit), [`close`](Self::close) and
    /// [`poll`](Self::poll) work as before. A record counts as processed once the stream
    /// has yielded it; records read and not yet yielded when the stream is dropped are
    /// returned first by the next `poll` or stream. The stream ends after its first error.
    ///
    /// # Cancel safety
    ///
    /// Each `next()` is cancel-safe, as [`poll`](Self::poll) is.
    ///
    /// ```no_run
    /// # async fn demo(mut member: steme_client::GroupConsumer) -> Result<(), steme_client::ClientError> {
    /// use futures::StreamExt;
    /// use std::time::Duration;
    ///
    /// {
    ///     let mut records = std::pin::pin!(member.stream(Duration::from_secs(1)).take(100));
    ///     while let Some(record) = records.next().await {
    ///         println!("{}", record?.id());
    ///     }
    /// } // the stream is dropped here: the member is free again
    /// member.commit().await?;
    /// member.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(
        &mut self,
        max_wait: Duration,
    ) -> impl futures::Stream<Item = Result<Record, ClientError>> + '_ {
        futures::stream::unfold((self, false), move |(member, failed)| async move {
            if failed {
                return None;
            }
            let next = member.next_record(max_wait).await;
            let failed = next.is_err();
            Some((next, (member, failed)))
        })
    }

    /// Turns the member into a stream of records (polling with `max_wait`); it ends after
    /// the first error. The stream owns the member, so nothing can commit or close it any
    /// more: prefer [`stream`](Self::stream), which borrows it.
    pub fn into_stream(
        self,
        max_wait: Duration,
    ) -> impl futures::Stream<Item = Result<Record, ClientError>> {
        futures::stream::unfold((self, false), move |(mut member, failed)| async move {
            if failed {
                return None;
            }
            let next = member.next_record(max_wait).await;
            let failed = next.is_err();
            Some((next, (member, failed)))
        })
    }

    /// The next record, marked processed as it is handed out. Cancel-safe: records read
    /// wait in `unread` until handed out.
    async fn next_record(&mut self, max_wait: Duration) -> Result<Record, ClientError> {
        loop {
            if let Some(r) = self.unread.pop_front() {
                self.mark_processed(&r);
                return Ok(r);
            }
            let records = self.read(max_wait).await?;
            self.unread.extend(records);
        }
    }

    /// Asks for a heartbeat now and applies what the coordinator has said so far, without
    /// reading (to let members settle before they consume, say).
    pub async fn rebalance(&mut self) -> Result<(), ClientError> {
        self.wake.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.sync().await
    }

    /// Applies what the heartbeat task learned: a fence, a new assignment, an error.
    ///
    /// Cancel-safe: a new assignment is left pending (a copy is applied) until it is
    /// applied whole, so a call dropped in the middle leaves it for the next one; every
    /// step of [`apply`](Self::apply) can be done again.
    async fn sync(&mut self) -> Result<(), ClientError> {
        let (fenced, pending, error) = {
            let mut m = lock(&self.membership);
            (
                std::mem::take(&mut m.fenced),
                m.pending.clone(),
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
            self.apply(new.clone()).await?;
            let mut m = lock(&self.membership);
            // Unless the heartbeat task stored a newer one meanwhile.
            if m.pending.as_ref() == Some(&new) {
                m.pending = None;
            }
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
            self.unread.retain(|r| !revoked.contains(&r.partition()));
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
                // Without a committed offset, a partition the topic grew by since this
                // member joined is read from its start: all of it is newer than the member,
                // whatever `no_offset` says (`latest` would skip what was written to it
                // before it was given out).
                let fresh = if *p >= self.partitions_at_join {
                    Position::Earliest
                } else {
                    self.config.no_offset
                };
                let start = committed
                    .get(p)
                    .copied()
                    .flatten()
                    .map_or(fresh, Position::Offset);
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
        self.unread.clear();
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
