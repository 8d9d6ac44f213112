//! `steme bench produce|consume|e2e`: figures in the format of the peer benchmark kit
//! (`shared/bench/README.md`, "Output format"): a readable summary, then one
//! `RESULT peer=steme op=...` line per figure.
//!
//! - **produce** signs every assertion *before* the clock starts (on a 2-core machine the
//!   producer's signing would otherwise compete with the broker; the signing rate is
//!   reported separately as `sign_per_s`), then sends them with at most `--window` awaiting
//!   their ack. Latency is enqueue to ack.
//! - **consume** reads the topic from earliest to the high watermark as of the start.
//! - **e2e** starts a consumer at the end of every partition, then produces; latency is
//!   enqueue to the consumer receiving the record.
//!
//! `mb_per_s` counts canonical assertion bytes (the payload; `--size`), not the 68 bytes of
//! record framing and signature. Every phase stops after `--count` records or `--max-secs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use steme_client::admin::DescribeTopicResponse;
use steme_client::{
    Admin, Assertion, AssertionId, ClientError, Consumer, ConsumerConfig, Position, Producer,
    ProducerConfig, SignedAssertion, SigningKey, TopicOptions, Value,
};
use steme_protocol::assertion::VERIFY_CHUNK;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::args::{BenchArgs, BenchCommand};

/// A sentence of figures for people: on stdout, or on stderr when `--json` keeps stdout for
/// the JSON result.
macro_rules! say {
    ($json:expr, $($arg:tt)*) => {
        if $json {
            eprintln!($($arg)*)
        } else {
            println!($($arg)*)
        }
    };
}
pub(crate) use say;

pub async fn run(bootstrap: &str, cmd: BenchCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    match cmd {
        BenchCommand::Produce(a) => produce(&admin, &a).await,
        BenchCommand::Consume(a) => consume(&admin, &a).await,
        BenchCommand::E2e(a) => e2e(&admin, &a).await,
        BenchCommand::Group(a) => crate::bench_group::run(&admin, &a).await,
    }
}

/// The topic's description, creating it with `--partitions` if it does not exist.
async fn ensure_topic(admin: &Admin, args: &BenchArgs) -> anyhow::Result<DescribeTopicResponse> {
    match admin.describe_topic(&args.topic).await {
        Ok(d) => {
            if d.partitions.len() != args.partitions as usize {
                eprintln!(
                    "# topic {} exists with {} partitions (not --partitions {}); using it",
                    args.topic,
                    d.partitions.len(),
                    args.partitions
                );
            }
            Ok(d)
        }
        Err(ClientError::Api(e)) if e.code() == steme_protocol::ErrorCode::UnknownTopic => {
            admin
                .create_topic(&args.topic, args.partitions, TopicOptions::default())
                .await
                .with_context(|| format!("cannot create topic {}", args.topic))?;
            eprintln!(
                "# created topic {} with {} partitions",
                args.topic, args.partitions
            );
            // Leaders are elected right after creation; wait until every partition has one.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let d = admin.describe_topic(&args.topic).await?;
                if d.partitions.iter().all(|p| p.leader.is_some()) || Instant::now() > deadline {
                    return Ok(d);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(e) => Err(e).context(format!("cannot describe topic {}", args.topic)),
    }
}

/// `count` distinct assertions whose canonical encoding is `size` bytes (or as small as an
/// assertion gets, if `size` is smaller). `run` makes subjects unique to this run, so a
/// rerun appends rather than deduplicates.
pub fn make_assertions(count: u64, size: usize, run: &str) -> Vec<Assertion> {
    let make = |i: u64, pad: usize| Assertion {
        subject: format!("urn:bench:{run}:{i:012}"),
        predicate: "bench:payload".into(),
        object: Value::Text("x".repeat(pad)),
        source: "steme-bench".into(),
        confidence: None,
        supersedes: None,
        issued_at: crate::produce::now_ms(),
    };
    let base = make(0, 0).canonical_bytes(&[0; 32]).map_or(0, |b| b.len());
    let pad = size.saturating_sub(base);
    (0..count).map(|i| make(i, pad)).collect()
}

/// Signatures one core batch-verifies per second, [`VERIFY_CHUNK`] per call as the
/// broker does, over up to 1 s each of the pre-signed assertions: the ceiling for signed
/// produce on this machine, as two measures.
struct VerifyCeiling {
    /// With `ed25519_dalek::verify_batch`, the textbook equation with one term per
    /// signature: the yardstick `verify_ceiling_per_s` has always been.
    textbook: f64,
    /// With the broker's own verifier, one term per signer key (faster when records share
    /// signers, as the bench's do).
    own: f64,
}

/// Measures both ceilings and prints them on stderr, as both benches that sign report
/// them.
fn verify_ceiling(signed: &[SignedAssertion]) -> VerifyCeiling {
    let mut own = steme_protocol::assertion::BatchVerifier::default();
    let ceiling = VerifyCeiling {
        textbook: measure_verify_ceiling(signed, |chunk| {
            steme_protocol::assertion::dalek_verify_batch(chunk.iter().copied())
        }),
        own: measure_verify_ceiling(signed, |chunk| own.verify(chunk.iter().copied()).is_ok()),
    };
    eprintln!(
        "# this machine's ceiling for signed traffic: one core batch-verifies {} signatures/s \
         with ed25519-dalek's verify_batch, {} with the broker's verifier (one term per signer)",
        fmt_num(ceiling.textbook),
        fmt_num(ceiling.own)
    );
    ceiling
}

fn measure_verify_ceiling(
    signed: &[SignedAssertion],
    mut verify: impl FnMut(&[(&[u8], &[u8; 64])]) -> bool,
) -> f64 {
    let sigs: Vec<[u8; 64]> = signed
        .iter()
        .take(4096)
        .map(|s| s.signature().to_bytes())
        .collect();
    let records: Vec<(&[u8], &[u8; 64])> = signed
        .iter()
        .zip(&sigs)
        .map(|(s, g)| (s.canonical(), g))
        .collect();
    if records.is_empty() {
        return f64::NAN;
    }
    let started = Instant::now();
    let mut done = 0usize;
    while started.elapsed() < Duration::from_secs(1) && done < 200_000 {
        let at = done % records.len();
        let chunk = &records[at..(at + VERIFY_CHUNK).min(records.len())];
        if !verify(chunk) {
            return f64::NAN;
        }
        done += chunk.len();
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// Signs on every core; returns the signed assertions and the time it took.
fn sign_all(
    assertions: &[Assertion],
    key: &SigningKey,
) -> anyhow::Result<(Vec<SignedAssertion>, Duration)> {
    let started = std::time::Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = assertions.len().div_ceil(threads).max(1);
    let signed = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let parts: Vec<_> = assertions
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || c.iter().map(|a| a.sign(key)).collect::<Result<Vec<_>, _>>())
                })
                .collect();
            let mut all = Vec::with_capacity(assertions.len());
            for p in parts {
                all.extend(p.join().expect("signing thread")?);
            }
            Ok::<_, steme_protocol::AssertionError>(all)
        })
    })?;
    Ok((signed, started.elapsed()))
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (Linux; `None`
/// elsewhere). Clock ticks are 100 a second on every Linux this runs on.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Numbers of 100 or more as integers, smaller ones with three significant digits.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return "0".into();
    }
    if x.abs() >= 100.0 {
        return format!("{}", x.round() as i64);
    }
    let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}

/// A run's figures for scripts: the `RESULT k=v …` line, or with `--json` one JSON object of
/// the same pairs in the same order (numbers and booleans as such, the rest as strings).
pub fn print_result(json: bool, pairs: &[(&str, String)]) {
    if json {
        let object: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json_scalar(v)))
            .collect();
        println!("{}", serde_json::Value::Object(object));
    } else {
        println!("{}", result_line(pairs));
    }
}

/// `v` as a JSON number or boolean if it reads as one, else as a string.
fn json_scalar(v: &str) -> serde_json::Value {
    if let Ok(n) = v.parse::<u64>() {
        return n.into();
    }
    if let Ok(n) = v.parse::<i64>() {
        return n.into();
    }
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() => x.into(),
        _ => match v {
            "true" => true.into(),
            "false" => false.into(),
            _ => v.into(),
        },
    }
}

/// A `RESULT` line from ordered key/value pairs.
pub fn result_line(pairs: &[(&str, String)]) -> String {
    let mut line = String::from("RESULT");
    for (k, v) in pairs {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(v);
    }
    line
}

fn run_id() -> anyhow::Result<String> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b)
        .map_err(|e| anyhow::anyhow!("cannot read the system's random source: {e}"))?;
    Ok(hex::encode(b))
}

struct Latencies(Vec<u64>);

impl Latencies {
    fn summary(mut self) -> (u64, u64, u64) {
        self.0.sort_unstable();
        (
            percentile(&self.0, 0.50),
            percentile(&self.0, 0.99),
            percentile(&self.0, 0.999),
        )
    }
}

fn producer_config(args: &BenchArgs) -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(args.linger_ms),
        acks: args.acks.to_acks(),
        ..crate::producer_config()
    }
}

fn replicas(d: &DescribeTopicResponse) -> usize {
    d.partitions.first().map_or(0, |p| p.replicas.len())
}

async fn produce(admin: &Admin, args: &BenchArgs) -> anyhow::Result<()> {
    let topic = ensure_topic(admin, args).await?;
    let key = crate::keys::generate()?;
    let assertions = make_assertions(args.count, args.size, &run_id()?);
    let payload = assertions
        .first()
        .and_then(|a| a.canonical_bytes(&[0; 32]).ok())
        .map_or(0, |b| b.len());
    let (signed, sign_time) = sign_all(&assertions, &key)?;
    drop(assertions);
    let sign_rate = signed.len() as f64 / sign_time.as_secs_f64();
    eprintln!(
        "# signed {} assertions of {payload} bytes in {:.2}s ({} /s), before the clock",
        signed.len(),
        sign_time.as_secs_f64(),
        fmt_num(sign_rate)
    );

    let verify_ceiling = verify_ceiling(&signed);

    let producer =
        Producer::new(admin.cluster().clone(), &args.topic, producer_config(args)).await?;
    // Records go in groups with one ack each (an eighth of the window, at most 512), so
    // the bench spends no task or channel per record; a record's latency is its group's.
    let window_size = args.window.clamp(1, Semaphore::MAX_PERMITS);
    let group = (window_size / 8).clamp(1, 512);
    let window = Arc::new(Semaphore::new(window_size));
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    let mut tasks = Vec::with_capacity(signed.len() / group + 1);
    let mut capped = false;
    let mut signed = signed.into_iter();
    loop {
        if Instant::now() >= deadline {
            capped = signed.len() > 0;
            break;
        }
        let chunk: Vec<_> = signed.by_ref().take(group).collect();
        if chunk.is_empty() {
            break;
        }
        let permit = window
            .clone()
            .acquire_many_owned(chunk.len() as u32)
            .await?;
        let sent = Instant::now();
        let acks = producer.enqueue_many(chunk.into_iter()).await?;
        tasks.push(tokio::spawn(async move {
            let r = acks.await;
            let done = Instant::now();
            drop(permit);
            (done - sent, done, r)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len() * group);
    let (mut duplicates, mut errors, mut end) = (0u64, 0u64, started);
    let mut first_error = None;
    for t in tasks {
        let (l, done, acks) = t.await?;
        end = end.max(done);
        for r in acks {
            match r {
                Ok(ack) => {
                    lat.push(l.as_micros() as u64);
                    duplicates += u64::from(ack.duplicate);
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    producer.close().await?;
    let secs = (end - started).as_secs_f64();
    if let (Some(a), Some(b)) = (cpu_before, process_cpu_secs()) {
        eprintln!(
            "# the bench client itself used {:.0}% of a core while producing",
            100.0 * (b - a) / started.elapsed().as_secs_f64()
        );
    }
    let n = lat.len() as u64;
    let (p50, p99, p999) = Latencies(lat).summary();
    let rate = n as f64 / secs;
    say!(
        args.json,
        "produce: {n} records in {secs:.2}s = {} records/s, {} MB/s; ack latency p50 {p50} us, p99 {p99} us, p999 {p999} us; {duplicates} duplicates, {errors} errors{}",
        fmt_num(rate),
        fmt_num(rate * payload as f64 / 1e6),
        if capped { " (time cap reached)" } else { "" }
    );
    // The broker verifies one request's signatures on every core (in whole chunks).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (textbook, own) = (verify_ceiling.textbook, verify_ceiling.own);
    say!(
        args.json,
        "produce / single-core batch-verification ceiling = {:.2}; / all {cores} cores' = {:.2} \
         (ed25519-dalek verify_batch); / all cores' with the broker's verifier = {:.2}",
        rate / textbook,
        rate / (textbook * cores),
        rate / (own * cores)
    );
    crate::bench::print_result(
        args.json,
        &[
            ("peer", "steme".into()),
            ("replicas", replicas(&topic).to_string()),
            ("size", payload.to_string()),
            ("partitions", topic.partitions.len().to_string()),
            ("acks", args.acks.name().into()),
            ("linger_ms", args.linger_ms.to_string()),
            ("window", args.window.to_string()),
            ("op", "produce".into()),
            ("msgs_per_s", fmt_num(rate)),
            ("mb_per_s", fmt_num(rate * payload as f64 / 1e6)),
            ("p50_us", p50.to_string()),
            ("p99_us", p99.to_string()),
            ("p999_us", p999.to_string()),
            ("n", n.to_string()),
            ("secs", fmt_num(secs)),
            ("sign_per_s", fmt_num(sign_rate)),
            ("verify_ceiling_per_s", fmt_num(textbook)),
            ("ratio_to_verify_ceiling", format!("{:.2}", rate / textbook)),
            (
                "ratio_to_all_cores_verify_ceiling",
                format!("{:.2}", rate / (textbook * cores)),
            ),
            ("own_verify_ceiling_per_s", fmt_num(own)),
            (
                "ratio_to_all_cores_own_verify_ceiling",
                format!("{:.2}", rate / (own * cores)),
            ),
            ("duplicates", duplicates.to_string()),
            ("runs", "1".into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
        ],
    );
    if let Some(e) = first_error {
        bail!("{errors} records failed; the first: {e}");
    }
    Ok(())
}

async fn consume(admin: &Admin, args: &BenchArgs) -> anyhow::Result<()> {
    let config = ConsumerConfig {
        verify: args.verify,
        max_bytes_per_partition: 4 << 20,
        ..crate::consumer_config()
    };
    let mut consumer = Consumer::new(admin.cluster().clone(), config);
    let partitions = consumer.assign_all(&args.topic).await?;
    let mut ends = BTreeMap::new();
    let mut available = 0;
    for p in 0..partitions {
        let start = consumer.seek(p, Position::Earliest).await?;
        let end = consumer.fetch_high_watermark(p).await?;
        if end > start {
            ends.insert(p, end);
            available += end - start;
        } else {
            consumer.pause(p)?;
        }
    }
    let target = if args.count == 0 {
        available
    } else {
        available.min(args.count)
    };
    eprintln!(
        "# reading {target} records from {partitions} partitions of {}",
        args.topic
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < target && !ends.is_empty() && Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(200)).await? {
            if ends
                .get(&r.partition())
                .is_some_and(|&end| r.offset() < end)
            {
                n += 1;
                bytes += r.canonical().len() as u64;
            }
        }
        consumer.pause_reached(&mut ends)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    let mb = bytes as f64 / secs / 1e6;
    let size = bytes.checked_div(n).unwrap_or(0);
    say!(
        args.json,
        "consume: {n} records ({bytes} payload bytes) in {secs:.2}s = {} records/s, {} MB/s{}",
        fmt_num(rate),
        fmt_num(mb),
        if args.verify {
            ", signatures verified"
        } else {
            ""
        }
    );
    crate::bench::print_result(
        args.json,
        &[
            ("peer", "steme".into()),
            ("size", size.to_string()),
            ("partitions", partitions.to_string()),
            ("verify", args.verify.to_string()),
            ("op", "consume".into()),
            ("msgs_per_s", fmt_num(rate)),
            ("mb_per_s", fmt_num(mb)),
            ("n", n.to_string()),
            ("secs", fmt_num(secs)),
            ("runs", "1".into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
        ],
    );
    if n < target {
        bail!(
            "read {n} of {target} records before the {}s cap",
            args.max_secs
        );
    }
    Ok(())
}

async fn e2e(admin: &Admin, args: &BenchArgs) -> anyhow::Result<()> {
    let topic = ensure_topic(admin, args).await?;
    let key = crate::keys::generate()?;
    let assertions = make_assertions(args.count, args.size, &run_id()?);
    let (signed, _) = sign_all(&assertions, &key)?;
    drop(assertions);
    let index: Arc<HashMap<AssertionId, usize>> = Arc::new(
        signed
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id(), i))
            .collect(),
    );
    let sent_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..signed.len()).map(|_| AtomicU64::new(0)).collect());
    let count = signed.len();

    let mut consumer = Consumer::new(admin.cluster().clone(), crate::consumer_config());
    let partitions = consumer.assign_all(&args.topic).await?;
    for p in 0..partitions {
        consumer.seek(p, Position::Latest).await?;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    let reader = {
        let (index, sent_at) = (index.clone(), sent_at.clone());
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(count);
            let mut last = started;
            while lat.len() < count && Instant::now() < deadline {
                for r in consumer.poll(Duration::from_millis(100)).await? {
                    if let Some(&i) = index.get(&r.id()) {
                        let now = Instant::now();
                        let sent = sent_at[i].load(Ordering::Relaxed);
                        lat.push(((now - started).as_nanos() as u64).saturating_sub(sent) / 1000);
                        last = now;
                    }
                }
            }
            Ok::<_, ClientError>((lat, last))
        })
    };

    verify_ceiling(&signed); // printed for the record; e2e does not divide by it

    let producer =
        Producer::new(admin.cluster().clone(), &args.topic, producer_config(args)).await?;
    let window = Arc::new(Semaphore::new(args.window.max(1)));
    let mut acks = Vec::with_capacity(count);
    for (i, s) in signed.into_iter().enumerate() {
        if Instant::now() >= deadline {
            break;
        }
        let permit = window.clone().acquire_owned().await?;
        sent_at[i].store(
            (Instant::now() - started).as_nanos() as u64,
            Ordering::Relaxed,
        );
        let ack = producer.enqueue(s).await?;
        acks.push(tokio::spawn(async move {
            let r = ack.await;
            drop(permit);
            r
        }));
    }
    let mut errors = 0u64;
    for a in acks {
        errors += u64::from(a.await?.is_err());
    }
    producer.close().await?;
    let (lat, last) = reader.await??;
    let n = lat.len() as u64;
    let secs = (last - started).as_secs_f64();
    let rate = n as f64 / secs;
    let (p50, p99, p999) = Latencies(lat).summary();
    say!(
        args.json,
        "e2e: {n} of {count} records consumed in {secs:.2}s = {} records/s; produce-to-consume p50 {p50} us, p99 {p99} us, p999 {p999} us; {errors} produce errors",
        fmt_num(rate)
    );
    crate::bench::print_result(
        args.json,
        &[
            ("peer", "steme".into()),
            ("replicas", replicas(&topic).to_string()),
            ("size", args.size.to_string()),
            ("partitions", partitions.to_string()),
            ("acks", args.acks.name().into()),
            ("linger_ms", args.linger_ms.to_string()),
            ("window", args.window.to_string()),
            ("op", "e2e".into()),
            ("msgs_per_s", fmt_num(rate)),
            ("p50_us", p50.to_string()),
            ("p99_us", p99.to_string()),
            ("p999_us", p999.to_string()),
            ("n", n.to_string()),
            ("secs", fmt_num(secs)),
            ("runs", "1".into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
        ],
    );
    if n < count as u64 || errors > 0 {
        bail!("{n} of {count} records reached the consumer ({errors} produce errors)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_kit_format() {
        assert_eq!(fmt_num(94246.4), "94246");
        assert_eq!(fmt_num(100.0), "100");
        assert_eq!(fmt_num(18.93), "18.9");
        assert_eq!(fmt_num(6.744), "6.74");
        assert_eq!(fmt_num(0.10234), "0.102");
        assert_eq!(fmt_num(0.0), "0");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500);
        assert_eq!(percentile(&v, 0.99), 990);
        assert_eq!(percentile(&v, 0.999), 999);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn assertions_have_the_requested_size_and_differ() {
        let a = make_assertions(3, 200, "r1");
        for x in &a {
            assert_eq!(x.canonical_bytes(&[0; 32]).unwrap().len(), 200);
        }
        assert_ne!(a[0].subject, a[1].subject);
        assert_ne!(make_assertions(1, 200, "r2")[0].subject, a[0].subject);
        // Smaller than the fixed part: as small as it gets.
        assert!(
            make_assertions(1, 10, "r")[0]
                .canonical_bytes(&[0; 32])
                .unwrap()
                .len()
                > 10
        );
    }

    #[test]
    fn result_line_parses_as_key_values() {
        let line = result_line(&[
            ("peer", "steme".into()),
            ("op", "produce".into()),
            ("n", "5".into()),
        ]);
        assert_eq!(line, "RESULT peer=steme op=produce n=5");
        let kv: HashMap<&str, &str> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .collect();
        assert_eq!(kv["op"], "produce");
    }

    #[test]
    fn json_results_keep_numbers_as_numbers() {
        let pairs = [
            ("op", "produce".to_owned()),
            ("n", "5".to_owned()),
            ("secs", "1.25".to_owned()),
            ("verify", "true".to_owned()),
            ("version", "0.1.0".to_owned()),
        ];
        let object: serde_json::Value = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json_scalar(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        assert_eq!(
            object,
            serde_json::json!({"op": "produce", "n": 5, "secs": 1.25, "verify": true, "version": "0.1.0"})
        );
    }
}
