//! A broker-level failure detector on the peer plane, and the fast failover built on it.
//!
//! **Detecting.** Every broker beats every other one ([`RaftRpc::Beat`], on the control
//! lane) each [`BEAT`]: one small frame per broker pair, whatever the number of groups they
//! share. Any answer on a link counts as a sign of life ([`PeerLink::is_dead`]). A peer is
//! held dead once its connection has closed and is not back (a killed process's sockets
//! close at once, so this takes milliseconds), or once it has been silent for
//! [`DEAD_AFTER`] (a hung or partitioned one). A peer never heard from is not judged: the
//! Raft timers stay in charge.
//!
//! **Electing at once.** Without this, a follower waits for its election timer (1–2 s),
//! and its vote is refused by the other followers while their leader lease (the maximum
//! election timeout after the last heartbeat) runs. Instead, when a replica's detector holds
//! its group's leader dead, the surviving voters start an election at once, one after
//! another in node-id order ([`STAGGER`] apart, so two survivors do not split the vote),
//! while the group has no new leader.
//!
//! **Voting past the lease, safely.** A voter grants such a vote inside the leader lease
//! only if *its own* detector also holds the leader dead ([`vouch`]): the request is then
//! marked as openraft marks a leadership transfer, which skips the lease and nothing else.
//! The term check and the log check (the candidate's log must be at least as up to date)
//! are never skipped, so an elected leader holds every committed entry and nothing
//! acknowledged is lost. A voter that still hears the leader honours the lease and refuses.
//! The cost of a wrong suspicion (a link that fails while the leader lives) is an
//! election, never a lost write.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use openraft::raft::VoteRequest;

use super::link::{Lane, Transport};
use crate::raft::METADATA_GROUP;
use crate::raft::rpc::RaftRpc;
use crate::raft::types::{NodeId, TypeConfig};

/// How often a broker beats each peer.
pub const BEAT: Duration = Duration::from_millis(100);
/// Silence after which a connected peer is held dead: eight beats, so that a stall of the
/// shared machine (an fsync, a scheduler hiccup) is not taken for a death.
pub const DEAD_AFTER: Duration = Duration::from_millis(800);
/// The delay between the survivors' elections, in node-id order.
pub const STAGGER: Duration = Duration::from_millis(250);

/// The detector's clock: milliseconds since the first call (never 0 after it).
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Sends one beat to each of `peers` (id and peer-plane address). The answer is not
/// awaited: the link notes it as it arrives.
pub fn beat(transport: &Transport, peers: impl IntoIterator<Item = (NodeId, String)>) {
    let beat = RaftRpc::Beat.encode();
    for (id, addr) in peers {
        drop(
            transport
                .link(id, &addr)
                .send(Lane::Control, METADATA_GROUP, beat.clone()),
        );
    }
}

/// A voter's side: marks `req` as a leadership transfer (so openraft skips the leader
/// lease, and only that) when this broker's detector holds the leader it follows dead.
pub fn vouch(
    transport: &Transport,
    me: NodeId,
    leader: Option<NodeId>,
    req: &mut VoteRequest<TypeConfig>,
) {
    if let Some(leader) = leader
        && leader != me
        && req.vote.leader_id.voted_for != leader
        && transport.peer_dead(leader)
    {
        req.leadership_transfer = true;
    }
}

/// A survivor's turn to stand for election: its place among the voters other than the
/// dead leader and any other peer held dead, in node-id order, times [`STAGGER`]. `None`
/// if it is not a voter.
pub fn turn(
    transport: &Transport,
    me: NodeId,
    leader: NodeId,
    voters: impl IntoIterator<Item = NodeId>,
) -> Option<Duration> {
    let mut alive: Vec<NodeId> = voters
        .into_iter()
        .filter(|&v| v != leader && (v == me || !transport.peer_dead(v)))
        .collect();
    alive.sort_unstable();
    let place = alive.iter().position(|&v| v == me)?;
    Some(STAGGER * place as u32)
}
