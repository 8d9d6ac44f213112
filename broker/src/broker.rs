//! The broker: the metadata group, the partitions this broker hosts, and the request
//! handlers. Connections ([`crate::server`]) decode frames and call [`Broker::handle`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{BasicNode, ServerState};
use steme_protocol::assertion::{BatchVerifier, subject_of};
use steme_protocol::messages::api_versions::{ApiVersionsRequest, ApiVersionsResponse};
use steme_protocol::messages::commit_offsets::{CommitOffsetsRequest, CommitOffsetsResponse};
use steme_protocol::messages::create_topic::{
    ConfigEntry, CreateTopicRequest, CreateTopicResponse,
};
use steme_protocol::messages::delete_group::{DeleteGroupRequest, DeleteGroupResponse};
use steme_protocol::messages::delete_topic::{DeleteTopicRequest, DeleteTopicResponse};
use steme_protocol::messages::describe_group::{DescribeGroupRequest, DescribeGroupResponse};
use steme_protocol::messages::describe_topic::{DescribeTopicRequest, DescribeTopicResponse};
use steme_protocol::messages::fetch::{FetchRequest, FetchResponse};
use steme_protocol::messages::fetch_offsets::{FetchOffsetsRequest, FetchOffsetsResponse};
use steme_protocol::messages::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use steme_protocol::messages::leave_group::{LeaveGroupRequest, LeaveGroupResponse};
use steme_protocol::messages::list_groups::ListGroupsResponse;
use steme_protocol::messages::list_offsets::OffsetSpec;
use steme_protocol::messages::list_offsets::{ListOffsetsRequest, ListOffsetsResponse};
use steme_protocol::messages::metadata::{
    BrokerInfo, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata,
};
use steme_protocol::messages::produce::{ProduceRequest, ProduceResponse};
use steme_protocol::messages::{Body, Request, encode_response};
use steme_protocol::{ApiError, AssertionId, ErrorCode, RecordBatch, partition_for};
use steme_segments::{FileIo, FlushPolicy, Log, LogConfig, RealIo};
use tokio::sync::{oneshot, watch};

use crate::config::{Config, FlushMode};
use crate::groups::{Coordinator, GROUPS_TOPIC};
use crate::hlc::Clock;
use crate::metadata::{Command, METADATA_GROUP, MetadataSm, MetadataState};
use crate::partition::{OpenError, Partition, PartitionCtx, Placement, ProduceJob};
use crate::raft::inbound::GroupRaft;
use crate::raft::log_store::{GroupKind, GroupLog, LogStore, Syncer};
use crate::raft::network::{Resolver, Transport};
use crate::raft::raft_config;
use crate::raft::rpc::{Forwarded, RaftRpc};
use crate::raft::types::{Applied, NodeId, Proposal};

pub type MetaRaft = openraft::Raft<crate::raft::types::TypeConfig, MetadataSm>;

/// How often failed partitions are looked for and reopened.
const HEALTH_TICK: Duration = Duration::from_millis(250);
/// How long metadata changes and topic creation may take before the request fails.
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes a Raft append frame adds around one batch (frame, group, RPC and entry headers),
/// rounded up.
const RAFT_FRAMING: usize = 256;
/// Voters of the metadata group; further brokers follow it as learners (D9).
const MAX_METADATA_VOTERS: usize = 5;

/// A response body ready to write: `head` then `tail` chunks, sent without copying them.
pub struct Reply {
    pub head: BytesMut,
    pub tail: Vec<Bytes>,
}

impl Reply {
    pub fn ok<B: Body>(body: B) -> Reply {
        Reply::of(Ok(body))
    }

    fn of<B: Body>(result: Result<B, ApiError>) -> Reply {
        let mut head = BytesMut::new();
        encode_response(&result, &mut head);
        Reply {
            head,
            tail: Vec::new(),
        }
    }

    pub fn error(e: ApiError) -> Reply {
        Reply::of::<()>(Err(e))
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata log: {0}")]
    MetadataLog(#[from] steme_segments::Error),
    #[error("metadata: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
    #[error("partition {topic}-{partition}: {source}")]
    Partition {
        topic: String,
        partition: u32,
        #[source]
        source: OpenError,
    },
}

/// One running broker.
pub struct Broker {
    cfg: Config,
    advertised: String,
    clock: Arc<Clock>,
    meta: MetaRaft,
    meta_state: watch::Receiver<Arc<MetadataState>>,
    /// Partitions hosted here, by (topic, partition). A std lock: held only to clone an
    /// `Arc` out or to insert/remove.
    partitions: RwLock<HashMap<(String, u32), Arc<Partition>>>,
    /// The same partitions by Raft group, for the transport.
    by_group: RwLock<HashMap<u64, Arc<Partition>>>,
    /// Partitions whose storage failed and that are being reopened, with why.
    failed: RwLock<HashMap<(String, u32), Failed>>,
    transport: Arc<Transport>,
    ctx: PartitionCtx,
    /// Group coordinators loaded here, by partition of the groups topic (D10).
    coordinators: tokio::sync::Mutex<HashMap<u32, Arc<Coordinator>>>,
    /// Signs the group records this broker stores.
    group_key: steme_protocol::SigningKey,
    /// A client of the cluster, for high watermarks of partitions not hosted here.
    client: steme_client::Admin,
}

/// A partition whose storage failed: why, and what is known durable.
#[derive(Debug, Clone)]
struct Failed {
    reason: String,
    durable: Option<u64>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.cfg.node_id)
            .field("advertised", &self.advertised)
            .finish()
    }
}

fn log_config(cfg: &Config) -> LogConfig {
    LogConfig {
        segment_bytes: cfg.segment_bytes,
        retention_bytes: cfg.retention_bytes,
        retention_age: cfg.retention_ms.map(Duration::from_millis),
        flush: match cfg.flush {
            FlushMode::Always => FlushPolicy::Never,
            FlushMode::Interval => FlushPolicy::Interval {
                ms: cfg.flush_interval_ms,
                bytes: 1 << 20,
            },
        },
        ..LogConfig::default()
    }
}

impl Broker {
    /// Opens the data directory, starts the metadata group and every hosted partition.
    /// `advertised` is the address clients and peers reach this broker at.
    pub async fn start(cfg: Config, advertised: String) -> Result<Arc<Broker>, StartError> {
        Broker::start_with_io(cfg, advertised, Arc::new(RealIo)).await
    }

    /// [`Broker::start`] with the partition logs' file I/O given (tests inject faults).
    pub async fn start_with_io(
        cfg: Config,
        advertised: String,
        io: Arc<dyn FileIo>,
    ) -> Result<Arc<Broker>, StartError> {
        let data = cfg.data_dir.clone();
        std::fs::create_dir_all(data.join("topics")).map_err(|source| StartError::DataDir {
            path: data.clone(),
            source,
        })?;
        let syncer = Syncer::start()?;
        let raft_config = raft_config(&cfg).map_err(|e| StartError::Raft(e.to_string()))?;
        let ack_before_sync = cfg.flush == FlushMode::Interval;

        // The metadata group (D9).
        let meta_dir = data.join("metadata");
        let mut meta_log_cfg = log_config(&cfg);
        meta_log_cfg.segment_bytes = 16 << 20;
        meta_log_cfg.flush = FlushPolicy::Never;
        let log_dir = meta_dir.join("log");
        let (log, _) = tokio::task::spawn_blocking(move || {
            Log::open(&log_dir, meta_log_cfg, Arc::new(RealIo))
        })
        .await
        .map_err(std::io::Error::other)??;
        let glog = GroupLog::new(METADATA_GROUP, GroupKind::Metadata, log)?;
        let (sm, meta_state) = MetadataSm::open(&meta_dir)?;
        let store = LogStore::new(glog, syncer.clone(), false);

        // Where the other brokers are: this broker's own `--peer` list first (it may name a
        // different route, such as a proxy), then what the metadata records.
        let peers: BTreeMap<NodeId, String> =
            cfg.peers.iter().map(|p| (p.id, p.addr.clone())).collect();
        let brokers_rx = meta_state.clone();
        let self_id = cfg.node_id;
        let self_addr = advertised.clone();
        let known_peers = peers.clone();
        let resolve: Resolver = Arc::new(move |id| {
            if id == self_id {
                return Some(self_addr.clone());
            }
            known_peers
                .get(&id)
                .cloned()
                .or_else(|| brokers_rx.borrow().brokers.get(&id).cloned())
        });
        let transport = Transport::new(resolve.clone(), cfg.max_frame_bytes);
        let meta = MetaRaft::new(
            cfg.node_id,
            raft_config.clone(),
            transport.network(METADATA_GROUP),
            store,
            sm,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        if !meta
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?
        {
            let mut members: BTreeMap<NodeId, BasicNode> = peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            members.insert(
                cfg.node_id,
                BasicNode {
                    addr: advertised.clone(),
                },
            );
            // A new cluster is initialised exactly once, by its lowest broker id; the others
            // join when it reaches them. A restarted broker finds its group initialised.
            if members.keys().next() == Some(&cfg.node_id) {
                let voters = members.iter().take(MAX_METADATA_VOTERS);
                let voters: BTreeMap<NodeId, BasicNode> =
                    voters.map(|(id, n)| (*id, n.clone())).collect();
                tracing::info!(voters = ?voters.keys().collect::<Vec<_>>(), "initialising the cluster");
                meta.initialize(voters)
                    .await
                    .map_err(|e| StartError::Raft(e.to_string()))?;
                let learners: Vec<(NodeId, BasicNode)> =
                    members.into_iter().skip(MAX_METADATA_VOTERS).collect();
                if !learners.is_empty() {
                    tokio::spawn(add_learners(meta.clone(), learners));
                }
            }
        }

        let (leaders_tx, leaders_rx) = tokio::sync::mpsc::unbounded_channel();
        let self_advertised = advertised.clone();
        let ctx = PartitionCtx {
            node_id: cfg.node_id,
            clock: Arc::new(Clock::new(cfg.node_id, cfg.max_clock_skew())),
            syncer,
            raft_config,
            retention_check: Duration::from_millis(cfg.retention_check_ms),
            ack_before_sync,
            brokers: resolve,
            io,
            transport: transport.clone(),
            leaders: leaders_tx,
        };
        let broker = Arc::new(Broker {
            clock: ctx.clock.clone(),
            cfg,
            advertised,
            meta,
            meta_state,
            partitions: RwLock::new(HashMap::new()),
            by_group: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            transport,
            ctx,
            coordinators: tokio::sync::Mutex::new(HashMap::new()),
            group_key: {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| StartError::Raft(e.to_string()))?;
                steme_protocol::SigningKey::from_bytes(&seed)
            },
            client: steme_client::Admin::new(
                steme_client::Cluster::lazy(
                    &self_advertised,
                    steme_client::ClientConfig::default(),
                )
                .map_err(|e| StartError::Raft(e.to_string()))?,
            ),
        });
        if broker.cfg.peers.is_empty() {
            broker.register().await?;
        } else {
            // A cluster member cannot register before a quorum is up; it serves meanwhile.
            tokio::spawn(Broker::register_loop(Arc::downgrade(&broker)));
        }
        broker.reconcile().await?;
        tokio::spawn(Broker::reconcile_loop(Arc::downgrade(&broker)));
        tokio::spawn(Broker::report_leaders(Arc::downgrade(&broker), leaders_rx));
        tokio::spawn(Broker::expire_loop(Arc::downgrade(&broker)));
        if broker.cfg.leader_rebalance_ms > 0 {
            let every = Duration::from_millis(broker.cfg.leader_rebalance_ms);
            tokio::spawn(Broker::rebalance_loop(Arc::downgrade(&broker), every));
        }
        Ok(broker)
    }

    async fn register_loop(weak: std::sync::Weak<Broker>) {
        loop {
            let Some(broker) = weak.upgrade() else { return };
            match broker.register().await {
                Ok(()) => return,
                Err(e) => tracing::info!(error = %e, "not registered yet; retrying"),
            }
            drop(broker);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Records in the metadata each partition leadership this broker wins, so that every
    /// broker can name every partition's leader (Kafka's leader and leader epoch).
    async fn report_leaders(
        weak: std::sync::Weak<Broker>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<(u64, u64)>,
    ) {
        while let Some((group, term)) = rx.recv().await {
            let Some(broker) = weak.upgrade() else { return };
            let cmd = Command::PartitionLeader {
                group,
                node: broker.cfg.node_id,
                term,
            };
            tokio::spawn(async move {
                for _ in 0..10 {
                    let Err(e) = broker.propose_metadata(cmd.clone()).await else {
                        return;
                    };
                    if e.code() != ErrorCode::NotLeader && e.code() != ErrorCode::Timeout {
                        // Stale (a newer leader reported) or the topic is gone.
                        tracing::debug!(group, term, error = %e, "leader report refused");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
    }

    /// Moves leadership back to each partition's preferred replica (the first) once it is
    /// caught up, so that leaders stay spread after a failover.
    async fn rebalance_loop(weak: std::sync::Weak<Broker>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let Some(broker) = weak.upgrade() else { return };
            let led: Vec<Arc<Partition>> = broker
                .partitions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|p| p.leader().0 == Some(broker.cfg.node_id))
                .cloned()
                .collect();
            for p in led {
                p.hand_back_leadership().await;
            }
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Records this broker's address in the metadata, once the group has a leader.
    async fn register(&self) -> Result<(), StartError> {
        let known = self
            .meta_state
            .borrow()
            .brokers
            .get(&self.cfg.node_id)
            .cloned();
        if known.as_deref() == Some(self.advertised.as_str()) {
            return Ok(());
        }
        let cmd = Command::RegisterBroker {
            id: self.cfg.node_id,
            addr: self.advertised.clone(),
        };
        self.propose_metadata(cmd)
            .await
            .map_err(|e| StartError::Raft(format!("registering broker: {e}")))
    }

    /// Proposes a metadata command and waits until it is applied: here if this broker
    /// leads the metadata group, else forwarded to the leader.
    async fn propose_metadata(&self, cmd: Command) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + METADATA_TIMEOUT;
        let Proposal(bytes) = cmd.encode();
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(ApiError::other(
                    ErrorCode::Timeout,
                    "metadata change not committed in time (is a quorum of brokers up?)",
                ));
            }
            let leader = self.meta.metrics().borrow_watched().current_leader;
            let outcome = match leader {
                Some(l) if l != self.cfg.node_id => {
                    match self.transport.forward(l, bytes.clone(), remaining).await {
                        Ok(f) => f,
                        Err(e) => Forwarded::Failed(e.to_string()),
                    }
                }
                _ => self.propose_here(bytes.clone(), remaining).await,
            };
            match outcome {
                Forwarded::Applied => return Ok(()),
                Forwarded::Refused(msg) => return Err(metadata_refusal(msg)),
                Forwarded::NotLeader(_) | Forwarded::Failed(_) => {
                    // No leader yet, or it just changed: retry until the deadline.
                    tracing::debug!(?outcome, "metadata proposal not applied; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Proposes a metadata command to the local metadata group.
    async fn propose_here(&self, cmd: bytes::Bytes, timeout: Duration) -> Forwarded {
        match tokio::time::timeout(timeout, self.meta.client_write(Proposal(cmd))).await {
            Err(_) => Forwarded::Failed("metadata change not committed in time".into()),
            Ok(Ok(resp)) => match resp.data {
                Applied::Metadata(Ok(())) => Forwarded::Applied,
                Applied::Metadata(Err(msg)) => Forwarded::Refused(msg),
                other => Forwarded::Failed(format!("metadata command applied as {other:?}")),
            },
            Ok(Err(e)) => match e.forward_to_leader() {
                Some(f) => Forwarded::NotLeader(f.leader_id),
                None => Forwarded::Failed(e.to_string()),
            },
        }
    }

    /// The Raft group `group`, if this broker hosts it.
    pub fn group_raft(&self, group: u64) -> Option<GroupRaft> {
        if group == METADATA_GROUP {
            return Some(GroupRaft::Meta(self.meta.clone()));
        }
        self.by_group
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .map(|p| GroupRaft::Partition(p.raft().clone()))
    }

    /// Answers a Raft RPC from a peer (other than a stream append, see `server`).
    pub async fn handle_raft(&self, group: u64, rpc: RaftRpc) -> Reply {
        let answer = match rpc {
            RaftRpc::Forward(cmd) if group == METADATA_GROUP => {
                RaftRpc::Forwarded(self.propose_here(cmd, METADATA_TIMEOUT).await)
            }
            rpc => match self.group_raft(group) {
                Some(g) => g.serve(rpc).await,
                None => RaftRpc::Refused(format!(
                    "group {group} is not open on broker {}",
                    self.cfg.node_id
                )),
            },
        };
        Reply::ok(steme_protocol::messages::raft::RaftResponse {
            payload: answer.encode(),
        })
    }

    async fn reconcile_loop(weak: std::sync::Weak<Broker>) {
        let Some(mut rx) = weak.upgrade().map(|b| b.meta_state.clone()) else {
            return;
        };
        loop {
            // Metadata changes open and close partitions at once; the tick reopens
            // partitions whose storage failed (e.g. once disk space returns).
            let changed = tokio::time::timeout(HEALTH_TICK, rx.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                return;
            }
            let Some(broker) = weak.upgrade() else { return };
            broker.check_health().await;
            if let Err(e) = broker.reconcile().await {
                tracing::error!(error = %e, "could not open a partition; retrying");
            }
        }
    }

    /// The broker's log settings with a topic's overrides.
    fn topic_log_config(&self, t: &crate::metadata::TopicMeta) -> LogConfig {
        let mut c = log_config(&self.cfg);
        if let Some(b) = t.config_u64("retention.bytes") {
            c.retention_bytes = Some(b);
        }
        if let Some(ms) = t.config_u64("retention.ms") {
            c.retention_age = Some(Duration::from_millis(ms));
        }
        if let Some(b) = t.config_u64("segment.bytes") {
            c.segment_bytes = b;
        }
        c
    }

    fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.cfg
            .data_dir
            .join("topics")
            .join(format!("{topic}-{partition}"))
    }

    /// Opens the partitions the metadata places here and closes (and deletes) the ones it
    /// no longer has.
    async fn reconcile(&self) -> Result<(), StartError> {
        let state = self.meta_state.borrow().clone();
        let me = self.cfg.node_id;
        let mut wanted = Vec::new();
        for t in state.topics.values() {
            for (p, meta) in t.partitions.iter().enumerate() {
                if meta.replicas.contains(&me) {
                    wanted.push((
                        t.name.clone(),
                        p as u32,
                        meta.group,
                        meta.replicas.clone(),
                        self.topic_log_config(t),
                    ));
                }
            }
        }
        let stale: Vec<Arc<Partition>> = {
            let parts = self.partitions.read().unwrap_or_else(|p| p.into_inner());
            parts
                .values()
                .filter(|p| {
                    state
                        .topics
                        .get(&p.topic)
                        .and_then(|t| t.partitions.get(p.partition as usize))
                        .is_none_or(|m| m.group != p.group)
                })
                .cloned()
                .collect()
        };
        for p in stale {
            self.unhost(&p);
            p.shutdown().await;
            let dir = self.partition_dir(&p.topic, p.partition);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted partition");
            }
            tracing::info!(topic = %p.topic, partition = p.partition, "partition deleted");
        }
        for (topic, partition, group, replicas, topic_log) in wanted {
            let key = (topic.clone(), partition);
            if self
                .partitions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&key)
            {
                continue;
            }
            let dir = self.partition_dir(&topic, partition);
            let failed = self
                .failed
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            let place = Placement {
                topic: topic.clone(),
                partition,
                group,
                replicas,
                log: topic_log,
            };
            let opened = Partition::open(
                self.ctx.clone(),
                &dir,
                place,
                failed.as_ref().map(|f| f.durable.unwrap_or(0)),
            )
            .await;
            let p = match opened {
                Ok(p) => p,
                Err(source) => {
                    if let Some(f) = failed {
                        tracing::warn!(topic = %topic, partition, error = %source, was = %f.reason, "partition still failing");
                        continue;
                    }
                    return Err(StartError::Partition {
                        topic: topic.clone(),
                        partition,
                        source,
                    });
                }
            };
            if failed.is_some() {
                tracing::info!(topic = %topic, partition, "partition recovered after a storage failure");
            } else {
                tracing::info!(topic = %topic, partition, group, "partition open");
            }
            self.failed
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            self.by_group
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(p.group, p.clone());
            self.partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, p);
        }
        Ok(())
    }

    /// Takes a partition out of the maps (the caller shuts it down).
    fn unhost(&self, p: &Arc<Partition>) {
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(p.topic.clone(), p.partition));
        let mut by_group = self.by_group.write().unwrap_or_else(|p| p.into_inner());
        if by_group.get(&p.group).is_some_and(|q| Arc::ptr_eq(q, p)) {
            by_group.remove(&p.group);
        }
    }

    /// Takes partitions whose Raft group stopped on a storage error out of service; the
    /// next reconcile reopens them from what is durable.
    async fn check_health(&self) {
        let broken: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|p| p.failure().is_some())
            .cloned()
            .collect();
        for p in broken {
            let reason = p.failure().unwrap_or_default();
            let durable = p.durable_index();
            tracing::error!(topic = %p.topic, partition = p.partition, %reason, ?durable, "partition storage failed; reopening");
            let key = (p.topic.clone(), p.partition);
            self.failed
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), Failed { reason, durable });
            self.unhost(&p);
            p.shutdown().await;
        }
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, ApiError> {
        if let Some(p) = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic.to_owned(), partition))
        {
            return Ok(p.clone());
        }
        if let Some(f) = self
            .failed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic.to_owned(), partition))
        {
            return Err(ApiError::other(
                ErrorCode::Storage,
                format!(
                    "{topic}-{partition} is recovering from a storage failure: {}",
                    f.reason
                ),
            ));
        }
        let state = self.meta_state.borrow().clone();
        match state.topics.get(topic) {
            None => Err(ApiError::other(
                ErrorCode::UnknownTopic,
                format!("unknown topic `{topic}`"),
            )),
            Some(t) if partition as usize >= t.partitions.len() => Err(ApiError::other(
                ErrorCode::UnknownPartition,
                format!("topic `{topic}` has {} partitions", t.partitions.len()),
            )),
            Some(_) => Err(ApiError::NotLeader {
                leader: None,
                message: format!(
                    "{topic}-{partition} is not hosted on broker {}",
                    self.cfg.node_id
                ),
            }),
        }
    }

    /// Stops every group and flushes every log.
    pub async fn shutdown(&self) {
        let parts: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for p in parts {
            p.shutdown().await;
        }
        if let Err(e) = self.meta.shutdown().await {
            tracing::warn!(error = %e, "metadata raft shutdown");
        }
        self.transport.shutdown();
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Reply {
        match req {
            Request::ApiVersions(r) => Reply::of(Ok(self.api_versions(r))),
            Request::Metadata(r) => Reply::of(Ok(self.metadata(r))),
            Request::CreateTopic(r) => Reply::of(self.create_topic(r).await),
            Request::DeleteTopic(r) => Reply::of(self.delete_topic(r).await),
            Request::DescribeTopic(r) => Reply::of(self.describe_topic(r)),
            Request::Produce(r) => Reply::of(self.produce(r).await),
            Request::Fetch(r) => self.fetch(r).await,
            Request::ListOffsets(r) => Reply::of(self.list_offsets(r)),
            Request::Heartbeat(r) => Reply::of(self.group_heartbeat(r).await),
            Request::CommitOffsets(r) => Reply::of(self.commit_offsets(r).await),
            Request::FetchOffsets(r) => Reply::of(self.fetch_offsets(r).await),
            Request::LeaveGroup(r) => Reply::of(self.leave_group(r).await),
            Request::ListGroups(_) => Reply::of(self.list_groups().await),
            Request::DescribeGroup(r) => Reply::of(self.describe_group(r).await),
            Request::DeleteGroup(r) => Reply::of(self.delete_group(r).await),
            other => Reply::error(ApiError::other(
                ErrorCode::InvalidRequest,
                format!("{:?} is not served here", other.api_key()),
            )),
        }
    }

    fn api_versions(&self, r: ApiVersionsRequest) -> ApiVersionsResponse {
        tracing::debug!(client = %r.client_name, version = %r.client_version, "handshake");
        ApiVersionsResponse::new(self.cfg.node_id, "steme")
    }

    fn metadata(&self, r: MetadataRequest) -> MetadataResponse {
        let state = self.meta_state.borrow().clone();
        let brokers = state
            .brokers
            .iter()
            .map(|(id, addr)| BrokerInfo {
                node_id: *id,
                addr: addr.clone(),
            })
            .collect();
        let metadata_leader = self.meta.metrics().borrow_watched().current_leader;
        let wanted = |name: &String| r.topics.as_ref().is_none_or(|ts| ts.contains(name));
        let topics = state
            .topics
            .values()
            .filter(|t| wanted(&t.name))
            .map(|t| TopicMetadata {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let (leader, leader_epoch) = self.leader_of(&state, &t.name, i as u32);
                        PartitionMetadata {
                            partition: i as u32,
                            leader,
                            leader_epoch,
                            replicas: m.replicas.clone(),
                        }
                    })
                    .collect(),
            })
            .collect();
        MetadataResponse {
            brokers,
            metadata_leader,
            topics,
        }
    }

    /// A partition's leader and term: this broker's own view if it hosts the partition and
    /// knows a leader at least as recent as the metadata's record, else the record.
    fn leader_of(&self, state: &MetadataState, topic: &str, partition: u32) -> (Option<u64>, u64) {
        let recorded = state
            .group_of(topic, partition)
            .and_then(|m| state.leaders.get(&m.group))
            .map_or((None, 0), |l| (Some(l.node), l.term));
        match self.partition(topic, partition).map(|p| p.leader()) {
            Ok((Some(l), term)) if term >= recorded.1 => (Some(l), term),
            _ => recorded,
        }
    }

    async fn create_topic(&self, r: CreateTopicRequest) -> Result<CreateTopicResponse, ApiError> {
        let partitions = if r.partitions == 0 {
            self.cfg.default_partitions
        } else {
            r.partitions
        };
        let configs: BTreeMap<String, String> =
            r.configs.into_iter().map(|c| (c.key, c.value)).collect();
        self.propose_metadata(Command::CreateTopic {
            name: r.name.clone(),
            partitions,
            replication_factor: r.replication_factor,
            configs,
            max_replicas_per_broker: Some(self.cfg.max_partitions_per_broker),
        })
        .await?;
        // Answer once every local partition is open and has a leader, so the topic can be
        // used at once.
        let deadline = tokio::time::Instant::now() + METADATA_TIMEOUT;
        let mut rx = self.meta_state.clone();
        loop {
            let state = self.meta_state.borrow().clone();
            let ready = (0..partitions).all(|p| self.leader_of(&state, &r.name, p).0.is_some());
            if ready {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::other(
                    ErrorCode::Timeout,
                    format!(
                        "topic `{}` created but its partitions are not all led yet",
                        r.name
                    ),
                ));
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), rx.changed()).await;
        }
        let rf = self
            .meta_state
            .borrow()
            .topics
            .get(&r.name)
            .map_or(0, |t| t.replication_factor);
        Ok(CreateTopicResponse {
            name: r.name,
            partitions,
            replication_factor: rf,
        })
    }

    async fn delete_topic(&self, r: DeleteTopicRequest) -> Result<DeleteTopicResponse, ApiError> {
        self.propose_metadata(Command::DeleteTopic { name: r.name })
            .await?;
        Ok(DeleteTopicResponse {})
    }

    fn describe_topic(&self, r: DescribeTopicRequest) -> Result<DescribeTopicResponse, ApiError> {
        let state = self.meta_state.borrow().clone();
        let t = state.topics.get(&r.name).ok_or_else(|| {
            ApiError::other(
                ErrorCode::UnknownTopic,
                format!("unknown topic `{}`", r.name),
            )
        })?;
        // The partitions hosted here, as this replica sees them; a cluster view asks every
        // broker (`steme cluster status`).
        let partitions = (0..t.partitions.len() as u32)
            .filter_map(|p| self.partition(&t.name, p).ok().map(|p| p.describe()))
            .collect();
        Ok(DescribeTopicResponse {
            name: t.name.clone(),
            configs: t
                .configs
                .iter()
                .map(|(k, v)| ConfigEntry {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            partitions,
        })
    }

    async fn produce(&self, r: ProduceRequest) -> Result<ProduceResponse, ApiError> {
        let p = self.partition(&r.topic, r.partition)?;
        let (count, verify) = {
            let state = self.meta_state.borrow();
            let t = state.topics.get(&r.topic).ok_or_else(|| {
                ApiError::other(
                    ErrorCode::UnknownTopic,
                    format!("unknown topic `{}`", r.topic),
                )
            })?;
            (
                t.partitions.len() as u32,
                t.config_bool("verify.signatures", self.cfg.verify_signatures),
            )
        };
        // Leadership is checked again by the writer; failing early saves the verification.
        if p.leader().0 != Some(self.cfg.node_id) {
            return Err(ApiError::NotLeader {
                leader: p.leader().0.and_then(|id| {
                    (self.ctx.brokers)(id)
                        .map(|addr| steme_protocol::LeaderHint { node_id: id, addr })
                }),
                message: format!(
                    "broker {} does not lead {}-{}",
                    self.cfg.node_id, r.topic, r.partition
                ),
            });
        }
        // A batch travels to followers inside a Raft frame, with a little more framing
        // than a produce request has; refuse now what could never be replicated.
        let max_batch = self.cfg.max_frame_bytes.saturating_sub(RAFT_FRAMING);
        if r.batch.len() > max_batch {
            return Err(ApiError::other(
                ErrorCode::InvalidRequest,
                format!(
                    "batch of {} bytes exceeds the {max_batch} bytes a replicated batch may have",
                    r.batch.len()
                ),
            ));
        }
        let batch = RecordBatch::new(r.batch)
            .map_err(|e| ApiError::other(ErrorCode::CorruptBatch, e.to_string()))?;
        let partition = r.partition;
        // Partition check, ids and signatures: CPU work, off the async workers (D5).
        let (batch, ids) = tokio::task::spawn_blocking(move || {
            check_batch(&batch, partition, count, verify).map(|ids| (batch, ids))
        })
        .await
        .map_err(|e| ApiError::other(ErrorCode::Internal, e.to_string()))??;
        let (reply, rx) = oneshot::channel();
        p.produce(ProduceJob {
            batch,
            ids,
            causality: r.causality,
            reply,
        })
        .await;
        rx.await
            .map_err(|_| ApiError::other(ErrorCode::ShuttingDown, "partition closed"))?
    }

    async fn fetch(&self, r: FetchRequest) -> Reply {
        let p = match self.partition(&r.topic, r.partition) {
            Ok(p) => p,
            Err(e) => return Reply::error(e),
        };
        let max_wait = Duration::from_millis(u64::from(r.max_wait_ms.min(60_000)));
        match p.fetch(r.offset, r.max_bytes, max_wait).await {
            Err(e) => Reply::error(e),
            Ok(f) => {
                let records = f.batches.iter().map(Bytes::len).sum::<usize>();
                // The FetchResponse layout, with the records written from the segments as
                // they are (zero copy).
                let mut head = BytesMut::with_capacity(32);
                head.put_u16_le(ErrorCode::None as u16);
                FetchResponse::encode_head_parts(
                    f.high_watermark,
                    f.log_start_offset,
                    records,
                    &mut head,
                );
                Reply {
                    head,
                    tail: f.batches,
                }
            }
        }
    }

    fn list_offsets(&self, r: ListOffsetsRequest) -> Result<ListOffsetsResponse, ApiError> {
        Ok(self.partition(&r.topic, r.partition)?.list_offsets(r.spec))
    }

    /// How many partitions `topic` has, if it exists.
    fn partitions_of(&self, topic: &str) -> Option<u32> {
        self.meta_state
            .borrow()
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as u32)
    }

    /// The coordinator of `group`, if this broker leads its partition of the groups topic
    /// (loading the partition's groups when it just became leader). Creates the groups
    /// topic on first use.
    async fn coordinator(&self, group: &str) -> Result<Arc<Coordinator>, ApiError> {
        if group.is_empty() || group.len() > 249 {
            return Err(ApiError::other(
                ErrorCode::InvalidRequest,
                "a group id is 1 to 249 bytes",
            ));
        }
        let n = match self.partitions_of(GROUPS_TOPIC) {
            Some(n) => n,
            None => {
                let created = self
                    .propose_metadata(Command::CreateTopic {
                        name: GROUPS_TOPIC.to_owned(),
                        partitions: self.cfg.group_partitions,
                        replication_factor: 0,
                        configs: BTreeMap::from([(
                            "verify.signatures".to_owned(),
                            "false".to_owned(),
                        )]),
                        max_replicas_per_broker: Some(self.cfg.max_partitions_per_broker),
                    })
                    .await;
                if let Err(e) = created
                    && e.code() != ErrorCode::TopicExists
                {
                    return Err(e);
                }
                return Err(ApiError::other(
                    ErrorCode::NotCoordinator,
                    "the groups topic was just created; look up the coordinator again",
                ));
            }
        };
        let p = partition_for(group, n);
        let not_here = |leader: Option<u64>| {
            ApiError::other(
                ErrorCode::NotCoordinator,
                format!(
                    "group {group} is coordinated by the leader of {GROUPS_TOPIC}/{p} ({}), not broker {}",
                    leader.map_or_else(|| "none yet".to_owned(), |l| format!("broker {l}")),
                    self.cfg.node_id
                ),
            )
        };
        let part = self
            .partition(GROUPS_TOPIC, p)
            .map_err(|_| not_here(None))?;
        let (leader, term) = part.leader();
        if leader != Some(self.cfg.node_id) {
            return Err(not_here(leader));
        }
        let mut coords = self.coordinators.lock().await;
        if let Some(c) = coords.get(&p)
            && c.is_for(&part, term)
        {
            return Ok(c.clone());
        }
        let c = Arc::new(Coordinator::load(part, term, self.group_key.clone()).await?);
        coords.insert(p, c.clone());
        Ok(c)
    }

    async fn group_heartbeat(&self, r: HeartbeatRequest) -> Result<HeartbeatResponse, ApiError> {
        let c = self.coordinator(&r.group).await?;
        c.heartbeat(r, &|t| self.partitions_of(t)).await
    }

    async fn commit_offsets(
        &self,
        r: CommitOffsetsRequest,
    ) -> Result<CommitOffsetsResponse, ApiError> {
        self.coordinator(&r.group).await?.commit(r).await
    }

    async fn fetch_offsets(
        &self,
        r: FetchOffsetsRequest,
    ) -> Result<FetchOffsetsResponse, ApiError> {
        Ok(self.coordinator(&r.group).await?.fetch_offsets(r).await)
    }

    async fn leave_group(&self, r: LeaveGroupRequest) -> Result<LeaveGroupResponse, ApiError> {
        let c = self.coordinator(&r.group).await?;
        c.leave(&r.group, &r.member_id, &|t| self.partitions_of(t))
            .await?;
        Ok(LeaveGroupResponse {})
    }

    async fn delete_group(&self, r: DeleteGroupRequest) -> Result<DeleteGroupResponse, ApiError> {
        self.coordinator(&r.group).await?.delete(&r.group).await?;
        Ok(DeleteGroupResponse {})
    }

    /// The groups coordinated by this broker (a cluster-wide list asks every broker).
    async fn list_groups(&self) -> Result<ListGroupsResponse, ApiError> {
        let n = self.partitions_of(GROUPS_TOPIC).unwrap_or(0);
        let mut groups = Vec::new();
        for p in 0..n {
            let Ok(part) = self.partition(GROUPS_TOPIC, p) else {
                continue;
            };
            if part.leader().0 != Some(self.cfg.node_id) {
                continue;
            }
            // Load it if needed, through any group name that maps to it.
            let c = {
                let coords = self.coordinators.lock().await;
                coords
                    .get(&p)
                    .filter(|c| c.is_for(&part, part.leader().1))
                    .cloned()
            };
            let c = match c {
                Some(c) => c,
                None => {
                    let term = part.leader().1;
                    let c = Arc::new(Coordinator::load(part, term, self.group_key.clone()).await?);
                    self.coordinators.lock().await.insert(p, c.clone());
                    c
                }
            };
            groups.extend(c.list().await);
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(ListGroupsResponse { groups })
    }

    async fn describe_group(
        &self,
        r: DescribeGroupRequest,
    ) -> Result<DescribeGroupResponse, ApiError> {
        let c = self.coordinator(&r.group).await?;
        let tps = c
            .described_partitions(&r.group, &|t| self.partitions_of(t))
            .await?;
        let mut hwms = HashMap::new();
        for (topic, partition) in tps {
            let hwm = match self.partition(&topic, partition) {
                Ok(p) => Some(p.high_watermark()),
                Err(_) => self
                    .client
                    .list_offsets(&topic, partition, OffsetSpec::Latest)
                    .await
                    .ok()
                    .map(|o| o.high_watermark),
            };
            if let Some(h) = hwm {
                hwms.insert((topic, partition), h);
            }
        }
        c.describe(&r.group, self.cfg.node_id, &hwms).await
    }

    /// Ends the sessions of members that stopped heartbeating, on every coordinator here.
    async fn expire_loop(weak: std::sync::Weak<Broker>) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Some(broker) = weak.upgrade() else { return };
            let coords: Vec<Arc<Coordinator>> = {
                let mut all = broker.coordinators.lock().await;
                // A coordinator whose partition is led elsewhere (or in a newer term) is done.
                all.retain(|_, c| c.is_current(broker.cfg.node_id));
                all.values().cloned().collect()
            };
            for c in coords {
                c.expire(&|t| broker.partitions_of(t)).await;
            }
        }
    }

    /// Whether this broker leads the metadata group (for tests and status).
    pub fn is_metadata_leader(&self) -> bool {
        self.meta.metrics().borrow_watched().state == ServerState::Leader
    }
}

/// Adds the brokers beyond the metadata voters as learners, once this broker leads.
async fn add_learners(meta: MetaRaft, learners: Vec<(NodeId, BasicNode)>) {
    for (id, node) in learners {
        for attempt in 0..120 {
            match meta.add_learner(id, node.clone(), false).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(learner = id, attempt, error = %e, "adding a metadata learner");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

fn metadata_refusal(msg: String) -> ApiError {
    let code = if msg.contains("already exists") {
        ErrorCode::TopicExists
    } else if msg.starts_with("unknown topic") {
        ErrorCode::UnknownTopic
    } else {
        ErrorCode::InvalidRequest
    };
    ApiError::other(code, msg)
}

/// Checks every record's partition (D7), computes its content id and verifies the
/// signatures in one pass; the first bad record is named.
fn check_batch(
    batch: &RecordBatch,
    partition: u32,
    partitions: u32,
    verify: bool,
) -> Result<Vec<AssertionId>, ApiError> {
    for r in batch.records() {
        let subject = subject_of(r.assertion).map_err(|e| {
            ApiError::other(
                ErrorCode::InvalidAssertion,
                format!("record {}: {e}", r.index),
            )
        })?;
        let expected = partition_for(subject, partitions);
        if expected != partition {
            return Err(ApiError::WrongPartition {
                record: r.index,
                expected,
            });
        }
    }
    if !verify {
        return Ok(batch.records().map(|r| r.id()).collect());
    }
    let mut verifier = BatchVerifier::default();
    verifier
        .verify(batch.records().map(|r| (r.assertion, r.signature)))
        .map_err(|e| ApiError::InvalidSignature {
            record: e.index as u32,
            message: e.reason.to_string(),
        })?;
    // A verified record still must be a canonical assertion (what consumers decode).
    for r in batch.records() {
        steme_protocol::Assertion::decode(r.assertion).map_err(|e| {
            ApiError::other(
                ErrorCode::InvalidAssertion,
                format!("record {}: {e}", r.index),
            )
        })?;
    }
    // The ids were computed once, for verification.
    Ok(verifier.ids().collect())
}
