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
//! Modules: `accumulator` (open batches), `send` (the partition workers, retries and
//! answers), `reroute` (splitting a batch after the topic grew), `ack` (the ack futures).
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
//! - **Growing topics**: records are routed by the partition count the producer knows. A
//!   partition refuses a batch with `StaleMap` once the topic grew and one of its subjects
//!   moved; the producer then reads the topic's metadata, splits the batch by the new count
//!   and sends each part to its partition (see `reroute`), and routes new records by the
//!   new count. So that no subject's new records overtake its old ones, records routed by
//!   a new count to a new partition are sent only once every batch routed by the old count
//!   is answered. A new partition answers `SplitPending` until every old partition has
//!   recorded its split point; that is retried every [`SPLIT_PENDING_RETRY_MAX`] at most,
//!   as a leader change is. The count is also learned from metadata read for other reasons
//!   (a `NotLeader`, a lost connection) and every [`ProducerConfig::metadata_max_age`].
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

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use steme_protocol::batch::{HEADER_LEN, RECORD_ASSERTION_OFFSET};
use steme_protocol::{SignedAssertion, partition_for};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

pub use steme_protocol::messages::produce::Acks;

use crate::cluster::{Backoff, ClientConfig, Cluster};

mod accumulator;
mod ack;
mod reroute;
mod send;
use crate::error::ClientError;
use accumulator::Accumulator;
#[cfg(test)]
use accumulator::{DRAIN_BURST, OpenBatch};
pub use ack::{Ack, PendingAck, PendingAcks};
use ack::{Gather, Reply};
pub use send::{LEADER_RETRY_MAX, SPLIT_PENDING_RETRY_MAX};

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
    /// How often the topic's metadata is read even when nothing failed, so that a
    /// producer learns that its topic grew (`topic add-partitions`) and routes by the new
    /// partition count. Without it the producer learns it anyway, one `StaleMap` refusal
    /// later.
    pub metadata_max_age: Duration,
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
            metadata_max_age: Duration::from_secs(60),
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

/// Records of an `enqueue_many` group handed to the accumulator at once, at most.
const PART_RECORDS: usize = 512;

fn record_size(a: &SignedAssertion) -> usize {
    RECORD_ASSERTION_OFFSET + a.canonical().len()
}

// Records are the hot variant and flushes are rare: boxing records would cost an allocation
// per record to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum Command {
    Record(Enqueued),
    /// Consecutive records of one [`Producer::enqueue_many`] group, in order.
    Records(Vec<Enqueued>),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// A record on its way to the accumulator, which routes it by the partition count it knows.
struct Enqueued {
    assertion: SignedAssertion,
    /// Buffer permits taken for this record, returned when its batch is answered.
    reserved: usize,
    reply: Reply,
}

/// What every task of one producer shares.
struct Shared {
    cluster: Cluster,
    topic: Arc<str>,
    /// The partition count records are routed by now; only the accumulator changes it
    /// (it grows with the topic).
    partitions: AtomicU32,
    config: ProducerConfig,
    /// Highest HLC seen; 0 = none yet. Sent as the causality token.
    max_hlc: AtomicU64,
    /// Bounds the bytes of records between `enqueue` and their ack.
    buffer: Semaphore,
    closed: AtomicBool,
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
            .field("partitions", &self.partitions())
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
            partitions: AtomicU32::new(partitions),
            buffer: Semaphore::new(buffer_bytes),
            config: ProducerConfig {
                buffer_bytes,
                ..config
            },
            max_hlc: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            idle: Notify::new(),
        });
        let (commands, rx) = mpsc::channel(1024);
        tokio::spawn(Accumulator::new(shared.clone(), rx).run());
        tokio::spawn(refresh_metadata(Arc::downgrade(&shared)));
        Ok(Producer { shared, commands })
    }

    /// The topic this producer writes to.
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// Partitions of the topic that records are routed by now: as learned when the
    /// producer was created, and more once it learns that the topic grew.
    pub fn partitions(&self) -> u32 {
        self.shared.partitions.load(Ordering::Relaxed)
    }

    /// The partition an assertion about `subject` goes to, by the partition count the
    /// producer knows now.
    pub fn partition_of(&self, subject: &str) -> u32 {
        partition_for(subject, self.partitions())
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
        self.submit_one(assertion, Reply::One(reply)).await?;
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
        // The group travels in parts, each one buffer reservation and one channel slot
        // (not one per record): a part holds at most an eighth of the buffer.
        let cap = self.shared.config.buffer_bytes;
        let part_max = (cap / 8).max(1);
        let total = assertions.len();
        let mut part = Vec::with_capacity(total.min(PART_RECORDS));
        let mut part_bytes = 0;
        for (i, assertion) in assertions.enumerate() {
            let index = u32::try_from(i).map_err(|_| {
                ClientError::Config("more than 2^32 assertions in one group".into())
            })?;
            let reserved = record_size(&assertion).min(cap);
            if !part.is_empty() && (part_bytes + reserved > part_max || part.len() == PART_RECORDS)
            {
                let room = (total - i).min(part.len());
                let full = std::mem::replace(&mut part, Vec::with_capacity(room));
                self.submit(Command::Records(full), part_bytes).await?;
                part_bytes = 0;
            }
            part_bytes += reserved;
            part.push(Enqueued {
                assertion,
                reserved,
                reply: Reply::Many(gather.clone(), index),
            });
        }
        if !part.is_empty() {
            self.submit(Command::Records(part), part_bytes).await?;
        }
        Ok(pending)
    }

    /// Queues one record.
    async fn submit_one(
        &self,
        assertion: SignedAssertion,
        reply: Reply,
    ) -> Result<(), ClientError> {
        let reserved = record_size(&assertion).min(self.shared.config.buffer_bytes);
        let record = Enqueued {
            assertion,
            reserved,
            reply,
        };
        self.submit(Command::Record(record), reserved).await
    }

    /// Hands `records` (a `Record` or `Records` command) to the accumulator once `reserved`
    /// bytes of buffer (their sum, at most the whole buffer) are free.
    async fn submit(&self, records: Command, reserved: usize) -> Result<(), ClientError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(ClientError::ProducerClosed);
        }
        // Two waits, each safe to cancel: the buffer permits stay in their guard (returned
        // if this future is dropped) until the channel slot is ours; handing the records
        // over then cannot wait or fail, so the permits travel with them.
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
        slot.send(records);
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

/// Reads the topic's metadata every [`ProducerConfig::metadata_max_age`] while the producer
/// lives, so that the accumulator sees a grown partition count in the cluster's cache.
async fn refresh_metadata(shared: Weak<Shared>) {
    let Some(period) = shared.upgrade().map(|s| s.config.metadata_max_age) else {
        return;
    };
    // Zero would spin; a refresh is a round trip, so a tenth of a second is plenty.
    let period = period.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let topics = [shared.topic.to_string()];
        if let Err(e) = shared.cluster.refresh(Some(&topics)).await {
            tracing::debug!(topic = %shared.topic, error = %e, "periodic metadata refresh failed");
        }
    }
}

#[cfg(test)]
mod tests;
