//! The group coordinators this broker runs (D10): one per partition of the groups topic it
//! leads, loaded from that partition when it becomes leader.

use std::collections::BTreeMap;
use std::sync::Arc;

use steme_protocol::partition_for;

use super::Broker;
use crate::error::{BrokerError, Refusal};
use crate::groups::replay;
use crate::groups::{CompactionStats, Coordinator, GROUPS_TOPIC};
use crate::metadata::Command;
use crate::partition::Partition;

impl Broker {
    /// The coordinator of `group`, if this broker leads its partition of the groups topic
    /// (loading the partition's groups when it just became leader). Creates the groups
    /// topic on first use.
    pub(crate) async fn coordinator(&self, group: &str) -> Result<Arc<Coordinator>, BrokerError> {
        if group.is_empty() || group.len() > 249 {
            return Err(BrokerError::InvalidGroupId { len: group.len() });
        }
        let Some(n) = self.partitions_of(GROUPS_TOPIC) else {
            let created = self
                .propose_metadata(Command::CreateTopic {
                    name: GROUPS_TOPIC.to_owned(),
                    partitions: self.cfg.group_partitions,
                    replication_factor: 0,
                    configs: BTreeMap::from([("verify.signatures".to_owned(), "false".to_owned())]),
                    max_replicas_per_broker: Some(self.cfg.max_partitions_per_broker),
                })
                .await;
            match created {
                Ok(())
                | Err(BrokerError::MetadataRefused {
                    refusal: Refusal::TopicExists,
                    ..
                }) => return Err(BrokerError::GroupsTopicCreated),
                Err(e) => return Err(e),
            }
        };
        let p = partition_for(group, n);
        let not_here = |leader| BrokerError::NotCoordinator {
            group: group.to_owned(),
            partition: p,
            leader,
            node: self.cfg.node_id,
        };
        let part = self
            .partition(GROUPS_TOPIC, p)
            .map_err(|_| not_here(None))?;
        let (leader, term) = part.leader();
        if leader != Some(self.cfg.node_id) {
            return Err(not_here(leader));
        }
        self.load_coordinator(p, part, term).await
    }

    /// How the coordinator of `group` (here) loaded its partition and compacts it: what a
    /// test or an operator checks of the groups topic's snapshots.
    pub async fn group_compaction(&self, group: &str) -> Result<CompactionStats, BrokerError> {
        Ok(self.coordinator(group).await?.compaction())
    }

    /// The coordinators of every partition of the groups topic this broker leads (a
    /// cluster-wide list asks every broker).
    pub(crate) async fn led_coordinators(&self) -> Result<Vec<Arc<Coordinator>>, BrokerError> {
        let n = self.partitions_of(GROUPS_TOPIC).unwrap_or(0);
        let mut led = Vec::new();
        for p in 0..n {
            let Ok(part) = self.partition(GROUPS_TOPIC, p) else {
                continue;
            };
            let (leader, term) = part.leader();
            if leader != Some(self.cfg.node_id) {
                continue;
            }
            led.push(self.load_coordinator(p, part, term).await?);
        }
        Ok(led)
    }

    /// The coordinator of partition `p` of the groups topic in `term`, loaded if needed.
    async fn load_coordinator(
        &self,
        p: u32,
        part: Arc<Partition>,
        term: u64,
    ) -> Result<Arc<Coordinator>, BrokerError> {
        let mut coords = self.coordinators.lock().await;
        if let Some(c) = coords.get(&p)
            && c.is_for(&part, term)
        {
            return Ok(c.clone());
        }
        let mut trusted = replay::trusted(self.metadata().signers.values());
        trusted.insert(*self.group_key.verifying_key().as_bytes());
        let c = Arc::new(Coordinator::load(part, term, self.group_key.clone(), trusted).await?);
        coords.insert(p, c.clone());
        Ok(c)
    }

    /// The coordinators still current here; forgets those whose partition is led
    /// elsewhere (or in a newer term).
    pub(super) async fn current_coordinators(&self) -> Vec<Arc<Coordinator>> {
        let mut all = self.coordinators.lock().await;
        all.retain(|_, c| c.is_current(self.cfg.node_id));
        all.values().cloned().collect()
    }

    /// Deletes, on every groups partition hosted here, the whole segments below its last
    /// trusted snapshot: everything a coordinator's load would skip. Each replica does it
    /// on its own log, as retention does; records at and after the snapshot are never
    /// touched, so no commit or membership is lost.
    pub(super) async fn compact_groups(&self) {
        let parts: Vec<Arc<Partition>> = self
            .hosted()
            .into_iter()
            .filter(|p| p.topic == GROUPS_TOPIC)
            .collect();
        if parts.is_empty() {
            return;
        }
        let mut trusted = replay::trusted(self.metadata().signers.values());
        trusted.insert(*self.group_key.verifying_key().as_bytes());
        let trusted = Arc::new(trusted);
        for p in parts {
            match crate::groups::load::last_snapshot(p.as_ref(), &trusted).await {
                Ok(Some(at)) => {
                    if let Err(e) = p.compact_below(at).await {
                        tracing::warn!(partition = p.partition, error = %e, "compacting the groups topic");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(partition = p.partition, error = %e, "no snapshot to compact the groups topic to");
                }
            }
        }
    }
}
