//! The node: one running broker — its metadata group, the partitions it hosts, its group
//! coordinators and its background loops. Request handlers ([`crate::handlers`]) reach it
//! through the narrow methods below; peers reach its Raft groups through
//! [`RaftHost`](crate::peer::serve::RaftHost).
//!
//! - `metadata`: proposing metadata commands (here or forwarded to the leader), registering.
//! - `hosting`: opening and closing the partitions the metadata places here, storage
//!   failures, partition lookup.
//! - `coordinators`: the group coordinators this broker runs (D10).
//! - `loops`: the background tasks (registration, reconciliation, leader reports, leader
//!   rebalancing, session expiry).
//! - `observe`: the metrics read from the broker's state when scraped, and readiness.
//! - `peers`: what peers reach through the peer plane ([`RaftHost`](crate::peer::serve::RaftHost)),
//!   each request checked against its sender first ([`crate::peer::guard`]).

mod controller;
mod coordinators;
mod failover;
mod hosting;
mod loops;
mod metadata;
mod observe;
mod peers;
mod splits;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{BasicNode, ServerState};
use steme_protocol::LeaderHint;
use steme_segments::{FileIo, FlushPolicy, Log, LogConfig, RealIo};
use tokio::sync::watch;

use crate::config::{Config, FlushMode};
use crate::data_dir::{DataDirLock, LockError};
use crate::error::BrokerError;
use crate::groups::Coordinator;
use crate::hlc::Clock;
use crate::metadata::{Command, METADATA_GROUP, MetadataSm, MetadataState};
use crate::metrics::Metrics;
use crate::partition::{Partition, PartitionCtx};
use crate::peer::auth::{ClusterSecret, SecretError};
use crate::peer::link::{PeerAuth, Resolver, Transport};
use crate::raft::group::MetaRaft;
use crate::raft::log_store::{GroupKind, GroupLog, LogStore, Syncer};
use crate::raft::network::Network;
use crate::raft::raft_config;
use crate::raft::types::NodeId;

pub use self::metadata::PartitionLeader;
pub use self::observe::Readiness;

/// How long metadata changes and topic creation may take before the request fails.
pub(crate) const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// Voters of the metadata group; further brokers follow it as learners (D9).
const MAX_METADATA_VOTERS: usize = 5;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another broker runs on this data directory, or its lock file is out of reach.
    #[error(transparent)]
    DataDirLock(#[from] LockError),
    #[error("metadata log")]
    MetadataLog(#[from] steme_segments::Error),
    #[error("metadata")]
    Io(#[from] std::io::Error),
    #[error("raft settings")]
    RaftConfig(#[from] openraft::ConfigError),
    #[error("metadata group: {op}")]
    Raft {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no randomness for the record signing key: {0}")]
    Random(getrandom::Error),
    #[error("record signing key {path}")]
    SigningKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the peer plane (--peer, --peer-listen) needs peer credentials: \
         --cluster-secret-file FILE (or STEME_CLUSTER_SECRET_FILE)"
    )]
    NoPeerCredentials,
    #[error("peer credentials")]
    Secret(#[from] SecretError),
    #[error("registering this broker in the metadata")]
    Register(#[source] BrokerError),
    #[error("opening the hosted partitions")]
    Host(#[source] BrokerError),
}

/// Where clients and other brokers reach a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// The client plane's address (`--advertised-addr`, or the bound `--listen`).
    pub client: String,
    /// The peer plane's address (`--peer-advertised-addr`, or the bound `--peer-listen`),
    /// if this broker listens for peers.
    pub peer: Option<String>,
}

impl Advertised {
    /// A broker reached by clients only (no peer plane).
    pub fn client(addr: impl Into<String>) -> Advertised {
        Advertised {
            client: addr.into(),
            peer: None,
        }
    }
}

/// One running broker.
pub struct Broker {
    cfg: Config,
    advertised: Advertised,
    /// What peer connections prove; `None` for a broker without a peer plane.
    secret: Option<ClusterSecret>,
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
    /// Group coordinators loaded here, by partition of the groups topic (D10). A tokio lock:
    /// held across loading a coordinator.
    coordinators: tokio::sync::Mutex<HashMap<u32, Arc<Coordinator>>>,
    /// Signs the internal records (consumer groups) this broker writes; kept in the data
    /// directory and registered in the metadata, so coordinators replay only records
    /// brokers wrote.
    group_key: steme_protocol::SigningKey,
    /// Client quotas: bytes/s and connections per principal.
    quotas: Arc<crate::quota::Quotas>,
    /// What this broker reports on its admin listener.
    metrics: Arc<Metrics>,
    /// Set when shutdown begins: partitions stopping are not failures to repair.
    stopping: std::sync::atomic::AtomicBool,
    /// This broker's hold on its data directory: no other broker starts on it while this
    /// one lives ([`crate::data_dir`]).
    _data_dir_lock: DataDirLock,
}

/// The file in the data directory holding the broker's record-signing key (hex seed).
const SIGNING_KEY_FILE: &str = "broker.key";

/// A partition placed here that is not serving: its storage failed, or it never opened.
#[derive(Debug, Clone)]
struct Failed {
    reason: String,
    /// Reopen discarding the log after this index (what was durable when storage failed);
    /// `None` keeps everything (a partition that failed to open has lost nothing).
    discard_after: Option<u64>,
    /// When to try opening it again.
    retry_at: tokio::time::Instant,
}

/// How long a partition that failed to open waits before it is tried again.
const OPEN_RETRY: Duration = Duration::from_secs(5);

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
    /// Locks the data directory (refusing to start if another broker holds it), opens it,
    /// starts the metadata group and every hosted partition. `advertised` is where clients
    /// and peers reach this broker.
    pub async fn start(cfg: Config, advertised: Advertised) -> Result<Arc<Broker>, StartError> {
        Broker::start_with_io(cfg, advertised, Arc::new(RealIo)).await
    }

    /// [`Broker::start`] with the partition logs' file I/O given (tests inject faults).
    pub async fn start_with_io(
        cfg: Config,
        advertised: Advertised,
        io: Arc<dyn FileIo>,
    ) -> Result<Arc<Broker>, StartError> {
        let data = cfg.data_dir.clone();
        let dir_error = |source| StartError::DataDir {
            path: data.clone(),
            source,
        };
        std::fs::create_dir_all(&data).map_err(dir_error)?;
        // Before anything in the directory is read or written.
        let data_dir_lock = DataDirLock::acquire(&data)?;
        std::fs::create_dir_all(data.join("topics")).map_err(dir_error)?;
        // Peer credentials: a broker that has peers, or listens for them, proves the
        // cluster secret on every peer connection (D8).
        let needs_secret = !cfg.peers.is_empty() || cfg.peer_listen.is_some();
        let secret = match &cfg.cluster_secret_file {
            Some(path) => Some(ClusterSecret::load(path)?),
            None if needs_secret => return Err(StartError::NoPeerCredentials),
            None => None,
        };
        let group_key = signing_key(&data.join(SIGNING_KEY_FILE))?;
        let metrics = Arc::new(Metrics::new());
        let syncer = Syncer::start(metrics.fsync_latency.clone())?;
        let raft_config = raft_config(&cfg)?;
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

        // Where the other brokers' peer planes are: this broker's own `--peer` list first (it
        // may name a different route, such as a proxy), then what the metadata records.
        let peers: BTreeMap<NodeId, String> =
            cfg.peers.iter().map(|p| (p.id, p.addr.clone())).collect();
        let self_id = cfg.node_id;
        let peer_resolve: Resolver = {
            let state = meta_state.clone();
            let own = advertised.peer.clone();
            let known = peers.clone();
            Arc::new(move |id| {
                if id == self_id {
                    return own.clone();
                }
                known
                    .get(&id)
                    .cloned()
                    .or_else(|| state.borrow().peers.get(&id).cloned())
            })
        };
        // Where clients reach each broker (for `NotLeader` hints).
        let client_resolve: Resolver = {
            let state = meta_state.clone();
            let own = advertised.client.clone();
            Arc::new(move |id| {
                if id == self_id {
                    return Some(own.clone());
                }
                state.borrow().brokers.get(&id).cloned()
            })
        };
        let auth = PeerAuth {
            me: self_id,
            secret: secret.clone(),
        };
        let transport = Transport::new(peer_resolve.clone(), cfg.max_frame_bytes, auth);
        let meta = MetaRaft::new(
            cfg.node_id,
            raft_config.clone(),
            Network::new(transport.clone(), METADATA_GROUP),
            store,
            sm,
        )
        .await
        .map_err(|e| StartError::Raft {
            op: "start",
            source: Box::new(e),
        })?;
        let initialized = meta.is_initialized().await.map_err(|e| StartError::Raft {
            op: "read state",
            source: Box::new(e),
        })?;
        if !initialized {
            let mut members: BTreeMap<NodeId, BasicNode> = peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            members.insert(
                cfg.node_id,
                BasicNode {
                    addr: advertised.peer.clone().unwrap_or_default(),
                },
            );
            // A new cluster is initialised exactly once, by its lowest broker id; the others
            // join when it reaches them. A restarted broker finds its group initialised. A
            // broker named lowest that finds a running cluster among its peers joins it.
            let register = Command::RegisterBroker {
                id: cfg.node_id,
                addr: advertised.client.clone(),
                peer_addr: advertised.peer.clone(),
                signer: Some(hex::encode(group_key.verifying_key().as_bytes())),
            };
            if members.keys().next() == Some(&cfg.node_id)
                && !metadata::cluster_running(&transport, &peers, register).await
            {
                let voters = members.iter().take(MAX_METADATA_VOTERS);
                let voters: BTreeMap<NodeId, BasicNode> =
                    voters.map(|(id, n)| (*id, n.clone())).collect();
                tracing::info!(voters = ?voters.keys().collect::<Vec<_>>(), "initialising the cluster");
                meta.initialize(voters)
                    .await
                    .map_err(|e| StartError::Raft {
                        op: "initialise",
                        source: Box::new(e),
                    })?;
                let learners: Vec<(NodeId, BasicNode)> =
                    members.into_iter().skip(MAX_METADATA_VOTERS).collect();
                if !learners.is_empty() {
                    tokio::spawn(metadata::add_learners(meta.clone(), learners));
                }
            }
        }

        let (leaders_tx, leaders_rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = PartitionCtx {
            node_id: cfg.node_id,
            throttle: Arc::new(crate::raft::throttle::MoveThrottle::new(
                cfg.reassign_bytes_per_sec,
            )),
            clock: Arc::new(Clock::new(cfg.node_id, cfg.max_clock_skew())),
            syncer,
            raft_config,
            retention_check: Duration::from_millis(cfg.retention_check_ms),
            ack_before_sync,
            brokers: client_resolve,
            peers: peer_resolve,
            io,
            transport: transport.clone(),
            leaders: leaders_tx,
            metrics: metrics.clone(),
            stopping: tokio_util::sync::CancellationToken::new(),
        };
        let quotas = Arc::new(crate::quota::Quotas::new(&cfg));
        let broker = Arc::new(Broker {
            clock: ctx.clock.clone(),
            cfg,
            advertised,
            secret,
            meta,
            meta_state,
            partitions: RwLock::new(HashMap::new()),
            by_group: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            transport,
            ctx,
            coordinators: tokio::sync::Mutex::new(HashMap::new()),
            group_key,
            quotas,
            metrics,
            stopping: std::sync::atomic::AtomicBool::new(false),
            _data_dir_lock: data_dir_lock,
        });
        if broker.cfg.peers.is_empty() {
            broker.register().await.map_err(StartError::Register)?;
        } else {
            // A cluster member cannot register before a quorum is up; it serves meanwhile.
            tokio::spawn(loops::register(Arc::downgrade(&broker)));
        }
        broker.reconcile().await.map_err(StartError::Host)?;
        tokio::spawn(loops::reconcile(Arc::downgrade(&broker)));
        tokio::spawn(loops::report_leaders(Arc::downgrade(&broker), leaders_rx));
        tokio::spawn(loops::expire_sessions(Arc::downgrade(&broker)));
        tokio::spawn(loops::repair(Arc::downgrade(&broker)));
        tokio::spawn(loops::compact_groups(
            Arc::downgrade(&broker),
            Duration::from_millis(broker.cfg.retention_check_ms),
        ));
        tokio::spawn(failover::watch_peers(Arc::downgrade(&broker)));
        tokio::spawn(controller::run(Arc::downgrade(&broker)));
        if broker.cfg.scrub_bytes_per_sec > 0 {
            let rate = broker.cfg.scrub_bytes_per_sec;
            let interval = Duration::from_millis(broker.cfg.scrub_interval_ms);
            tokio::spawn(loops::scrub(Arc::downgrade(&broker), rate, interval));
        }
        if broker.cfg.leader_rebalance_ms > 0 {
            let every = Duration::from_millis(broker.cfg.leader_rebalance_ms);
            tokio::spawn(loops::rebalance(Arc::downgrade(&broker), every));
        }
        Ok(broker)
    }

    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    /// The peer plane to the other brokers.
    pub(crate) fn transport(&self) -> &Arc<crate::peer::link::Transport> {
        &self.ctx.transport
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn quotas(&self) -> &Arc<crate::quota::Quotas> {
        &self.quotas
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether this broker leads the metadata group (for tests and status).
    pub fn is_metadata_leader(&self) -> bool {
        self.meta.metrics().borrow_watched().state == ServerState::Leader
    }

    /// The metadata as this broker last applied it.
    pub(crate) fn metadata(&self) -> Arc<MetadataState> {
        self.meta_state.borrow().clone()
    }

    /// Whether this broker was a member of the metadata group and no longer is (it was
    /// decommissioned, and left).
    pub(crate) fn left_metadata(&self) -> bool {
        let m = self.meta.metrics();
        let m = m.borrow_watched();
        let membership = m.membership_config.membership();
        membership.voter_ids().next().is_some()
            && !membership.nodes().any(|(id, _)| *id == self.cfg.node_id)
    }

    /// The leader of the metadata group, as far as this broker knows.
    pub(crate) fn metadata_leader(&self) -> Option<NodeId> {
        self.meta.metrics().borrow_watched().current_leader
    }

    /// Where broker `id` can be reached, as a `NotLeader` hint.
    pub(crate) fn leader_hint(&self, id: NodeId) -> Option<LeaderHint> {
        (self.ctx.brokers)(id).map(|addr| LeaderHint { node_id: id, addr })
    }

    /// What a group coordinator needs of `topic`, if it exists: its partition count and
    /// its growths' split points.
    pub(crate) fn topic_view(&self, topic: &str) -> Option<crate::groups::TopicView> {
        let state = self.meta_state.borrow();
        let t = state.topics.get(topic)?;
        Some(crate::groups::TopicView {
            partitions: t.partitions.len() as u32,
            splits: t
                .splits
                .iter()
                .map(|s| crate::groups::SplitGate {
                    from: s.from,
                    to: s.to,
                    points: s.points.iter().map(|p| p.map(|p| p.offset)).collect(),
                })
                .collect(),
        })
    }

    /// How many partitions `topic` has, if it exists.
    pub(crate) fn partitions_of(&self, topic: &str) -> Option<u32> {
        self.meta_state
            .borrow()
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as u32)
    }

    /// The cluster secret peer connections prove, if this broker has a peer plane.
    pub fn cluster_secret(&self) -> Option<&ClusterSecret> {
        self.secret.as_ref()
    }

    /// Where clients and peers reach this broker.
    pub fn advertised(&self) -> &Advertised {
        &self.advertised
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Begins to stop (the client plane calls it as it starts to drain): partitions that
    /// stop are no longer repaired, and long polls answer at once, so that draining
    /// connections takes no longer than the requests being written.
    pub fn begin_shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.ctx.stopping.cancel();
    }

    /// Stops every group and flushes every log: all partitions at once (each writes its
    /// applied state, stops its group and syncs its log), then the metadata group, then the
    /// peer links.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let parts: Vec<Arc<Partition>> = self.hosted();
        futures::future::join_all(parts.iter().map(|p| p.shutdown())).await;
        if let Err(e) = self.meta.shutdown().await {
            tracing::warn!(error = %e, "metadata raft shutdown");
        }
        self.transport.shutdown();
    }
}

/// The broker's record-signing key: read from `path`, or made (32 random bytes, mode 0600)
/// on first start.
fn signing_key(path: &std::path::Path) -> Result<steme_protocol::SigningKey, StartError> {
    let io = |source| StartError::SigningKey {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
            Ok(steme_protocol::SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(StartError::Random)?;
            let tmp = path.with_extension("tmp");
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(io)?;
            std::io::Write::write_all(&mut f, format!("{}\n", hex::encode(seed)).as_bytes())
                .map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            Ok(steme_protocol::SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(io(e)),
    }
}
