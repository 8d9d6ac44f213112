//! Cluster metadata and a connection pool: where each partition's leader is, and one
//! connection per broker.
//!
//! A [`Cluster`] bootstraps from a list of addresses (any broker answers Metadata), caches
//! brokers, topics and partition leaders, and keeps one [`Connection`] per broker, opened on
//! first use and reopened with exponential backoff after it dies. Producers, consumers and
//! the admin client share one `Cluster` (it is a cheap `Clone`).
//!
//! The cache is corrected as errors come in ([`Cluster::note_error`]): `NotLeader` with a
//! hint moves the partition to the hinted leader at once; `NotLeader` without one,
//! `UnknownPartition` and connection failures forget the leader, so the next lookup asks a
//! broker for fresh metadata.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use steme_protocol::messages::metadata::{MetadataRequest, MetadataResponse};
use steme_protocol::{ApiError, ErrorCode, RequestBody};
use tokio::time::Instant;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::ClientError;

/// Exponential backoff between attempts: `initial * 2^attempt`, capped at `max`, with up to
/// 25 % jitter so that many clients do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay (the delay doubles up to it).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The delay before attempt number `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max);
        // Cheap jitter from the clock's low bits: no RNG needed for this.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = base.mul_f64(f64::from(nanos % 250) / 1000.0);
        base.saturating_sub(jitter)
    }
}

/// Settings shared by everything that talks to the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Settings of each connection (in-flight limit, timeouts, TLS…).
    pub connection: ConnectionConfig,
    /// Timeout of metadata and admin requests.
    pub request_timeout: Duration,
    /// Backoff between reconnection attempts to one broker.
    pub reconnect_backoff: Backoff,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connection: ConnectionConfig::default(),
            request_timeout: Duration::from_secs(30),
            reconnect_backoff: Backoff::default(),
        }
    }
}

/// Splits a `host:port[,host:port...]` list, dropping blanks.
pub fn parse_bootstrap(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the cache knows about one topic: the leader of each partition (`None` = unknown or
/// being elected), indexed by partition number.
#[derive(Debug, Clone, Default)]
struct TopicLeaders {
    leaders: Vec<Option<u64>>,
}

#[derive(Debug, Default)]
struct Metadata {
    brokers: HashMap<u64, String>,
    metadata_leader: Option<u64>,
    topics: HashMap<String, TopicLeaders>,
    refreshed_at: Option<Instant>,
}

enum Lookup {
    Leader(String),
    TopicMissing,
    PartitionMissing(u32),
    NoLeader,
}

impl Metadata {
    fn lookup(&self, topic: &str, partition: u32) -> Lookup {
        let Some(t) = self.topics.get(topic) else {
            return Lookup::TopicMissing;
        };
        match t.leaders.get(partition as usize) {
            None => Lookup::PartitionMissing(t.leaders.len() as u32),
            Some(None) => Lookup::NoLeader,
            Some(Some(id)) => match self.brokers.get(id) {
                Some(addr) => Lookup::Leader(addr.clone()),
                None => Lookup::NoLeader,
            },
        }
    }

    fn merge(&mut self, resp: &MetadataResponse, asked: Option<&[String]>) {
        self.brokers = resp
            .brokers
            .iter()
            .map(|b| (b.node_id, b.addr.clone()))
            .collect();
        self.metadata_leader = resp.metadata_leader;
        match asked {
            None => self.topics.clear(),
            Some(names) => {
                for n in names {
                    self.topics.remove(n);
                }
            }
        }
        for t in &resp.topics {
            let len = t
                .partitions
                .iter()
                .map(|p| p.partition as usize + 1)
                .max()
                .unwrap_or(0);
            let mut leaders = vec![None; len];
            for p in &t.partitions {
                leaders[p.partition as usize] = p.leader;
            }
            self.topics.insert(t.name.clone(), TopicLeaders { leaders });
        }
        self.refreshed_at = Some(Instant::now());
    }
}

/// One broker's connection slot: the live connection, or when to try again.
#[derive(Default)]
struct Slot {
    conn: Option<Arc<Connection>>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Why the last attempt failed: returned at once to callers until `retry_at`, so that
    /// requests to a dead broker fail fast instead of queueing behind one another's
    /// backoff (as Kafka's client does).
    last_error: Option<(std::io::ErrorKind, String)>,
}

struct Inner {
    bootstrap: Vec<String>,
    config: ClientConfig,
    /// A std lock: read on every request, held only to copy an address out.
    metadata: RwLock<Metadata>,
    /// Per-address slots. The map lock is held only to find a slot; connecting holds the
    /// slot's own async lock, so a slow broker does not stall requests to the others.
    pool: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    /// Serialises metadata refreshes so that a burst of `NotLeader` answers costs one.
    refresh: tokio::sync::Mutex<()>,
}

/// A handle on the cluster: metadata cache plus connection pool. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), steme_client::ClientError> {
/// use steme_client::{ClientConfig, Cluster};
///
/// let cluster = Cluster::connect("127.0.0.1:9092,127.0.0.1:9093", ClientConfig::default()).await?;
/// println!("topic has {} partitions", cluster.partition_count("facts").await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.inner.bootstrap)
            .finish_non_exhaustive()
    }
}

/// If the cache was refreshed this recently, a waiting refresh is skipped: the refresh it
/// queued behind has just brought fresh metadata.
const REFRESH_COALESCE: Duration = Duration::from_millis(20);

impl Cluster {
    /// Bootstraps from a comma-separated address list: asks the listed brokers for metadata
    /// until one answers.
    pub async fn connect(bootstrap: &str, config: ClientConfig) -> Result<Cluster, ClientError> {
        let cluster = Cluster::lazy(bootstrap, config)?;
        cluster.refresh(None).await?;
        Ok(cluster)
    }

    /// A handle that contacts no broker until first used (then it fetches metadata).
    pub fn lazy(bootstrap: &str, config: ClientConfig) -> Result<Cluster, ClientError> {
        let bootstrap = parse_bootstrap(bootstrap);
        if bootstrap.is_empty() {
            return Err(ClientError::Config("the bootstrap list is empty".into()));
        }
        Ok(Cluster {
            inner: Arc::new(Inner {
                bootstrap,
                config,
                metadata: RwLock::new(Metadata::default()),
                pool: Mutex::new(HashMap::new()),
                refresh: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The settings the cluster handle was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The pooled connection to `addr`, opened (or reopened after backoff) if needed.
    pub async fn connection(&self, addr: &str) -> Result<Arc<Connection>, ClientError> {
        let slot = self
            .inner
            .pool
            .lock()
            .expect("pool lock")
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(conn) = &slot.conn {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
            slot.conn = None;
        }
        if let Some(at) = slot.retry_at
            && Instant::now() < at
        {
            let (kind, msg) = slot
                .last_error
                .clone()
                .unwrap_or((std::io::ErrorKind::Other, "connection failed".into()));
            return Err(ClientError::Connect {
                addr: addr.to_owned(),
                source: std::io::Error::new(
                    kind,
                    format!("{msg} (next attempt in {:?})", at - Instant::now()),
                ),
            });
        }
        match Connection::connect(addr, &self.inner.config.connection).await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                *slot = Slot {
                    conn: Some(conn.clone()),
                    failures: 0,
                    retry_at: None,
                    last_error: None,
                };
                Ok(conn)
            }
            Err(e) => {
                slot.retry_at =
                    Some(Instant::now() + self.inner.config.reconnect_backoff.delay(slot.failures));
                slot.failures = slot.failures.saturating_add(1);
                slot.last_error = Some(match &e {
                    ClientError::Connect { source, .. } => (source.kind(), source.to_string()),
                    other => (std::io::ErrorKind::Other, other.to_string()),
                });
                Err(e)
            }
        }
    }

    /// The longest any open connection of this handle is still held back by a broker's
    /// throttle hint (its quota for this principal), if one is: a front end such as the
    /// HTTP gateway answers "retry later" rather than queue more behind it.
    pub fn throttled_for(&self) -> Option<Duration> {
        let slots: Vec<_> = self
            .inner
            .pool
            .lock()
            .expect("pool lock")
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter_map(|slot| slot.try_lock().ok()?.conn.as_ref()?.throttled_for())
            .max()
    }

    /// Addresses to ask for metadata: known brokers first, then the bootstrap list.
    fn candidates(&self) -> Vec<String> {
        let meta = self.inner.metadata.read().expect("metadata lock");
        let mut out: Vec<String> = meta.brokers.values().cloned().collect();
        out.sort();
        for b in &self.inner.bootstrap {
            if !out.contains(b) {
                out.push(b.clone());
            }
        }
        out
    }

    /// Sends `req` to any broker that answers (known brokers first, then the bootstrap
    /// list). Connection failures move on to the next broker; a broker's error is returned.
    pub async fn call_any<R: RequestBody>(&self, req: &R) -> Result<R::Response, ClientError> {
        let candidates = self.candidates();
        let mut last = None;
        for addr in &candidates {
            let attempt = async {
                self.connection(addr)
                    .await?
                    .call(req, self.inner.config.request_timeout)
                    .await
            };
            match attempt.await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retriable() && !matches!(e, ClientError::Api(_)) => {
                    tracing::debug!(%addr, error = %e, "broker unavailable, trying the next");
                    last = Some(Box::new(e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::NoBrokers {
            tried: candidates.join(","),
            last,
        })
    }

    /// Sends `req` to the leader of the metadata group (topic creation and deletion),
    /// following `NotLeader` hints and refreshing metadata between attempts.
    pub async fn call_metadata_leader<R: RequestBody>(
        &self,
        req: &R,
    ) -> Result<R::Response, ClientError> {
        const ATTEMPTS: u32 = 6;
        let mut hint: Option<String> = None;
        let mut attempt = 0;
        loop {
            let addr = hint.take().or_else(|| {
                let meta = self.inner.metadata.read().expect("metadata lock");
                meta.metadata_leader
                    .and_then(|id| meta.brokers.get(&id).cloned())
            });
            let result = match &addr {
                Some(addr) => match self.connection(addr).await {
                    Ok(conn) => conn.call(req, self.inner.config.request_timeout).await,
                    Err(e) => Err(e),
                },
                None => self.call_any(req).await,
            };
            match result {
                Err(ClientError::Api(ApiError::NotLeader { leader, message }))
                    if attempt + 1 < ATTEMPTS =>
                {
                    tracing::debug!(?leader, %message, "not the metadata leader");
                    hint = leader.map(|l| l.addr);
                }
                Err(e) if e.is_retriable() && attempt + 1 < ATTEMPTS => {
                    tracing::debug!(error = %e, "metadata leader unavailable, retrying");
                    tokio::time::sleep(self.inner.config.reconnect_backoff.delay(attempt)).await;
                    // Best effort: the next attempt falls back to any broker anyway.
                    let _ = self.refresh(Some(&[])).await;
                }
                other => return other,
            }
            attempt += 1;
        }
    }

    /// Fetches metadata for `topics` (`None` = all topics; `Some(&[])` = brokers only) and
    /// merges it into the cache.
    pub async fn refresh(
        &self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, ClientError> {
        let resp = self
            .call_any(&MetadataRequest {
                topics: topics.map(<[String]>::to_vec),
            })
            .await?;
        self.inner
            .metadata
            .write()
            .expect("metadata lock")
            .merge(&resp, topics);
        Ok(resp)
    }

    /// Refreshes one topic's metadata, unless another task just did.
    async fn refresh_topic(&self, topic: &str) -> Result<(), ClientError> {
        let queued_at = Instant::now();
        let _guard = self.inner.refresh.lock().await;
        let fresh = self
            .inner
            .metadata
            .read()
            .expect("metadata lock")
            .refreshed_at
            .is_some_and(|t| t >= queued_at || t.elapsed() < REFRESH_COALESCE);
        if fresh && self.has_topic(topic) {
            return Ok(());
        }
        self.refresh(Some(&[topic.to_owned()])).await.map(drop)
    }

    fn has_topic(&self, topic: &str) -> bool {
        self.inner
            .metadata
            .read()
            .expect("metadata lock")
            .topics
            .contains_key(topic)
    }

    /// Number of partitions of `topic`, from the cache or fresh metadata.
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        if !self.has_topic(topic) {
            self.refresh_topic(topic).await?;
        }
        let meta = self.inner.metadata.read().expect("metadata lock");
        meta.topics
            .get(topic)
            .map(|t| t.leaders.len() as u32)
            .ok_or_else(|| ClientError::UnknownTopic {
                topic: topic.to_owned(),
            })
    }

    /// Number of partitions of `topic` in the cache as it stands (no request), if it knows
    /// the topic: what a producer checks often, to route by the count once the topic grew.
    pub fn known_partition_count(&self, topic: &str) -> Option<u32> {
        let meta = self.inner.metadata.read().expect("metadata lock");
        meta.topics.get(topic).map(|t| t.leaders.len() as u32)
    }

    /// The address of the leader of `topic`/`partition`, refreshing metadata if the cache
    /// does not know it.
    pub async fn leader_addr(&self, topic: &str, partition: u32) -> Result<String, ClientError> {
        let lookup = || {
            self.inner
                .metadata
                .read()
                .expect("metadata lock")
                .lookup(topic, partition)
        };
        if let Lookup::Leader(addr) = lookup() {
            return Ok(addr);
        }
        self.refresh_topic(topic).await?;
        match lookup() {
            Lookup::Leader(addr) => Ok(addr),
            Lookup::TopicMissing => Err(ClientError::UnknownTopic {
                topic: topic.to_owned(),
            }),
            Lookup::PartitionMissing(partitions) => Err(ClientError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions,
            }),
            Lookup::NoLeader => Err(ClientError::NoLeader {
                topic: topic.to_owned(),
                partition,
            }),
        }
    }

    /// The connection to the leader of `topic`/`partition`.
    pub async fn leader(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<Connection>, ClientError> {
        let addr = self.leader_addr(topic, partition).await?;
        self.connection(&addr).await
    }

    /// One attempt at `req` on the partition's leader; on failure the cache is corrected
    /// (see [`note_error`](Self::note_error)) so that a retry goes to the right place.
    pub async fn call_leader<R: RequestBody>(
        &self,
        topic: &str,
        partition: u32,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let result = async {
            self.leader(topic, partition)
                .await?
                .call(req, timeout)
                .await
        }
        .await;
        if let Err(e) = &result {
            self.note_error(topic, partition, e);
        }
        result
    }

    /// Merges `resp` into the cache as a refresh of `asked` would (`None` = all topics),
    /// without a broker: for tests of what reads the cache.
    #[cfg(test)]
    pub(crate) fn merge_for_test(&self, resp: &MetadataResponse, asked: Option<&[String]>) {
        self.inner
            .metadata
            .write()
            .expect("metadata lock")
            .merge(resp, asked);
    }

    /// Corrects the cache after a request to the partition's leader failed with `err`.
    pub fn note_error(&self, topic: &str, partition: u32, err: &ClientError) {
        if !err.invalidates_metadata() {
            return;
        }
        let mut meta = self.inner.metadata.write().expect("metadata lock");
        let hinted = match err {
            ClientError::Api(ApiError::NotLeader {
                leader: Some(hint), ..
            }) => {
                meta.brokers.insert(hint.node_id, hint.addr.clone());
                Some(hint.node_id)
            }
            _ => None,
        };
        if err.api_error().map(ApiError::code) == Some(ErrorCode::UnknownTopic) {
            meta.topics.remove(topic);
            return;
        }
        if let Some(slot) = meta
            .topics
            .get_mut(topic)
            .and_then(|t| t.leaders.get_mut(partition as usize))
        {
            *slot = hinted;
        }
        // Let the next lookup refresh rather than coalesce with an older refresh.
        if hinted.is_none() {
            meta.refreshed_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_protocol::LeaderHint;
    use steme_protocol::messages::metadata::{
        BrokerInfo, BrokerState, PartitionMetadata, TopicMetadata,
    };

    fn response() -> MetadataResponse {
        MetadataResponse {
            brokers: vec![
                BrokerInfo {
                    node_id: 1,
                    addr: "h1:9092".into(),
                    state: BrokerState::Active,
                },
                BrokerInfo {
                    node_id: 2,
                    addr: "h2:9092".into(),
                    state: BrokerState::Active,
                },
            ],
            metadata_leader: Some(1),
            topics: vec![TopicMetadata {
                name: "facts".into(),
                partitions: (0..3)
                    .map(|p| PartitionMetadata {
                        partition: p,
                        leader: if p == 2 { None } else { Some(1 + u64::from(p)) },
                        leader_epoch: 1,
                        replicas: vec![1, 2],
                        target: None,
                    })
                    .collect(),
                map_epoch: 0,
                splits: vec![],
            }],
        }
    }

    #[test]
    fn lookup_finds_leaders_and_names_what_is_missing() {
        let mut m = Metadata::default();
        m.merge(&response(), None);
        assert!(matches!(m.lookup("facts", 0), Lookup::Leader(a) if a == "h1:9092"));
        assert!(matches!(m.lookup("facts", 1), Lookup::Leader(a) if a == "h2:9092"));
        assert!(matches!(m.lookup("facts", 2), Lookup::NoLeader));
        assert!(matches!(m.lookup("facts", 3), Lookup::PartitionMissing(3)));
        assert!(matches!(m.lookup("other", 0), Lookup::TopicMissing));
    }

    #[test]
    fn topic_refresh_drops_a_topic_that_is_gone() {
        let mut m = Metadata::default();
        m.merge(&response(), None);
        let mut gone = response();
        gone.topics.clear();
        m.merge(&gone, Some(&["facts".to_owned()]));
        assert!(matches!(m.lookup("facts", 0), Lookup::TopicMissing));
    }

    #[tokio::test]
    async fn not_leader_hint_is_used_immediately() {
        let cluster = Cluster::lazy("h1:9092", ClientConfig::default()).unwrap();
        cluster
            .inner
            .metadata
            .write()
            .unwrap()
            .merge(&response(), None);
        let err = ClientError::Api(ApiError::NotLeader {
            leader: Some(LeaderHint {
                node_id: 3,
                addr: "h3:9092".into(),
            }),
            message: String::new(),
        });
        cluster.note_error("facts", 0, &err);
        assert_eq!(cluster.leader_addr("facts", 0).await.unwrap(), "h3:9092");
        // Without a hint the leader is forgotten (the next lookup would refresh).
        let err = ClientError::Api(ApiError::NotLeader {
            leader: None,
            message: String::new(),
        });
        cluster.note_error("facts", 1, &err);
        let m = cluster.inner.metadata.read().unwrap();
        assert!(matches!(m.lookup("facts", 1), Lookup::NoLeader));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let d0 = b.delay(0);
        assert!(d0 <= Duration::from_millis(100) && d0 >= Duration::from_millis(75));
        let d2 = b.delay(2);
        assert!(d2 <= Duration::from_millis(400) && d2 >= Duration::from_millis(300));
        assert!(b.delay(30) <= Duration::from_secs(1));
    }

    #[test]
    fn bootstrap_list_parses() {
        assert_eq!(
            parse_bootstrap(" a:1, b:2,,"),
            vec!["a:1".to_owned(), "b:2".to_owned()]
        );
    }
}
