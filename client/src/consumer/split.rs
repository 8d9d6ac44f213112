//! Partition splits as a reader sees them. Pure functions of a topic's metadata.
//!
//! When a topic grows from `from` to `to` partitions, the subjects that jump hash sends
//! elsewhere under `to` move to the new partitions `from..to` only. Each old partition `q`
//! records a split point: every record of a moved subject in `q` is below its offset, and
//! the moved subjects' records in the new partitions are stamped above every split point's
//! HLC. A reader keeps each subject in HLC order by reading an old partition up to its split
//! point before reading a new partition.
//!
//! - [`subject_chain`]: the partition ranges that hold one subject's records, in order
//!   (what [`Consumer::subject_history`](super::Consumer::subject_history) reads).
//! - [`gates_open`]: which partitions a reader of several partitions may read, given where
//!   it stands in the others (what `steme consume` holds back).

use std::collections::{BTreeMap, BTreeSet};

use steme_protocol::messages::metadata::{SplitInfo, TopicMetadata};
use steme_protocol::partition_for;

/// Where reading one partition of a subject's chain stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadUntil {
    /// Below this offset: the split point, after which the subject is in another partition.
    SplitPoint(u64),
    /// The high watermark: the subject is still written here.
    HighWatermark,
}

/// One partition of a subject's chain: read from its log start until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStep {
    /// The partition.
    pub partition: u32,
    /// Where the subject's records in it end.
    pub until: ReadUntil,
}

/// The partitions that hold `subject`'s records, oldest first: its partition under the
/// topic's original partition count, then, for each split that moved it, its new partition.
/// Every step but the last ends at the split point of the split that moved the subject on;
/// the last is read to the high watermark. Reading the steps in order gives the subject's
/// records in HLC order.
///
/// A split that would move the subject but is not sealed yet (some old partition has not
/// recorded its split point) ends the chain: the new partition takes no records until it
/// is sealed, so the subject's records are all in the partition it is in.
pub fn subject_chain(meta: &TopicMetadata, subject: &str) -> Vec<ChainStep> {
    let original = meta
        .splits
        .first()
        .map_or(meta.partitions.len() as u32, |s| s.from);
    let mut current = partition_for(subject, original);
    let mut chain = Vec::new();
    for split in &meta.splits {
        let next = partition_for(subject, split.to);
        if next == current {
            continue;
        }
        let point = split.points.get(current as usize).copied().flatten();
        let Some(point) = point.filter(|_| split.sealed()) else {
            break;
        };
        chain.push(ChainStep {
            partition: current,
            until: ReadUntil::SplitPoint(point.offset),
        });
        current = next;
    }
    chain.push(ChainStep {
        partition: current,
        until: ReadUntil::HighWatermark,
    });
    chain
}

/// The partitions of `meta` that a reader may deliver records of without breaking any
/// subject's order: those the topic was created with, and those of a sealed split whose
/// old partitions the reader has read past their split points.
///
/// `positions` holds, for each partition the reader reads, its next offset (0 while not
/// yet known). A partition absent from it is not read by this reader and holds no gate: the
/// reader delivers none of its records, so it has no order to keep with them.
pub fn gates_open(meta: &TopicMetadata, positions: &BTreeMap<u32, u64>) -> BTreeSet<u32> {
    meta.partitions
        .iter()
        .map(|p| p.partition)
        .filter(|&p| {
            meta.split_creating(p)
                .is_none_or(|split| read_past_split(split, positions))
        })
        .collect()
}

/// Whether the split is sealed and every old partition the reader reads stands at or past
/// its split point.
fn read_past_split(split: &SplitInfo, positions: &BTreeMap<u32, u64>) -> bool {
    split
        .points
        .iter()
        .zip(0u32..)
        .all(|(point, q)| match point {
            None => false,
            Some(point) => positions.get(&q).is_none_or(|&pos| pos >= point.offset),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_protocol::messages::metadata::{PartitionMetadata, SplitPoint};

    fn partitions(n: u32) -> Vec<PartitionMetadata> {
        (0..n)
            .map(|partition| PartitionMetadata {
                partition,
                leader: Some(1),
                leader_epoch: 1,
                replicas: vec![1],
                target: None,
            })
            .collect()
    }

    /// A split from `from` to `to` whose old partition `q` split at offset `100 * (q + 1)`
    /// (HLC `epoch * 1000 + q`), or has not recorded it if `q` is in `missing`.
    fn split(epoch: u64, from: u32, to: u32, missing: &[u32]) -> SplitInfo {
        SplitInfo {
            epoch,
            from,
            to,
            points: (0..from)
                .map(|q| {
                    (!missing.contains(&q)).then_some(SplitPoint {
                        offset: 100 * (u64::from(q) + 1),
                        hlc: epoch * 1000 + u64::from(q),
                    })
                })
                .collect(),
        }
    }

    fn topic(count: u32, splits: Vec<SplitInfo>) -> TopicMetadata {
        TopicMetadata {
            name: "facts".into(),
            partitions: partitions(count),
            map_epoch: splits.len() as u64,
            splits,
        }
    }

    /// The first subject `urn:s:{i}` whose partitions under the counts `counts` are `want`.
    fn subject_with(counts: &[u32], want: &[u32]) -> String {
        (0..1_000_000)
            .map(|i| format!("urn:s:{i}"))
            .find(|s| {
                counts
                    .iter()
                    .map(|&n| partition_for(s, n))
                    .eq(want.iter().copied())
            })
            .expect("some subject lands there")
    }

    fn until_point(partition: u32, offset: u64) -> ChainStep {
        ChainStep {
            partition,
            until: ReadUntil::SplitPoint(offset),
        }
    }

    fn to_end(partition: u32) -> ChainStep {
        ChainStep {
            partition,
            until: ReadUntil::HighWatermark,
        }
    }

    #[test]
    fn chain_of_a_topic_never_split_is_its_partition() {
        let meta = topic(4, vec![]);
        let s = "urn:person:ada";
        assert_eq!(subject_chain(&meta, s), vec![to_end(partition_for(s, 4))]);
    }

    #[test]
    fn chain_follows_a_subject_through_4_to_6_then_6_to_9() {
        let meta = topic(9, vec![split(1, 4, 6, &[]), split(2, 6, 9, &[])]);
        let counts = [4, 6, 9];

        // Moves in both splits: 1 → 4 → 7.
        let s = subject_with(&counts, &[1, 4, 7]);
        assert_eq!(
            subject_chain(&meta, &s),
            vec![until_point(1, 200), until_point(4, 500), to_end(7)]
        );

        // Moves only in the second: 2 → 2 → 8, read to partition 2's second split point.
        let s = subject_with(&counts, &[2, 2, 8]);
        assert_eq!(
            subject_chain(&meta, &s),
            vec![until_point(2, 300), to_end(8)]
        );

        // Moves only in the first: 3 → 5 → 5.
        let s = subject_with(&counts, &[3, 5, 5]);
        assert_eq!(
            subject_chain(&meta, &s),
            vec![until_point(3, 400), to_end(5)]
        );

        // Never moves.
        let s = subject_with(&counts, &[0, 0, 0]);
        assert_eq!(subject_chain(&meta, &s), vec![to_end(0)]);
    }

    #[test]
    fn chain_stops_at_a_split_not_sealed() {
        let counts = [4, 6, 9];
        let s = subject_with(&counts, &[1, 4, 7]);
        // Partition 0 has not recorded its point of the second split: the subject is still
        // written to 4, and 7 takes nothing yet.
        let meta = topic(9, vec![split(1, 4, 6, &[]), split(2, 6, 9, &[0])]);
        assert_eq!(
            subject_chain(&meta, &s),
            vec![until_point(1, 200), to_end(4)]
        );
        // Unsealed in the first split, although the subject's own old partition recorded its
        // point: 1 is read to the end.
        let meta = topic(6, vec![split(1, 4, 6, &[3])]);
        assert_eq!(subject_chain(&meta, &s), vec![to_end(1)]);
    }

    fn positions(entries: &[(u32, u64)]) -> BTreeMap<u32, u64> {
        entries.iter().copied().collect()
    }

    fn set(parts: &[u32]) -> BTreeSet<u32> {
        parts.iter().copied().collect()
    }

    #[test]
    fn original_partitions_are_always_open() {
        let meta = topic(4, vec![]);
        assert_eq!(gates_open(&meta, &positions(&[])), set(&[0, 1, 2, 3]));
    }

    #[test]
    fn new_partitions_open_once_every_old_one_is_read_past_its_point() {
        let meta = topic(6, vec![split(1, 4, 6, &[])]);
        // Points: 0@100, 1@200, 2@300, 3@400.
        let mut pos = positions(&[(0, 100), (1, 200), (2, 300), (3, 399), (4, 0), (5, 0)]);
        assert_eq!(gates_open(&meta, &pos), set(&[0, 1, 2, 3]));
        pos.insert(3, 400);
        assert_eq!(gates_open(&meta, &pos), set(&[0, 1, 2, 3, 4, 5]));
        // Not yet known counts as the start.
        pos.insert(0, 0);
        assert_eq!(gates_open(&meta, &pos), set(&[0, 1, 2, 3]));
    }

    #[test]
    fn partitions_not_read_hold_no_gate() {
        let meta = topic(6, vec![split(1, 4, 6, &[])]);
        // Reads only 2 (past its point) and the new ones.
        let pos = positions(&[(2, 1000), (4, 0), (5, 0)]);
        assert_eq!(gates_open(&meta, &pos), set(&[0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn a_split_not_sealed_stays_closed() {
        let meta = topic(6, vec![split(1, 4, 6, &[2])]);
        let pos = positions(&[(0, 1000), (1, 1000), (2, 1000), (3, 1000)]);
        assert_eq!(gates_open(&meta, &pos), set(&[0, 1, 2, 3]));
    }

    #[test]
    fn gates_of_4_to_6_then_6_to_9() {
        let meta = topic(9, vec![split(1, 4, 6, &[]), split(2, 6, 9, &[])]);
        // First split: 0@100 .. 3@400. Second: 0@100 .. 5@600 (same offsets by the helper).
        let mut pos = positions(&[
            (0, 100),
            (1, 200),
            (2, 300),
            (3, 400),
            (4, 499),
            (5, 600),
            (6, 0),
            (7, 0),
            (8, 0),
        ]);
        assert_eq!(gates_open(&meta, &pos), set(&[0, 1, 2, 3, 4, 5]));
        pos.insert(4, 500);
        assert_eq!(gates_open(&meta, &pos), (0..9).collect());
        // Behind the first split's point in 1: 4 and 5 close, and so do 6..9 (1 is old for
        // the second split too, and its point there is the same offset).
        pos.insert(1, 150);
        assert_eq!(gates_open(&meta, &pos), set(&[0, 1, 2, 3]));
    }
}
