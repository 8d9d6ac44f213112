//! What other brokers reach on this one through the peer plane: its Raft groups and, as
//! metadata leader, proposals forwarded to it. Everything is checked against its sender
//! first ([`crate::peer::guard`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::type_config::async_runtime::WatchReceiver;

use super::{Broker, METADATA_TIMEOUT};
use crate::metadata::{Command, METADATA_GROUP};
use crate::partition::Partition;
use crate::peer::guard::{self, GroupView, LocalLeader, Refusal};
use crate::peer::liveness;
use crate::peer::serve::RaftHost;
use crate::raft::group::GroupRaft;
use crate::raft::rpc::{Forwarded, RaftRpc};
use crate::raft::types::NodeId;

/// How long a leader report waits for the replica here to see the same leadership.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

impl Broker {
    /// Whether `node` may appear in group `group`: one of a partition's replicas or of the
    /// replicas it moves to, or any broker this one knows of for the metadata group.
    fn is_expected(&self, group: u64, node: NodeId) -> bool {
        if group == METADATA_GROUP {
            // A broker joining a running cluster has no membership yet: it learns the
            // leader from whoever leads (the append still proves its vote and terms).
            let joining = self
                .meta
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .voter_ids()
                .next()
                .is_none();
            let state = self.meta_state.borrow();
            return joining
                || node == self.cfg.node_id
                || self.cfg.peers.iter().any(|p| p.id == node)
                || state.brokers.contains_key(&node)
                || state.peers.contains_key(&node);
        }
        let moving_in = self.meta_state.borrow().topics.values().any(|t| {
            t.partitions
                .iter()
                .any(|p| p.group == group && p.hosted_on(node))
        });
        moving_in
            || self
                .group_partition(group)
                .is_some_and(|p| p.replicas().contains(&node))
    }

    /// The partition hosted here whose Raft group is `group`.
    fn group_partition(&self, group: u64) -> Option<Arc<Partition>> {
        self.by_group
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
    }

    /// What the replica of `group` here sees: its term and the leader it follows, once it
    /// has caught up with `term` (or [`CONFIRM_WAIT`] has passed).
    async fn local_leader(&self, group: u64, term: u64) -> Option<LocalLeader> {
        let raft = self.group_raft(group)?;
        let deadline = tokio::time::Instant::now() + CONFIRM_WAIT;
        loop {
            let seen = raft.leadership();
            let caught_up = seen.term > term || (seen.term == term && seen.leader.is_some());
            if caught_up || tokio::time::Instant::now() >= deadline {
                return Some(seen);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Checks a forwarded metadata command against its sender.
    async fn check_forwarded(&self, sender: NodeId, cmd: &Command) -> Result<(), Refusal> {
        let local = match cmd {
            Command::PartitionLeader { group, term, .. } if *term <= guard::MAX_TERM => {
                self.local_leader(*group, *term).await
            }
            _ => None,
        };
        guard::check_forwarded(sender, cmd, &self.metadata(), local)
    }
}

impl RaftHost for Broker {
    fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    fn group_raft(&self, group: u64) -> Option<GroupRaft> {
        if group == METADATA_GROUP {
            return Some(GroupRaft::Meta(self.meta.clone()));
        }
        self.group_partition(group)
            .map(|p| GroupRaft::Partition(p.raft().clone()))
    }

    fn check(&self, sender: NodeId, group: u64, rpc: &RaftRpc) -> Result<(), Refusal> {
        if matches!(rpc, RaftRpc::Forward(_)) {
            // Checked with the command, in `propose_forwarded`.
            return Ok(());
        }
        let Some(raft) = self.group_raft(group) else {
            return Ok(());
        };
        let membership = raft.membership();
        GroupView {
            group,
            me: self.cfg.node_id,
            membership: membership.membership(),
            expected: &|node| self.is_expected(group, node),
        }
        .check(sender, rpc)
    }

    fn stir(&self, group: u64) {
        if let Some(p) = self.group_partition(group) {
            p.stir();
        }
    }

    fn vouch(&self, group: &GroupRaft, rpc: RaftRpc) -> RaftRpc {
        match rpc {
            RaftRpc::Vote(mut req) => {
                let leader = group.leadership().leader;
                liveness::vouch(&self.transport, self.cfg.node_id, leader, &mut req);
                RaftRpc::Vote(req)
            }
            rpc => rpc,
        }
    }

    fn lookup_ids(&self, group: u64, below: u64, ids: &[[u8; 32]]) -> RaftRpc {
        match self.group_partition(group) {
            Some(p) => match p.lookup_below(below, ids) {
                Ok(found) => RaftRpc::FoundIds(found),
                Err(why) => RaftRpc::Refused(why),
            },
            None => RaftRpc::Refused(format!(
                "group {group} is not open on broker {}",
                self.cfg.node_id
            )),
        }
    }

    fn read_frames(&self, group: u64, range: std::ops::Range<u64>, max_bytes: u32) -> RaftRpc {
        match self.group_partition(group) {
            Some(p) => p.read_frames(range, max_bytes),
            None => RaftRpc::Refused(format!(
                "group {group} is not open on broker {}",
                self.cfg.node_id
            )),
        }
    }

    async fn propose_forwarded(&self, sender: NodeId, command: Bytes) -> Forwarded {
        let cmd = match guard::decode_forwarded(&command) {
            Ok(cmd) => cmd,
            Err(refusal) => return Forwarded::Refused(refusal.to_string()),
        };
        if let Err(refusal) = self.check_forwarded(sender, &cmd).await {
            tracing::warn!(peer = sender, %refusal, "refused a forwarded metadata command");
            return if refusal.is_retriable() {
                Forwarded::Failed(refusal.to_string())
            } else {
                Forwarded::Refused(refusal.to_string())
            };
        }
        if self.meta.metrics().borrow_watched().current_leader != Some(self.cfg.node_id) {
            return Forwarded::NotLeader(self.metadata_leader());
        }
        self.propose_here(command, METADATA_TIMEOUT).await
    }
}
