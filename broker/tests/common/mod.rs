//! A real broker on `127.0.0.1:0` in this process, and a minimal framed client that speaks
//! the protocol crate directly (the tests check the broker, not the client library).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use steme_broker::config::Config;
use steme_broker::node::{Advertised, Broker};
use steme_protocol::frame::decode_frame;
use steme_protocol::messages::create_topic::CreateTopicRequest;
use steme_protocol::messages::produce::{Acks, ProduceRequest, ProduceResponse};
use steme_protocol::messages::{RequestBody, decode_response, request_frame};
use steme_protocol::{ApiError, Assertion, BatchBuilder, SignedAssertion, SigningKey, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub struct TestBroker {
    pub addr: std::net::SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_in(Arc::new(tempfile::tempdir().expect("tempdir"))).await
    }

    pub async fn start_in(dir: Arc<tempfile::TempDir>) -> TestBroker {
        Self::start_with_io(dir, Arc::new(steme_segments::RealIo)).await
    }

    pub async fn start_with_io(
        dir: Arc<tempfile::TempDir>,
        io: Arc<dyn steme_segments::FileIo>,
    ) -> TestBroker {
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("STEME_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cfg = Config {
            listen: addr,
            data_dir: dir.path().to_owned(),
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            retention_check_ms: 100,
            ..Config::default()
        };
        let broker = Broker::start_with_io(cfg, Advertised::client(addr.to_string()), io)
            .await
            .expect("broker starts");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(steme_broker::server::run(listener, broker, async {
            let _ = rx.await;
        }));
        TestBroker {
            addr,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Shuts the broker down cleanly and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A sequential framed client.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    next_id: u32,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    pub async fn send<R: RequestBody>(&mut self, req: &R) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = request_frame(id, req);
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        self.stream.write_all(&out).await.expect("write");
        id
    }

    pub async fn recv_frame(&mut self) -> Option<steme_protocol::Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 64 << 20).expect("valid frame") {
                return Some(f);
            }
            let n =
                tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("response in time")
                    .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn call<R: RequestBody>(&mut self, req: &R) -> Result<R::Response, ApiError> {
        let id = self.send(req).await;
        let frame = self.recv_frame().await.expect("connection open");
        assert_eq!(frame.header.correlation_id, id);
        decode_response(frame.body).expect("well-formed response")
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }
}

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub fn assertion(subject: &str, i: u64) -> Assertion {
    Assertion {
        subject: subject.to_owned(),
        predicate: "schema:value".into(),
        object: Value::Integer(i as i64),
        source: "test".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_764_000_000_000 + i,
    }
}

/// Signs `n` assertions whose subjects land in `partition` of a `partitions`-partition topic.
pub fn signed_for(partition: u32, partitions: u32, n: usize, salt: &str) -> Vec<SignedAssertion> {
    let key = key();
    (0u64..)
        .map(|i| format!("urn:{salt}:{i}"))
        .filter(|s| steme_protocol::partition_for(s, partitions) == partition)
        .take(n)
        .enumerate()
        .map(|(i, s)| assertion(&s, i as u64).sign(&key).expect("valid"))
        .collect()
}

pub fn batch_of(records: &[SignedAssertion]) -> Bytes {
    let mut b = BatchBuilder::default();
    for r in records {
        b.push(r);
    }
    b.finish()
}

pub fn produce_req(topic: &str, partition: u32, batch: Bytes) -> ProduceRequest {
    ProduceRequest {
        topic: topic.into(),
        partition,
        acks: Acks::All,
        timeout_ms: 10_000,
        causality: None,
        batch,
    }
}

pub async fn create_topic(c: &mut Client, name: &str, partitions: u32) {
    c.call(&CreateTopicRequest {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: vec![],
    })
    .await
    .expect("topic created");
}

pub async fn produce(
    c: &mut Client,
    topic: &str,
    partition: u32,
    records: &[SignedAssertion],
) -> Result<ProduceResponse, ApiError> {
    c.call(&produce_req(topic, partition, batch_of(records)))
        .await
}
