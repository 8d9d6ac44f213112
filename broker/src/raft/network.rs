//! Raft transport between brokers (D8).
//!
//! This broker runs every group with itself as the only voter, so no Raft message ever
//! leaves it; the transport that carries every group's traffic over one connection per
//! broker pair is the replication issue's work. Until then a peer is reported unreachable
//! with an error that says so, which openraft treats as a peer that is down.

use std::future::Future;

use bytes::Bytes;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkV2};

use super::types::{NodeId, Snapshot, TypeConfig, Vote};

#[derive(Debug, thiserror::Error)]
#[error("no transport to broker {0}: this build runs single-voter groups only")]
struct NoTransport(NodeId);

/// Creates clients for peers.
#[derive(Debug, Clone, Default)]
pub struct Network;

/// A client for one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> PeerClient {
        PeerClient { target }
    }
}

impl PeerClient {
    fn unreachable(&self) -> Unreachable<TypeConfig> {
        Unreachable::new(&NoTransport(self.target))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
