//! The consumer: reads assigned partitions of a topic from positions it tracks.
//!
//! Each assigned partition keeps at most one long-poll Fetch in flight on its leader's
//! connection. [`Consumer::poll`] returns as soon as any partition has records (fetches of
//! the others stay in flight for the next call), or empty after `max_wait`. Records are
//! zero-copy slices of the fetch response. Connection failures and leader changes are
//! retried with backoff on their own; only errors a caller must decide about come out of
//! `poll`: an offset out of range (under [`OffsetReset::Error`]), a record that fails
//! verification, a corrupt batch, an unknown topic, and the integrity errors below.
//!
//! Integrity fails closed: records are returned only as a continuous run of the log from
//! the position, and a range that cannot be read is never skipped.
//!
//! - A fetch answer whose batches do not continue the log from the position (a gap, an
//!   overlap, a batch wholly before it) ends with [`ClientError::OffsetDiscontinuity`];
//!   the records before the break are returned first.
//! - A `CorruptData` answer (the leader's copy of a range is damaged) is retried with
//!   backoff [`ConsumerConfig::corrupt_data_retries`] times in a row, in case leadership
//!   moves to a healthy replica or the range is repaired, then is [`ClientError::CorruptData`].
//!   (The client reads from leaders only, so it cannot ask another replica itself.)
//! - An empty answer although the high watermark is above the position is retried with
//!   backoff [`ConsumerConfig::stalled_fetch_retries`] times in a row, then is
//!   [`ClientError::FetchStalled`]. An empty answer *at* the high watermark is the normal end
//!   of a long poll (`max_wait`) and is not counted.
//! - A `SkippedData` answer (an operator gave the range up: damaged on every replica) moves
//!   the position past the range and comes out of `poll` once as
//!   [`ClientError::SkippedData`], a notice carrying the record of the skip; the next poll
//!   goes on after it.
//!
//! Modules: [`record`] ([`Record`] and the continuity check of a fetch answer), `progress`
//! (the bounded retries of answers that bring nothing), [`split`] (partition splits as a
//! reader sees them: a subject's chain of partitions, which partitions may be read yet) and
//! `history` ([`Consumer::subject_history`]: one subject in HLC order across splits).
//!
//! ```no_run
//! # async fn demo() -> Result<(), steme_client::ClientError> {
//! use std::time::Duration;
//! use steme_client::{Consumer, ConsumerConfig, Position};
//!
//! let mut consumer = Consumer::connect("127.0.0.1:9092", ConsumerConfig::default()).await?;
//! consumer.assign_all("facts").await?;
//! consumer.seek(0, Position::Earliest).await?;
//! loop {
//!     for record in consumer.poll(Duration::from_secs(1)).await? {
//!         let assertion = record.assertion()?;
//!         println!("{}@{} {} {}", record.partition(), record.offset(), assertion.subject, assertion.predicate);
//!     }
//! }
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use steme_protocol::ApiError;
use steme_protocol::assertion::BatchVerifier;
use steme_protocol::messages::fetch::{FetchRequest, FetchResponse};
use steme_protocol::messages::list_offsets::{ListOffsetsRequest, ListOffsetsResponse, OffsetSpec};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::cluster::{Backoff, ClientConfig, Cluster};
use crate::error::ClientError;

mod history;
mod progress;
pub mod record;
pub mod split;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use progress::{NoProgress, Verdict};
pub use record::{ContinuousBatches, Record, continuous_batches, records_from};
pub use split::{ChainStep, ReadUntil, gates_open, subject_chain};

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The first retained offset (the log start offset).
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// This offset.
    Offset(u64),
    /// The first record stamped at or after this HLC (NTP64).
    Time(u64),
}

/// What to do when the position is outside the retained log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Return [`ClientError::OffsetOutOfRange`] from `poll` (the default: skipping data or
    /// re-reading it silently is the caller's decision).
    #[default]
    Error,
    /// Move to the log start offset.
    Earliest,
    /// Move to the high watermark.
    Latest,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Where newly assigned partitions start.
    pub start: Position,
    /// What a partition's position does when it falls outside the log.
    pub offset_reset: OffsetReset,
    /// Byte budget of one fetch (at least one batch is returned whatever its size).
    pub max_bytes_per_partition: u32,
    /// Verify every record's signature before `poll` returns it (batch verification).
    pub verify: bool,
    /// Timeout of ListOffsets requests; fetches wait `max_wait` plus this.
    pub request_timeout: Duration,
    /// Backoff between retries of a partition after a retriable error.
    pub retry_backoff: Backoff,
    /// How many `CorruptData` answers in a row (a damaged range in the leader's copy of the
    /// log) are retried, with `retry_backoff`, before `poll` returns
    /// [`ClientError::CorruptData`]: time for leadership to move to a healthy replica or for
    /// the range to be repaired.
    pub corrupt_data_retries: u32,
    /// How many empty answers in a row although the high watermark is above the position
    /// are retried, with `retry_backoff`, before `poll` returns [`ClientError::FetchStalled`].
    pub stalled_fetch_retries: u32,
    /// Connection and metadata settings, used by [`Consumer::connect`].
    pub client: ClientConfig,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            start: Position::Earliest,
            offset_reset: OffsetReset::Error,
            max_bytes_per_partition: 1 << 20,
            verify: false,
            request_timeout: Duration::from_secs(10),
            retry_backoff: Backoff::default(),
            // With the default backoff: about 3 s of retries.
            corrupt_data_retries: 6,
            // About 0.75 s.
            stalled_fetch_retries: 4,
            client: ClientConfig::default(),
        }
    }
}

/// Per-partition state.
#[derive(Debug, Clone)]
struct PartitionState {
    /// Next offset to return; `None` until the start position is resolved.
    position: Option<u64>,
    /// Resolve this on the next poll.
    pending_seek: Option<Position>,
    high_watermark: Option<u64>,
    log_start_offset: Option<u64>,
    /// Bumped on every seek, so a fetch issued before it is recognised and dropped.
    epoch: u64,
    /// A fetch is in flight for this partition.
    fetching: bool,
    /// Not fetched until resumed.
    paused: bool,
    /// Consecutive retriable failures, and when the next attempt may go.
    failures: u32,
    retry_at: Option<Instant>,
    /// Consecutive answers that brought nothing although they should have.
    no_progress: NoProgress,
}

impl PartitionState {
    fn new(start: Position) -> Self {
        PartitionState {
            position: None,
            pending_seek: Some(start),
            high_watermark: None,
            log_start_offset: None,
            epoch: 0,
            fetching: false,
            paused: false,
            failures: 0,
            retry_at: None,
            no_progress: NoProgress::default(),
        }
    }
}

struct FetchDone {
    partition: u32,
    epoch: u64,
    offset: u64,
    result: Result<FetchResponse, ClientError>,
}

type FetchFuture = futures::future::BoxFuture<'static, FetchDone>;

/// A consumer of one topic's assigned partitions. Not shared: one task polls it (wrap it in
/// a stream with [`into_stream`](Self::into_stream)).
pub struct Consumer {
    cluster: Cluster,
    config: ConsumerConfig,
    topic: Arc<str>,
    partitions: BTreeMap<u32, PartitionState>,
    /// At most one fetch per partition. The mutex is never locked (every access is through
    /// `get_mut`, under `&mut self`); it only makes the consumer `Sync`, so that a future
    /// holding `&Consumer` can move between threads.
    in_flight: std::sync::Mutex<FuturesUnordered<FetchFuture>>,
    verifier: BatchVerifier,
    /// An error found after records that were returned first; returned by the next poll.
    deferred: Option<ClientError>,
    /// Fetch long-poll time, from the last `poll` call.
    max_wait: Duration,
    /// Seek epochs of partitions added one by one start here, so that a fetch issued
    /// for a partition before it was removed is never taken for one of its new incarnation.
    next_epoch_base: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Bootstraps from `bootstrap` (comma-separated addresses).
    pub async fn connect(bootstrap: &str, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let cluster = Cluster::connect(bootstrap, config.client.clone()).await?;
        Ok(Consumer::new(cluster, config))
    }

    /// A consumer over an existing cluster handle. Nothing is assigned yet.
    pub fn new(cluster: Cluster, config: ConsumerConfig) -> Consumer {
        Consumer {
            cluster,
            config,
            topic: "".into(),
            partitions: BTreeMap::new(),
            in_flight: std::sync::Mutex::new(FuturesUnordered::new()),
            verifier: BatchVerifier::default(),
            deferred: None,
            max_wait: Duration::from_millis(500),
            next_epoch_base: 1 << 32,
        }
    }

    /// Adds one partition to the assignment at `start`, leaving the others as they are
    /// (for consumer groups). The first partition added to an empty consumer sets its topic.
    pub fn add_partition(
        &mut self,
        topic: &str,
        partition: u32,
        start: Position,
    ) -> Result<(), ClientError> {
        if self.partitions.is_empty() {
            if &*self.topic != topic {
                self.topic = topic.into();
            }
        } else if &*self.topic != topic {
            return Err(ClientError::Config(format!(
                "this consumer reads {}, not {topic}",
                self.topic
            )));
        }
        let mut st = PartitionState::new(start);
        st.epoch = self.next_epoch_base;
        self.next_epoch_base += 1 << 32;
        self.partitions.insert(partition, st);
        Ok(())
    }

    /// Removes one partition from the assignment; returns its position (the next offset it
    /// would have returned), if known. A fetch in flight for it is ignored when it lands.
    pub fn remove_partition(&mut self, partition: u32) -> Option<u64> {
        self.partitions
            .remove(&partition)
            .and_then(|st| st.position)
    }

    /// Reads these partitions of `topic`, replacing any previous assignment. Partitions
    /// start at [`ConsumerConfig::start`] until [`seek`](Self::seek) says otherwise.
    pub async fn assign(&mut self, topic: &str, partitions: &[u32]) -> Result<(), ClientError> {
        let count = self.cluster.partition_count(topic).await?;
        if let Some(&bad) = partitions.iter().find(|&&p| p >= count) {
            return Err(ClientError::UnknownPartition {
                topic: topic.to_owned(),
                partition: bad,
                partitions: count,
            });
        }
        if &*self.topic != topic {
            self.topic = topic.into();
        }
        // Fetches of the old assignment are dropped; their results would be stale.
        self.in_flight = std::sync::Mutex::new(FuturesUnordered::new());
        self.deferred = None;
        self.partitions = partitions
            .iter()
            .map(|&p| (p, PartitionState::new(self.config.start)))
            .collect();
        Ok(())
    }

    /// Reads every partition of `topic`. Returns how many there are.
    pub async fn assign_all(&mut self, topic: &str) -> Result<u32, ClientError> {
        let count = self.cluster.partition_count(topic).await?;
        let all: Vec<u32> = (0..count).collect();
        self.assign(topic, &all).await?;
        Ok(count)
    }

    /// The topic of the assigned partitions.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The assigned partitions, in order.
    pub fn assignment(&self) -> Vec<u32> {
        self.partitions.keys().copied().collect()
    }

    fn state(&mut self, partition: u32) -> Result<&mut PartitionState, ClientError> {
        let topic = &self.topic;
        let n = self.partitions.len() as u32;
        self.partitions
            .get_mut(&partition)
            .ok_or_else(|| ClientError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: n,
            })
    }

    /// Moves a partition to `position`, resolving it now (ListOffsets for anything but an
    /// explicit offset). Records of a fetch issued before the seek are discarded.
    pub async fn seek(&mut self, partition: u32, position: Position) -> Result<u64, ClientError> {
        self.state(partition)?;
        let offset = self.resolve(partition, position).await?;
        let st = self.state(partition)?;
        st.position = Some(offset);
        st.pending_seek = None;
        st.epoch += 1;
        st.fetching = false;
        st.failures = 0;
        st.retry_at = None;
        st.no_progress = NoProgress::default();
        Ok(offset)
    }

    /// Stops fetching `partition` until [`resume`](Self::resume); its position is kept.
    /// The answer of a fetch already in flight is dropped; those records come after resume.
    pub fn pause(&mut self, partition: u32) -> Result<(), ClientError> {
        self.state(partition)?.paused = true;
        Ok(())
    }

    /// Fetches `partition` again, from its position (see [`pause`](Self::pause)).
    pub fn resume(&mut self, partition: u32) -> Result<(), ClientError> {
        self.state(partition)?.paused = false;
        Ok(())
    }

    /// Pauses every partition whose position has reached its end offset in `ends`, and
    /// drops it from `ends`: reading "up to the high watermark as of the start" ends when
    /// `ends` is empty.
    pub fn pause_reached(&mut self, ends: &mut BTreeMap<u32, u64>) -> Result<(), ClientError> {
        let done: Vec<u32> = ends
            .iter()
            .filter(|&(&p, &end)| self.position(p).is_some_and(|pos| pos >= end))
            .map(|(&p, _)| p)
            .collect();
        for p in done {
            ends.remove(&p);
            self.pause(p)?;
        }
        Ok(())
    }

    /// Whether every assigned partition is paused (a poll would only wait).
    pub fn all_paused(&self) -> bool {
        self.partitions.values().all(|s| s.paused)
    }

    /// Whether some partition is retrying fetches that brought no records although records
    /// exist (a damaged range, empty answers below the high watermark). `poll` will return
    /// them or, once the bounded retries run out, an error; a reader that stops when it has
    /// been idle for a while waits for that rather than stop in front of the range.
    pub fn is_stalled(&self) -> bool {
        self.partitions.values().any(|s| !s.no_progress.is_clear())
    }

    /// The next offset `poll` will return for `partition` (`None` until resolved).
    pub fn position(&self, partition: u32) -> Option<u64> {
        self.partitions.get(&partition).and_then(|s| s.position)
    }

    /// The partition's high watermark as of the last fetch or seek (`None` if not known).
    pub fn high_watermark(&self, partition: u32) -> Option<u64> {
        self.partitions
            .get(&partition)
            .and_then(|s| s.high_watermark)
    }

    /// Asks the partition's leader for a fresh offset (and the log bounds).
    pub async fn list_offsets(
        &self,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<ListOffsetsResponse, ClientError> {
        list_offsets(
            &self.cluster,
            &self.topic,
            partition,
            spec,
            self.config.request_timeout,
            self.config.retry_backoff,
        )
        .await
    }

    /// Asks the leader for the partition's current high watermark, and remembers it.
    pub async fn fetch_high_watermark(&mut self, partition: u32) -> Result<u64, ClientError> {
        let r = self.list_offsets(partition, OffsetSpec::Latest).await?;
        let st = self.state(partition)?;
        st.high_watermark = Some(r.high_watermark);
        st.log_start_offset = Some(r.log_start_offset);
        Ok(r.high_watermark)
    }

    async fn resolve(&mut self, partition: u32, position: Position) -> Result<u64, ClientError> {
        let spec = match position {
            Position::Offset(o) => return Ok(o),
            Position::Earliest => OffsetSpec::Earliest,
            Position::Latest => OffsetSpec::Latest,
            Position::Time(hlc) => OffsetSpec::AtOrAfterHlc(hlc),
        };
        let r = self.list_offsets(partition, spec).await?;
        let st = self.state(partition)?;
        st.high_watermark = Some(r.high_watermark);
        st.log_start_offset = Some(r.log_start_offset);
        Ok(r.offset)
    }

    /// Waits up to `max_wait` for records from any assigned partition and returns those
    /// that arrived (possibly none). Positions advance past what is returned.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<Record>, ClientError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        self.max_wait = max_wait;
        let deadline = Instant::now() + max_wait;
        let mut out = Vec::new();
        loop {
            self.resolve_pending_seeks().await?;
            self.start_fetches();
            let next_retry = self.partitions.values().filter_map(|s| s.retry_at).min();
            let wake = next_retry.map_or(deadline, |r| r.min(deadline));
            let done = if self.fetches().is_empty() {
                tokio::time::sleep_until(wake).await;
                None
            } else {
                tokio::time::timeout_at(wake, self.fetches().next())
                    .await
                    .ok()
                    .flatten()
            };
            if let Some(done) = done {
                self.handle(done, &mut out)?;
                // Take whatever else has already arrived, without waiting.
                while let Some(Some(done)) = futures::FutureExt::now_or_never(self.fetches().next())
                {
                    if let Err(e) = self.handle(done, &mut out) {
                        if out.is_empty() {
                            return Err(e);
                        }
                        self.deferred = Some(e);
                        return Ok(out);
                    }
                }
            }
            if !out.is_empty() || Instant::now() >= deadline {
                // The next fetches are under way while the caller handles these records.
                self.start_fetches();
                return Ok(out);
            }
        }
    }

    /// Turns the consumer into a stream of records, polling with `max_wait` each time.
    /// The stream ends after the first error.
    pub fn into_stream(
        self,
        max_wait: Duration,
    ) -> impl Stream<Item = Result<Record, ClientError>> {
        futures::stream::unfold(
            (self, std::collections::VecDeque::new(), false),
            move |(mut consumer, mut buf, failed)| async move {
                if failed {
                    return None;
                }
                loop {
                    if let Some(r) = buf.pop_front() {
                        return Some((Ok(r), (consumer, buf, false)));
                    }
                    match consumer.poll(max_wait).await {
                        Ok(records) => buf.extend(records),
                        Err(e) => return Some((Err(e), (consumer, buf, true))),
                    }
                }
            },
        )
    }

    async fn resolve_pending_seeks(&mut self) -> Result<(), ClientError> {
        let pending: Vec<(u32, Position)> = self
            .partitions
            .iter()
            .filter(|(_, s)| {
                s.pending_seek.is_some() && s.retry_at.is_none_or(|t| t <= Instant::now())
            })
            .map(|(&p, s)| (p, s.pending_seek.expect("filtered")))
            .collect();
        for (p, pos) in pending {
            match self.seek(p, pos).await {
                Ok(_) => {}
                Err(e) if e.is_retriable() => {
                    self.cluster.note_error(&self.topic, p, &e);
                    self.backoff(p, &e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn backoff(&mut self, partition: u32, err: &ClientError) {
        let backoff = self.config.retry_backoff;
        if let Some(st) = self.partitions.get_mut(&partition) {
            let delay = backoff.delay(st.failures);
            tracing::debug!(topic = %self.topic, partition, error = %err, ?delay, "consumer retrying");
            st.failures = st.failures.saturating_add(1);
            st.retry_at = Some(Instant::now() + delay);
        }
    }

    fn fetches(&mut self) -> &mut FuturesUnordered<FetchFuture> {
        self.in_flight.get_mut().expect("never locked")
    }

    fn start_fetches(&mut self) {
        let now = Instant::now();
        let max_wait_ms = u32::try_from(self.max_wait.as_millis()).unwrap_or(u32::MAX);
        let timeout = self.max_wait + self.config.request_timeout;
        for (&partition, st) in self.partitions.iter_mut() {
            let Some(offset) = st.position else { continue };
            if st.fetching
                || st.paused
                || st.pending_seek.is_some()
                || st.retry_at.is_some_and(|t| t > now)
            {
                continue;
            }
            st.fetching = true;
            let req = FetchRequest {
                topic: self.topic.to_string(),
                partition,
                offset,
                max_bytes: self.config.max_bytes_per_partition,
                max_wait_ms,
            };
            let cluster = self.cluster.clone();
            let epoch = st.epoch;
            // A task of its own, so that the request goes out and its answer is read while
            // the application works on the last poll's records (the broker reads the next
            // chunk meanwhile: fetch pipelining). Dropping the consumer aborts it.
            let task = AbortOnDropHandle::new(tokio::spawn(async move {
                cluster
                    .call_leader(&req.topic, partition, &req, timeout)
                    .await
            }));
            self.in_flight
                .get_mut()
                .expect("never locked")
                .push(Box::pin(async move {
                    let result = task
                        .await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                    FetchDone {
                        partition,
                        epoch,
                        offset,
                        result,
                    }
                }));
        }
    }

    /// Applies one finished fetch: appends its records to `out` and advances the position
    /// past them. An error found after some records (a record that fails verification, a
    /// damaged batch, a discontinuity) stops the position there and waits for the next poll.
    fn handle(&mut self, done: FetchDone, out: &mut Vec<Record>) -> Result<(), ClientError> {
        let topic = self.topic.clone();
        let reset = self.config.offset_reset;
        let Some(st) = self.partitions.get_mut(&done.partition) else {
            return Ok(());
        };
        if st.epoch != done.epoch || st.position != Some(done.offset) {
            return Ok(()); // issued before a seek
        }
        st.fetching = false;
        if st.paused {
            return Ok(()); // fetched before the pause: read again from here on resume
        }
        let resp = match done.result {
            Ok(resp) => resp,
            Err(ClientError::Api(ApiError::OffsetOutOfRange {
                log_start,
                high_watermark,
            })) => {
                st.high_watermark = Some(high_watermark);
                st.log_start_offset = Some(log_start);
                st.position = match reset {
                    OffsetReset::Earliest => Some(log_start),
                    OffsetReset::Latest => Some(high_watermark),
                    OffsetReset::Error => {
                        return Err(ClientError::OffsetOutOfRange {
                            topic: topic.to_string(),
                            partition: done.partition,
                            offset: done.offset,
                            log_start,
                            high_watermark,
                        });
                    }
                };
                tracing::info!(%topic, partition = done.partition, from = done.offset, to = ?st.position, "offset out of range, reset");
                return Ok(());
            }
            Err(ClientError::Api(ApiError::CorruptData {
                first_offset,
                end_offset,
                message,
            })) => {
                let verdict = st
                    .no_progress
                    .corrupt_data(self.config.corrupt_data_retries);
                return self.retry_or_fail(done.partition, verdict, |attempts| {
                    ClientError::CorruptData {
                        topic: topic.to_string(),
                        partition: done.partition,
                        offset: done.offset,
                        first_offset,
                        end_offset,
                        attempts,
                        message,
                    }
                });
            }
            Err(ClientError::Api(ApiError::SkippedData {
                first_offset,
                end_offset,
                message,
            })) if end_offset > done.offset => {
                // Given up by an operator: move past it, and say so (never a silent gap).
                st.position = Some(end_offset);
                st.no_progress.progressed();
                let notice = ClientError::SkippedData {
                    topic: topic.to_string(),
                    partition: done.partition,
                    first_offset,
                    end_offset,
                    message,
                };
                tracing::warn!(error = %notice, "moving past a skipped range");
                return Err(notice);
            }
            Err(e) if e.is_retriable() => {
                // The leader was corrected by call_leader; try again after a pause.
                self.backoff(done.partition, &e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        st.failures = 0;
        st.retry_at = None;
        st.high_watermark = Some(resp.high_watermark);
        st.log_start_offset = Some(resp.log_start_offset);
        let first_new = out.len();
        // On an error, `out` holds the records of the batches before the failed one.
        let mut found = records_from(&topic, done.partition, done.offset, &resp.records, out).err();
        if self.config.verify && out.len() > first_new {
            let fresh = &out[first_new..];
            if let Err(e) = self
                .verifier
                .verify(fresh.iter().map(|r| (r.canonical(), r.signature())))
            {
                // Before anything `records_from` found: it stopped after these records.
                found = Some(ClientError::Verify {
                    topic: topic.to_string(),
                    partition: done.partition,
                    offset: fresh[e.index].offset(),
                    source: e.reason,
                });
                out.truncate(first_new + e.index);
            }
        }
        if let Some(last) = out[first_new..].last() {
            st.position = Some(last.offset() + 1);
            st.no_progress.progressed();
        } else if found.is_none() && resp.high_watermark > done.offset {
            // Records below the high watermark exist, yet none came.
            let verdict = st
                .no_progress
                .empty_below_high_watermark(self.config.stalled_fetch_retries);
            return self.retry_or_fail(done.partition, verdict, |empty_answers| {
                ClientError::FetchStalled {
                    topic: topic.to_string(),
                    partition: done.partition,
                    offset: done.offset,
                    high_watermark: resp.high_watermark,
                    empty_answers,
                }
            });
        } else if found.is_none() {
            st.no_progress.caught_up();
        }
        match found {
            None => Ok(()),
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                // Returned by the next poll, after the records before it.
                if self.deferred.is_none() {
                    self.deferred = Some(e);
                }
                Ok(())
            }
        }
    }

    /// After an answer that brought nothing although it should have: fetch `partition`
    /// again after a backoff, or return the error `error(answers so far)` once the budget
    /// is spent.
    fn retry_or_fail(
        &mut self,
        partition: u32,
        verdict: Verdict,
        error: impl FnOnce(u32) -> ClientError,
    ) -> Result<(), ClientError> {
        match verdict {
            Verdict::Retry { attempt } => {
                let delay = self.config.retry_backoff.delay(attempt);
                let err = error(attempt + 1);
                tracing::warn!(topic = %self.topic, partition, error = %err, ?delay, "fetch brought nothing, retrying");
                if let Some(st) = self.partitions.get_mut(&partition) {
                    st.retry_at = Some(Instant::now() + delay);
                }
                Ok(())
            }
            Verdict::GiveUp { answers } => Err(error(answers)),
        }
    }
}

/// ListOffsets on the partition's leader, retrying retriable errors (a leader change, a
/// leader that has not yet applied its log) with backoff until `timeout` has passed in all.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    spec: OffsetSpec,
    timeout: Duration,
    backoff: Backoff,
) -> Result<ListOffsetsResponse, ClientError> {
    let req = ListOffsetsRequest {
        topic: topic.to_owned(),
        partition,
        spec,
    };
    let deadline = Instant::now() + timeout;
    let mut attempt = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match cluster.call_leader(topic, partition, &req, left).await {
            Err(e) if e.is_retriable() && Instant::now() + backoff.delay(attempt) < deadline => {
                tracing::debug!(%topic, partition, error = %e, "list offsets, retrying");
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
