//! The Raft groups a broker hosts, as one type the peer plane can hand RPCs to: the
//! metadata group or a partition's.

use futures::StreamExt;
use futures::stream::BoxStream;
use openraft::error::Fatal;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::sync::mpsc;

use super::rpc::RaftRpc;
use super::state_machine::PartitionSm;
use openraft::type_config::async_runtime::WatchReceiver;

use super::types::{NodeId, Snapshot, StoredMembership, TypeConfig};
use crate::metadata::MetadataSm;

/// The metadata group's Raft (D9).
pub type MetaRaft = openraft::Raft<TypeConfig, MetadataSm>;
/// A partition group's Raft.
pub type PartitionRaft = openraft::Raft<TypeConfig, PartitionSm>;

/// A Raft group hosted by this broker: the metadata group or a partition's.
#[derive(Clone)]
pub enum GroupRaft {
    Meta(MetaRaft),
    Partition(PartitionRaft),
}

macro_rules! on_raft {
    ($g:expr, $r:ident => $e:expr) => {
        match $g {
            GroupRaft::Meta($r) => $e,
            GroupRaft::Partition($r) => $e,
        }
    };
}

pub type AppendStream =
    BoxStream<'static, Result<StreamAppendResult<TypeConfig>, Fatal<TypeConfig>>>;

/// What a replica sees of its group's leadership: its term, and the leader it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub term: u64,
    pub leader: Option<NodeId>,
}

impl GroupRaft {
    /// The membership this replica has applied.
    pub fn membership(&self) -> std::sync::Arc<StoredMembership> {
        on_raft!(self, r => r.metrics().borrow_watched().membership_config.clone())
    }

    /// This replica's term and the leader it follows.
    pub fn leadership(&self) -> Leadership {
        on_raft!(self, r => {
            let m = r.metrics();
            let m = m.borrow_watched();
            Leadership {
                term: m.current_term,
                leader: m.current_leader,
            }
        })
    }

    /// Serves one RPC that is not part of a stream.
    pub async fn serve(&self, rpc: RaftRpc) -> RaftRpc {
        let refused = |e: &dyn std::fmt::Display| RaftRpc::Refused(e.to_string());
        match rpc {
            RaftRpc::Append(req) => match on_raft!(self, r => r.append_entries(req).await) {
                Ok(resp) => RaftRpc::Appended(resp),
                Err(e) => refused(&e),
            },
            RaftRpc::Vote(req) => match on_raft!(self, r => r.vote(req).await) {
                Ok(resp) => RaftRpc::Voted(resp),
                Err(e) => refused(&e),
            },
            RaftRpc::PreVote(req) => match on_raft!(self, r => r.pre_vote(req).await) {
                Ok(resp) => RaftRpc::Voted(resp),
                Err(e) => refused(&e),
            },
            RaftRpc::Snapshot { vote, meta, data } => {
                let snapshot = Snapshot {
                    meta,
                    snapshot: data,
                };
                match on_raft!(self, r => r.install_full_snapshot(vote, snapshot).await) {
                    Ok(resp) => RaftRpc::Installed(resp),
                    Err(e) => refused(&e),
                }
            }
            RaftRpc::TransferLeader(req) => {
                match on_raft!(self, r => r.handle_transfer_leader(req).await) {
                    Ok(resp) => RaftRpc::Transferred(resp),
                    Err(e) => refused(&e),
                }
            }
            other => RaftRpc::Refused(format!("{other:?} is not a request this group serves")),
        }
    }

    /// Feeds `input` to the group's pipelined append stream, in order.
    pub fn stream_append(
        &self,
        input: mpsc::UnboundedReceiver<AppendEntriesRequest<TypeConfig>>,
    ) -> AppendStream {
        let mut rx = input;
        let input = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        on_raft!(self, r => r.stream_append(input).boxed())
    }
}
