//! Assertions to produce, and reading a topic back to check it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use steme_client::admin::OffsetSpec;
use steme_client::{
    Ack, Admin, Assertion, AssertionId, Backoff, ClientConfig, Consumer, ConsumerConfig,
    PendingAck, Position, Producer, ProducerConfig, Record, SignedAssertion, SigningKey, Value,
};

/// A producer that rides out failovers: enough retries, each with a bounded wait.
pub fn patient() -> ProducerConfig {
    ProducerConfig {
        retries: 60,
        request_timeout: Duration::from_secs(10),
        retry_backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        client: ClientConfig::default(),
        ..ProducerConfig::default()
    }
}

/// A deterministic signing key (tests need no secrecy).
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// `count` distinct assertions, each with a canonical encoding of about `size` bytes.
/// `run` goes into every subject, so that different runs do not deduplicate each other.
pub fn assertions(run: &str, count: usize, size: usize) -> Vec<Assertion> {
    let make = |i: usize, pad: usize| Assertion {
        subject: format!("urn:e2e:{run}:{i:08}"),
        predicate: "e2e:payload".into(),
        object: Value::Text("x".repeat(pad)),
        source: "steme-tests".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_764_000_000_000 + i as u64,
    };
    let base = make(0, 0).canonical_bytes(&[0; 32]).map_or(0, |b| b.len());
    let pad = size.saturating_sub(base);
    (0..count).map(|i| make(i, pad)).collect()
}

/// Signs on every core (plain threads; this blocks the caller, so call it before the
/// brokers and clients are busy, or from `spawn_blocking`).
pub fn sign_all(
    assertions: &[Assertion],
    key: &SigningKey,
) -> anyhow::Result<Vec<SignedAssertion>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = assertions.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = assertions
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(|a| a.sign(key)).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut all = Vec::with_capacity(assertions.len());
        for p in parts {
            let signed = p
                .join()
                .map_err(|_| anyhow::anyhow!("a signing thread panicked"))?
                .context("cannot sign an assertion")?;
            all.extend(signed);
        }
        Ok(all)
    })
}

/// `count` signed assertions of about `size` bytes (see [`assertions`]).
pub fn signed(run: &str, count: usize, size: usize) -> anyhow::Result<Vec<SignedAssertion>> {
    sign_all(&assertions(run, count, size), &key(7))
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: u32) -> anyhow::Result<()> {
    create_topic_with(bootstrap, topic, partitions, Vec::new()).await
}

/// Creates `topic` with `partitions` partitions and these topic settings (`segment.bytes`,
/// say), at the default replication factor.
pub async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    configs: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, ClientConfig::default())
        .await
        .context("cannot reach the broker")?;
    admin
        .create_topic(
            topic,
            partitions,
            steme_client::TopicOptions {
                configs,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot create topic {topic}"))?;
    Ok(())
}

/// Sends every assertion pipelined and returns the acks in input order; any failure is an
/// error naming the assertion.
pub async fn produce_all(
    producer: &Producer,
    assertions: &[SignedAssertion],
) -> anyhow::Result<Vec<Ack>> {
    let acks = producer.send_batch(assertions.iter().cloned()).await;
    acks.into_iter()
        .enumerate()
        .map(|(i, ack)| ack.with_context(|| format!("assertion #{i} was not acknowledged")))
        .collect()
}

/// The high watermark of each partition of `topic`.
pub async fn high_watermarks(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<u64>> {
    let admin = Admin::connect(bootstrap, ClientConfig::default()).await?;
    let partitions = admin.cluster().partition_count(topic).await?;
    let mut out = Vec::new();
    for p in 0..partitions {
        out.push(
            admin
                .list_offsets(topic, p, OffsetSpec::Latest)
                .await
                .with_context(|| format!("cannot list offsets of {topic}/{p}"))?
                .high_watermark,
        );
    }
    Ok(out)
}

/// Every record of every partition of `topic`, from the earliest offset up to the high
/// watermark as of the call, through the library's [`Consumer`] with signature
/// verification on. Fails if that takes longer than `timeout`.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<u32, Vec<Record>>> {
    let config = ConsumerConfig {
        verify: true,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(bootstrap, config).await?;
    let partitions = consumer.assign_all(topic).await?;
    let mut ends = BTreeMap::new();
    let mut out: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for p in 0..partitions {
        consumer.seek(p, Position::Earliest).await?;
        let end = consumer.fetch_high_watermark(p).await?;
        out.insert(p, Vec::new());
        if consumer.position(p).is_some_and(|pos| pos < end) {
            ends.insert(p, end);
        } else {
            consumer.pause(p)?;
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while !ends.is_empty() {
        if tokio::time::Instant::now() >= deadline {
            bail!("reading {topic} back took over {timeout:?}; still short of {ends:?}");
        }
        for r in consumer.poll(Duration::from_millis(500)).await? {
            if ends
                .get(&r.partition())
                .is_some_and(|&end| r.offset() < end)
            {
                out.get_mut(&r.partition()).expect("assigned").push(r);
            }
        }
        consumer.pause_reached(&mut ends)?;
    }
    Ok(out)
}

/// Where each record of a read-back topic is, by id.
#[derive(Debug, Default)]
pub struct LogIndex {
    pub by_id: HashMap<AssertionId, (u32, u64)>,
    pub records: usize,
}

/// Checks the shape every partition must have — offsets consecutive from 0 (nothing is ever
/// truncated in these tests), each record in the partition its subject maps to, no id twice
/// in the whole topic — and indexes the records by id. (HLC order is checked apart, by
/// [`check_hlc_increasing`], so that a test about something else is not failed by it.)
pub fn check_log(log: &BTreeMap<u32, Vec<Record>>) -> anyhow::Result<LogIndex> {
    let partitions = log.len() as u32;
    let mut index = LogIndex::default();
    for (&p, records) in log {
        for (i, r) in records.iter().enumerate() {
            ensure!(
                r.offset() == i as u64,
                "{p}: record #{i} has offset {}, expected {i}",
                r.offset()
            );
            let subject = r.assertion()?.subject;
            ensure!(
                steme_protocol::partition_for(&subject, partitions) == p,
                "{p}@{}: subject {subject:?} belongs to another partition",
                r.offset()
            );
            if let Some(prev) = index.by_id.insert(r.id(), (p, r.offset())) {
                bail!(
                    "{} is in the log twice: at {prev:?} and {p}@{}",
                    r.id(),
                    r.offset()
                );
            }
            index.records += 1;
        }
    }
    Ok(index)
}

/// Checks that HLCs strictly increase with offsets in every partition (D6); on failure
/// names the first few places where they do not, and how many there are.
pub fn check_hlc_increasing(log: &BTreeMap<u32, Vec<Record>>) -> anyhow::Result<()> {
    let mut bad = Vec::new();
    for (&p, records) in log {
        for w in records.windows(2) {
            if w[1].hlc() <= w[0].hlc() {
                bad.push(format!(
                    "{p}@{} has HLC {} after {} at {p}@{}",
                    w[1].offset(),
                    w[1].hlc(),
                    w[0].hlc(),
                    w[0].offset()
                ));
            }
        }
    }
    ensure!(
        bad.is_empty(),
        "HLC goes backwards {} time(s) in offset order: {}",
        bad.len(),
        bad[..bad.len().min(3)].join("; ")
    );
    Ok(())
}

/// Checks that every ack names the record that is at its partition and offset.
pub fn check_acks_present(log: &BTreeMap<u32, Vec<Record>>, acks: &[Ack]) -> anyhow::Result<()> {
    for ack in acks {
        let record = log
            .get(&ack.partition)
            .and_then(|records| records.get(ack.offset as usize))
            .with_context(|| {
                format!(
                    "acknowledged {} at {}@{} is missing from the log",
                    ack.id, ack.partition, ack.offset
                )
            })?;
        ensure!(
            record.offset() == ack.offset && record.id() == ack.id,
            "{}@{} holds {}, but {} was acknowledged there",
            ack.partition,
            ack.offset,
            record.id(),
            ack.id
        );
        ensure!(
            record.hlc() == ack.hlc,
            "{}@{}: HLC {} in the log, {} in the ack",
            ack.partition,
            ack.offset,
            record.hlc(),
            ack.hlc
        );
    }
    Ok(())
}

/// What a [`Producing`] run ended with.
#[derive(Debug, Default)]
pub struct Produced {
    /// Every ack received, in the order the assertions were enqueued.
    pub acks: Vec<Ack>,
    /// Assertions enqueued whose ack was an error (stored or not: unknown).
    pub failed: usize,
    /// The first of those errors, for the log.
    pub first_error: Option<String>,
    /// Assertions never enqueued because the run was stopped.
    pub not_sent: usize,
}

/// Assertions being produced in the background, pipelined, while the test does something to
/// the broker.
#[derive(Debug)]
pub struct Producing {
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Produced>,
}

impl Producing {
    /// Starts enqueueing `assertions` through `producer`; acks are awaited in enqueue order.
    pub fn start(producer: Producer, assertions: Vec<SignedAssertion>) -> Producing {
        Producing::start_paced(producer, assertions, None)
    }

    /// As [`start`](Self::start), enqueueing at most `n` assertions every `tick` when `pace`
    /// is `Some((n, tick))`.
    pub fn start_paced(
        producer: Producer,
        assertions: Vec<SignedAssertion>,
        pace: Option<(usize, Duration)>,
    ) -> Producing {
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<PendingAck>(1 << 16);
        let (count, stopped) = (acked.clone(), stop.clone());
        let total = assertions.len();
        let sender = tokio::spawn(async move {
            let mut sent = 0usize;
            let mut ticks = pace.map(|(_, tick)| tokio::time::interval(tick));
            for a in assertions {
                if stopped.load(Ordering::Acquire) {
                    break;
                }
                if let (Some((n, _)), Some(ticks)) = (pace, ticks.as_mut())
                    && sent.is_multiple_of(n.max(1))
                {
                    ticks.tick().await;
                }
                match producer.enqueue(a).await {
                    Ok(pending) => {
                        if tx.send(pending).await.is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    Err(_) => break,
                }
            }
            drop(tx);
            // Let batches lingering in the producer go out; errors show in the acks.
            let _ = producer.flush().await;
            total - sent
        });
        let task = tokio::spawn(async move {
            let mut out = Produced::default();
            while let Some(pending) = rx.recv().await {
                match pending.await {
                    Ok(ack) => {
                        out.acks.push(ack);
                        count.fetch_add(1, Ordering::Release);
                    }
                    Err(e) => {
                        out.failed += 1;
                        out.first_error
                            .get_or_insert_with(|| format!("{:#}", anyhow::Error::new(e)));
                    }
                }
            }
            out.not_sent = sender.await.unwrap_or(0);
            out
        });
        Producing { acked, stop, task }
    }

    /// Acks received so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Acquire)
    }

    /// Waits until at least `n` acks have arrived or `timeout` has passed; returns the count.
    pub async fn wait_for_acks(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.acked() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.acked()
    }

    /// Stops enqueueing and waits (at most `timeout`) for every enqueued assertion's ack or
    /// error.
    pub async fn finish(self, timeout: Duration) -> anyhow::Result<Produced> {
        self.stop.store(true, Ordering::Release);
        self.finish_all(timeout).await
    }

    /// Waits (at most `timeout`) until every assertion was enqueued and answered.
    pub async fn finish_all(self, timeout: Duration) -> anyhow::Result<Produced> {
        tokio::time::timeout(timeout, self.task)
            .await
            .with_context(|| format!("outstanding acks did not resolve within {timeout:?}"))?
            .context("the producing task panicked")
    }
}
