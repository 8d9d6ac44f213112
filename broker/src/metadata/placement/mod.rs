//! Where replicas live, and how that changes: brokers joining, draining and removed, and
//! partitions moving to other replicas (D9; the steps of a move are in
//! `partition::reassign`, the decommissioning in `node::controller`).
//!
//! A move is recorded as the partition's `target`. Until the partition's leader reports it
//! done ([`Command::CompleteReassignment`]), every broker of `replicas` and of `target`
//! hosts the partition; then `replicas` becomes `target`, and the brokers left out delete
//! their copy.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use steme_protocol::messages::metadata::BrokerState;
use steme_protocol::messages::reassign::MAX_REPLICAS;

use super::{MetadataState, PartitionMeta};
use crate::raft::types::NodeId;

/// A broker on its way out (`cluster decommission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retirement {
    /// Its replicas are moving elsewhere; it gets no new ones.
    Draining,
    /// Nothing is left on it, and it has left the metadata group.
    Removed,
}

impl PartitionMeta {
    /// Every broker that holds a replica or is to hold one: the replicas, then the
    /// target's new ones.
    pub fn hosts(&self) -> Vec<NodeId> {
        let mut hosts = self.replicas.clone();
        for id in self.target.iter().flatten() {
            if !hosts.contains(id) {
                hosts.push(*id);
            }
        }
        hosts
    }

    /// Whether `node` holds a replica or is to hold one.
    pub fn hosted_on(&self, node: NodeId) -> bool {
        self.replicas.contains(&node) || self.target.as_ref().is_some_and(|t| t.contains(&node))
    }
}

impl MetadataState {
    /// Where `id` stands: joining until it is both registered and a member of the metadata
    /// group, then active, until decommissioned.
    pub fn broker_state(&self, id: NodeId) -> BrokerState {
        match self.retiring.get(&id) {
            Some(Retirement::Draining) => BrokerState::Draining,
            Some(Retirement::Removed) => BrokerState::Removed,
            // A state from before members were recorded counts everyone as a member.
            None if self.brokers.contains_key(&id)
                && (self.members.is_empty() || self.members.contains(&id)) =>
            {
                BrokerState::Active
            }
            None => BrokerState::Joining,
        }
    }

    /// The brokers that may take new replicas: every known broker not on its way out.
    pub fn placeable(&self) -> Vec<NodeId> {
        self.broker_ids()
            .into_iter()
            .filter(|id| !self.retiring.contains_key(id))
            .collect()
    }

    /// Every partition hosted, or to be hosted, on `node`.
    pub fn hosted_on(&self, node: NodeId) -> impl Iterator<Item = (&str, u32, &PartitionMeta)> {
        self.topics.values().flat_map(move |t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(move |(_, p)| p.hosted_on(node))
                .map(|(i, p)| (t.name.as_str(), i as u32, p))
        })
    }

    pub(super) fn reassign(
        &mut self,
        topic: &str,
        partition: u32,
        replicas: Vec<NodeId>,
    ) -> Result<(), String> {
        let placeable = self.placeable();
        let meta = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| format!("unknown topic `{topic}`"))?
            .partitions
            .get_mut(partition as usize)
            .ok_or_else(|| format!("topic `{topic}` has no partition {partition}"))?;
        if replicas.is_empty() || replicas.len() > MAX_REPLICAS {
            return Err(format!(
                "a partition has 1 to {MAX_REPLICAS} replicas, not {}",
                replicas.len()
            ));
        }
        let distinct: BTreeSet<NodeId> = replicas.iter().copied().collect();
        if distinct.len() != replicas.len() {
            return Err(format!("replicas {replicas:?} name a broker twice"));
        }
        if let Some(id) = replicas.iter().find(|id| !placeable.contains(id)) {
            return Err(format!(
                "broker {id} cannot take replicas: it is unknown, draining or removed"
            ));
        }
        match &meta.target {
            Some(t) if *t == replicas => Ok(()),
            Some(t) => Err(format!(
                "{topic}-{partition} is already moving from {:?} to {t:?}; wait until that \
                 move is done",
                meta.replicas
            )),
            None if meta.replicas == replicas => Ok(()),
            None => {
                meta.target = Some(replicas);
                Ok(())
            }
        }
    }

    pub(super) fn complete_reassignment(
        &mut self,
        group: u64,
        replicas: Vec<NodeId>,
    ) -> Result<(), String> {
        let meta = self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .find(|p| p.group == group)
            .ok_or_else(|| format!("unknown partition group {group}"))?;
        match &meta.target {
            Some(t) if *t == replicas => {
                meta.replicas = replicas;
                meta.target = None;
                Ok(())
            }
            // Reported twice (a retry after a lost answer): already done.
            None if meta.replicas == replicas => Ok(()),
            other => Err(format!(
                "group {group} does not move to {replicas:?} (its target is {other:?})"
            )),
        }
    }

    pub(super) fn decommission(&mut self, id: NodeId) -> Result<(), String> {
        if !self.broker_ids().contains(&id) {
            return Err(format!("unknown broker {id}"));
        }
        if self.retiring.contains_key(&id) {
            return Ok(());
        }
        let left = self.placeable().len() - 1;
        let widest = self
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .map(|p| p.replicas.len().max(p.target.as_ref().map_or(0, Vec::len)))
            .max()
            .unwrap_or(0);
        if widest > left {
            return Err(format!(
                "cannot decommission broker {id}: a partition has {widest} replicas and only \
                 {left} other brokers would be left to hold them"
            ));
        }
        self.retiring.insert(id, Retirement::Draining);
        Ok(())
    }

    pub(super) fn remove_broker(&mut self, id: NodeId) -> Result<(), String> {
        match self.retiring.get(&id) {
            Some(Retirement::Removed) => return Ok(()),
            Some(Retirement::Draining) => {}
            None => return Err(format!("broker {id} is not decommissioned")),
        }
        if let Some((topic, p, _)) = self.hosted_on(id).next() {
            return Err(format!(
                "broker {id} still hosts {topic}-{p}; it is removed once nothing is left on it"
            ));
        }
        if self.members.contains(&id) {
            return Err(format!(
                "broker {id} is still a member of the metadata group"
            ));
        }
        self.retiring.insert(id, Retirement::Removed);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
