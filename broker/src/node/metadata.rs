//! The metadata group as the node uses it: proposing commands (here, or forwarded to the
//! leader), registering this broker, adding learners, reading partition leaders.

use std::time::Duration;

use openraft::BasicNode;
use openraft::type_config::async_runtime::WatchReceiver;

use super::{Broker, METADATA_TIMEOUT, MetaRaft};
use crate::error::{BrokerError, Refusal};
use crate::metadata::{Command, MetadataState};
use crate::raft::rpc::Forwarded;
use crate::raft::types::{Applied, NodeId, Proposal};

/// A partition's leader as this broker knows it, with its term (Kafka's leader epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLeader {
    pub node: Option<NodeId>,
    pub epoch: u64,
}

impl Broker {
    /// Records this broker's addresses and record-signing key in the metadata, once the
    /// group has a leader (and again whenever one of them changed).
    pub(super) async fn register(&self) -> Result<(), BrokerError> {
        let me = self.cfg.node_id;
        let signer = hex::encode(self.group_key.verifying_key().as_bytes());
        let current = {
            let state = self.meta_state.borrow();
            state.brokers.get(&me) == Some(&self.advertised.client)
                && (self.advertised.peer.is_none()
                    || state.peers.get(&me) == self.advertised.peer.as_ref())
                && state.signers.get(&me) == Some(&signer)
        };
        if current {
            return Ok(());
        }
        self.propose_metadata(Command::RegisterBroker {
            id: me,
            addr: self.advertised.client.clone(),
            peer_addr: self.advertised.peer.clone(),
            signer: Some(signer),
        })
        .await
    }

    /// Proposes a metadata command and waits until it is applied: here if this broker
    /// leads the metadata group, else forwarded to the leader.
    pub(crate) async fn propose_metadata(&self, cmd: Command) -> Result<(), BrokerError> {
        let deadline = tokio::time::Instant::now() + METADATA_TIMEOUT;
        let Proposal { bytes, .. } = cmd.encode();
        // A broker joining a running cluster is no member yet and knows no leader: it asks
        // the brokers its `--peer` list names, in turn, and follows their hints.
        let mut hint: Option<NodeId> = None;
        let mut attempt = 0usize;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(BrokerError::MetadataTimeout {
                    waited: METADATA_TIMEOUT,
                });
            }
            attempt += 1;
            let leader = self
                .meta
                .metrics()
                .borrow_watched()
                .current_leader
                .or(hint.take())
                .or_else(|| {
                    let peers = &self.cfg.peers;
                    (!peers.is_empty()).then(|| peers[attempt % peers.len()].id)
                });
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
                Forwarded::Refused(reason) => {
                    return Err(BrokerError::MetadataRefused {
                        refusal: Refusal::of(&reason),
                        reason,
                    });
                }
                Forwarded::NotLeader(l) => {
                    hint = l.filter(|l| *l != self.cfg.node_id);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Forwarded::Failed(_) => {
                    // No leader yet, or it just changed: retry until the deadline.
                    tracing::debug!(?outcome, "metadata proposal not applied; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Proposes a metadata command to the local metadata group. The outcome is what a
    /// forwarding broker is answered, so failures are its words.
    pub(super) async fn propose_here(&self, cmd: bytes::Bytes, timeout: Duration) -> Forwarded {
        match tokio::time::timeout(timeout, self.meta.client_write(Proposal::new(cmd))).await {
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

    /// A partition's leader and term: this broker's own view if it hosts the partition and
    /// knows a leader at least as recent as the metadata's record, else the record.
    pub(crate) fn leader_of(
        &self,
        state: &MetadataState,
        topic: &str,
        partition: u32,
    ) -> PartitionLeader {
        let recorded = state
            .group_of(topic, partition)
            .and_then(|m| state.leaders.get(&m.group))
            .map_or(
                PartitionLeader {
                    node: None,
                    epoch: 0,
                },
                |l| PartitionLeader {
                    node: Some(l.node),
                    epoch: l.term,
                },
            );
        match self.partition(topic, partition).map(|p| p.leader()) {
            Ok((Some(l), term)) if term >= recorded.epoch => PartitionLeader {
                node: Some(l),
                epoch: term,
            },
            _ => recorded,
        }
    }

    /// Waits until every partition of `topic` below `partitions` has a leader (so a topic
    /// just created can be used at once), up to the metadata timeout.
    pub(crate) async fn await_leaders(
        &self,
        topic: &str,
        partitions: u32,
    ) -> Result<(), BrokerError> {
        let deadline = tokio::time::Instant::now() + METADATA_TIMEOUT;
        let mut rx = self.meta_state.clone();
        loop {
            let state = self.meta_state.borrow().clone();
            let ready = (0..partitions).all(|p| self.leader_of(&state, topic, p).node.is_some());
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::TopicNotReady {
                    topic: topic.to_owned(),
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), rx.changed()).await;
        }
    }
}

/// Adds the brokers beyond the metadata voters as learners, once this broker leads.
pub(super) async fn add_learners(meta: MetaRaft, learners: Vec<(NodeId, BasicNode)>) {
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

/// Whether any of `peers` belongs to a running cluster, asked by forwarding `register`
/// (this broker's registration, which such a cluster then records): an answer that it was
/// applied, or that names a leader. Peers that are down, or up with no cluster yet, say no.
/// Asked for up to [`PROBE_FOR`], so that a cluster between leaders is found too.
pub(super) async fn cluster_running(
    transport: &std::sync::Arc<crate::peer::link::Transport>,
    peers: &std::collections::BTreeMap<NodeId, String>,
    register: Command,
) -> bool {
    if peers.is_empty() {
        return false;
    }
    let Proposal { bytes, .. } = register.encode();
    let deadline = tokio::time::Instant::now() + PROBE_FOR;
    loop {
        let asks = peers.iter().map(|(&id, addr)| {
            let bytes = bytes.clone();
            async move {
                // Links dial in the background: give a peer that is up the moment it takes
                // to connect and authenticate; one that is down stays unconnected.
                let link = transport.link(id, addr);
                let connect_by = tokio::time::Instant::now() + CONNECT_WITHIN;
                while !link.is_connected() && tokio::time::Instant::now() < connect_by {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                transport
                    .forward(id, bytes, Duration::from_millis(500))
                    .await
            }
        });
        let answers = futures::future::join_all(asks).await;
        tracing::debug!(?answers, "asked the peers whether they run a cluster");
        let running = answers.iter().any(|a| {
            matches!(
                a,
                Ok(Forwarded::Applied) | Ok(Forwarded::NotLeader(Some(_)))
            )
        });
        if running {
            tracing::info!("found a running cluster among the peers: joining it");
            return true;
        }
        // Every peer down or not yet in a cluster: a new cluster. A peer that is up, in a
        // cluster, between leaders refuses or fails for a moment: ask again until the end.
        let undecided = answers
            .iter()
            .any(|a| matches!(a, Ok(Forwarded::Failed(_)) | Ok(Forwarded::Refused(_))));
        if !undecided || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a broker about to initialise a cluster looks for a running one first.
const PROBE_FOR: Duration = Duration::from_secs(2);
/// How long a probe waits for a link to a peer to connect.
const CONNECT_WITHIN: Duration = Duration::from_millis(500);
