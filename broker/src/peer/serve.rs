//! Serving `Raft` frames that arrive from peers.
//!
//! A peer's link carries every group's pipelined appends and heartbeats, so the Raft frames
//! of a connection have budgets of their own, larger than a client's: [`RAFT_INFLIGHT`]
//! requests and [`RAFT_INFLIGHT_BYTES`] bytes. A stream append joins its group's pipe in
//! arrival order ([`super::inbound`]); every other RPC is served in its own task. What the
//! RPCs reach is a [`RaftHost`]: the groups this broker hosts, and the metadata proposals
//! other brokers forward to it. Every request is first checked against its sender, the id
//! the connection's handshake proved ([`RaftHost::check`], [`super::guard`]); a refused one
//! is answered with the reason and never reaches openraft.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use steme_protocol::frame::Frame;
use steme_protocol::messages::Request;
use steme_protocol::messages::raft::RaftResponse;
use steme_protocol::{ApiError, ErrorCode};
use tokio::sync::{Semaphore, mpsc};

use super::guard::Refusal;
use super::inbound::Pipes;
use crate::raft::METADATA_GROUP;
use crate::raft::group::GroupRaft;
use crate::raft::rpc::{Forwarded, RaftRpc};
use crate::raft::types::NodeId;
use crate::reply::{Outbound, Reply, answer};

/// Raft requests a connection may have in flight: a peer's link carries every group's
/// pipelined appends and heartbeats, so its budget is its own and larger.
pub const RAFT_INFLIGHT: usize = 16 * 1024;
/// Bytes of Raft frames a connection may have in flight (appends wait in their pipes for the
/// follower's fsync while later frames, heartbeats among them, keep being read).
pub const RAFT_INFLIGHT_BYTES: usize = 256 << 20;

/// What peers' Raft RPCs reach on this broker.
pub trait RaftHost: Send + Sync + 'static {
    /// This broker's id.
    fn node_id(&self) -> NodeId;

    /// The Raft group `group`, if this broker hosts it.
    fn group_raft(&self, group: u64) -> Option<GroupRaft>;

    /// Checks a Raft request from broker `sender` against what this broker knows of the
    /// group ([`super::guard`]); a group not hosted here passes (it is refused as such).
    fn check(&self, sender: NodeId, group: u64, rpc: &RaftRpc) -> Result<(), Refusal>;

    /// Proposes a metadata command broker `sender` forwarded to this one (the metadata
    /// leader, as the sender believes), once it is checked against its sender.
    fn propose_forwarded(
        &self,
        sender: NodeId,
        command: Bytes,
    ) -> impl Future<Output = Forwarded> + Send;

    /// The stored frames of entries `range` of partition group `group`, for a replica
    /// repairing a damaged range: [`RaftRpc::Frames`], or [`RaftRpc::Refused`] saying why
    /// not (not hosted here, damaged here too).
    fn read_frames(&self, group: u64, range: std::ops::Range<u64>, max_bytes: u32) -> RaftRpc;
    /// Answers [`RaftRpc::LookupIds`] from this broker's replica of `group`.
    fn lookup_ids(&self, group: u64, below: u64, ids: &[[u8; 32]]) -> RaftRpc;

    /// A vote request for `group`, as this broker's failure detector vouches for it (see
    /// [`super::liveness::vouch`]); anything else unchanged.
    fn vouch(&self, _group: &GroupRaft, rpc: RaftRpc) -> RaftRpc {
        rpc
    }

    /// Group `group` got work from a peer (entries, a vote, a snapshot, a transfer): wake
    /// it if it is quiet (see `crate::partition::quiet`).
    fn stir(&self, _group: u64) {}
}

/// Whether an RPC is work for its group (an append with entries, not a bare heartbeat).
fn is_work(rpc: &RaftRpc) -> bool {
    match rpc {
        RaftRpc::Append(a) | RaftRpc::StreamAppend(a) => !a.entries.is_empty(),
        RaftRpc::Vote(_)
        | RaftRpc::PreVote(_)
        | RaftRpc::Snapshot { .. }
        | RaftRpc::TransferLeader(_) => true,
        _ => false,
    }
}

/// The Raft side of one authenticated connection: who sent it, its budgets and its pipes.
pub struct PeerFrames {
    sender: NodeId,
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    pipes: Pipes,
}

impl PeerFrames {
    /// The frames of a connection from broker `sender` (as its handshake proved).
    pub fn new(sender: NodeId) -> PeerFrames {
        PeerFrames {
            sender,
            requests: Arc::new(Semaphore::new(RAFT_INFLIGHT)),
            bytes: Arc::new(Semaphore::new(RAFT_INFLIGHT_BYTES)),
            pipes: Pipes::default(),
        }
    }

    /// Serves one frame of api key `Raft`: waits for the connection's Raft budget, then
    /// hands a stream append to its pipe, or answers any other RPC in its own task. Every
    /// answer is sent on `out`.
    pub async fn serve<H: RaftHost>(
        &mut self,
        host: &Arc<H>,
        frame: Frame,
        out: &mpsc::Sender<Outbound>,
    ) {
        let cost = frame.body.len().clamp(1, RAFT_INFLIGHT_BYTES) as u32;
        let req_permit = self.requests.clone().acquire_owned().await.expect("open");
        let byte_permit = self
            .bytes
            .clone()
            .acquire_many_owned(cost)
            .await
            .expect("open");
        let sender = self.sender;
        let decoded = match Request::decode(&frame.header, frame.body) {
            Ok(Request::Raft(r)) => match RaftRpc::decode(r.payload) {
                Ok(rpc) if let Err(refusal) = host.check(sender, r.group_id, &rpc) => {
                    tracing::warn!(peer = sender, group = r.group_id, %refusal, "refused a peer's Raft request");
                    Ok((r.group_id, RaftRpc::Refused(refusal.to_string())))
                }
                Ok(RaftRpc::StreamAppend(append)) => {
                    if !append.entries.is_empty() {
                        host.stir(r.group_id);
                    }
                    // A peer's stream append joins its group's pipe here, in arrival order.
                    let raft = host.group_raft(r.group_id);
                    let held = (req_permit, byte_permit);
                    self.pipes
                        .push(raft, r.group_id, frame.header, append, held, out);
                    return;
                }
                Ok(rpc) => {
                    if is_work(&rpc) {
                        host.stir(r.group_id);
                    }
                    Ok((r.group_id, rpc))
                }
                Err(e) => Err(ApiError::other(ErrorCode::CorruptFrame, e.to_string())),
            },
            Ok(other) => Err(ApiError::other(
                ErrorCode::InvalidRequest,
                format!("{:?} is not a Raft request", other.api_key()),
            )),
            Err(e) => Err(e.to_api_error()),
        };
        let host = host.clone();
        let out = out.clone();
        tokio::spawn(async move {
            let reply = match decoded {
                Ok((_, refused @ RaftRpc::Refused(_))) => Reply::ok(RaftResponse {
                    payload: refused.encode(),
                }),
                Ok((group, rpc)) => handle_raft(&*host, sender, group, rpc).await,
                Err(e) => Reply::error(e),
            };
            answer(&out, frame.header, reply, (req_permit, byte_permit)).await;
        });
    }
}

/// Answers a Raft RPC from a peer (other than a stream append, see [`PeerFrames::serve`]).
pub async fn handle_raft<H: RaftHost>(host: &H, sender: NodeId, group: u64, rpc: RaftRpc) -> Reply {
    let answer = match rpc {
        RaftRpc::Forward(cmd) if group == METADATA_GROUP => {
            RaftRpc::Forwarded(host.propose_forwarded(sender, cmd).await)
        }
        RaftRpc::ReadFrames {
            from,
            to,
            max_bytes,
        } => {
            // Reads and checks at most `max_bytes` (a few MiB) of page cache: a millisecond
            // or two, on a path only repairs take.
            match host.read_frames(group, from..to, max_bytes) {
                RaftRpc::Refused(why) => {
                    tracing::warn!(peer = sender, group, from, to, %why, "refused a frame read");
                    RaftRpc::Refused(why)
                }
                frames => frames,
            }
        }
        RaftRpc::Beat => RaftRpc::Beat,
        RaftRpc::LookupIds { below, ids } => host.lookup_ids(group, below, &ids),
        rpc => match host.group_raft(group) {
            Some(g) => {
                let rpc = host.vouch(&g, rpc);
                g.serve(rpc).await
            }
            None => RaftRpc::Refused(format!(
                "group {group} is not open on broker {}",
                host.node_id()
            )),
        },
    };
    Reply::ok(RaftResponse {
        payload: answer.encode(),
    })
}
