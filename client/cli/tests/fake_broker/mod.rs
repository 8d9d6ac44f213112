//! A scripted broker on `127.0.0.1:0` that speaks the real wire protocol — the frames and
//! messages of `steme_protocol`, as `steme-broker` does — for what a real broker is built
//! never to do: answer a fetch with a gap, an overlap, or nothing below the high watermark.
//!
//! It serves one topic, [`TOPIC`], of one partition whose log is `[0, high_watermark)`.
//! ApiVersions, Metadata (itself as node 1, the partition's leader) and ListOffsets are
//! answered from that; every Fetch is answered by the test's script. An empty answer at or
//! above the high watermark is held for the request's `max_wait_ms` first, as a real long
//! poll is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use steme_protocol::batch::patch_header;
use steme_protocol::frame::Frame;
use steme_protocol::messages::api_versions::ApiVersionsResponse;
use steme_protocol::messages::fetch::{FetchRequest, FetchResponse};
use steme_protocol::messages::list_offsets::{ListOffsetsResponse, OffsetSpec};
use steme_protocol::messages::metadata::{
    BrokerInfo, BrokerState, MetadataResponse, PartitionMetadata, TopicMetadata,
};
use steme_protocol::messages::response_frame;
use steme_protocol::{
    ApiError, Assertion, BatchBuilder, FrameCodec, RecordBatch, Request, SigningKey, Value,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::Framed;

/// The one topic the fake serves (one partition, 0).
pub const TOPIC: &str = "t";

/// How the fake answers a fetch.
pub type Script = dyn Fn(&FetchRequest) -> Result<FetchResponse, ApiError> + Send + Sync;

/// A running fake broker; stopped (with its connections) on drop.
pub struct FakeBroker {
    addr: String,
    fetched: Arc<Mutex<Vec<u64>>>,
    accept: JoinHandle<()>,
}

impl FakeBroker {
    /// Listens on an ephemeral loopback port and answers fetches with `script`.
    pub async fn start(
        high_watermark: u64,
        script: impl Fn(&FetchRequest) -> Result<FetchResponse, ApiError> + Send + Sync + 'static,
    ) -> std::io::Result<FakeBroker> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let fetched = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            addr: addr.clone(),
            high_watermark,
            script: Box::new(script),
            fetched: fetched.clone(),
        });
        let accept = tokio::spawn(async move {
            // Dropped with this task when the fake is: every connection ends with it.
            let mut connections = JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                connections.spawn(serve(sock, shared.clone()));
            }
        });
        Ok(FakeBroker {
            addr,
            fetched,
            accept,
        })
    }

    /// `host:port`, for a bootstrap list.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The offsets of the fetches received so far, in order.
    pub fn fetches(&self) -> Vec<u64> {
        self.fetched.lock().expect("fetch log").clone()
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

struct Shared {
    addr: String,
    high_watermark: u64,
    script: Box<Script>,
    fetched: Arc<Mutex<Vec<u64>>>,
}

/// One connection: requests are answered concurrently (a long poll does not hold up the
/// requests behind it), through one writer.
async fn serve(sock: TcpStream, shared: Arc<Shared>) {
    let (mut sink, mut frames) = Framed::new(sock, FrameCodec::default()).split();
    let (answers, mut outbox) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });
    let mut pending = JoinSet::new();
    while let Some(Ok(frame)) = frames.next().await {
        let shared = shared.clone();
        let answers = answers.clone();
        pending.spawn(async move {
            if let Some(answer) = answer(&shared, frame).await {
                let _ = answers.send(answer);
            }
        });
    }
    drop(answers);
    while pending.join_next().await.is_some() {}
    let _ = writer.await;
}

async fn answer(shared: &Shared, frame: Frame) -> Option<Frame> {
    let header = frame.header;
    let hwm = shared.high_watermark;
    let frame = match Request::decode(&header, frame.body).ok()? {
        Request::ApiVersions(_) => {
            response_frame::<ApiVersionsResponse>(&header, &Ok(ApiVersionsResponse::new(1, "fake")))
        }
        Request::Metadata(_) => response_frame(
            &header,
            &Ok(MetadataResponse {
                brokers: vec![BrokerInfo {
                    node_id: 1,
                    addr: shared.addr.clone(),
                    state: BrokerState::Active,
                }],
                metadata_leader: Some(1),
                topics: vec![TopicMetadata {
                    name: TOPIC.into(),
                    partitions: vec![PartitionMetadata {
                        partition: 0,
                        leader: Some(1),
                        leader_epoch: 1,
                        replicas: vec![1],
                        target: None,
                    }],
                }],
            }),
        ),
        Request::ListOffsets(req) => {
            let offset = match req.spec {
                OffsetSpec::Latest => hwm,
                OffsetSpec::Earliest | OffsetSpec::AtOrAfterHlc(_) => 0,
            };
            response_frame(
                &header,
                &Ok(ListOffsetsResponse {
                    offset,
                    hlc: None,
                    high_watermark: hwm,
                    log_start_offset: 0,
                }),
            )
        }
        Request::Fetch(req) => {
            shared.fetched.lock().expect("fetch log").push(req.offset);
            let result = (shared.script)(&req);
            if let Ok(resp) = &result
                && resp.records.is_empty()
                && req.offset >= resp.high_watermark
            {
                tokio::time::sleep(Duration::from_millis(u64::from(req.max_wait_ms))).await;
            }
            response_frame(&header, &result)
        }
        _ => return None,
    };
    Some(frame)
}

/// A batch of `count` signed records at `base_offset`, as a log stores it.
pub fn batch(base_offset: u64, count: u64) -> Bytes {
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut b = BatchBuilder::default();
    for i in base_offset..base_offset + count {
        let a = Assertion {
            subject: format!("urn:fake:{i}"),
            predicate: "p".into(),
            object: Value::Integer(i as i64),
            source: "fake".into(),
            confidence: None,
            supersedes: None,
            issued_at: 1_700_000_000_000 + i,
        };
        b.push(&a.sign(&key).expect("signs"));
    }
    let mut bytes = b.finish().to_vec();
    patch_header(&mut bytes, base_offset, 1000 + base_offset, 1);
    Bytes::from(bytes)
}

/// A script serving a log made of `batches`, holes and overlaps included: a fetch at `o`
/// gets every batch from the first that ends after `o`.
pub fn log(
    batches: Vec<Bytes>,
    high_watermark: u64,
) -> impl Fn(&FetchRequest) -> Result<FetchResponse, ApiError> + Send + Sync + 'static {
    let ends: Vec<u64> = batches
        .iter()
        .map(|b| {
            RecordBatch::new(b.clone())
                .expect("a valid batch")
                .end_offset()
        })
        .collect();
    move |req| {
        let first = ends
            .iter()
            .position(|&end| end > req.offset)
            .unwrap_or(batches.len());
        Ok(FetchResponse {
            throttle_ms: 0,
            high_watermark,
            log_start_offset: 0,
            records: Bytes::from(batches[first..].concat()),
        })
    }
}
