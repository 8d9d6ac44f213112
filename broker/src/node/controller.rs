//! The cluster's shape, kept by whoever leads the metadata group (the controller, in
//! Kafka's words), and the moves each partition leader carries out.
//!
//! - **Join.** A broker that registered (its `RegisterBroker` forwarded through a `--peer`)
//!   but is not a member of the metadata group is added as a learner, then promoted to
//!   voter while the group has fewer than [`MAX_METADATA_VOTERS`].
//! - **Drain.** Every replica of a draining broker moves to the placeable broker with the
//!   fewest replicas that does not hold the partition yet (in its place in the list, so a
//!   preferred leader is replaced by a preferred leader). Once nothing is left on it, it
//!   leaves the metadata group (a voter is replaced by a learner if there is one), then is
//!   marked removed.
//! - **Moves.** Each partition this broker leads that has a target takes its next step
//!   (`Partition::step_move`); the leader that finds it done reports it.
//! - **Splits.** Each old partition of a growing topic that this broker leads writes its
//!   split marker and reports its split point (`splits`).
//!
//! Each round reads the state afresh and does only what is missing, so a round cut short
//! by a crash or a change of leader is finished by the next one, wherever it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, ServerState};

use super::{Broker, MAX_METADATA_VOTERS};
use crate::metadata::{Command, MetadataState, Retirement};
use crate::partition::{MoveStep, Partition};
use crate::raft::types::NodeId;

/// How often the controller and the moves take their next step.
const TICK: Duration = Duration::from_millis(250);
/// The longest one step may take; past it, the next round tries again.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the controller's rounds and the moves this broker leads, until the broker stops.
pub(super) async fn run(weak: Weak<Broker>) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(broker) = weak.upgrade() else { return };
        if broker.is_stopping() {
            return;
        }
        broker.step_moves().await;
        broker.step_splits().await;
        if broker.is_metadata_leader()
            && let Err(e) = tokio::time::timeout(STEP_TIMEOUT, broker.control()).await
        {
            tracing::debug!(error = %e, "controller round timed out");
        }
    }
}

impl Broker {
    /// One step of every move of a partition this broker leads.
    async fn step_moves(self: &Arc<Self>) {
        let me = self.cfg.node_id;
        let moving: Vec<(Arc<Partition>, Arc<[NodeId]>)> = self
            .hosted()
            .into_iter()
            .filter(|p| p.leader().0 == Some(me))
            .filter_map(|p| p.target().map(|t| (p, t)))
            .collect();
        let steps = moving.into_iter().map(|(p, target)| async move {
            let step = tokio::time::timeout(STEP_TIMEOUT, p.step_move(&target)).await;
            match step {
                Ok(Ok(MoveStep::Done)) => {
                    let done = Command::CompleteReassignment {
                        group: p.group,
                        replicas: target.to_vec(),
                    };
                    match self.propose_metadata(done).await {
                        Ok(()) => {
                            tracing::info!(topic = %p.topic, partition = p.partition, replicas = ?target, "move done")
                        }
                        Err(e) => tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "move done but not yet recorded"),
                    }
                }
                Ok(Ok(step)) => tracing::debug!(topic = %p.topic, partition = p.partition, ?step, "move"),
                Ok(Err(e)) => tracing::info!(topic = %p.topic, partition = p.partition, error = %e, "move step refused; retrying"),
                Err(_) => tracing::info!(topic = %p.topic, partition = p.partition, "move step timed out; retrying"),
            }
        });
        futures::future::join_all(steps).await;
    }

    /// One controller round: joins, then drains.
    async fn control(&self) {
        let state = self.metadata();
        let (voters, nodes, caught_up) = {
            let m = self.meta.metrics();
            let m = m.borrow_watched();
            if m.state != ServerState::Leader {
                return;
            }
            let membership = m.membership_config.membership();
            let last = m.last_log_index.unwrap_or(0);
            let caught_up: BTreeSet<NodeId> = m
                .replication
                .iter()
                .flatten()
                .filter(|(_, l)| l.as_ref().is_some_and(|l| l.index + 64 >= last))
                .map(|(id, _)| *id)
                .collect();
            (
                membership.voter_ids().collect::<BTreeSet<NodeId>>(),
                membership
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect::<BTreeSet<NodeId>>(),
                caught_up,
            )
        };
        if let Err(e) = self.admit(&state, &voters, &nodes, &caught_up).await {
            tracing::info!(error = %e, "admitting brokers; retrying");
        }
        for (&id, _) in state
            .retiring
            .iter()
            .filter(|(_, r)| **r == Retirement::Draining)
        {
            if let Err(e) = self.drain(&state, id, &voters, &nodes, &caught_up).await {
                tracing::info!(broker = id, error = %e, "draining; retrying");
            }
        }
    }

    /// Adds registered brokers to the metadata group, and promotes learners to voters up
    /// to [`MAX_METADATA_VOTERS`].
    async fn admit(
        &self,
        state: &MetadataState,
        voters: &BTreeSet<NodeId>,
        nodes: &BTreeSet<NodeId>,
        caught_up: &BTreeSet<NodeId>,
    ) -> Result<(), String> {
        for (&id, _) in state.brokers.iter() {
            if nodes.contains(&id) || state.retiring.contains_key(&id) {
                continue;
            }
            let addr = state.peers.get(&id).cloned().unwrap_or_default();
            tracing::info!(broker = id, %addr, "a broker joins: adding it to the metadata group");
            self.meta
                .add_learner(id, BasicNode { addr }, false)
                .await
                .map_err(|e| format!("adding broker {id} as a learner: {e}"))?;
        }
        if voters.len() >= MAX_METADATA_VOTERS {
            return Ok(());
        }
        let promote = nodes
            .iter()
            .find(|id| {
                !voters.contains(id) && caught_up.contains(id) && !state.retiring.contains_key(id)
            })
            .copied();
        if let Some(id) = promote {
            let mut next = voters.clone();
            next.insert(id);
            tracing::info!(broker = id, voters = ?next, "promoting a metadata learner to voter");
            self.meta
                .change_membership(next, false)
                .await
                .map_err(|e| format!("promoting broker {id}: {e}"))?;
        }
        Ok(())
    }

    /// Moves what is left on draining broker `id`; once nothing is, removes it.
    async fn drain(
        &self,
        state: &MetadataState,
        id: NodeId,
        voters: &BTreeSet<NodeId>,
        nodes: &BTreeSet<NodeId>,
        caught_up: &BTreeSet<NodeId>,
    ) -> Result<(), String> {
        let mut load = replica_counts(state);
        let placeable = state.placeable();
        let mut left = 0;
        for (topic, partition, meta) in state.hosted_on(id) {
            left += 1;
            if meta.target.is_some() {
                continue; // moving already
            }
            let Some(to) = placeable
                .iter()
                .filter(|b| !meta.replicas.contains(b))
                .min_by_key(|b| (load.get(b).copied().unwrap_or(0), **b))
                .copied()
            else {
                return Err(format!("no broker can take {topic}-{partition}"));
            };
            *load.entry(to).or_default() += 1;
            let replicas: Vec<NodeId> = meta
                .replicas
                .iter()
                .map(|&r| if r == id { to } else { r })
                .collect();
            tracing::info!(broker = id, %topic, partition, ?replicas, "draining: moving a replica");
            self.propose_metadata(Command::ReassignPartition {
                topic: topic.to_owned(),
                partition,
                replicas,
            })
            .await
            .map_err(|e| e.to_string())?;
        }
        if left > 0 {
            return Ok(());
        }
        if nodes.contains(&id) {
            if id == self.cfg.node_id {
                // The leader leaves last: it hands the group to another voter first.
                if let Some(&to) = voters.iter().find(|v| **v != id && caught_up.contains(v)) {
                    tracing::info!(to, "draining the metadata leader: handing leadership over");
                    self.meta
                        .trigger()
                        .transfer_leader(to)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                return Ok(());
            }
            let change = if voters.contains(&id) {
                let mut next: BTreeSet<NodeId> =
                    voters.iter().copied().filter(|v| *v != id).collect();
                if let Some(&spare) = nodes.iter().find(|n| {
                    !voters.contains(n) && caught_up.contains(n) && !state.retiring.contains_key(n)
                }) {
                    next.insert(spare);
                }
                tracing::info!(broker = id, voters = ?next, "draining: leaving the metadata voters");
                self.meta.change_membership(next, false).await
            } else {
                tracing::info!(broker = id, "draining: leaving the metadata learners");
                self.meta
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
            };
            change.map_err(|e| format!("removing broker {id} from the metadata group: {e}"))?;
            return Ok(());
        }
        if state.members.contains(&id) {
            return Ok(()); // the membership change is not applied here yet
        }
        tracing::info!(broker = id, "drained: removed");
        self.propose_metadata(Command::RemoveBroker { id })
            .await
            .map_err(|e| e.to_string())
    }
}

/// How many replicas (and move targets) each broker holds.
fn replica_counts(state: &MetadataState) -> BTreeMap<NodeId, u64> {
    let mut counts = BTreeMap::new();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        for id in p.hosts() {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}
