//! Moving a partition to other replicas (`partition reassign`), one step at a time, by
//! whichever replica serves as its leader.
//!
//! Every step reads where the group stands (its Raft membership, the new replicas'
//! matched indexes) and takes the next one, so a move survives any restart or change of
//! leader: the metadata keeps the target, openraft keeps the membership, and the next
//! leader picks up where the last one was.
//!
//! 1. The target's new replicas join as learners (their brokers open the partition as
//!    soon as their metadata shows the target). The leader sends them a snapshot at the
//!    retention boundary if its log starts past what they have, then the log.
//! 2. Once each holds the leader's whole log as it stood at the previous step (a quarter
//!    second earlier: what is in flight under load may trail), it is promoted.
//!    If the leader itself leaves, it first promotes the target alongside the current
//!    voters, then hands leadership to the target's first replica, which goes on.
//! 3. The voters become exactly the target (joint consensus, then the target alone); the
//!    replicas left out are removed from the group.
//! 4. The leader reports the move done in the metadata; every broker left out then closes
//!    and deletes its copy.
//!
//! Term and log checks are openraft's, unchanged: a learner votes for nobody, and a
//! membership change commits only on a quorum of both the old and new voters.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, ServerState};

use super::Partition;
use crate::raft::types::NodeId;

/// What one step of a move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveStep {
    /// This replica does not serve as leader: another one drives the move.
    NotLeading,
    /// New replicas were added as learners.
    AddedLearners(Vec<NodeId>),
    /// New replicas are catching up: each, with the entries it is behind.
    CatchingUp(Vec<(NodeId, u64)>),
    /// The voters changed (the target promoted, or the old voters removed).
    Promoted(Vec<NodeId>),
    /// Leadership went to a replica of the target, which goes on with the move.
    HandedOver(NodeId),
    /// The voters are the target: the move is done and can be reported.
    Done,
}

impl Partition {
    /// The voters as the metadata last placed them, the preferred leader first.
    pub fn replicas(&self) -> Arc<[NodeId]> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// While the partition moves: the replicas it moves to.
    pub fn target(&self) -> Option<Arc<[NodeId]>> {
        self.target
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes what the metadata now says of the partition: its replicas, and the target
    /// of a move in progress.
    pub fn set_placement(&self, replicas: &[NodeId], target: Option<&[NodeId]>) {
        {
            let mut current = self.replicas.write().unwrap_or_else(|p| p.into_inner());
            if **current != *replicas {
                *current = replicas.into();
                self.log
                    .set_sole_replica(replicas == [self.ctx.node_id].as_slice());
            }
        }
        let mut moving = self.target.write().unwrap_or_else(|p| p.into_inner());
        if moving.as_deref() != target {
            *moving = target.map(Into::into);
        }
    }

    /// Takes the next step of the move to `target` (see the module's description). An
    /// error is openraft's refusal of a step; the next step tries again.
    pub async fn step_move(&self, target: &[NodeId]) -> Result<MoveStep, String> {
        let step = self.next_move_step(target).await;
        if !matches!(
            step,
            Ok(MoveStep::AddedLearners(_) | MoveStep::CatchingUp(_))
        ) {
            // Copies to the new replicas are paced only while they catch up.
            self.ctx.throttle.done(self.group);
        }
        step
    }

    async fn next_move_step(&self, target: &[NodeId]) -> Result<MoveStep, String> {
        if !self.serving() {
            return Ok(MoveStep::NotLeading);
        }
        let (nodes, voters, joint, last, matched) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            if m.state != ServerState::Leader {
                return Ok(MoveStep::NotLeading);
            }
            let membership = m.membership_config.membership();
            let nodes: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            let joint = membership.get_joint_config().len() > 1;
            let last = m.last_log_index.unwrap_or(0);
            let matched: Vec<(NodeId, u64)> = m
                .replication
                .iter()
                .flatten()
                .map(|(id, l)| (*id, l.as_ref().map_or(0, |l| l.index + 1)))
                .collect();
            (nodes, voters, joint, last, matched)
        };
        let me = self.ctx.node_id;
        let wanted: BTreeSet<NodeId> = target.iter().copied().collect();
        let adding: Vec<NodeId> = wanted.difference(&voters).copied().collect();
        self.ctx.throttle.copying(self.group, &adding);

        // 1. New replicas join as learners.
        let missing: Vec<NodeId> = target
            .iter()
            .copied()
            .filter(|id| !nodes.contains(id))
            .collect();
        if !missing.is_empty() {
            for &id in &missing {
                let addr = (self.ctx.peers)(id).unwrap_or_default();
                self.raft
                    .add_learner(id, BasicNode { addr }, false)
                    .await
                    .map_err(|e| format!("adding replica {id} as a learner: {e}"))?;
            }
            tracing::info!(topic = %self.topic, partition = self.partition, learners = ?missing, "move: new replicas added as learners");
            return Ok(MoveStep::AddedLearners(missing));
        }

        // 2. Every new replica holds the log as it stood at the previous step.
        let mark = self
            .catch_up_mark
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(last);
        let behind: Vec<(NodeId, u64)> = adding
            .iter()
            .filter(|&&id| id != me)
            .filter_map(|&id| {
                let have = matched
                    .iter()
                    .find(|(n, _)| *n == id)
                    .map_or(0, |(_, next)| *next);
                let caught_up = mark.is_some_and(|mark| have > mark);
                (!caught_up).then_some((id, (last + 1).saturating_sub(have)))
            })
            .collect();
        if !behind.is_empty() {
            return Ok(MoveStep::CatchingUp(behind));
        }

        // 3. The voters become the target; a leader that leaves hands over first.
        if !wanted.contains(&me) {
            let successor = target.iter().copied().find(|id| voters.contains(id));
            match successor {
                Some(to) if !joint => {
                    tracing::info!(topic = %self.topic, partition = self.partition, to, "move: handing leadership to the target");
                    self.raft
                        .trigger()
                        .transfer_leader(to)
                        .await
                        .map_err(|e| format!("handing leadership to {to}: {e}"))?;
                    return Ok(MoveStep::HandedOver(to));
                }
                _ => {
                    let both: BTreeSet<NodeId> = voters.union(&wanted).copied().collect();
                    return self.change_voters(both).await;
                }
            }
        }
        if voters != wanted || joint {
            return self.change_voters(wanted).await;
        }
        let leftover: BTreeSet<NodeId> = nodes.difference(&wanted).copied().collect();
        if !leftover.is_empty() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(leftover.clone()), false)
                .await
                .map_err(|e| format!("removing {leftover:?} from the group: {e}"))?;
            return Ok(MoveStep::Promoted(target.to_vec()));
        }
        Ok(MoveStep::Done)
    }

    async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<MoveStep, String> {
        tracing::info!(topic = %self.topic, partition = self.partition, ?voters, "move: changing the voters");
        self.stir();
        self.raft
            .change_membership(voters.clone(), false)
            .await
            .map_err(|e| format!("changing the voters to {voters:?}: {e}"))?;
        Ok(MoveStep::Promoted(voters.into_iter().collect()))
    }
}
