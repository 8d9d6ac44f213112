//! Cluster metadata (D9): brokers, topics and partition placement, replicated by the
//! metadata Raft group (group 0) on every broker.
//!
//! Commands are proposals of our own JSON encoding. The state is small and changes rarely,
//! so the state machine writes it whole (JSON, write + fsync + rename) after every applied
//! run; that file doubles as the snapshot.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use openraft::EntryPayload;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::raft::codec;
use crate::raft::log_store::io_err;
use crate::raft::types::{
    Applied, LogId, NodeId, Proposal, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, log_id,
    term_of,
};
use crate::topic_config::{self, TopicConfig};

mod placement;
mod split;
pub use placement::Retirement;
pub use split::{MAX_PARTITIONS, PartitionMap, TopicSplit};

/// The id of the metadata Raft group; partition groups are numbered from 1.
pub use crate::raft::METADATA_GROUP;

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub replication_factor: u16,
    pub configs: BTreeMap<String, String>,
    /// One per partition, in partition order.
    pub partitions: Vec<PartitionMeta>,
    /// How many times the partition count grew (`topic add-partitions`).
    #[serde(default)]
    pub map_epoch: u64,
    /// Each growth, oldest first, with where each old partition split (see [`split`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<TopicSplit>,
    /// `configs` parsed, once per snapshot (an alter replaces it with an empty one), so
    /// that a produce request does not parse a signer allow-list again.
    #[serde(skip)]
    pub parsed: std::sync::OnceLock<Arc<TopicConfig>>,
}

impl TopicMeta {
    /// The topic's settings, typed and within bounds. Never fails: values stored by an
    /// older broker that are out of range are clamped into range, and unknown keys or
    /// malformed values are ignored (the broker default applies), each with a warning (see
    /// [`TopicConfig::from_stored`]). New topics cannot store such values:
    /// [`MetadataState::apply`] refuses them.
    pub fn config(&self) -> Arc<TopicConfig> {
        self.parsed
            .get_or_init(|| Arc::new(TopicConfig::from_stored(&self.name, &self.configs)))
            .clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// The partition's Raft group id.
    pub group: u64,
    /// The voters of its group, the preferred leader first.
    pub replicas: Vec<NodeId>,
    /// While it moves (`partition reassign`): the replicas it moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<NodeId>>,
}

/// Everything the metadata group replicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    /// Each broker's client address (as it registered it).
    pub brokers: BTreeMap<NodeId, String>,
    /// Each broker's peer-plane address: as it registered it, or as the metadata group's
    /// membership named it before that.
    #[serde(default)]
    pub peers: BTreeMap<NodeId, String>,
    /// Each broker's public key for the internal records it writes (hex); a coordinator
    /// replays only records signed by one of these (D11).
    #[serde(default)]
    pub signers: BTreeMap<NodeId, String>,
    pub topics: BTreeMap<String, TopicMeta>,
    pub next_group: u64,
    /// The last leader each partition group reported, with its term (Kafka's leader epoch).
    #[serde(default)]
    pub leaders: BTreeMap<u64, GroupLeader>,
    /// The access control entries, by principal (`*` for anyone); see [`crate::authz`].
    #[serde(default)]
    pub acls: crate::authz::AclTable,
    /// The members of the metadata group (voters and learners), as its last membership
    /// entry names them.
    #[serde(default)]
    pub members: std::collections::BTreeSet<NodeId>,
    /// Brokers decommissioned: draining, or removed.
    #[serde(default)]
    pub retiring: BTreeMap<NodeId, Retirement>,
}

/// A partition group's leader as last reported to the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLeader {
    pub node: NodeId,
    pub term: u64,
}

impl MetadataState {
    /// Every broker the cluster knows: registered, or a member of the metadata group.
    pub fn broker_ids(&self) -> std::collections::BTreeSet<NodeId> {
        self.brokers
            .keys()
            .chain(self.peers.keys())
            .copied()
            .collect()
    }

    /// The topic named `name`, or the error a client gets for an unknown one.
    pub fn topic(&self, name: &str) -> Result<&TopicMeta, crate::error::BrokerError> {
        self.topics
            .get(name)
            .ok_or_else(|| crate::error::BrokerError::UnknownTopic {
                topic: name.to_owned(),
            })
    }

    /// The group of `topic`/`partition`, if both exist.
    pub fn group_of(&self, topic: &str, partition: u32) -> Option<&PartitionMeta> {
        self.topics.get(topic)?.partitions.get(partition as usize)
    }
}

/// A change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// A broker's addresses and record-signing key. Forwarded, it speaks only for its
    /// sender (`peer::guard`).
    RegisterBroker {
        id: NodeId,
        /// The client address.
        addr: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_addr: Option<String>,
        /// Hex public key of the broker's internal-record signing key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signer: Option<String>,
    },
    CreateTopic {
        name: String,
        partitions: u32,
        replication_factor: u16,
        configs: BTreeMap<String, String>,
        /// The most partition replicas any broker may host once the topic is placed (the
        /// proposing broker's `max_partitions_per_broker`); `None`, as in commands written
        /// before this field existed, places without a cap. Carried in the command so that
        /// every replica of the metadata applies the same cap.
        #[serde(default)]
        max_replicas_per_broker: Option<u32>,
    },
    DeleteTopic {
        name: String,
    },
    /// Changes a live topic's settings: `set` keys take their values, `delete` keys return
    /// to the broker default. Validated as [`TopicConfig::alter`] says; every broker
    /// applies the result to the partitions it hosts as the state changes.
    AlterTopicConfig {
        name: String,
        set: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        delete: Vec<String>,
    },
    /// A broker became the leader of a partition group in `term`.
    PartitionLeader {
        group: u64,
        node: NodeId,
        term: u64,
    },
    /// Adds an ACL (a no-op if it exists).
    AddAcl {
        acl: steme_protocol::acl::Acl,
    },
    /// Removes an ACL (refused if it does not exist).
    RemoveAcl {
        acl: steme_protocol::acl::Acl,
    },
    /// Starts moving a partition to other replicas (see [`placement`]).
    ReassignPartition {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    /// Sent by a partition group's leader once its voters are the target's.
    CompleteReassignment {
        group: u64,
        replicas: Vec<NodeId>,
    },
    /// Starts draining a broker.
    DecommissionBroker {
        id: NodeId,
    },
    /// Marks a drained broker removed, once it hosts nothing and has left the metadata
    /// group.
    RemoveBroker {
        id: NodeId,
    },
    /// Grows a topic to `count` partitions (see [`split`]).
    AddPartitions {
        name: String,
        count: u32,
        /// As in [`Command::CreateTopic`].
        #[serde(default)]
        max_replicas_per_broker: Option<u32>,
    },
    /// Where an old partition split: reported by its leader once it applied its marker.
    RecordSplit {
        topic: String,
        partition: u32,
        epoch: u64,
        point: steme_protocol::messages::metadata::SplitPoint,
    },
}

impl Command {
    pub fn encode(&self) -> Proposal {
        Proposal::new(Bytes::from(
            serde_json::to_vec(self).expect("commands always serialize"),
        ))
    }
}

/// Topic configuration keys the broker understands.
pub const KNOWN_CONFIGS: &[&str] = topic_config::KNOWN_KEYS;

/// Topic names with this prefix are internal (`__groups`): they belong to the brokers, and
/// clients can neither create, delete nor produce to them (D11).
pub const INTERNAL_PREFIX: &str = "__";

/// Whether `topic` is an internal topic.
pub fn is_internal(topic: &str) -> bool {
    topic.starts_with(INTERNAL_PREFIX)
}

/// Validates a topic name the way Kafka does: 1..=249 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1 to 249 bytes, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be `.` or `..`".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name `{name}` contains `{c}`; use [A-Za-z0-9._-]"
        ));
    }
    Ok(())
}

impl MetadataState {
    /// How many partition replicas each broker hosts.
    fn replicas_per_broker(&self) -> BTreeMap<NodeId, u64> {
        let mut counts: BTreeMap<NodeId, u64> = BTreeMap::new();
        for p in self.topics.values().flat_map(|t| &t.partitions) {
            for r in &p.replicas {
                *counts.entry(*r).or_default() += 1;
            }
        }
        counts
    }

    /// Refuses a placement that would put more than `cap` replicas on any broker.
    fn check_replica_cap(
        &self,
        topic: &str,
        partitions: &[PartitionMeta],
        cap: u32,
    ) -> Result<(), String> {
        let mut counts = self.replicas_per_broker();
        for r in partitions.iter().flat_map(|p| &p.replicas) {
            *counts.entry(*r).or_default() += 1;
        }
        match counts.into_iter().find(|&(_, n)| n > u64::from(cap)) {
            Some((broker, n)) => Err(format!(
                "topic `{topic}` would put {n} partition replicas on broker {broker}, over \
                 its cap of {cap} (max_partitions_per_broker)"
            )),
            None => Ok(()),
        }
    }

    /// Applies a command. Refusals (the topic exists, ...) leave the state unchanged.
    pub fn apply(&mut self, cmd: Command) -> Result<(), String> {
        match cmd {
            Command::RegisterBroker {
                id,
                addr,
                peer_addr,
                signer,
            } => {
                if id == 0 {
                    return Err("broker id 0 is not a broker".into());
                }
                if self.retiring.get(&id) == Some(&Retirement::Removed) {
                    return Err(format!(
                        "broker {id} was decommissioned and removed; start it with a new id"
                    ));
                }
                if let Some(key) = &signer
                    && !(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err(format!(
                        "broker {id}: signer `{key}` is not a hex public key"
                    ));
                }
                self.brokers.insert(id, addr);
                if let Some(p) = peer_addr {
                    self.peers.insert(id, p);
                }
                if let Some(key) = signer {
                    self.signers.insert(id, key);
                }
                Ok(())
            }
            Command::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                max_replicas_per_broker,
            } => {
                check_topic_name(&name)?;
                if self.topics.contains_key(&name) {
                    return Err(format!("topic `{name}` already exists"));
                }
                if partitions == 0 || partitions > MAX_PARTITIONS {
                    return Err(format!(
                        "partitions must be 1 to {MAX_PARTITIONS}, got {partitions}"
                    ));
                }
                TopicConfig::parse(&configs).map_err(|e| e.to_string())?;
                let brokers: Vec<NodeId> = self.placeable();
                if brokers.is_empty() {
                    return Err("no brokers registered yet".into());
                }
                let rf = if replication_factor == 0 {
                    brokers.len().min(3)
                } else {
                    usize::from(replication_factor)
                };
                if rf > brokers.len() {
                    return Err(format!(
                        "replication factor {rf} exceeds the {} brokers",
                        brokers.len()
                    ));
                }
                let first_group = self.next_group.max(1);
                // Spread replicas (and so preferred leaders, the first replica) round-robin,
                // starting where the previous topic left off so that leaders stay even
                // across topics too.
                let start = (first_group - 1) as usize;
                let partitions = (0..partitions)
                    .map(|p| PartitionMeta {
                        group: first_group + u64::from(p),
                        replicas: (0..rf)
                            .map(|r| brokers[(start + p as usize + r) % brokers.len()])
                            .collect(),
                        target: None,
                    })
                    .collect::<Vec<_>>();
                if let Some(cap) = max_replicas_per_broker {
                    self.check_replica_cap(&name, &partitions, cap)?;
                }
                self.next_group = first_group + partitions.len() as u64;
                self.topics.insert(
                    name.clone(),
                    TopicMeta {
                        name,
                        replication_factor: rf as u16,
                        configs,
                        partitions,
                        map_epoch: 0,
                        splits: Vec::new(),
                        parsed: Default::default(),
                    },
                );
                Ok(())
            }
            Command::DeleteTopic { name } => {
                let t = self
                    .topics
                    .remove(&name)
                    .ok_or_else(|| format!("unknown topic `{name}`"))?;
                for p in &t.partitions {
                    self.leaders.remove(&p.group);
                }
                Ok(())
            }
            Command::AlterTopicConfig { name, set, delete } => {
                if is_internal(&name) {
                    return Err(format!(
                        "cannot alter `{name}`: names starting with `{INTERNAL_PREFIX}` are \
                         internal topics, configured by brokers only"
                    ));
                }
                let t = self
                    .topics
                    .get_mut(&name)
                    .ok_or_else(|| format!("unknown topic `{name}`"))?;
                t.configs =
                    TopicConfig::alter(&t.configs, &set, &delete).map_err(|e| e.to_string())?;
                t.parsed = Default::default();
                Ok(())
            }
            Command::PartitionLeader { group, node, term } => {
                let known = self.topics.values().flat_map(|t| &t.partitions);
                if !known.clone().any(|p| p.group == group) {
                    return Err(format!("unknown partition group {group}"));
                }
                match self.leaders.get(&group) {
                    Some(l) if l.term > term => Err(format!(
                        "stale leader report: group {group} term {term} < {}",
                        l.term
                    )),
                    _ => {
                        self.leaders.insert(group, GroupLeader { node, term });
                        Ok(())
                    }
                }
            }
            Command::AddAcl { acl } => self.acls.add(acl),
            Command::RemoveAcl { acl } => self.acls.remove(&acl),
            Command::ReassignPartition {
                topic,
                partition,
                replicas,
            } => self.reassign(&topic, partition, replicas),
            Command::CompleteReassignment { group, replicas } => {
                self.complete_reassignment(group, replicas)
            }
            Command::DecommissionBroker { id } => self.decommission(id),
            Command::RemoveBroker { id } => self.remove_broker(id),
            Command::AddPartitions {
                name,
                count,
                max_replicas_per_broker,
            } => self.add_partitions(&name, count, max_replicas_per_broker),
            Command::RecordSplit {
                topic,
                partition,
                epoch,
                point,
            } => self.record_split(&topic, partition, epoch, point),
        }
    }
}

/// The persisted form: the state and the log position it reflects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    state: MetadataState,
    /// (term, index) of the last applied entry.
    last_applied: Option<(u64, u64)>,
    /// (term, index) of the last membership entry and the membership (our encoding, hex).
    membership_log_id: Option<(u64, u64)>,
    membership: String,
}

/// The metadata state machine. Publishes every new state on a watch channel so the broker
/// can open and close partitions.
pub struct MetadataSm {
    path: PathBuf,
    state: MetadataState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    tx: Arc<watch::Sender<Arc<MetadataState>>>,
}

impl std::fmt::Debug for MetadataSm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataSm")
            .field("last_applied", &self.last_applied)
            .finish()
    }
}

fn to_pair(id: &LogId) -> (u64, u64) {
    (term_of(id), id.index)
}

impl MetadataSm {
    /// Loads the state from `dir/metadata.json` (empty if missing).
    pub fn open(dir: &Path) -> io::Result<(MetadataSm, watch::Receiver<Arc<MetadataState>>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("metadata.json");
        let persisted: Persisted = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                io::Error::other(format!("corrupt metadata file {}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(e),
        };
        let mut sm = MetadataSm {
            path,
            state: MetadataState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            tx: Arc::new(watch::Sender::new(Arc::new(MetadataState::default()))),
        };
        sm.restore(persisted)?;
        let rx = sm.tx.subscribe();
        Ok((sm, rx))
    }

    fn restore(&mut self, p: Persisted) -> io::Result<()> {
        let membership = if p.membership.is_empty() {
            StoredMembership::default()
        } else {
            let raw = hex::decode(&p.membership).map_err(io_err)?;
            let mut r = steme_protocol::wire::Reader::new(Bytes::from(raw));
            let m = codec::decode_membership(&mut r).map_err(io_err)?;
            StoredMembership::new(p.membership_log_id.map(|(t, i)| log_id(t, i)), m)
        };
        self.state = p.state;
        self.last_applied = p.last_applied.map(|(t, i)| log_id(t, i));
        self.membership = membership;
        self.tx.send_replace(Arc::new(self.state.clone()));
        Ok(())
    }

    fn persisted(&self) -> Persisted {
        let mut m = bytes::BytesMut::new();
        codec::encode_membership(self.membership.membership(), &mut m);
        Persisted {
            state: self.state.clone(),
            last_applied: self.last_applied.as_ref().map(to_pair),
            membership_log_id: self.membership.log_id().as_ref().map(to_pair),
            membership: hex::encode(&m),
        }
    }

    fn save(&self) -> io::Result<Bytes> {
        let bytes = Bytes::from(serde_json::to_vec_pretty(&self.persisted()).map_err(io_err)?);
        write_atomic(&self.path, &bytes)?;
        Ok(bytes)
    }

    fn snapshot(&self, data: Bytes) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
            },
            snapshot: data,
        }
    }
}

/// Writes a file so that a crash leaves either the old or the new contents.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl RaftStateMachine<TypeConfig> for MetadataSm {
    type SnapshotData = Bytes;
    type SnapshotBuilder = MetadataSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut changed = false;
        // Answered once the state is saved and published, so that whoever proposed a
        // change sees it in this broker's metadata (an ACL removed is in force) as soon
        // as it is told the change is applied.
        let mut answers = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let applied = match entry.payload {
                EntryPayload::Normal(Proposal { bytes, .. }) => {
                    let result = serde_json::from_slice::<Command>(&bytes)
                        .map_err(|e| format!("undecodable metadata command: {e}"))
                        .and_then(|cmd| self.state.apply(cmd));
                    changed |= result.is_ok();
                    Applied::Metadata(result)
                }
                EntryPayload::Blank => Applied::Control,
                EntryPayload::Membership(m) => {
                    // Every member is a broker; its address until it registers its own.
                    for (id, node) in m.nodes() {
                        if !self.state.peers.contains_key(id) && !node.addr.is_empty() {
                            self.state.peers.insert(*id, node.addr.clone());
                        }
                    }
                    self.state.members = m.nodes().map(|(id, _)| *id).collect();
                    changed = true;
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Applied::Control
                }
            };
            self.last_applied = Some(entry.log_id);
            if let Some(r) = responder {
                answers.push((r, applied));
            }
        }
        self.save()?;
        if changed {
            self.tx.send_replace(Arc::new(self.state.clone()));
        }
        for (r, applied) in answers {
            r.send(applied);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> MetadataSnapshotBuilder {
        MetadataSnapshotBuilder {
            snapshot: self.persisted(),
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
            },
        }
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta,
        data: Bytes,
    ) -> Result<(), io::Error> {
        let p: Persisted = serde_json::from_slice(&data).map_err(io_err)?;
        self.restore(p)?;
        self.save()?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        if self.last_applied.is_none() {
            return Ok(None);
        }
        let data = Bytes::from(serde_json::to_vec(&self.persisted()).map_err(io_err)?);
        Ok(Some(self.snapshot(data)))
    }
}

/// A snapshot of the metadata: the whole state, as persisted.
pub struct MetadataSnapshotBuilder {
    snapshot: Persisted,
    meta: SnapshotMeta,
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataSnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Bytes::from(serde_json::to_vec(&self.snapshot).map_err(io_err)?),
        })
    }
}

/// A state with brokers `1..=brokers` registered (for tests).
#[cfg(test)]
pub(crate) fn registered(brokers: u64) -> MetadataState {
    let mut s = MetadataState::default();
    for id in 1..=brokers {
        s.apply(Command::RegisterBroker {
            id,
            addr: format!("127.0.0.1:{}", 9000 + id),
            peer_addr: None,
            signer: None,
        })
        .expect("a new broker registers");
    }
    s
}

#[cfg(test)]
mod tests;
