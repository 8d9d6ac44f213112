//! What the HTTP gateway costs against the Rust client: the same number of signed records
//! of about 200 bytes, stored (acks=all) (a) through `steme_client::Producer` straight to
//! the brokers and (b) posted through a running `steme-gateway` as JSON arrays, each side
//! with `concurrency` batches of `batch` records in flight. Prints, for each, records/s,
//! MB/s (of signed record bytes: canonical assertion + 64-byte signature), the latency of a
//! batch (enqueue to last ack; request sent to answer read) at p50/p99/p99.9, and the
//! gateway/Rust ratios of records/s and p99.
//!
//! ```sh
//! cargo run --release -p steme-gateway --example gateway_bench -- \
//!     --bootstrap 127.0.0.1:9092 --gateway 127.0.0.1:8080 --topic bench \
//!     [--records 200000] [--batch 1000] [--concurrency 4] [--size 200] [--max-secs 300]
//! ```
//!
//! Every record is signed (and every HTTP body serialized) before anything is timed. The
//! two sides use different subjects, so no record is a duplicate of the other side's. Each
//! side stops after `--max-secs`; a request has 60 s; a failed batch ends the run with an
//! error (nothing is retried, so the figures are of batches that went through first time).
//! client/scripts/gateway-bench.sh starts a cluster and a gateway and runs this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use steme_client::json::AckLine;
use steme_client::{Assertion, Producer, ProducerConfig, SignedAssertion, SigningKey, Value};

/// How long one batch may take on either side.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Args {
    bootstrap: String,
    gateway: SocketAddr,
    topic: String,
    records: usize,
    batch: usize,
    concurrency: usize,
    size: usize,
    max_secs: u64,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args {
            bootstrap: "127.0.0.1:9092".into(),
            gateway: "127.0.0.1:8080".parse()?,
            topic: "bench".into(),
            records: 200_000,
            batch: 1000,
            concurrency: 4,
            size: 200,
            max_secs: 300,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let number = || -> anyhow::Result<usize> {
                value
                    .parse()
                    .with_context(|| format!("{flag}: {value:?} is not a number"))
            };
            match flag.as_str() {
                "--bootstrap" => args.bootstrap = value.clone(),
                "--gateway" => {
                    let addr = value.trim_start_matches("http://").trim_end_matches('/');
                    args.gateway = addr
                        .parse()
                        .with_context(|| format!("--gateway: {value:?} is not host:port"))?;
                }
                "--topic" => args.topic = value.clone(),
                "--records" => args.records = number()?,
                "--batch" => args.batch = number()?,
                "--concurrency" => args.concurrency = number()?,
                "--size" => args.size = number()?,
                "--max-secs" => args.max_secs = number()? as u64,
                _ => bail!(
                    "unknown flag {flag}; flags: --bootstrap --gateway --topic --records --batch --concurrency --size --max-secs"
                ),
            }
        }
        ensure!(
            args.records > 0 && args.batch > 0 && args.concurrency > 0,
            "--records, --batch and --concurrency must be positive"
        );
        Ok(args)
    }
}

/// `count` signed assertions of about `size` canonical bytes, subjects under `side`, signed
/// on every core.
fn sign(side: &str, count: usize, size: usize) -> anyhow::Result<Vec<SignedAssertion>> {
    let key = SigningKey::from_bytes(&[42; 32]);
    let run = std::process::id();
    let make = |i: usize, pad: usize| Assertion {
        subject: format!("urn:bench:{side}:{run}:{i:09}"),
        predicate: "bench:payload".into(),
        object: Value::Text("x".repeat(pad)),
        source: "gateway_bench".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_764_000_000_000 + i as u64,
    };
    let base = make(0, 0).canonical_bytes(&[0; 32])?.len();
    let pad = size.saturating_sub(base);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..count)
            .step_by(per)
            .map(|start| {
                let (make, key) = (&make, &key);
                s.spawn(move || {
                    (start..(start + per).min(count))
                        .map(|i| make(i, pad).sign(key))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for p in parts {
            let signed = p
                .join()
                .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??;
            all.extend(signed);
        }
        Ok(all)
    })
}

/// Stored records' bytes: canonical assertion and signature.
fn record_bytes(records: &[SignedAssertion]) -> u64 {
    records
        .iter()
        .map(|r| r.canonical().len() as u64 + 64)
        .sum()
}

/// What one side did.
#[derive(Debug)]
struct Run {
    records: usize,
    elapsed: Duration,
    /// One per batch, sorted.
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
        self.latencies.get(rank - 1).copied().unwrap_or_default()
    }

    fn print(&self, label: &str, bytes_per_record: f64) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{label}: {} records in {:.2} s = {:.0} records/s, {:.1} MB/s; batch latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms ({} batches)",
            self.records,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.rate() * bytes_per_record / 1e6,
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.percentile(0.999)),
            self.latencies.len()
        );
    }
}

/// Runs `concurrency` workers, each taking the next batch index until there are none or
/// `deadline` has passed, timing each batch with `send`; all batches must succeed.
async fn drive<F, Fut>(
    batches: usize,
    concurrency: usize,
    deadline: Instant,
    send: F,
) -> anyhow::Result<(Vec<Duration>, Duration)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (next, send) = (next.clone(), send.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches || Instant::now() >= deadline {
                        return anyhow::Ok(latencies);
                    }
                    let t = Instant::now();
                    tokio::time::timeout(BATCH_TIMEOUT, send(worker, i))
                        .await
                        .with_context(|| format!("batch {i}: no answer within {BATCH_TIMEOUT:?}"))?
                        .with_context(|| format!("batch {i}"))?;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok((all, elapsed))
}

async fn through_client(args: &Args, records: Vec<SignedAssertion>) -> anyhow::Result<Run> {
    let producer = Producer::connect(&args.bootstrap, &args.topic, ProducerConfig::default())
        .await
        .context("cannot connect the producer")?;
    let records = Arc::new(records);
    let batches = records.len().div_ceil(args.batch);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let batch = args.batch;
    let (p, r) = (producer.clone(), records.clone());
    let send = move |_worker: usize, i: usize| {
        let (producer, records) = (p.clone(), r.clone());
        async move {
            let chunk = &records[i * batch..((i + 1) * batch).min(records.len())];
            let acks = producer.enqueue_many(chunk.iter().cloned()).await?.await;
            for ack in acks {
                ack?;
            }
            anyhow::Ok(())
        }
    };
    let (latencies, elapsed) = drive(batches, args.concurrency, deadline, send).await?;
    producer.close().await?;
    Ok(Run {
        records: (latencies.len() * batch).min(records.len()),
        elapsed,
        latencies,
    })
}

/// A keep-alive HTTP/1.1 connection to the gateway.
type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the gateway at {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn through_gateway(args: &Args, records: Vec<SignedAssertion>) -> anyhow::Result<Run> {
    let bodies: Vec<Bytes> = records
        .chunks(args.batch)
        .map(|c| serde_json::to_vec(c).map(Bytes::from))
        .collect::<Result<_, _>>()?;
    let body_bytes: usize = bodies.iter().map(Bytes::len).sum();
    println!(
        "gateway: {} bodies, {:.1} MB of JSON in all",
        bodies.len(),
        body_bytes as f64 / 1e6
    );
    let mut senders = Vec::new();
    for _ in 0..args.concurrency {
        senders.push(tokio::sync::Mutex::new(connect(args.gateway).await?));
    }
    let (senders, bodies) = (Arc::new(senders), Arc::new(bodies));
    let path = format!("/v1/topics/{}/assertions", args.topic);
    let (batches, host) = (bodies.len(), args.gateway.to_string());
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let send = move |worker: usize, i: usize| {
        let (senders, bodies) = (senders.clone(), bodies.clone());
        let (path, host) = (path.clone(), host.clone());
        async move {
            // Each worker owns its connection; the lock is never contended.
            let mut sender = senders[worker].lock().await;
            sender.ready().await.context("the connection closed")?;
            let req = Request::post(&path)
                .header("host", host)
                .header("content-type", "application/json")
                .body(Full::new(bodies[i].clone()))?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            ensure!(
                status == StatusCode::OK,
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
            let acks: Vec<AckLine> = serde_json::from_slice(&body)?;
            ensure!(
                acks.iter().all(|a| !a.duplicate),
                "a fresh record was a duplicate"
            );
            anyhow::Ok(())
        }
    };
    let (latencies, elapsed) = drive(batches, args.concurrency, deadline, send).await?;
    Ok(Run {
        records: (latencies.len() * args.batch).min(records.len()),
        elapsed,
        latencies,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let t = Instant::now();
    let (client_side, gateway_side) = tokio::task::block_in_place(|| {
        anyhow::Ok((
            sign("client", args.records, args.size)?,
            sign("gateway", args.records, args.size)?,
        ))
    })?;
    let per_record = record_bytes(&client_side) as f64 / client_side.len() as f64;
    println!(
        "signed 2 x {} records of {per_record:.0} bytes (canonical + signature) in {:.1} s; batches of {}, {} in flight",
        args.records,
        t.elapsed().as_secs_f64(),
        args.batch,
        args.concurrency
    );
    let rust = through_client(&args, client_side).await?;
    rust.print("rust client ", per_record);
    let http = through_gateway(&args, gateway_side).await?;
    http.print("http gateway", per_record);
    let rate_ratio = http.rate() / rust.rate();
    let p99_ratio = http.percentile(0.99).as_secs_f64() / rust.percentile(0.99).as_secs_f64();
    println!("gateway / rust: records/s {rate_ratio:.2}x, p99 latency {p99_ratio:.2}x");
    println!(
        "RESULT rust_records_per_s={:.0} gateway_records_per_s={:.0} rate_ratio={rate_ratio:.3} rust_p99_ms={:.2} gateway_p99_ms={:.2} p99_ratio={p99_ratio:.3}",
        rust.rate(),
        http.rate(),
        rust.percentile(0.99).as_secs_f64() * 1e3,
        http.percentile(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
