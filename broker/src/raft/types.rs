//! openraft type configuration shared by every Raft group of the broker: the metadata group
//! (group 0) and one group per partition.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use steme_protocol::AssertionId;

/// A proposal: for a partition group, one record batch (already stamped with its HLCs; the
/// log store sets its base offset, D2); for the metadata group, one encoded metadata command.
#[derive(Clone, PartialEq, Eq)]
pub struct Proposal {
    pub bytes: Bytes,
    /// The batch's records' content id prefixes (`steme_segments::format::id_prefix`), in
    /// order, where the leader computed them: its log store indexes them as given, and they
    /// travel to followers as a hint so that they do not hash the records again (see
    /// `steme_segments::Payload::Hinted`).
    pub ids: Option<Arc<[u64]>>,
    /// Whether this broker checked the batch's CRC and framing just now (the leader's own
    /// proposal): its log store then skips its own check. Never sent.
    pub crc_checked: bool,
}

impl Proposal {
    pub fn new(bytes: Bytes) -> Proposal {
        Proposal {
            bytes,
            ids: None,
            crc_checked: false,
        }
    }

    /// A batch this broker validated (CRC and framing) and hashed: `ids` are its records'.
    pub fn checked(bytes: Bytes, ids: &[AssertionId]) -> Proposal {
        Proposal {
            bytes,
            ids: Some(
                ids.iter()
                    .map(|id| steme_segments::format::id_prefix(id.as_bytes()))
                    .collect(),
            ),
            crc_checked: true,
        }
    }

    /// A batch as a replica stores and sends it: with its records' id prefixes if known,
    /// and never counted as checked here.
    pub fn hinted(bytes: Bytes, ids: Option<Arc<[u64]>>) -> Proposal {
        Proposal {
            bytes,
            ids,
            crc_checked: false,
        }
    }
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proposal({} bytes)", self.bytes.len())
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What applying an entry produced, returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A record batch now below the high watermark.
    Batch {
        base_offset: u64,
        base_hlc: u64,
        record_count: u32,
    },
    /// A metadata command: `Err` carries why it was refused (e.g. the topic exists).
    Metadata(Result<(), String>),
    /// A blank or membership entry.
    Control,
}

openraft::declare_raft_types!(
    /// One type configuration for every group, so one transport carries them all (D8).
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Term = u64,
        // Standard Raft leader ids: a committed log id is (term, index), which is exactly what
        // a segment entry frame stores.
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

pub type NodeId = u64;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Bytes>;

/// Builds a committed log id from what a segment frame stores.
pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new_term_index(term, index)
}

/// The term of a log id (the committed leader id of standard Raft is the term).
pub fn term_of(id: &LogId) -> u64 {
    id.committed_leader_id().term
}
