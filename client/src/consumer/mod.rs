//! The consumer: reads assigned partitions of a topic from positions it tracks.
//!
//! Each assigned partition keeps at most one long-poll Fetch in flight on its leader's
//! connection. [`Consumer::poll`] returns as soon as any partition has records (fetches of
//! the others stay in flight for the next call), or empty after `max_wait`. Records are
//! zero-copy slices of the fetch response. Connection failures and leader changes are
//! retried with backoff on their own; only errors a caller must decide about come out of
//! `poll`: an offset out of range (under [`OffsetReset::Error`]), a record that fails
//! verification, a corrupt batch, an unknown topic.
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

use bytes::Bytes;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use steme_protocol::assertion::{BatchVerifier, verify_one};
use steme_protocol::batch::SIGNATURE_LEN;
use steme_protocol::messages::fetch::{FetchRequest, FetchResponse};
use steme_protocol::messages::list_offsets::{ListOffsetsRequest, ListOffsetsResponse, OffsetSpec};
use steme_protocol::{ApiError, Assertion, AssertionId, RecordBatch, SignedAssertion};
use tokio::time::Instant;

use crate::cluster::{Backoff, ClientConfig, Cluster};
use crate::error::ClientError;

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
    pub offset_reset: OffsetReset,
    /// Byte budget of one fetch (at least one batch is returned whatever its size).
    pub max_bytes_per_partition: u32,
    /// Verify every record's signature before `poll` returns it (batch verification).
    pub verify: bool,
    /// Timeout of ListOffsets requests; fetches wait `max_wait` plus this.
    pub request_timeout: Duration,
    /// Backoff between retries of a partition after a retriable error.
    pub retry_backoff: Backoff,
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
            client: ClientConfig::default(),
        }
    }
}

/// One record read from a partition. Its bytes are a slice of the fetch response.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    topic: Arc<str>,
    partition: u32,
    offset: u64,
    hlc: u64,
    /// Signature followed by the canonical assertion.
    raw: Bytes,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("hlc", &self.hlc)
            .field("id", &self.id())
            .finish()
    }
}

impl Record {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The HLC (NTP64) the leader stamped.
    pub fn hlc(&self) -> u64 {
        self.hlc
    }

    /// The content id: BLAKE3 of the canonical bytes (computed on each call).
    pub fn id(&self) -> AssertionId {
        AssertionId::of(self.canonical())
    }

    /// The signer's public key.
    pub fn signer(&self) -> &[u8; 32] {
        self.canonical()[steme_protocol::assertion::SIGNER_RANGE]
            .try_into()
            .expect("validated records hold the signer key")
    }

    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        self.raw[..SIGNATURE_LEN]
            .try_into()
            .expect("validated records hold a signature")
    }

    /// The canonical assertion bytes.
    pub fn canonical(&self) -> &[u8] {
        &self.raw[SIGNATURE_LEN..]
    }

    /// The canonical assertion bytes as a zero-copy `Bytes`.
    pub fn canonical_bytes(&self) -> Bytes {
        self.raw.slice(SIGNATURE_LEN..)
    }

    /// Decodes the assertion.
    pub fn assertion(&self) -> Result<Assertion, ClientError> {
        Assertion::decode(self.canonical())
            .map(|(a, _)| a)
            .map_err(|source| self.verify_error(source))
    }

    /// Decodes into a [`SignedAssertion`] (copies the bytes; does not verify).
    pub fn signed(&self) -> Result<SignedAssertion, ClientError> {
        SignedAssertion::from_record(self.canonical(), self.signature())
            .map_err(|source| self.verify_error(source))
    }

    /// Verifies the signature over the id (strict; weak keys refused).
    pub fn verify(&self) -> Result<(), ClientError> {
        verify_one(self.canonical(), self.signature()).map_err(|source| self.verify_error(source))
    }

    fn verify_error(&self, source: steme_protocol::AssertionError) -> ClientError {
        ClientError::Verify {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            source,
        }
    }
}

/// Splits a fetch response into records at or after `from`, zero-copy. The first batch may
/// start before `from` (the broker returns whole batches), so earlier records are skipped.
pub fn records_from(
    topic: &Arc<str>,
    partition: u32,
    from: u64,
    records: &Bytes,
    out: &mut Vec<Record>,
) -> Result<(), ClientError> {
    for batch in RecordBatch::split_all(records) {
        let batch = batch.map_err(|(position, source)| ClientError::CorruptBatch {
            topic: topic.to_string(),
            partition,
            position,
            source,
        })?;
        if batch.end_offset() <= from {
            continue;
        }
        let bytes = batch.as_bytes();
        for rec in batch.records().filter(|r| r.offset >= from) {
            // The record's signature and assertion are adjacent: one slice covers both.
            let start = rec.signature.as_ptr() as usize - bytes.as_ptr() as usize;
            let end = start + SIGNATURE_LEN + rec.assertion.len();
            out.push(Record {
                topic: topic.clone(),
                partition,
                offset: rec.offset,
                hlc: rec.hlc,
                raw: bytes.slice(start..end),
            });
        }
    }
    Ok(())
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
        Ok(offset)
    }

    /// Stops fetching `partition` until [`resume`](Self::resume); its position is kept.
    /// Records of a fetch already in flight are still returned.
    pub fn pause(&mut self, partition: u32) -> Result<(), ClientError> {
        self.state(partition)?.paused = true;
        Ok(())
    }

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
            self.in_flight
                .get_mut()
                .expect("never locked")
                .push(Box::pin(async move {
                    let result = cluster
                        .call_leader(&req.topic, partition, &req, timeout)
                        .await;
                    FetchDone {
                        partition,
                        epoch,
                        offset,
                        result,
                    }
                }));
        }
    }

    /// Applies one finished fetch: appends its records to `out` and advances the position.
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
        records_from(&topic, done.partition, done.offset, &resp.records, out)?;
        if self.config.verify && out.len() > first_new {
            let fresh = &out[first_new..];
            if let Err(e) = self
                .verifier
                .verify(fresh.iter().map(|r| (r.canonical(), r.signature())))
            {
                let bad = &fresh[e.index];
                let err = ClientError::Verify {
                    topic: topic.to_string(),
                    partition: done.partition,
                    offset: bad.offset,
                    source: e.reason,
                };
                // Return the good records before it; the position stops at the bad one.
                st.position = Some(bad.offset);
                out.truncate(first_new + e.index);
                if out.is_empty() {
                    return Err(err);
                }
                self.deferred = Some(err);
                return Ok(());
            }
        }
        if let Some(last) = out[first_new..].last() {
            st.position = Some(last.offset + 1);
        }
        Ok(())
    }
}

/// ListOffsets on the partition's leader, retrying retriable errors a few times.
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
    let mut attempt = 0;
    loop {
        match cluster.call_leader(topic, partition, &req, timeout).await {
            Err(e) if e.is_retriable() && attempt < 5 => {
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_protocol::batch::patch_header;
    use steme_protocol::{BatchBuilder, SigningKey, Value};

    fn signed(i: u64) -> SignedAssertion {
        Assertion {
            subject: format!("urn:test:{i}"),
            predicate: "p".into(),
            object: Value::Integer(i as i64),
            source: "test".into(),
            confidence: None,
            supersedes: None,
            issued_at: 1_700_000_000_000 + i,
        }
        .sign(&SigningKey::from_bytes(&[5; 32]))
        .unwrap()
    }

    /// Two stamped batches, offsets 10..13 and 13..15, as a fetch response holds them.
    fn fetched() -> Bytes {
        let mut all = Vec::new();
        for (base, range) in [(10u64, 0..3u64), (13, 3..5)] {
            let mut b = BatchBuilder::default();
            for i in range {
                b.push(&signed(i));
            }
            let mut bytes = b.finish().to_vec();
            patch_header(&mut bytes, base, 1000 + base, 1);
            all.extend_from_slice(&bytes);
        }
        Bytes::from(all)
    }

    #[test]
    fn records_below_the_requested_offset_are_skipped() {
        let topic: Arc<str> = "facts".into();
        let buf = fetched();
        let mut out = Vec::new();
        records_from(&topic, 2, 11, &buf, &mut out).unwrap();
        let offsets: Vec<u64> = out.iter().map(Record::offset).collect();
        assert_eq!(offsets, vec![11, 12, 13, 14]);
        let r = &out[0];
        assert_eq!(r.hlc(), 1011);
        assert_eq!(r.partition(), 2);
        assert_eq!(r.id(), signed(1).id());
        assert_eq!(r.signer(), signed(1).signer());
        assert_eq!(r.assertion().unwrap(), *signed(1).assertion());
        r.verify().unwrap();
        assert_eq!(r.signed().unwrap(), signed(1));
        // Zero-copy: the record's bytes live inside the fetch buffer.
        let base = buf.as_ptr() as usize;
        let at = r.canonical().as_ptr() as usize;
        assert!(at > base && at < base + buf.len());

        let mut out = Vec::new();
        records_from(&topic, 2, 13, &buf, &mut out).unwrap();
        assert_eq!(out.first().map(Record::offset), Some(13));
    }

    #[test]
    fn corrupt_batch_names_its_position() {
        let topic: Arc<str> = "facts".into();
        let mut raw = fetched().to_vec();
        let second = steme_protocol::batch::peek_length(&raw).unwrap() as usize;
        raw[second + 60] ^= 0xff; // inside the second batch: its crc fails
        let mut out = Vec::new();
        let err = records_from(&topic, 0, 0, &Bytes::from(raw), &mut out).unwrap_err();
        assert!(
            matches!(err, ClientError::CorruptBatch { position, .. } if position == second),
            "{err:?}"
        );
    }

    #[test]
    fn tampered_record_fails_verify_naming_its_offset() {
        let topic: Arc<str> = "facts".into();
        let mut raw = fetched().to_vec();
        // Flip a signature byte of the first record and fix the crc, so the batch is valid.
        raw[steme_protocol::batch::HEADER_LEN + 4] ^= 1;
        let len = steme_protocol::batch::peek_length(&raw).unwrap() as usize;
        patch_header(&mut raw[..len], 10, 1010, 1);
        let mut out = Vec::new();
        records_from(&topic, 0, 0, &Bytes::from(raw), &mut out).unwrap();
        let err = out[0].verify().unwrap_err();
        assert_eq!(err.to_string(), "record facts/0@10 fails verification");
        out[1].verify().unwrap();
    }

    /// A consumer whose cluster is never contacted by these tests.
    fn consumer_with(partitions: &[u32]) -> Consumer {
        let cluster = Cluster::lazy("127.0.0.1:1", ClientConfig::default()).unwrap();
        let mut c = Consumer::new(cluster, ConsumerConfig::default());
        c.topic = "facts".into();
        c.partitions = partitions
            .iter()
            .map(|&p| (p, PartitionState::new(Position::Earliest)))
            .collect();
        c
    }

    fn done(
        partition: u32,
        epoch: u64,
        offset: u64,
        result: Result<FetchResponse, ClientError>,
    ) -> FetchDone {
        FetchDone {
            partition,
            epoch,
            offset,
            result,
        }
    }

    #[test]
    fn position_advances_past_returned_records() {
        let mut c = consumer_with(&[0, 1]);
        c.partitions.get_mut(&0).unwrap().position = Some(11);
        let mut out = Vec::new();
        let resp = FetchResponse {
            high_watermark: 15,
            log_start_offset: 0,
            records: fetched(),
        };
        c.handle(done(0, 0, 11, Ok(resp)), &mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(c.position(0), Some(15));
        assert_eq!(c.high_watermark(0), Some(15));
        assert_eq!(c.position(1), None);
    }

    #[test]
    fn fetch_issued_before_a_seek_is_discarded() {
        let mut c = consumer_with(&[0]);
        let st = c.partitions.get_mut(&0).unwrap();
        st.position = Some(12);
        st.epoch = 1;
        let mut out = Vec::new();
        let resp = FetchResponse {
            high_watermark: 15,
            log_start_offset: 0,
            records: fetched(),
        };
        c.handle(done(0, 0, 11, Ok(resp)), &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(c.position(0), Some(12));
    }

    #[test]
    fn out_of_range_follows_the_reset_policy() {
        let oor = || {
            Err(ClientError::Api(ApiError::OffsetOutOfRange {
                log_start: 100,
                high_watermark: 200,
            }))
        };
        let mut c = consumer_with(&[0]);
        c.partitions.get_mut(&0).unwrap().position = Some(5);
        let err = c.handle(done(0, 0, 5, oor()), &mut Vec::new()).unwrap_err();
        assert!(matches!(
            err,
            ClientError::OffsetOutOfRange {
                offset: 5,
                log_start: 100,
                ..
            }
        ));

        for (policy, expect) in [(OffsetReset::Earliest, 100), (OffsetReset::Latest, 200)] {
            let mut c = consumer_with(&[0]);
            c.config.offset_reset = policy;
            c.partitions.get_mut(&0).unwrap().position = Some(5);
            c.handle(done(0, 0, 5, oor()), &mut Vec::new()).unwrap();
            assert_eq!(c.position(0), Some(expect));
        }
    }

    #[test]
    fn retriable_fetch_error_backs_off_instead_of_failing() {
        let mut c = consumer_with(&[0]);
        c.partitions.get_mut(&0).unwrap().position = Some(5);
        let err = ClientError::Api(ApiError::NotLeader {
            leader: None,
            message: String::new(),
        });
        c.handle(done(0, 0, 5, Err(err)), &mut Vec::new()).unwrap();
        let st = &c.partitions[&0];
        assert!(st.retry_at.is_some());
        assert_eq!(st.failures, 1);
        assert_eq!(st.position, Some(5));
    }
}
