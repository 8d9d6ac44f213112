//! The producer: batches signed assertions per partition and sends them to the leaders.
//!
//! ```text
//!  enqueue(assertion) ──► partition_for(subject) ──► accumulator task
//!                                                     per partition: BatchBuilder,
//!                                                     sealed at once if the partition
//!                                                     has nothing in flight, else at
//!                                                     max_batch_bytes or linger
//!                                                            │ sealed batches, in order
//!                                                            ▼
//!                                                     partition worker (one per partition)
//!                                                     ≤ max_in_flight requests pipelined
//!                                                     on the leader's connection; retries
//!                                                     with backoff; acks fan out per record
//! ```
//!
//! - **Linger is a cap, not a wait**: a batch leaves as soon as its partition has no request
//!   in flight (everything queued by then goes with it); only while one is in flight do
//!   records wait, up to [`ProducerConfig::linger`] or [`ProducerConfig::max_batch_bytes`],
//!   for company. A lone record is therefore sent at once, and under load batches grow
//!   by themselves.
//! - **Backpressure**: records enqueued but not yet acknowledged may take at most
//!   [`ProducerConfig::buffer_bytes`]; [`Producer::enqueue`] waits for room beyond that.
//! - **Retries** are safe because a record's id is its content: a record that did reach the
//!   log before a failure comes back `duplicate: true` with the offset it already has, and
//!   the [`Ack`] says so.
//! - **Order**: batches of one partition are written to the leader's connection in order. A
//!   retry after a failure may land after batches sent later; for strict per-subject order
//!   under failures, set [`ProducerConfig::max_in_flight_per_partition`] to 1.
//! - **Causality** (D6): the producer tracks the highest HLC of any ack (and any passed to
//!   [`Producer::observe_hlc`]) and sends it with every request, so an assertion sent after
//!   another was acknowledged is stamped later, whatever its partition.
//!
//! ```no_run
//! # async fn demo() -> Result<(), steme_client::ClientError> {
//! use steme_client::{Producer, ProducerConfig};
//! use steme_protocol::{Assertion, SigningKey, Value};
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let producer = Producer::connect("127.0.0.1:9092", "facts", ProducerConfig::default()).await?;
//! let assertion = Assertion {
//!     subject: "urn:city:paris".into(),
//!     predicate: "population".into(),
//!     object: Value::Integer(2_102_650),
//!     source: "census-2023".into(),
//!     confidence: None,
//!     supersedes: None,
//!     issued_at: 1_700_000_000_000,
//! };
//! let ack = producer.send(assertion.sign(&key)?).await?;
//! println!("{} at {}/{} (duplicate: {})", ack.id, ack.partition, ack.offset, ack.duplicate);
//! producer.close().await?;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use steme_protocol::batch::{HEADER_LEN, RECORD_ASSERTION_OFFSET};
use steme_protocol::messages::produce::{ProduceRequest, ProduceResponse};
use steme_protocol::{ApiError, SignedAssertion, partition_for};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

pub use steme_protocol::messages::produce::Acks;

use crate::cluster::{Backoff, ClientConfig, Cluster};

mod accumulator;
mod ack;
use crate::error::ClientError;
use accumulator::{Accumulator, Sealed};
#[cfg(test)]
use accumulator::{DRAIN_BURST, OpenBatch};
pub use ack::{Ack, PendingAck, PendingAcks};
use ack::{Gather, Reply};

/// Producer settings. `Default` gives acks=all, 5 ms linger, 256 KiB batches.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a partition's first record waits for company before its batch is sent,
    /// while the partition has a request in flight (an idle partition's batch leaves at
    /// once).
    pub linger: Duration,
    /// A batch is sent once it reaches this many bytes (header included). A single record
    /// larger than this travels alone.
    pub max_batch_bytes: usize,
    /// Produce requests of one partition awaiting an answer at once.
    pub max_in_flight_per_partition: usize,
    /// How many replicas must have a batch before it is acknowledged.
    pub acks: Acks,
    /// How long the broker may take for one request (sent as the request's timeout; the
    /// client waits a little longer so that the broker's own answer arrives first).
    pub request_timeout: Duration,
    /// Attempts after the first, for retriable errors. A leader change (`NotLeader`, a lost
    /// or refused connection) is retried every [`LEADER_RETRY_MAX`] at most, for as long
    /// as `request_timeout` from the first failure, whatever the count (0 still means
    /// never retry): a failover takes well under a second, and a record should not fail
    /// because it was retried too early, too often.
    pub retries: u32,
    /// The delay between retries.
    pub retry_backoff: Backoff,
    /// Bytes of records enqueued and not yet acknowledged before `enqueue` waits.
    pub buffer_bytes: usize,
    /// Connection and metadata settings, used by [`Producer::connect`].
    pub client: ClientConfig,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(5),
            max_batch_bytes: 256 * 1024,
            max_in_flight_per_partition: 5,
            acks: Acks::All,
            request_timeout: Duration::from_secs(30),
            retries: 10,
            retry_backoff: Backoff {
                initial: Duration::from_millis(20),
                max: Duration::from_secs(1),
            },
            buffer_bytes: 64 << 20,
            client: ClientConfig::default(),
        }
    }
}

impl ProducerConfig {
    fn validate(&self) -> Result<(), ClientError> {
        if self.max_batch_bytes <= HEADER_LEN {
            return Err(ClientError::Config(format!(
                "max_batch_bytes must exceed the {HEADER_LEN}-byte batch header"
            )));
        }
        if self.max_in_flight_per_partition == 0 || self.buffer_bytes == 0 {
            return Err(ClientError::Config(
                "max_in_flight_per_partition and buffer_bytes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn record_size(a: &SignedAssertion) -> usize {
    RECORD_ASSERTION_OFFSET + a.canonical().len()
}

// Records are the hot variant and flushes are rare: boxing records would cost an allocation
// per record to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum Command {
    Record(Enqueued),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

struct Enqueued {
    assertion: SignedAssertion,
    partition: u32,
    /// Buffer permits taken for this record, returned when its batch is answered.
    reserved: usize,
    reply: Reply,
}

/// What every task of one producer shares.
struct Shared {
    cluster: Cluster,
    topic: Arc<str>,
    partitions: u32,
    config: ProducerConfig,
    /// Highest HLC seen; 0 = none yet. Sent as the causality token.
    max_hlc: AtomicU64,
    /// Bounds the bytes of records between `enqueue` and their ack.
    buffer: Semaphore,
    closed: AtomicBool,
    /// Batches of each partition sealed and not yet answered.
    in_flight: Vec<AtomicUsize>,
    /// Woken when a partition's last batch in flight is answered, so that the accumulator
    /// sends what waited for it.
    idle: Notify,
}

/// A producer bound to one topic. Cheap to clone; clones share batches and connections.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topic", &self.shared.topic)
            .field("partitions", &self.shared.partitions)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Bootstraps from `bootstrap` (comma-separated addresses) and produces to `topic`,
    /// which must exist.
    pub async fn connect(
        bootstrap: &str,
        topic: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        let cluster = Cluster::connect(bootstrap, config.client.clone()).await?;
        Producer::new(cluster, topic, config).await
    }

    /// A producer over an existing cluster handle.
    pub async fn new(
        cluster: Cluster,
        topic: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        config.validate()?;
        let partitions = cluster.partition_count(topic).await?;
        if partitions == 0 {
            return Err(ClientError::UnknownTopic {
                topic: topic.to_owned(),
            });
        }
        // `acquire_many` takes a u32, which bounds the buffer (and any one record's share).
        let buffer_bytes = config
            .buffer_bytes
            .min(u32::MAX as usize)
            .min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            cluster,
            topic: topic.into(),
            partitions,
            buffer: Semaphore::new(buffer_bytes),
            config: ProducerConfig {
                buffer_bytes,
                ..config
            },
            max_hlc: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            in_flight: (0..partitions).map(|_| AtomicUsize::new(0)).collect(),
            idle: Notify::new(),
        });
        let (commands, rx) = mpsc::channel(1024);
        tokio::spawn(Accumulator::new(shared.clone(), rx).run());
        Ok(Producer { shared, commands })
    }

    /// The topic this producer writes to.
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// Partitions of the topic, as learned when the producer was created.
    pub fn partitions(&self) -> u32 {
        self.shared.partitions
    }

    /// The partition an assertion about `subject` goes to.
    pub fn partition_of(&self, subject: &str) -> u32 {
        partition_for(subject, self.shared.partitions)
    }

    /// The causality token: the highest HLC seen so far, if any.
    pub fn causality(&self) -> Option<u64> {
        Some(self.shared.max_hlc.load(Ordering::Relaxed)).filter(|&h| h != 0)
    }

    /// Tells the producer about an HLC seen elsewhere (say, a consumed record this
    /// producer's next assertion depends on), so that what it sends next is stamped later.
    pub fn observe_hlc(&self, hlc: u64) {
        self.shared.max_hlc.fetch_max(hlc, Ordering::Relaxed);
    }

    /// Sends one assertion and waits for its ack.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that nothing leaks: dropped while it waits for buffer room, nothing
    /// was queued and the room it had taken is given back. Dropped after the assertion was
    /// queued (waiting for the ack), the assertion is still sent and may be stored; only
    /// the ack is lost. Sending it again is harmless: it comes back `duplicate: true`.
    pub async fn send(&self, assertion: SignedAssertion) -> Result<Ack, ClientError> {
        self.enqueue(assertion).await?.await
    }

    /// Sends many assertions, pipelined, and returns their acks in the same order.
    ///
    /// # Cancel safety
    ///
    /// Nothing leaks, but if the future is dropped part-way, the assertions queued by then
    /// (a prefix of `assertions`) are still sent and their acks are lost; the rest are not
    /// sent. Sending the whole batch again stores only the missing ones (the others come
    /// back as duplicates).
    pub async fn send_batch(
        &self,
        assertions: impl IntoIterator<Item = SignedAssertion>,
    ) -> Vec<Result<Ack, ClientError>> {
        let mut pending = Vec::new();
        for a in assertions {
            pending.push(self.enqueue(a).await);
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Queues an assertion and returns at once (unless the buffer is full) with a future of
    /// its ack, so that many sends can be in flight. Acks of one partition resolve in order.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel-safe. If it is dropped before it returns (in a
    /// `tokio::select!` branch that lost, or under `tokio::time::timeout`), the assertion
    /// was not queued and will not be sent, and the buffer room it was waiting for or had
    /// taken is given back. Once it has returned, the assertion is queued: dropping the
    /// [`PendingAck`] only discards the ack.
    pub async fn enqueue(&self, assertion: SignedAssertion) -> Result<PendingAck, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.submit(assertion, Reply::One(reply)).await?;
        Ok(PendingAck { rx })
    }

    /// Queues a group of assertions, returning (unless the buffer is full) with one future
    /// of all their acks, in the order given: one channel for the group rather than one per
    /// record. The group may span partitions and batches.
    ///
    /// # Cancel safety
    ///
    /// Nothing leaks (buffer room is given back as with [`enqueue`](Self::enqueue)), but
    /// the group is not all or nothing: if the future is dropped part-way, the assertions
    /// queued by then (a prefix) are still sent and their acks are lost. Use
    /// [`enqueue`](Self::enqueue) per record where that matters.
    pub async fn enqueue_many(
        &self,
        assertions: impl ExactSizeIterator<Item = SignedAssertion>,
    ) -> Result<PendingAcks, ClientError> {
        let (gather, pending) = Gather::new(assertions.len());
        for (i, a) in assertions.enumerate() {
            let index = u32::try_from(i).map_err(|_| {
                ClientError::Config("more than 2^32 assertions in one group".into())
            })?;
            self.submit(a, Reply::Many(gather.clone(), index)).await?;
        }
        Ok(pending)
    }

    async fn submit(&self, assertion: SignedAssertion, reply: Reply) -> Result<(), ClientError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(ClientError::ProducerClosed);
        }
        let partition = partition_for(&assertion.assertion().subject, self.shared.partitions);
        let reserved = record_size(&assertion).min(self.shared.config.buffer_bytes);
        // Two waits, each safe to cancel: the buffer permits stay in their guard (returned
        // if this future is dropped) until the channel slot is ours; handing the record
        // over then cannot wait or fail, so the permits travel with it.
        let permits = self
            .shared
            .buffer
            .acquire_many(reserved as u32)
            .await
            .map_err(|_| ClientError::ProducerClosed)?;
        let slot = self
            .commands
            .reserve()
            .await
            .map_err(|_| ClientError::ProducerClosed)?;
        permits.forget();
        slot.send(Command::Record(Enqueued {
            assertion,
            partition,
            reserved,
            reply,
        }));
        Ok(())
    }

    /// Sends every queued record now (without waiting for linger) and waits until all
    /// records enqueued before this call are acknowledged or failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it stops only the wait; the records are sent regardless, and
    /// a later `flush` waits for them.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Flush(tx))
            .await
            .map_err(|_| ClientError::ProducerClosed)?;
        rx.await.map_err(|_| ClientError::ProducerClosed)
    }

    /// Flushes, then stops the producer: later sends fail with
    /// [`ClientError::ProducerClosed`]. Closes every clone of this producer.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the producer is already closed to new records; what was
    /// queued is still sent, but without waiting for it.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.shared.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).await.is_err() {
            return Ok(()); // already closed
        }
        let _ = rx.await;
        Ok(())
    }
}

/// The longest wait before retrying a request that failed because its partition's leader
/// changed or could not be reached: failover takes a few hundred milliseconds.
pub const LEADER_RETRY_MAX: Duration = Duration::from_millis(50);

/// Sends one partition's batches in order, keeping up to `max_in_flight_per_partition`
/// requests pipelined on the leader's connection.
async fn partition_worker(
    shared: Arc<Shared>,
    partition: u32,
    mut rx: mpsc::UnboundedReceiver<Sealed>,
) {
    let in_flight = Arc::new(Semaphore::new(shared.config.max_in_flight_per_partition));
    while let Some(sealed) = rx.recv().await {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        // The first attempt is written from here, so batches leave in order; the wait for
        // the answer (and any retry) runs on its own task.
        let first = shared.start(partition, &sealed.batch).await;
        let shared = shared.clone();
        tokio::spawn(async move {
            let result = shared.finish(partition, &sealed.batch, first).await;
            shared.deliver(partition, sealed, result);
            drop(permit);
        });
    }
}

type Started = Result<crate::connection::PendingResponse<ProduceResponse>, ClientError>;

impl Shared {
    fn request(&self, partition: u32, batch: &Bytes) -> ProduceRequest {
        ProduceRequest {
            topic: self.topic.to_string(),
            partition,
            acks: self.config.acks,
            timeout_ms: u32::try_from(self.config.request_timeout.as_millis()).unwrap_or(u32::MAX),
            causality: Some(self.max_hlc.load(Ordering::Relaxed)).filter(|&h| h != 0),
            batch: batch.clone(),
        }
    }

    /// How long the client waits for an answer: a little longer than the broker's timeout.
    fn wait_timeout(&self) -> Duration {
        self.config.request_timeout + Duration::from_secs(1)
    }

    async fn start(&self, partition: u32, batch: &Bytes) -> Started {
        let conn = self.cluster.leader(&self.topic, partition).await?;
        conn.send(&self.request(partition, batch)).await
    }

    /// Waits for the first attempt, retrying retriable failures with backoff. On failure
    /// returns the last error and the number of attempts made.
    async fn finish(
        &self,
        partition: u32,
        batch: &Bytes,
        first: Started,
    ) -> Result<ProduceResponse, (ClientError, u32)> {
        let mut result = match first {
            Ok(pending) => pending.wait(self.wait_timeout()).await,
            Err(e) => Err(e),
        };
        let mut attempt = 0u32;
        let mut failing_since = None;
        loop {
            let err = match result {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            self.cluster.note_error(&self.topic, partition, &err);
            let since = *failing_since.get_or_insert_with(Instant::now);
            let leader_change = err.invalidates_metadata();
            let give_up = if leader_change {
                self.config.retries == 0 || since.elapsed() >= self.config.request_timeout
            } else {
                attempt >= self.config.retries
            };
            if !err.is_retriable() || give_up {
                return Err((err, attempt + 1));
            }
            let mut delay = self.config.retry_backoff.delay(attempt);
            if leader_change {
                delay = delay.min(LEADER_RETRY_MAX);
            }
            if let ClientError::Api(ApiError::Throttled { retry_after_ms, .. }) = &err {
                delay = delay.max(Duration::from_millis(u64::from(*retry_after_ms)));
            }
            tracing::debug!(topic = %self.topic, partition, attempt, error = %err, ?delay, "retrying produce");
            tokio::time::sleep(delay).await;
            attempt += 1;
            result = async {
                let conn = self.cluster.leader(&self.topic, partition).await?;
                conn.call(&self.request(partition, batch), self.wait_timeout())
                    .await
            }
            .await;
        }
    }

    /// Answers every record of a batch and returns its buffer space.
    fn deliver(
        &self,
        partition: u32,
        sealed: Sealed,
        result: Result<ProduceResponse, (ClientError, u32)>,
    ) {
        self.buffer.add_permits(sealed.reserved);
        if self.in_flight[partition as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_one();
        }
        let result = result.and_then(|resp| {
            if resp.duplicates.len() == sealed.waiters.len() {
                Ok(resp)
            } else {
                let err = ClientError::Protocol {
                    addr: "partition leader".into(),
                    detail: format!(
                        "produce response for {}/{partition} has {} entries for {} records",
                        self.topic,
                        resp.duplicates.len(),
                        sealed.waiters.len()
                    ),
                };
                Err((err, 1))
            }
        });
        match result {
            Ok(resp) => {
                // The token moves before any ack is delivered: whoever holds an ack finds a
                // token at least as late as it.
                let max_hlc = resp.record_acks().map(|a| a.hlc).max().unwrap_or(0);
                self.max_hlc.fetch_max(max_hlc, Ordering::Relaxed);
                for (w, ack) in sealed.waiters.into_iter().zip(resp.record_acks()) {
                    w.reply.send(Ok(Ack {
                        id: w.id,
                        partition,
                        offset: ack.offset,
                        hlc: ack.hlc,
                        duplicate: ack.duplicate,
                    }));
                }
            }
            Err((cause, attempts)) => {
                tracing::warn!(topic = %self.topic, partition, attempts, error = %cause, "produce failed");
                let cause = Arc::new(cause);
                for w in sealed.waiters {
                    w.reply.send(Err(ClientError::ProduceFailed {
                        topic: self.topic.to_string(),
                        partition,
                        attempts,
                        cause: cause.clone(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
