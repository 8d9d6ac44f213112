//! Growing a topic's partition count while every subject keeps its order (issue 15; the
//! design note is `broker/SPLITS.md`).
//!
//! [`Command::AddPartitions`](super::Command::AddPartitions) raises the topic's map epoch,
//! places the new partitions and opens a split whose points are all pending. Each old
//! partition's leader then writes a split marker into its own log (`partition::split`):
//! the marker's position is the split point, so it is ordered with the records by the
//! partition's Raft log itself, whichever leader wrote it and whatever this broker's copy
//! of the metadata said at the time. The leader reports the point it applied
//! ([`Command::RecordSplit`](super::Command::RecordSplit)); every replica applies the same
//! marker at the same place, so every report of one point is the same. New partitions
//! take records once every point is recorded (the split is *sealed*).

use steme_protocol::messages::metadata::{SplitInfo, SplitPoint};

use super::{MetadataState, PartitionMeta, TopicMeta, is_internal};
use crate::raft::types::NodeId;

/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

/// One growth of a topic's partition count, as the metadata records it: what the
/// Metadata API lists.
pub type TopicSplit = SplitInfo;

/// What a partition's records are checked against, and what its leader must do first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMap {
    /// The topic's map epoch.
    pub epoch: u64,
    /// The topic's partition count under it.
    pub partitions: u32,
    /// The epoch the partition was created in (it needs no marker for it or before).
    pub born: u64,
    /// For a partition a split created: `None` until the split is sealed, then the HLC its
    /// records must be stamped above.
    pub hlc_floor: Option<u64>,
}

impl TopicMeta {
    /// The split that created `partition`, if a growth did.
    pub fn split_creating(&self, partition: u32) -> Option<&TopicSplit> {
        self.splits
            .iter()
            .find(|s| partition >= s.from && partition < s.to)
    }

    /// The split still recording its points, if any (at most one runs at a time).
    pub fn open_split(&self) -> Option<&TopicSplit> {
        self.splits.last().filter(|s| !s.sealed())
    }

    /// Every partition count the topic has had, oldest first.
    pub fn counts(&self) -> Vec<u32> {
        let mut counts: Vec<u32> = self.splits.iter().map(|s| s.from).collect();
        counts.push(self.partitions.len() as u32);
        counts
    }

    /// The map `partition`'s records are checked against now.
    pub fn map_of(&self, partition: u32) -> PartitionMap {
        let created = self.split_creating(partition);
        PartitionMap {
            epoch: self.map_epoch,
            partitions: self.partitions.len() as u32,
            born: created.map_or(0, |s| s.epoch),
            hlc_floor: match created {
                None => Some(0),
                Some(s) if s.sealed() => Some(s.max_hlc()),
                Some(_) => None,
            },
        }
    }
}

impl MetadataState {
    pub(super) fn add_partitions(
        &mut self,
        name: &str,
        count: u32,
        cap: Option<u32>,
    ) -> Result<(), String> {
        if is_internal(name) {
            return Err(format!("cannot grow `{name}`: it is an internal topic"));
        }
        let placeable = self.placeable();
        let t = self
            .topics
            .get(name)
            .ok_or_else(|| format!("unknown topic `{name}`"))?;
        let from = t.partitions.len() as u32;
        if count == from {
            return Ok(());
        }
        if count < from {
            return Err(format!(
                "topic `{name}` has {from} partitions; partitions are never removed, so it \
                 cannot have {count}"
            ));
        }
        if count > MAX_PARTITIONS {
            return Err(format!(
                "a topic has at most {MAX_PARTITIONS} partitions, not {count}"
            ));
        }
        if let Some(s) = t.open_split() {
            let pending = s.points.iter().filter(|p| p.is_none()).count();
            return Err(format!(
                "topic `{name}` is still splitting from {} to {} partitions ({pending} split \
                 points to record); try again once that is done",
                s.from, s.to
            ));
        }
        let rf = usize::from(t.replication_factor).max(1);
        if rf > placeable.len() {
            return Err(format!(
                "replication factor {rf} exceeds the {} brokers that can take replicas",
                placeable.len()
            ));
        }
        let first_group = self.next_group.max(1);
        let start = (first_group - 1) as usize;
        let added: Vec<PartitionMeta> = (0..count - from)
            .map(|i| PartitionMeta {
                group: first_group + u64::from(i),
                replicas: (0..rf)
                    .map(|r| placeable[(start + i as usize + r) % placeable.len()])
                    .collect(),
                target: None,
            })
            .collect();
        if let Some(cap) = cap {
            self.check_replica_cap(name, &added, cap)?;
        }
        self.next_group = first_group + added.len() as u64;
        let t = self.topics.get_mut(name).expect("checked above");
        t.map_epoch += 1;
        t.splits.push(TopicSplit {
            epoch: t.map_epoch,
            from,
            to: count,
            points: vec![None; from as usize],
        });
        t.partitions.extend(added);
        Ok(())
    }

    pub(super) fn record_split(
        &mut self,
        topic: &str,
        partition: u32,
        epoch: u64,
        point: SplitPoint,
    ) -> Result<(), String> {
        let t = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| format!("unknown topic `{topic}`"))?;
        let s = t
            .splits
            .iter_mut()
            .find(|s| s.epoch == epoch)
            .ok_or_else(|| format!("topic `{topic}` has no split of epoch {epoch}"))?;
        let slot = s.points.get_mut(partition as usize).ok_or_else(|| {
            format!("partition {partition} of `{topic}` is not an old partition of split {epoch}")
        })?;
        match slot {
            None => {
                *slot = Some(point);
                Ok(())
            }
            // Every replica applies the marker at the same place: a second report is the
            // same point (a leader's retry, or a new leader's).
            Some(p) if *p == point => Ok(()),
            Some(p) => Err(format!(
                "{topic}-{partition} split {epoch} is recorded at {p:?}, not {point:?}"
            )),
        }
    }

    /// The old partitions hosted on `node` whose point of their topic's open split is still
    /// pending: `(topic, partition, epoch)`.
    pub fn pending_splits(&self, node: NodeId) -> impl Iterator<Item = (&str, u32, u64)> + '_ {
        self.topics.values().flat_map(move |t| {
            t.open_split().into_iter().flat_map(move |s| {
                s.points
                    .iter()
                    .enumerate()
                    .filter(move |(p, point)| point.is_none() && t.partitions[*p].hosted_on(node))
                    .map(move |(p, _)| (t.name.as_str(), p as u32, s.epoch))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::Command;

    fn topic_of(partitions: u32) -> MetadataState {
        let mut s = crate::metadata::registered(3);
        s.apply(Command::CreateTopic {
            name: "facts".into(),
            partitions,
            replication_factor: 3,
            configs: BTreeMap::new(),
            max_replicas_per_broker: None,
        })
        .unwrap();
        s
    }

    fn grow(count: u32) -> Command {
        Command::AddPartitions {
            name: "facts".into(),
            count,
            max_replicas_per_broker: None,
        }
    }

    fn record(partition: u32, epoch: u64, offset: u64) -> Command {
        Command::RecordSplit {
            topic: "facts".into(),
            partition,
            epoch,
            point: SplitPoint {
                offset,
                hlc: offset << 20,
            },
        }
    }

    #[test]
    fn a_growth_opens_a_split_that_seals_once_every_old_partition_reports() {
        let mut s = topic_of(4);
        s.apply(grow(6)).unwrap();
        let t = &s.topics["facts"];
        assert_eq!((t.map_epoch, t.partitions.len()), (1, 6));
        assert_eq!(t.counts(), vec![4, 6]);
        assert_eq!(
            t.map_of(4).hlc_floor,
            None,
            "new partitions wait for the seal"
        );
        assert_eq!(t.map_of(0).hlc_floor, Some(0));
        assert_eq!((t.map_of(0).born, t.map_of(5).born), (0, 1));
        // New groups, placed on every broker.
        assert_eq!(t.partitions[4].group, 5);
        assert_eq!(s.pending_splits(1).count(), 4);
        for p in 0..4 {
            s.apply(record(p, 1, 10 + u64::from(p))).unwrap();
            // A repeat of the same point is a no-op; another point is refused.
            s.apply(record(p, 1, 10 + u64::from(p))).unwrap();
            assert!(s.apply(record(p, 1, 99)).is_err());
        }
        let t = &s.topics["facts"];
        assert!(t.open_split().is_none());
        assert_eq!(t.map_of(5).hlc_floor, Some(13 << 20));
        assert_eq!(s.pending_splits(1).count(), 0);
    }

    #[test]
    fn growths_are_refused_when_they_shrink_overlap_or_overflow() {
        let mut s = topic_of(4);
        assert!(s.apply(grow(3)).is_err(), "partitions are never removed");
        assert!(s.apply(grow(MAX_PARTITIONS + 1)).is_err());
        s.apply(grow(4)).unwrap();
        assert_eq!(
            s.topics["facts"].map_epoch, 0,
            "the same count changes nothing"
        );
        s.apply(grow(6)).unwrap();
        let err = s.apply(grow(8)).unwrap_err();
        assert!(err.contains("still splitting"), "{err}");
        assert!(
            s.apply(record(4, 1, 0)).is_err(),
            "4 is not an old partition"
        );
        assert!(s.apply(record(0, 2, 0)).is_err(), "no split of epoch 2");
        for p in 0..4 {
            s.apply(record(p, 1, 0)).unwrap();
        }
        s.apply(grow(9)).unwrap();
        let t = &s.topics["facts"];
        assert_eq!(t.counts(), vec![4, 6, 9]);
        assert_eq!(
            t.splits[1].points.len(),
            6,
            "partitions 4 and 5 are old now"
        );
        assert_eq!(t.map_of(5).born, 1);
        assert!(
            s.apply(Command::AddPartitions {
                name: "__groups".into(),
                count: 2,
                max_replicas_per_broker: None
            })
            .is_err()
        );
    }
}
