//! A scripted broker on `127.0.0.1:0` that speaks the real wire protocol — the frames and
//! messages of `steme_protocol`, as `steme-broker` does — for what a real broker is built
//! never to do: answer a fetch with a gap, an overlap, or nothing below the high watermark.
//!
//! It serves one topic, [`TOPIC`], of one partition whose log is `[0, high_watermark)`.
//! ApiVersions, Metadata (itself as node 1, the partition's leader) and ListOffsets are
//! answered from that; every Fetch is answered by the test's script. An empty answer at or
//! above the high watermark is held for the request's `max_wait_ms` first, as a real long
//! poll is.
//!
//! Started with a [`Layout`], it describes more brokers (all at its own address) and plays
//! out ReassignPartition and DecommissionBroker: a move is recorded as the partition's
//! target and finishes after a set number of Metadata answers; a draining broker's replica
//! moves to an active broker, and the broker is removed once it holds none.
//!
//! AddPartitions grows the topic (every new partition has partition 0's replicas) and
//! records a split whose points are all recorded after the same number of Metadata answers
//! (at once with the default layout): old partition `i` splits at offset `100 + i`, HLC
//! `5000 + i`. DescribeTopic describes every partition with an empty log.

// Each test crate uses part of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use steme_protocol::batch::patch_header;
use steme_protocol::frame::Frame;
use steme_protocol::messages::add_partitions::{AddPartitionsRequest, AddPartitionsResponse};
use steme_protocol::messages::api_versions::ApiVersionsResponse;
use steme_protocol::messages::describe_topic::{DescribeTopicResponse, PartitionDescription};
use steme_protocol::messages::fetch::{FetchRequest, FetchResponse};
use steme_protocol::messages::list_offsets::{ListOffsetsResponse, OffsetSpec};
use steme_protocol::messages::metadata::{
    BrokerInfo, BrokerState, MetadataResponse, PartitionMetadata, SplitInfo, SplitPoint,
    TopicMetadata,
};
use steme_protocol::messages::reassign::{
    DecommissionBrokerRequest, DecommissionBrokerResponse, ReassignPartitionRequest,
    ReassignPartitionResponse,
};
use steme_protocol::messages::response_frame;
use steme_protocol::{
    ApiError, Assertion, BatchBuilder, ErrorCode, FrameCodec, RecordBatch, Request, SigningKey,
    Value,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::Framed;

/// The one topic the fake serves (one partition, 0, until AddPartitions grows it).
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
        FakeBroker::start_with(Layout::default(), high_watermark, script).await
    }

    /// A fake describing the brokers and replicas of `layout`, with an empty log.
    pub async fn with_layout(layout: Layout) -> std::io::Result<FakeBroker> {
        FakeBroker::start_with(layout, 0, log(vec![], 0)).await
    }

    async fn start_with(
        layout: Layout,
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
            cluster: Mutex::new(Moves {
                layout,
                target: None,
                polls_left: 0,
                partitions: 1,
                map_epoch: 0,
                splits: Vec::new(),
                split_polls_left: 0,
            }),
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
    cluster: Mutex<Moves>,
}

/// The brokers the fake describes and its partition's replicas.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Every broker's node id and state (all are reached at the fake's address).
    pub brokers: Vec<(u64, BrokerState)>,
    /// The partition's replicas, the preferred leader first (the first is its leader).
    pub replicas: Vec<u64>,
    /// How many Metadata answers still show a move (or a split without its points) before
    /// it is done.
    pub polls_per_move: u32,
}

impl Default for Layout {
    /// The fake alone, as node 1, holding the one replica.
    fn default() -> Layout {
        Layout {
            brokers: vec![(1, BrokerState::Active)],
            replicas: vec![1],
            polls_per_move: 0,
        }
    }
}

/// The layout as moves change it.
struct Moves {
    layout: Layout,
    /// While the partition moves: the replicas it moves to.
    target: Option<Vec<u64>>,
    /// Metadata answers left before the move under way is done.
    polls_left: u32,
    /// The topic's partition count, map epoch and splits, as AddPartitions grows it.
    partitions: u32,
    map_epoch: u64,
    splits: Vec<SplitInfo>,
    /// Metadata answers left before the last split's points are recorded.
    split_polls_left: u32,
}

impl Moves {
    fn state(&self, id: u64) -> Option<BrokerState> {
        self.layout
            .brokers
            .iter()
            .find(|(b, _)| *b == id)
            .map(|(_, s)| *s)
    }

    fn set_state(&mut self, id: u64, state: BrokerState) {
        for (b, s) in &mut self.layout.brokers {
            if *b == id {
                *s = state;
            }
        }
    }

    /// One Metadata answer's worth of progress: a move one step nearer done, and draining
    /// brokers that hold nothing removed.
    fn advance(&mut self) {
        if self.target.is_some() {
            if self.polls_left == 0 {
                self.layout.replicas = self.target.take().unwrap_or_default();
            } else {
                self.polls_left -= 1;
            }
        }
        if self.splits.last().is_some_and(|s| !s.sealed()) {
            if self.split_polls_left == 0 {
                self.seal_split();
            } else {
                self.split_polls_left -= 1;
            }
        }
        if self.target.is_none() {
            let held = &self.layout.replicas;
            for (b, s) in &mut self.layout.brokers {
                if *s == BrokerState::Draining && !held.contains(b) {
                    *s = BrokerState::Removed;
                }
            }
        }
    }

    fn metadata(&self, addr: &str) -> MetadataResponse {
        MetadataResponse {
            brokers: self
                .layout
                .brokers
                .iter()
                .map(|&(node_id, state)| BrokerInfo {
                    node_id,
                    addr: addr.to_owned(),
                    state,
                })
                .collect(),
            metadata_leader: Some(1),
            topics: vec![TopicMetadata {
                name: TOPIC.into(),
                partitions: (0..self.partitions)
                    .map(|partition| PartitionMetadata {
                        partition,
                        leader: self.layout.replicas.first().copied(),
                        leader_epoch: 1,
                        replicas: self.layout.replicas.clone(),
                        target: if partition == 0 {
                            self.target.clone()
                        } else {
                            None
                        },
                    })
                    .collect(),
                map_epoch: self.map_epoch,
                splits: self.splits.clone(),
            }],
        }
    }

    /// Every partition with an empty log, as DescribeTopic answers it.
    fn describe(&self) -> DescribeTopicResponse {
        DescribeTopicResponse {
            name: TOPIC.into(),
            configs: vec![],
            partitions: (0..self.partitions)
                .map(|partition| PartitionDescription {
                    partition,
                    leader: self.layout.replicas.first().copied(),
                    leader_epoch: 1,
                    replicas: self.layout.replicas.clone(),
                    log_start_offset: 0,
                    high_watermark: 0,
                    log_end_offset: 0,
                    size_bytes: 0,
                    offline: None,
                    damaged: vec![],
                    scrub: Default::default(),
                    in_sync: None,
                })
                .collect(),
        }
    }

    /// Grows the topic as the metadata leader does: refused below the current count and
    /// while the last split still records its points; the current count changes nothing.
    fn add_partitions(
        &mut self,
        req: &AddPartitionsRequest,
    ) -> Result<AddPartitionsResponse, ApiError> {
        if req.topic != TOPIC {
            return Err(ApiError::other(
                ErrorCode::UnknownTopic,
                format!("no topic {}", req.topic),
            ));
        }
        if req.count < self.partitions {
            return Err(ApiError::other(
                ErrorCode::InvalidRequest,
                format!(
                    "{TOPIC} has {} partitions; they are never removed",
                    self.partitions
                ),
            ));
        }
        if req.count > self.partitions {
            if self.splits.last().is_some_and(|s| !s.sealed()) {
                return Err(ApiError::other(
                    ErrorCode::InvalidRequest,
                    "the previous growth is still recording its split points",
                ));
            }
            self.map_epoch += 1;
            self.splits.push(SplitInfo {
                epoch: self.map_epoch,
                from: self.partitions,
                to: req.count,
                points: vec![None; self.partitions as usize],
            });
            self.partitions = req.count;
            self.split_polls_left = self.layout.polls_per_move;
            if self.split_polls_left == 0 {
                self.seal_split();
            }
        }
        Ok(AddPartitionsResponse {
            topic: TOPIC.into(),
            map_epoch: self.map_epoch,
            partitions: self.partitions,
        })
    }

    /// Records every split point of the last split.
    fn seal_split(&mut self) {
        if let Some(split) = self.splits.last_mut() {
            for (i, point) in (0u64..).zip(&mut split.points) {
                *point = Some(SplitPoint {
                    offset: 100 + i,
                    hlc: 5000 + i,
                });
            }
        }
    }

    /// Records a move as the broker does: refused to brokers that are not active, to
    /// duplicates, and while another move is under way.
    fn reassign(
        &mut self,
        req: &ReassignPartitionRequest,
    ) -> Result<ReassignPartitionResponse, ApiError> {
        if req.topic != TOPIC || req.partition != 0 {
            return Err(ApiError::other(
                ErrorCode::UnknownPartition,
                format!("no partition {}/{}", req.topic, req.partition),
            ));
        }
        for (i, &id) in req.replicas.iter().enumerate() {
            if self.state(id) != Some(BrokerState::Active) || req.replicas[..i].contains(&id) {
                return Err(ApiError::other(
                    ErrorCode::InvalidRequest,
                    format!("broker {id} is not an active broker, or is listed twice"),
                ));
            }
        }
        match &self.target {
            Some(t) if *t != req.replicas => {
                return Err(ApiError::other(
                    ErrorCode::InvalidRequest,
                    "the partition is already moving elsewhere",
                ));
            }
            Some(_) => {}
            None if self.layout.replicas == req.replicas => {}
            None => {
                self.target = Some(req.replicas.clone());
                self.polls_left = self.layout.polls_per_move;
            }
        }
        Ok(ReassignPartitionResponse {
            topic: req.topic.clone(),
            partition: req.partition,
            replicas: self.layout.replicas.clone(),
            target: self.target.clone(),
        })
    }

    /// Drains a broker: its replica moves to the first active broker without one.
    fn decommission(
        &mut self,
        req: &DecommissionBrokerRequest,
    ) -> Result<DecommissionBrokerResponse, ApiError> {
        let id = req.node_id;
        let state = match self.state(id) {
            None => {
                return Err(ApiError::other(
                    ErrorCode::InvalidRequest,
                    format!("no broker {id}"),
                ));
            }
            Some(BrokerState::Active) => {
                if let Some(slot) = self.layout.replicas.iter().position(|&b| b == id) {
                    let free = self.layout.brokers.iter().find(|(b, s)| {
                        *b != id && *s == BrokerState::Active && !self.layout.replicas.contains(b)
                    });
                    let Some(&(to, _)) = free else {
                        return Err(ApiError::other(
                            ErrorCode::NotEnoughReplicas,
                            "the other brokers cannot hold the replicas",
                        ));
                    };
                    let mut moved = self.layout.replicas.clone();
                    moved[slot] = to;
                    self.target = Some(moved);
                    self.polls_left = self.layout.polls_per_move;
                }
                self.set_state(id, BrokerState::Draining);
                BrokerState::Draining
            }
            Some(state) => state,
        };
        Ok(DecommissionBrokerResponse { node_id: id, state })
    }
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
        Request::Metadata(_) => {
            let mut c = shared.cluster.lock().expect("cluster");
            c.advance();
            response_frame(&header, &Ok(c.metadata(&shared.addr)))
        }
        Request::ReassignPartition(req) => {
            let result = shared.cluster.lock().expect("cluster").reassign(&req);
            response_frame(&header, &result)
        }
        Request::DecommissionBroker(req) => {
            let result = shared.cluster.lock().expect("cluster").decommission(&req);
            response_frame(&header, &result)
        }
        Request::AddPartitions(req) => {
            let result = shared.cluster.lock().expect("cluster").add_partitions(&req);
            response_frame(&header, &result)
        }
        Request::DescribeTopic(_) => {
            let d = shared.cluster.lock().expect("cluster").describe();
            response_frame(&header, &Ok(d))
        }
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

/// `steme --bootstrap <broker> <args>`: exit status, stdout, stderr.
pub async fn steme(
    broker: &FakeBroker,
    args: &[&str],
) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_steme"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STEME_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["--bootstrap", broker.addr()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .with_context(|| format!("steme {args:?} did not finish within 30 s"))??;
    Ok((
        out.status,
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}
