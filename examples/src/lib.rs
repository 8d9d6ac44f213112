//! `steme-examples`: programs a Steme user can run and copy. Each example in `examples/` is
//! a thin `main` over code here, so that `steme-tests` can run the same code against a real
//! broker process and prove the examples work.
//!
//! - `quickstart` ([`quickstart`]): create a topic, sign and produce a few assertions (one
//!   superseding another), read them back, print them.
//! - `producer` ([`produce_lines`], [`generated`]): produce JSON lines from stdin or `N`
//!   generated assertions, pipelined, one ack line each.
//! - `tail` ([`tail`]): follow a topic from its start or end, verifying signatures.
//! - `indexer` ([`indexer`]): a consumer-group member that builds a subject index in redb;
//!   run several and they split the work.
//!
//! Every example finds the broker through `STEME_BOOTSTRAP` (default `127.0.0.1:9092`, the
//! broker's default address); start one with `cargo run --release -p steme-broker`.
#![deny(unsafe_code)]

pub mod indexer;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use steme_client::{
    Ack, Admin, Assertion, AssertionId, ClientConfig, ClientError, Consumer, ConsumerConfig,
    Position, Producer, ProducerConfig, Record, SignedAssertion, SigningKey, TopicOptions, Value,
};

/// Where the broker is: `STEME_BOOTSTRAP`, else the broker's default address.
pub fn bootstrap() -> String {
    std::env::var("STEME_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Turns "nobody answered" into advice on how to start a broker; other errors pass through.
pub fn explain(bootstrap: &str, err: ClientError) -> anyhow::Error {
    if matches!(
        err,
        ClientError::NoBrokers { .. } | ClientError::Connect { .. }
    ) {
        anyhow::Error::new(err).context(format!(
            "no Steme broker is reachable at {bootstrap}. Start one with \
             `cargo run --release -p steme-broker` (it listens on 127.0.0.1:9092), \
             or point STEME_BOOTSTRAP at a running broker"
        ))
    } else {
        anyhow::Error::new(err)
    }
}

/// A fresh signing key from the operating system's random source.
pub fn random_key() -> anyhow::Result<SigningKey> {
    Ok(steme_client::keys::generate_signing_key()?)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Creates `topic` with `partitions` partitions unless it exists; returns its partition
/// count either way.
pub async fn ensure_topic(admin: &Admin, topic: &str, partitions: u32) -> anyhow::Result<u32> {
    match admin
        .create_topic(topic, partitions, TopicOptions::default())
        .await
    {
        Ok(_) => {}
        Err(e) if is_topic_exists(&e) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create topic {topic}")),
    }
    Ok(admin.cluster().partition_count(topic).await?)
}

/// Whether `create_topic` failed only because the topic is already there.
fn is_topic_exists(e: &ClientError) -> bool {
    e.api_error()
        .is_some_and(|a| a.code() == steme_protocol::ErrorCode::TopicExists)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line of output: a record as read back, decoded.
pub fn describe(record: &Record) -> anyhow::Result<String> {
    let a = record.assertion()?;
    let supersedes = a
        .supersedes
        .map(|id| format!(" (supersedes {})", short(&id)))
        .unwrap_or_default();
    Ok(format!(
        "{}@{} hlc {} {}  {} {} {} [{}]{supersedes}",
        record.partition(),
        record.offset(),
        record.hlc(),
        short(&record.id()),
        a.subject,
        a.predicate,
        serde_json::to_string(&a.object)?,
        a.source,
    ))
}

fn short(id: &AssertionId) -> String {
    id.to_hex()[..12].to_owned()
}

/// What [`quickstart`] did, for whoever wants to check it.
#[derive(Debug)]
pub struct QuickstartReport {
    pub topic: String,
    pub produced: Vec<(SignedAssertion, Ack)>,
    pub read_back: Vec<Record>,
}

/// The quickstart: make sure `topic` exists, sign four assertions with a fresh key — the
/// last one superseding a mistaken one — produce them, then read each partition back from
/// the first acknowledged offset, verifying signatures, and print what was read to `out`.
pub async fn quickstart(
    bootstrap: &str,
    topic: &str,
    out: &mut impl Write,
) -> anyhow::Result<QuickstartReport> {
    let admin = Admin::connect(bootstrap, ClientConfig::default())
        .await
        .map_err(|e| explain(bootstrap, e))?;
    let partitions = ensure_topic(&admin, topic, 4).await?;
    writeln!(out, "topic {topic:?} has {partitions} partitions")?;

    // Every run signs with a new key, so its assertions are new facts (ids cover the signer).
    let key = random_key()?;
    writeln!(out, "signing as {}", hex(&key.verifying_key().to_bytes()))?;
    let fact = |subject: &str, predicate: &str, object: Value| Assertion {
        subject: subject.into(),
        predicate: predicate.into(),
        object,
        source: "quickstart".into(),
        confidence: None,
        supersedes: None,
        issued_at: now_ms(),
    };
    let mistaken = fact("urn:person:ada", "born", Value::Integer(1816)).sign(&key)?;
    let mut batch = vec![
        fact("urn:person:ada", "name", Value::Text("Ada Lovelace".into())).sign(&key)?,
        fact("urn:city:london", "population", Value::Integer(8_866_180)).sign(&key)?,
        mistaken.clone(),
    ];
    // A correction names what it replaces: the log keeps both, readers follow `supersedes`.
    let correction = Assertion {
        supersedes: Some(mistaken.id()),
        confidence: Some(0.99),
        ..fact("urn:person:ada", "born", Value::Integer(1815))
    };
    batch.push(correction.sign(&key)?);

    let producer = Producer::connect(bootstrap, topic, ProducerConfig::default())
        .await
        .map_err(|e| explain(bootstrap, e))?;
    // `send_batch` pipelines: every assertion is in flight before the first ack is awaited.
    let mut produced = Vec::new();
    for (a, ack) in batch.iter().zip(producer.send_batch(batch.clone()).await) {
        let ack = ack.with_context(|| format!("{} was not stored", a.id()))?;
        writeln!(
            out,
            "produced {} -> partition {} offset {}{}",
            short(&ack.id),
            ack.partition,
            ack.offset,
            if ack.duplicate {
                " (already there)"
            } else {
                ""
            }
        )?;
        produced.push((a.clone(), ack));
    }
    producer.close().await?;

    // Read back each partition we wrote to, from our first offset up to our last.
    let mut wanted: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (_, ack) in &produced {
        let e = wanted
            .entry(ack.partition)
            .or_insert((ack.offset, ack.offset));
        e.0 = e.0.min(ack.offset);
        e.1 = e.1.max(ack.offset);
    }
    let config = ConsumerConfig {
        verify: true,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(bootstrap, config).await?;
    let assigned: Vec<u32> = wanted.keys().copied().collect();
    consumer.assign(topic, &assigned).await?;
    for (&p, &(first, _)) in &wanted {
        consumer.seek(p, Position::Offset(first)).await?;
    }
    let mut read_back = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !wanted.is_empty() {
        if tokio::time::Instant::now() >= deadline {
            bail!("records did not come back within 10 s (still waiting for {wanted:?})");
        }
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let p = record.partition();
            let Some(&(_, last)) = wanted.get(&p) else {
                continue;
            };
            if record.offset() > last {
                continue;
            }
            writeln!(out, "read {}", describe(&record)?)?;
            if record.offset() == last {
                wanted.remove(&p);
                consumer.pause(p)?;
            }
            read_back.push(record);
        }
    }
    Ok(QuickstartReport {
        topic: topic.to_owned(),
        produced,
        read_back,
    })
}

/// `count` generated assertions about `count` subjects, for load.
pub fn generated(count: usize, run: &str) -> Vec<Assertion> {
    (0..count)
        .map(|i| Assertion {
            subject: format!("urn:example:{run}:{i}"),
            predicate: "example:sequence".into(),
            object: Value::Integer(i as i64),
            source: "steme-examples/producer".into(),
            confidence: None,
            supersedes: None,
            issued_at: now_ms(),
        })
        .collect()
}

/// Parses one JSON line (the `steme produce` input format: subject, predicate, object,
/// source, optional confidence, supersedes, issued_at); `issued_at` defaults to now.
pub fn parse_line(line: &str) -> anyhow::Result<Assertion> {
    let mut a: Assertion = serde_json::from_str(line)?;
    if a.issued_at == 0 {
        a.issued_at = now_ms();
    }
    Ok(a)
}

/// Signs and produces `assertions` pipelined, writing one JSON ack line per assertion to
/// `out` in input order; returns how many were new and how many duplicates.
pub async fn produce_lines(
    producer: &Producer,
    key: &SigningKey,
    assertions: impl IntoIterator<Item = anyhow::Result<Assertion>>,
    out: &mut impl Write,
) -> anyhow::Result<(u64, u64)> {
    // At most this many acks outstanding: enough to fill batches, bounded memory.
    const WINDOW: usize = 10_000;
    let mut pending = std::collections::VecDeque::new();
    let (mut new, mut dup) = (0u64, 0u64);
    let mut write_ack = |ack: Ack, out: &mut dyn Write| -> anyhow::Result<()> {
        if ack.duplicate {
            dup += 1;
        } else {
            new += 1;
        }
        let line = serde_json::json!({
            "id": ack.id, "partition": ack.partition, "offset": ack.offset,
            "hlc": ack.hlc, "duplicate": ack.duplicate,
        });
        writeln!(out, "{line}")?;
        Ok(())
    };
    for (n, a) in assertions.into_iter().enumerate() {
        let signed = a
            .and_then(|a| Ok(a.sign(key)?))
            .with_context(|| format!("input {}", n + 1))?;
        pending.push_back(producer.enqueue(signed).await?);
        if pending.len() >= WINDOW {
            let ack = pending.pop_front().expect("non-empty").await?;
            write_ack(ack, out)?;
        }
    }
    for p in pending {
        write_ack(p.await?, out)?;
    }
    Ok((new, dup))
}

/// Follows every partition of `topic` from `from` (earliest or latest), verifying each
/// record's signature, and writes one line per record to `out` until `stop` completes or
/// `max` records have been written. Returns how many were written.
pub async fn tail(
    bootstrap: &str,
    topic: &str,
    from: Position,
    max: Option<u64>,
    out: &mut impl Write,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<u64> {
    let config = ConsumerConfig {
        start: from,
        verify: true,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(bootstrap, config)
        .await
        .map_err(|e| explain(bootstrap, e))?;
    let partitions = consumer.assign_all(topic).await?;
    for p in 0..partitions {
        consumer.seek(p, from).await?;
    }
    let records = consumer.into_stream(Duration::from_secs(1));
    tokio::pin!(records, stop);
    let mut written = 0u64;
    while max.is_none_or(|m| written < m) {
        let record = tokio::select! {
            _ = &mut stop => break,
            r = records.next() => match r {
                Some(r) => r?,
                None => break,
            },
        };
        writeln!(out, "{}", describe(&record)?)?;
        out.flush()?;
        written += 1;
    }
    Ok(written)
}
