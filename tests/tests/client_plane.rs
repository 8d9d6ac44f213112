//! The client plane's limits and refusals against real broker processes (D8, D11): idle
//! connections and trickled frames are cut with a clear error, connection caps (per address
//! and in all) answer instead of hanging, internal topics cannot be created, deleted or
//! produced to by clients, and a partition that cannot open is offline while the broker and
//! its other partitions serve.
//!
//! The connection tests speak the wire protocol directly ([`Client`]): the library would
//! reconnect and retry, hiding what the broker sent.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::BytesMut;
use serde_json::Value;
use steme_client::{Admin, ClientConfig, ClientError, Producer, ProducerConfig, TopicOptions};
use steme_protocol::frame::{Frame, decode_frame};
use steme_protocol::messages::api_versions::{ApiVersionsRequest, ApiVersionsResponse};
use steme_protocol::messages::fetch::{FetchRequest, FetchResponse};
use steme_protocol::messages::produce::{Acks, ProduceRequest, ProduceResponse};
use steme_protocol::messages::{RequestBody, decode_response, request_frame};
use steme_protocol::{ApiError, BatchBuilder, ErrorCode, partition_for};
use steme_tests::cli::steme;
use steme_tests::workload::{assertions, create_topic, high_watermarks, key, produce_all, signed};
use steme_tests::{BrokerOptions, BrokerProcess, unique, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

const MAX_FRAME: usize = 16 << 20;
/// How long one request may take to be answered.
const CALL: Duration = Duration::from_secs(10);
/// How long a CLI command may take.
const CLI: Duration = Duration::from_secs(60);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn with_args(args: &[&str]) -> BrokerOptions {
    let mut options = BrokerOptions::fast_elections();
    options.args = args.iter().map(|a| (*a).to_owned()).collect();
    options
}

/// Frames arriving on a connection.
struct Frames {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

impl Frames {
    /// The next whole frame, or `None` once the broker has closed (EOF or reset).
    /// Cancel-safe: what was read stays in the buffer.
    async fn next(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, MAX_FRAME)? {
                return Ok(Some(frame));
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }
}

/// A raw client connection: requests written as frames, frames read back as they come.
struct Client {
    frames: Frames,
    wr: OwnedWriteHalf,
    next_id: u32,
}

/// The connection-level error frame a broker sends before closing (correlation id 0).
#[derive(Debug)]
struct ConnError {
    code: u16,
    /// The body after the code, as text (the message is in there, whatever the layout).
    text: String,
    /// The body through the protocol's own decoder.
    decoded: Result<ApiError, String>,
}

impl ConnError {
    fn from_frame(frame: Frame) -> anyhow::Result<ConnError> {
        let h = frame.header;
        ensure!(
            h.correlation_id == 0 && h.api_key == 0,
            "expected a connection error frame (correlation id 0, api key 0), got {h:?}"
        );
        let code = frame
            .body
            .get(..2)
            .context("an error frame without a code")?;
        let code = u16::from_le_bytes([code[0], code[1]]);
        let text = String::from_utf8_lossy(&frame.body[2..]).into_owned();
        let decoded = match decode_response::<ApiVersionsResponse>(frame.body) {
            Ok(Err(e)) => Ok(e),
            Ok(Ok(r)) => Err(format!("decoded as a success: {r:?}")),
            Err(e) => Err(e.to_string()),
        };
        Ok(ConnError {
            code,
            text,
            decoded,
        })
    }

    fn expect(&self, code: ErrorCode, mentions: &str) -> anyhow::Result<()> {
        ensure!(
            self.code == code as u16 && self.text.contains(mentions),
            "expected {code:?} ({}) naming {mentions:?}; got code {} with {:?}",
            code as u16,
            self.code,
            self.text
        );
        Ok(())
    }

    /// A client decoding the frame with the protocol's `decode_response` gets the same
    /// error code back.
    fn decodes(&self) -> anyhow::Result<()> {
        match &self.decoded {
            Ok(e) if e.code() as u16 == self.code => Ok(()),
            other => bail!(
                "the error frame (code {}, {:?}) does not decode as that error with \
                 decode_response: {other:?}",
                self.code,
                self.text
            ),
        }
    }
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Client> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        s.set_nodelay(true)?;
        let (rd, wr) = s.into_split();
        Ok(Client {
            frames: Frames {
                rd,
                buf: BytesMut::new(),
            },
            wr,
            next_id: 1,
        })
    }

    async fn call<R: RequestBody>(
        &mut self,
        req: &R,
    ) -> anyhow::Result<Result<R::Response, ApiError>> {
        let id = self.next_id;
        self.next_id += 1;
        let mut wire = BytesMut::new();
        request_frame(id, req).encode(&mut wire);
        self.wr.write_all(&wire).await?;
        let frame = tokio::time::timeout(CALL, self.frames.next())
            .await
            .with_context(|| format!("{:?} not answered within {CALL:?}", R::API_KEY))??
            .with_context(|| format!("the broker closed the connection on {:?}", R::API_KEY))?;
        let header = frame.header;
        if header.correlation_id != id {
            bail!(
                "{:?} request {id} answered with {header:?}: {:?}",
                R::API_KEY,
                ConnError::from_frame(frame)
            );
        }
        Ok(decode_response::<R::Response>(frame.body)?)
    }

    /// An ApiVersions round trip that must succeed.
    async fn versions(&mut self) -> anyhow::Result<()> {
        self.call(&versions_request("steme-tests"))
            .await?
            .map_err(|e| anyhow::anyhow!("ApiVersions refused: {e}"))?;
        Ok(())
    }

    /// Fetches from offset 0 without waiting, retrying refusals (a partition electing its
    /// leader after a start) for up to `limit`.
    async fn fetch_when_served(
        &mut self,
        topic: &str,
        partition: u32,
        limit: Duration,
    ) -> anyhow::Result<FetchResponse> {
        let deadline = Instant::now() + limit;
        loop {
            match self.call(&fetch_request(topic, partition, 0)).await? {
                Ok(answer) => return Ok(answer),
                Err(e) if Instant::now() >= deadline => {
                    bail!("fetch from {topic}-{partition} still refused after {limit:?}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The error frame that ends the connection, then its close, within `limit`.
    async fn closed_with(&mut self, limit: Duration) -> anyhow::Result<ConnError> {
        let deadline = Instant::now() + limit;
        let frame = tokio::time::timeout_at(deadline, self.frames.next())
            .await
            .with_context(|| {
                format!("the connection was neither refused nor closed within {limit:?}")
            })??
            .context("the connection was closed without an error frame")?;
        let err = ConnError::from_frame(frame)?;
        let after = tokio::time::timeout_at(deadline, self.frames.next())
            .await
            .with_context(|| format!("still open after the error frame {err:?}"))??;
        ensure!(after.is_none(), "a frame after the error frame: {after:?}");
        Ok(err)
    }
}

fn versions_request(name: &str) -> ApiVersionsRequest {
    ApiVersionsRequest {
        client_name: name.to_owned(),
        client_version: "0".into(),
    }
}

fn fetch_request(topic: &str, partition: u32, max_wait_ms: u32) -> FetchRequest {
    FetchRequest {
        topic: topic.to_owned(),
        partition,
        offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms,
    }
}

/// A produce request for `topic`/`partition` of `partitions`, holding one validly signed
/// record whose subject belongs to that partition.
fn produce_request(topic: &str, partition: u32, partitions: u32) -> anyhow::Result<ProduceRequest> {
    let a = assertions(&unique("raw"), 256, 100)
        .into_iter()
        .find(|a| partition_for(&a.subject, partitions) == partition)
        .context("no subject of 256 falls in the partition")?;
    let mut batch = BatchBuilder::with_capacity(1024);
    batch.push(&a.sign(&key(7))?);
    Ok(ProduceRequest {
        topic: topic.to_owned(),
        partition,
        acks: Acks::All,
        timeout_ms: 5_000,
        causality: None,
        batch: batch.finish(),
    })
}

/// Retries `call` until it succeeds or `limit` passes (a partition electing its leader
/// after a start, say); the last error otherwise.
async fn eventually<T, F, Fut>(limit: Duration, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {limit:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_with_a_clear_error() -> anyhow::Result<()> {
    let broker = BrokerProcess::start_with(with_args(&["--idle-timeout-ms", "1500"]))?;
    within(Duration::from_secs(90), async {
        let addr = broker.addr();
        // A connection that never sends anything is told why, then closed.
        let mut idle = Client::connect(addr).await?;
        let since = Instant::now();
        let err = idle.closed_with(secs(10.0)).await?;
        let took = since.elapsed();
        err.expect(ErrorCode::Timeout, "idle_timeout_ms")?;
        err.decodes()?;
        ensure!(
            took >= secs(1.2),
            "closed after {took:?}, before the 1.5 s idle timeout"
        );

        // One that keeps talking stays open, for well past the idle timeout.
        let mut busy = Client::connect(addr).await?;
        let since = Instant::now();
        while since.elapsed() < secs(4.0) {
            busy.versions().await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        busy.versions().await?;

        // A long-poll in flight past the idle timeout is answered, not cut.
        let topic = unique("quiet");
        create_topic(&broker.bootstrap(), &topic, 1).await?;
        let mut poll = Client::connect(addr).await?;
        poll.fetch_when_served(&topic, 0, secs(20.0)).await?;
        let since = Instant::now();
        let answer: FetchResponse = poll
            .call(&fetch_request(&topic, 0, 3_000))
            .await?
            .map_err(|e| anyhow::anyhow!("the long-poll was refused: {e}"))?;
        let waited = since.elapsed();
        ensure!(
            answer.records.is_empty() && waited >= secs(2.5),
            "the 3 s long-poll on an empty partition came back after {waited:?} with {} bytes",
            answer.records.len()
        );

        // Once nothing is in flight, the idle timer runs again.
        let since = Instant::now();
        let err = poll
            .closed_with(secs(10.0))
            .await
            .context("after its long-poll was answered, the connection never idled out")?;
        err.expect(ErrorCode::Timeout, "idle_timeout_ms")?;
        ensure!(
            since.elapsed() >= secs(1.2),
            "closed after {:?}",
            since.elapsed()
        );

        // And so is one that made a single quick request and then went quiet.
        let mut once = Client::connect(addr).await?;
        once.versions().await?;
        let since = Instant::now();
        let err = once
            .closed_with(secs(10.0))
            .await
            .context("after one answered request, the connection never idled out")?;
        err.expect(ErrorCode::Timeout, "idle_timeout_ms")?;
        ensure!(
            since.elapsed() >= secs(1.2),
            "closed after {:?}",
            since.elapsed()
        );
        ensure!(!broker.log_shows_panic(), "{}", broker.log_tail(40));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_frame_is_cut_off_at_its_deadline() -> anyhow::Result<()> {
    let broker = BrokerProcess::start_with(with_args(&["--frame-timeout-ms", "2000"]))?;
    within(Duration::from_secs(90), async {
        let addr = broker.addr();
        // A valid frame of ~90 bytes: at one byte per 300 ms it would take ~27 s whole, and
        // every read the broker makes gets a byte well within any per-read timeout.
        let mut wire = BytesMut::new();
        request_frame(1, &versions_request(&"trickle".repeat(10))).encode(&mut wire);

        // Another client is served all along.
        let other = tokio::spawn(async move {
            let mut c = Client::connect(addr).await?;
            for _ in 0..15 {
                let since = Instant::now();
                c.versions().await?;
                ensure!(
                    since.elapsed() < secs(1.0),
                    "answered in {:?}",
                    since.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok(())
        });

        let mut slow = Client::connect(addr).await?;
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        let mut sent = 0;
        let mut first = None;
        let frame = loop {
            tokio::select! {
                f = slow.frames.next() => break f?,
                _ = tick.tick(), if sent < wire.len() => {
                    if slow.wr.write_all(&wire[sent..=sent]).await.is_err() {
                        break slow.frames.next().await?;
                    }
                    first.get_or_insert_with(Instant::now);
                    sent += 1;
                }
            }
        };
        let first = first.context("no byte was sent")?;
        let frame = frame.context("the connection was closed without an error frame")?;
        let err = ConnError::from_frame(frame)
            .with_context(|| format!("after {sent} of {} bytes", wire.len()))?;
        err.expect(ErrorCode::Timeout, "frame_timeout_ms")?;
        err.decodes()?;
        let closed = tokio::time::timeout(secs(5.0), slow.frames.next())
            .await
            .context("still open after the error frame")??;
        ensure!(
            closed.is_none(),
            "a frame after the error frame: {closed:?}"
        );
        let took = first.elapsed();
        ensure!(
            took >= secs(1.5) && took < secs(6.0),
            "cut {took:?} after the first byte ({sent} of {} bytes sent); the deadline is 2 s",
            wire.len()
        );
        other.await??;
        ensure!(!broker.log_shows_panic(), "{}", broker.log_tail(40));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() -> anyhow::Result<()> {
    let broker = BrokerProcess::start_with(with_args(&["--max-connections-per-ip", "4"]))?;
    within(Duration::from_secs(90), async {
        let addr = broker.addr();
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut c = Client::connect(addr).await?;
            c.versions().await?;
            open.push(c);
        }
        // The fifth is told why, at once, and closed.
        let mut fifth = Client::connect(addr).await?;
        let refused = fifth.closed_with(secs(5.0)).await?;
        refused.expect(ErrorCode::Throttled, "max_connections_per_ip is 4")?;
        for c in &mut open {
            c.versions().await?;
        }

        // Closing one frees its slot (once the broker has seen the close).
        drop(open.pop());
        let mut again = eventually(secs(10.0), || async {
            let mut c = Client::connect(addr).await?;
            c.versions().await?;
            Ok(c)
        })
        .await?;
        again.versions().await?;
        // And the cap holds again with the new one.
        let mut over = Client::connect(addr).await?;
        over.closed_with(secs(5.0))
            .await?
            .expect(ErrorCode::Throttled, "max_connections_per_ip")?;
        // A client decoding the refusal gets Throttled back.
        refused.decodes()?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_connection_cap_answers_instead_of_hanging() -> anyhow::Result<()> {
    let mut options = with_args(&["--max-connections-per-ip", "64"]);
    if let Some(toml) = &mut options.config_toml {
        toml.push_str("max_connections = 6\n");
    }
    let broker = BrokerProcess::start_with(options)?;
    within(Duration::from_secs(60), async {
        let addr = broker.addr();
        let mut open = Vec::new();
        for _ in 0..6 {
            let mut c = Client::connect(addr).await?;
            c.versions().await?;
            open.push(c);
        }
        let mut seventh = Client::connect(addr).await?;
        let since = Instant::now();
        let refused = seventh.closed_with(secs(5.0)).await?;
        refused.expect(ErrorCode::Throttled, "max_connections is 6")?;
        ensure!(
            since.elapsed() < secs(2.0),
            "refused only after {:?}",
            since.elapsed()
        );
        for c in &mut open {
            c.versions().await?;
        }
        refused.decodes()?;
        Ok(())
    })
    .await
}

/// Fails unless `result` is an InvalidRequest refusal that mentions internal topics.
fn refused_as_internal<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, ClientError>,
) -> anyhow::Result<()> {
    match result {
        Err(ClientError::Api(e))
            if e.code() == ErrorCode::InvalidRequest && e.to_string().contains("internal") =>
        {
            Ok(())
        }
        other => bail!("{what}: expected InvalidRequest naming internal topics, got {other:?}"),
    }
}

/// The sum of a group's committed offsets, from `steme group describe --json`.
async fn committed(bootstrap: &str, group: &str) -> anyhow::Result<u64> {
    let out = steme(bootstrap, &["group", "describe", group, "--json"], "", CLI)
        .await?
        .success()?;
    let d: Value =
        serde_json::from_str(&out.stdout).with_context(|| format!("not JSON: {}", out.stdout))?;
    let offsets = d["offsets"]
        .as_array()
        .with_context(|| format!("no offsets in {d}"))?;
    Ok(offsets.iter().filter_map(|o| o["committed"].as_u64()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_create_delete_or_produce_internal_topics() -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start_with(BrokerOptions::fast_elections())?;
    let records = signed(&unique("internal"), 10, 100)?;
    within(Duration::from_secs(120), async {
        let b = broker.bootstrap();
        let admin = Admin::connect(&b, ClientConfig::default()).await?;
        // Before any group exists, `__groups` cannot be made by a client (with its own
        // partition count and settings), nor can any other `__` name.
        for name in ["__groups", "__anything"] {
            let made = admin.create_topic(name, 1, TopicOptions::default()).await;
            refused_as_internal(&format!("create {name}"), made)?;
        }

        // A group commits: `__groups` now exists, holding the commit.
        create_topic(&b, "facts", 1).await?;
        let producer = Producer::connect(&b, "facts", ProducerConfig::default()).await?;
        produce_all(&producer, &records).await?;
        steme(
            &b,
            &["consume", "facts", "--group", "g", "--max", "4"],
            "",
            CLI,
        )
        .await?
        .success()?;
        ensure!(committed(&b, "g").await? == 4, "the group did not commit 4");
        let partitions = admin.cluster().partition_count("__groups").await?;

        let deleted = admin.delete_topic("__groups").await;
        refused_as_internal("delete __groups", deleted)?;
        // A well-formed, validly signed batch for the right partition.
        let mut c = Client::connect(broker.addr()).await?;
        let produced: Result<ProduceResponse, ApiError> =
            c.call(&produce_request("__groups", 0, partitions)?).await?;
        refused_as_internal("produce to __groups", produced.map_err(ClientError::Api))?;
        let names: Vec<String> = admin
            .list_topics()
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        ensure!(
            !names.iter().any(|n| n == "__anything"),
            "__anything exists: {names:?}"
        );
        anyhow::Ok(())
    })
    .await?;

    // The group's state is intact across a restart.
    broker.terminate(Duration::from_secs(30))?;
    broker.restart()?;
    within(Duration::from_secs(90), async {
        let b = broker.bootstrap();
        let after = eventually(secs(30.0), || committed(&b, "g")).await?;
        ensure!(
            after == 4,
            "committed offsets after the restart sum to {after}, not 4"
        );
        ensure!(!broker.log_shows_panic(), "{}", broker.log_tail(40));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_cannot_open_is_offline_and_the_rest_serve() -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start_with(BrokerOptions::fast_elections())?;
    let topic = unique("split");
    let records = signed(&topic, 60, 100)?;
    let before = within(Duration::from_secs(60), async {
        let b = broker.bootstrap();
        create_topic(&b, &topic, 2).await?;
        let producer = Producer::connect(&b, &topic, ProducerConfig::default()).await?;
        produce_all(&producer, &records).await?;
        let hw = high_watermarks(&b, &topic).await?;
        ensure!(hw.len() == 2 && hw.iter().all(|&h| h > 0), "{hw:?}");
        Ok(hw)
    })
    .await?;

    broker.terminate(Duration::from_secs(30))?;
    // Partition 0's directory becomes a file of garbage: its log cannot be opened.
    let dir = broker.data_dir().join("topics").join(format!("{topic}-0"));
    ensure!(dir.is_dir(), "no partition directory at {}", dir.display());
    std::fs::remove_dir_all(&dir)?;
    std::fs::write(&dir, [0xA5u8; 4096])?;
    broker
        .restart()
        .context("the broker does not start with one partition unopenable")?;

    within(Duration::from_secs(90), async {
        let b = broker.bootstrap();
        let mut c = Client::connect(broker.addr()).await?;
        // Partition 1 serves what it had, and takes more.
        let fetched = c.fetch_when_served(&topic, 1, secs(30.0)).await?;
        ensure!(
            fetched.high_watermark == before[1] && !fetched.records.is_empty(),
            "partition 1 after the restart: high watermark {} (was {}), {} bytes",
            fetched.high_watermark,
            before[1],
            fetched.records.len()
        );
        let ack = c
            .call(&produce_request(&topic, 1, 2)?)
            .await?
            .map_err(|e| anyhow::anyhow!("produce to partition 1 refused: {e}"))?;
        ensure!(
            ack.base_offset == before[1],
            "appended at {}",
            ack.base_offset
        );

        // Partition 0 is reported offline with its reason.
        let out = steme(&b, &["cluster", "status", &topic, "--json"], "", CLI)
            .await?
            .success()?;
        let status: Value = serde_json::from_str(&out.stdout)
            .with_context(|| format!("not JSON: {}", out.stdout))?;
        let parts = &status["topics"][0]["partitions"];
        let offline = parts[0]["replicas"][0]["offline"]
            .as_str()
            .with_context(|| format!("partition 0 is not shown offline: {status}"))?;
        ensure!(
            offline.contains("cannot open"),
            "offline because {offline:?}"
        );
        ensure!(
            parts[1]["replicas"][0].get("offline").is_none(),
            "partition 1 is shown offline: {status}"
        );

        // Producing to it fails at once, saying why.
        let since = Instant::now();
        let refused = c.call(&produce_request(&topic, 0, 2)?).await?;
        let err = refused
            .err()
            .context("a produce to the offline partition succeeded")?;
        ensure!(
            err.code() == ErrorCode::Storage
                && err.to_string().contains(&format!("{topic}-0"))
                && err.to_string().contains("cannot open"),
            "produce to the offline partition: {err}"
        );
        ensure!(
            since.elapsed() < secs(5.0),
            "refused after {:?}",
            since.elapsed()
        );
        ensure!(!broker.log_shows_panic(), "{}", broker.log_tail(40));
        Ok(())
    })
    .await
}
