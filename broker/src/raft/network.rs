//! The openraft side of the Raft transport (D8): each group's [`Network`] factory and its
//! per-peer [`PeerClient`], which speak over the broker's shared links ([`crate::peer::link`]).
//!
//! Bulk frames are cut at [`CHUNK_BYTES`], so a heartbeat on the control lane waits for at
//! most one chunk already on the wire, never for a queue of appends.
//!
//! Replication is pipelined: [`PeerClient::stream_append`] sends up to [`WINDOW`] appends of
//! a stream before the first answer comes back; the receiver feeds them to the group in
//! arrival order (see `crate::peer::inbound`) and answers in that order. A stream of one
//! request (a heartbeat) is an independent RPC and travels on the control lane.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkV2};

use super::rpc::RaftRpc;
use super::throttle::MoveThrottle;
use super::types::{Entry, LogId, NodeId, Snapshot, TypeConfig, Vote};
use crate::peer::link::{Answer, Lane, LinkError, PeerLink, Transport, unexpected};

/// Appends of one stream in flight before the first is answered.
pub const WINDOW: usize = 16;
/// The largest append frame the leader builds; a bigger request is cut into several.
pub const CHUNK_BYTES: usize = 1 << 20;
/// How long an append that carries entries may take to be answered (the follower fsyncs).
const BULK_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time a heartbeat or vote is given: on a loaded machine a peer may take longer
/// than one heartbeat interval to answer, and that is not a failure yet.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);

/// The network factory of one Raft group: clients share the broker's links.
#[derive(Clone)]
pub struct Network {
    group: u64,
    transport: Arc<Transport>,
    throttle: Option<Arc<MoveThrottle>>,
}

impl Network {
    /// The network factory of Raft group `group`, over `transport`.
    pub fn new(transport: Arc<Transport>, group: u64) -> Network {
        Network {
            group,
            transport,
            throttle: None,
        }
    }

    /// As [`Network::new`], pacing what goes to replicas a move adds by `throttle`.
    pub fn throttled(
        transport: Arc<Transport>,
        group: u64,
        throttle: Arc<MoveThrottle>,
    ) -> Network {
        Network {
            group,
            transport,
            throttle: Some(throttle),
        }
    }
}

/// A group's client for one peer.
pub struct PeerClient {
    group: u64,
    target: NodeId,
    link: Arc<PeerLink>,
    throttle: Option<Arc<MoveThrottle>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            group: self.group,
            target,
            link: self.transport.link(target, &node.addr),
            throttle: self.throttle.clone(),
        }
    }
}

/// How openraft should see a failed RPC: a peer we cannot reach (it backs off) or one that
/// answered badly.
fn rpc_error(e: LinkError) -> RPCError<TypeConfig> {
    match e {
        LinkError::NotConnected(_) | LinkError::Closed(_) | LinkError::Refused(..) => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        LinkError::Timeout(..) | LinkError::BadReply(..) => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

fn last_log_id(req: &AppendEntriesRequest<TypeConfig>) -> Option<LogId> {
    req.entries.last().map(|e| e.log_id).or(req.prev_log_id)
}

fn entry_bytes(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(p) => p.bytes.len() + 32,
        _ => 256,
    }
}

/// Cuts an append into requests of at most [`CHUNK_BYTES`] (each at least one entry), each
/// continuing from the previous one's last entry.
fn chunk(req: AppendEntriesRequest<TypeConfig>) -> Vec<AppendEntriesRequest<TypeConfig>> {
    let total: usize = req.entries.iter().map(entry_bytes).sum();
    if total <= CHUNK_BYTES {
        return vec![req];
    }
    let AppendEntriesRequest {
        vote,
        mut prev_log_id,
        leader_commit,
        entries,
    } = req;
    let mut out = Vec::new();
    let mut cur: Vec<Entry> = Vec::new();
    let mut size = 0;
    for e in entries {
        let n = entry_bytes(&e);
        if !cur.is_empty() && size + n > CHUNK_BYTES {
            let last = cur.last().map(|e| e.log_id);
            out.push(AppendEntriesRequest {
                vote,
                prev_log_id,
                leader_commit,
                entries: std::mem::take(&mut cur),
            });
            prev_log_id = last;
            size = 0;
        }
        size += n;
        cur.push(e);
    }
    out.push(AppendEntriesRequest {
        vote,
        prev_log_id,
        leader_commit,
        entries: cur,
    });
    out
}

impl PeerClient {
    /// Waits for the move budget if this peer is a replica a move adds.
    async fn pace(&self, bytes: usize) {
        if let Some(t) = &self.throttle {
            t.pace(self.group, self.target, bytes).await;
        }
    }

    fn unexpected(&self, rpc: &RaftRpc) -> RPCError<TypeConfig> {
        rpc_error(unexpected(self.link.target(), rpc))
    }

    /// A vote or pre-vote request, on the control lane.
    async fn ask_vote(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.soft_ttl().max(CONTROL_TIMEOUT);
        match self
            .link
            .call(Lane::Control, self.group, rpc, timeout)
            .await
            .map_err(rpc_error)?
        {
            RaftRpc::Voted(v) => Ok(v),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Sends one append of a pipelined stream (cut into chunks) and returns its result: the
    /// last chunk's, or the first failure.
    fn send_streamed(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> impl Future<Output = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> + use<>
    {
        let answers: Vec<Answer> = chunk(req)
            .into_iter()
            .map(|c| {
                self.link
                    .send(Lane::Bulk, self.group, RaftRpc::StreamAppend(c).encode())
            })
            .collect();
        let link = self.link.clone();
        async move {
            let mut result = Ok(None);
            for a in answers {
                let payload = a.within(timeout).await.map_err(rpc_error)?;
                result = match link.decode(payload).map_err(rpc_error)? {
                    RaftRpc::StreamAppended(r) => r,
                    other => return Err(rpc_error(unexpected(link.target(), &other))),
                };
                if result.is_err() {
                    break;
                }
            }
            Ok(result)
        }
    }

    async fn single_append(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>> {
        let prev = req.prev_log_id;
        let last = last_log_id(&req);
        self.pace(req.entries.iter().map(entry_bytes).sum()).await;
        let lane = if req.entries.is_empty() {
            Lane::Control
        } else {
            Lane::Bulk
        };
        match self
            .link
            .call(lane, self.group, RaftRpc::Append(req), timeout)
            .await
            .map_err(rpc_error)?
        {
            RaftRpc::Appended(r) => Ok(r.into_stream_result(prev, last)),
            other => Err(self.unexpected(&other)),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.soft_ttl().max(BULK_TIMEOUT);
        self.single_append(rpc, timeout).await.map(Into::into)
    }

    fn stream_append<'s, S>(
        &'s mut self,
        mut input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        Box::pin(async move {
            let Some(first) = input.next().await else {
                return Ok(stream::empty().boxed());
            };
            // A stream of one (a heartbeat) is an independent RPC, on the control lane.
            let second = match input.next().now_or_never() {
                Some(None) => {
                    let timeout = if first.entries.is_empty() {
                        option.soft_ttl().max(CONTROL_TIMEOUT)
                    } else {
                        option.soft_ttl().max(BULK_TIMEOUT)
                    };
                    let r = self.single_append(first, timeout).await;
                    return Ok(stream::once(async move { r }).boxed());
                }
                Some(Some(second)) => Some(second),
                None => None,
            };
            let timeout = option.soft_ttl().max(BULK_TIMEOUT);
            let this: &PeerClient = self;
            let requests = stream::iter(std::iter::once(first).chain(second))
                .chain(input)
                .then(move |req| async move {
                    this.pace(req.entries.iter().map(entry_bytes).sum()).await;
                    req
                });
            // `map` runs as `buffered` pulls each request, in order: that is when it is sent.
            let answers = requests
                .map(move |req| this.send_streamed(req, timeout))
                .buffered(WINDOW)
                .scan(false, |stopped, r| {
                    if *stopped {
                        return futures::future::ready(None);
                    }
                    *stopped = !matches!(r, Ok(Ok(_)));
                    futures::future::ready(Some(r))
                });
            Ok(answers.boxed())
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ask_vote(RaftRpc::Vote(rpc), &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ask_vote(RaftRpc::PreVote(rpc), &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.pace(snapshot.snapshot.len()).await;
        let rpc = RaftRpc::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let call = self.link.call(
            Lane::Bulk,
            self.group,
            rpc,
            option.hard_ttl().max(BULK_TIMEOUT),
        );
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            a = call => a,
        };
        match answer {
            Ok(RaftRpc::Installed(r)) => Ok(r),
            Ok(other) => Err(StreamingError::Unreachable(Unreachable::new(&unexpected(
                self.link.target(),
                &other,
            )))),
            Err(e) => Err(match rpc_error(e) {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                other => StreamingError::Network(NetworkError::new(&other)),
            }),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .link
            .call(
                Lane::Control,
                self.group,
                RaftRpc::TransferLeader(req),
                option.soft_ttl(),
            )
            .await
            .map_err(rpc_error)?
        {
            RaftRpc::Transferred(r) => Ok(r),
            other => Err(self.unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;
    use crate::raft::types::{Proposal, log_id};

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: log_id(2, index),
            payload: EntryPayload::Normal(Proposal::new(Bytes::from(vec![7u8; bytes]))),
        }
    }

    #[test]
    fn big_appends_are_cut_into_chunks_that_continue_each_other() {
        let req = AppendEntriesRequest {
            vote: Vote::new(2, 1),
            prev_log_id: Some(log_id(1, 9)),
            leader_commit: Some(log_id(1, 9)),
            entries: (10..20).map(|i| entry(i, 300 << 10)).collect(),
        };
        let chunks = chunk(req);
        assert!(chunks.len() > 1);
        let mut prev = Some(log_id(1, 9));
        let mut next_index = 10;
        for c in &chunks {
            assert_eq!(c.prev_log_id, prev);
            assert!(!c.entries.is_empty());
            let size: usize = c.entries.iter().map(entry_bytes).sum();
            assert!(size <= CHUNK_BYTES || c.entries.len() == 1, "{size}");
            for e in &c.entries {
                assert_eq!(e.log_id.index, next_index);
                next_index += 1;
            }
            prev = c.entries.last().map(|e| e.log_id);
        }
        assert_eq!(next_index, 20);
        // A single entry larger than a chunk still goes, alone.
        let one = chunk(AppendEntriesRequest {
            vote: Vote::new(2, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: vec![entry(0, 3 << 20)],
        });
        assert_eq!(one.len(), 1);
        // Small appends and heartbeats are left as they are.
        let hb = chunk(AppendEntriesRequest {
            vote: Vote::new(2, 1),
            prev_log_id: Some(log_id(1, 9)),
            leader_commit: None,
            entries: vec![],
        });
        assert_eq!(hb.len(), 1);
        assert_eq!(last_log_id(&hb[0]), Some(log_id(1, 9)));
    }
}
