//! A real broker in this process on `127.0.0.1:0`, a topic on it, and signed assertions.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use steme_broker::config::Config;
use steme_broker::node::{Advertised, Broker};
use steme_client::{
    Admin, Assertion, ClientConfig, ProducerConfig, SignedAssertion, SigningKey, TopicOptions,
    Value,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A broker serving on loopback until dropped or stopped.
pub struct TestBroker {
    /// Where clients connect.
    pub bootstrap: String,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestBroker {
    /// Starts a single broker with short Raft timers.
    pub async fn start() -> anyhow::Result<TestBroker> {
        let dir = tempfile::tempdir()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cfg = Config {
            listen: addr,
            data_dir: dir.path().to_owned(),
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            ..Config::default()
        };
        let broker: Arc<Broker> = Broker::start(cfg, Advertised::client(addr.to_string())).await?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(steme_broker::server::run(listener, broker, async {
            let _ = rx.await;
        }));
        Ok(TestBroker {
            bootstrap: addr.to_string(),
            _dir: dir,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        let admin = Admin::connect(&self.bootstrap, ClientConfig::default()).await?;
        admin
            .create_topic(topic, partitions, TopicOptions::default())
            .await?;
        Ok(())
    }

    /// Stops the broker and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// `n` distinct assertions signed by one key, each `text_len` bytes of text.
pub fn signed(n: u64, text_len: usize) -> anyhow::Result<Vec<SignedAssertion>> {
    let key = SigningKey::from_bytes(&[9; 32]);
    (0..n)
        .map(|i| {
            let a = Assertion {
                subject: format!("urn:test:{i}"),
                predicate: "p".into(),
                object: Value::Text("x".repeat(text_len)),
                source: "client-tests".into(),
                confidence: None,
                supersedes: None,
                issued_at: 1_700_000_000_000 + i,
            };
            Ok(a.sign(&key)?)
        })
        .collect()
}

/// Producer settings that answer quickly.
pub fn producer_config(buffer_bytes: usize) -> ProducerConfig {
    ProducerConfig {
        buffer_bytes,
        request_timeout: Duration::from_secs(10),
        ..ProducerConfig::default()
    }
}

/// Runs `f`, failing if it takes longer than `limit`.
pub async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| anyhow::anyhow!("the test took longer than {limit:?}"))?
}
