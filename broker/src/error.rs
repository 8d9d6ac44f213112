//! What can go wrong inside the broker, with its context and cause.
//!
//! The node ([`crate::node`]) answers with a [`BrokerError`]; a request handler turns it into
//! the wire's `ApiError` once, at the edge (`crate::handlers`).

use std::time::Duration;

use steme_protocol::ApiError;

use crate::groups::GROUPS_TOPIC;
use crate::partition::OpenError;
use crate::raft::types::NodeId;

/// Why the metadata group refused a command, as far as a client needs to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The topic to create exists already.
    TopicExists,
    /// The command names a topic (or a topic config) that does not exist.
    UnknownTopic,
    /// Anything else the command got wrong (a bad name, a bad config value, ...).
    Invalid,
}

impl Refusal {
    /// Classifies the reason the metadata state machine gave.
    pub fn of(reason: &str) -> Refusal {
        if reason.contains("already exists") {
            Refusal::TopicExists
        } else if reason.starts_with("unknown topic") {
            Refusal::UnknownTopic
        } else {
            Refusal::Invalid
        }
    }
}

/// An error of the broker's node: a lookup that failed, a metadata change that did not
/// happen, a partition or coordinator that refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("unknown topic `{topic}`")]
    UnknownTopic { topic: String },
    #[error("topic `{topic}` has {count} partitions")]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },
    /// The partition exists, but no replica of it is on this broker.
    #[error("{topic}-{partition} is not hosted on broker {node}")]
    NotHosted {
        topic: String,
        partition: u32,
        node: NodeId,
    },
    /// The partition's storage failed; it is being reopened from what is durable.
    #[error("{topic}-{partition} is recovering from a storage failure: {reason}")]
    Recovering {
        topic: String,
        partition: u32,
        reason: String,
    },
    #[error("metadata change not committed in time (is a quorum of brokers up?)")]
    MetadataTimeout { waited: Duration },
    /// The metadata state machine refused the command; `reason` is its word.
    #[error("{reason}")]
    MetadataRefused { refusal: Refusal, reason: String },
    #[error("topic `{topic}` created but its partitions are not all led yet")]
    TopicNotReady { topic: String },
    #[error("a group id is 1 to 249 bytes")]
    InvalidGroupId { len: usize },
    #[error("the groups topic was just created; look up the coordinator again")]
    GroupsTopicCreated,
    #[error(
        "group {group} is coordinated by the leader of {GROUPS_TOPIC}/{partition} ({}), not broker {node}",
        leader.map_or_else(|| "none yet".to_owned(), |l| format!("broker {l}"))
    )]
    NotCoordinator {
        group: String,
        partition: u32,
        leader: Option<NodeId>,
        node: NodeId,
    },
    /// A partition or a group coordinator refused; its answer is already a wire error.
    #[error(transparent)]
    Refused(ApiError),
    #[error("partition {topic}-{partition} could not be opened")]
    Open {
        topic: String,
        partition: u32,
        #[source]
        source: OpenError,
    },
    /// A blocking task (signature checks) panicked or was cancelled.
    #[error("{0}")]
    Join(#[source] tokio::task::JoinError),
    /// The partition's writer stopped before answering (the broker is shutting down).
    #[error("partition closed")]
    PartitionClosed,
}

impl From<ApiError> for BrokerError {
    fn from(e: ApiError) -> Self {
        BrokerError::Refused(e)
    }
}
