//! Split gates of `steme consume`: a partition created by a split is held (paused) until
//! every old partition of its split has been read past its split point, so that each
//! subject's records come out in HLC order across the split (see
//! [`steme_client::consumer::split`]).

use std::collections::{BTreeMap, BTreeSet};

use steme_client::consumer::gates_open;
use steme_client::{ClientError, Consumer, Position};
use steme_protocol::messages::metadata::TopicMetadata;

/// The topic's splits as last seen, and the partitions held back because of them.
#[derive(Debug)]
pub struct SplitGates {
    meta: TopicMetadata,
    /// Paused by a closed gate (and by nothing else).
    held: BTreeSet<u32>,
}

impl SplitGates {
    pub fn new(meta: TopicMetadata) -> SplitGates {
        SplitGates {
            meta,
            held: BTreeSet::new(),
        }
    }

    /// The partitions the topic had as last seen.
    pub fn partitions(&self) -> Vec<u32> {
        self.meta.partitions.iter().map(|p| p.partition).collect()
    }

    /// The partitions held back.
    pub fn held(&self) -> &BTreeSet<u32> {
        &self.held
    }

    /// The partitions whose gates are open, given where the consumer stands.
    fn open(&self, consumer: &Consumer) -> BTreeSet<u32> {
        gates_open(&self.meta, &positions(consumer))
    }

    /// Pauses each of `partitions` whose gate is closed, until
    /// [`release_open`](Self::release_open) finds it open.
    pub fn hold_closed(
        &mut self,
        consumer: &mut Consumer,
        partitions: &[u32],
    ) -> Result<(), ClientError> {
        let open = self.open(consumer);
        for &p in partitions {
            if !open.contains(&p) {
                consumer.pause(p)?;
                self.held.insert(p);
            }
        }
        Ok(())
    }

    /// Resumes the held partitions whose gates have opened.
    pub fn release_open(&mut self, consumer: &mut Consumer) -> Result<(), ClientError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let open = self.open(consumer);
        let released: Vec<u32> = self.held.intersection(&open).copied().collect();
        for p in released {
            tracing::debug!(partition = p, "split gate open");
            self.held.remove(&p);
            consumer.resume(p)?;
        }
        Ok(())
    }

    /// Takes fresh metadata of the topic: partitions the consumer does not read yet (added
    /// since) are assigned from their start and held while their gates are closed; gates
    /// that opened with it (a split sealed) are released.
    pub fn update(
        &mut self,
        consumer: &mut Consumer,
        meta: TopicMetadata,
    ) -> Result<(), ClientError> {
        self.meta = meta;
        let assigned = consumer.assignment();
        let added: Vec<u32> = self
            .partitions()
            .into_iter()
            .filter(|p| !assigned.contains(p))
            .collect();
        for &p in &added {
            // Created after the command started: all of it is new.
            consumer.add_partition(&self.meta.name, p, Position::Earliest)?;
            tracing::debug!(partition = p, "partition added to the topic");
        }
        self.hold_closed(consumer, &added)?;
        self.release_open(consumer)
    }
}

/// Where each assigned partition stands (0 while not yet known, which holds its gates).
fn positions(consumer: &Consumer) -> BTreeMap<u32, u64> {
    consumer
        .assignment()
        .into_iter()
        .map(|p| (p, consumer.position(p).unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_client::{ClientConfig, Cluster, ConsumerConfig};
    use steme_protocol::messages::metadata::{PartitionMetadata, SplitInfo, SplitPoint};

    /// A topic grown from 2 to `count` partitions; old partition q split at `points[q]`.
    fn topic(count: u32, points: &[Option<u64>]) -> TopicMetadata {
        TopicMetadata {
            name: "facts".into(),
            partitions: (0..count)
                .map(|partition| PartitionMetadata {
                    partition,
                    leader: Some(1),
                    leader_epoch: 1,
                    replicas: vec![1],
                    target: None,
                })
                .collect(),
            map_epoch: 1,
            splits: vec![SplitInfo {
                epoch: 1,
                from: 2,
                to: 3,
                points: points
                    .iter()
                    .map(|o| o.map(|offset| SplitPoint { offset, hlc: 9 }))
                    .collect(),
            }],
        }
    }

    /// A consumer of partitions 0 and 1 of `facts`, at `positions`, never connected.
    async fn consumer_at(positions: [u64; 2]) -> anyhow::Result<Consumer> {
        let cluster = Cluster::lazy("127.0.0.1:1", ClientConfig::default())?;
        let mut c = Consumer::new(cluster, ConsumerConfig::default());
        for (p, pos) in (0..).zip(positions) {
            c.add_partition("facts", p, Position::Offset(pos))?;
            c.seek(p, Position::Offset(pos)).await?;
        }
        Ok(c)
    }

    #[tokio::test]
    async fn partition_added_while_running_is_held_until_the_old_ones_pass_their_points()
    -> anyhow::Result<()> {
        let mut c = consumer_at([10, 20]).await?;
        let mut gates = SplitGates::new(topic(2, &[]));
        // Before the split nothing is held.
        gates.hold_closed(&mut c, &[0, 1])?;
        assert!(gates.held().is_empty());

        // The split starts; partition 1 has not recorded its point yet.
        gates.update(&mut c, topic(3, &[Some(15), None]))?;
        assert_eq!(c.assignment(), vec![0, 1, 2]);
        assert_eq!(gates.held(), &BTreeSet::from([2]));

        // Sealed, but 0 is not past its point yet.
        gates.update(&mut c, topic(3, &[Some(15), Some(20)]))?;
        assert_eq!(gates.held(), &BTreeSet::from([2]));

        c.seek(0, Position::Offset(15)).await?;
        gates.release_open(&mut c)?;
        assert!(gates.held().is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn partitions_of_a_sealed_split_read_past_are_not_held() -> anyhow::Result<()> {
        let mut c = consumer_at([30, 30]).await?;
        c.add_partition("facts", 2, Position::Offset(0))?;
        let mut gates = SplitGates::new(topic(3, &[Some(15), Some(20)]));
        gates.hold_closed(&mut c, &[0, 1, 2])?;
        assert!(gates.held().is_empty());
        Ok(())
    }
}
