//! Compaction of a groups partition by snapshot records, so that a coordinator's load
//! costs the size of the state plus the records since the last snapshot, whatever the
//! groups' age.
//!
//! # The design
//! - Now and then (when the records since the last snapshot reach
//!   [`Policy::records_between`], at least as many as the state has entries), the
//!   coordinator appends a **snapshot**: its whole durable state — every group's last
//!   membership record and last commit per (topic, partition) — as
//!   [`GroupRecord::Snapshot`] parts, all in **one batch**, hence one Raft entry: a
//!   snapshot is in the log whole or not at all. Parts are signed by the broker like every
//!   group record, and replay trusts them only as it trusts any record (`super::replay`).
//! - Every record a coordinator stores carries, in its `last_snapshot` field, the offset of
//!   the first part of the last snapshot before it. A loading coordinator reads the **last**
//!   committed record only, and starts its replay at that snapshot; it reads nothing before
//!   it. A snapshot's own parts point at their first part by their `part` number.
//! - A replay that starts at a snapshot must meet a complete one (all its parts, trusted,
//!   contiguous); otherwise, and for logs written before snapshots existed, it replays the
//!   whole partition from its log start, as before. So a missing or doubtful pointer costs
//!   time, never state.
//! - Records before the last snapshot are skipped, not yet deleted: the groups topic has
//!   no retention. Deleting whole segments below the last snapshot
//!   ([`last_snapshot`](super::load::last_snapshot)) is the safe bound for it; a
//!   retention on the groups topic must never delete a record at or after it.
//!
//! # Why no committed offset is lost
//! - A coordinator changes a group only under its groups lock, storing the record first;
//!   the snapshot is written under the same lock, from the same in-memory state, after every
//!   earlier record of its term was committed. So the snapshot holds every change
//!   acknowledged before it, and every change after it is a record after it.
//! - A coordinator loads only once its partition committed its whole log, so it starts from
//!   the true last snapshot; records of a deposed coordinator cannot commit after that.
//! - A crash before the snapshot's entry commits leaves the older snapshot and the records
//!   after it in place (nothing is deleted); a crash after it leaves a whole snapshot,
//!   which the next load finds through the snapshot's own last part. A snapshot whose
//!   write failed is simply not pointed at by the records after it.

use std::collections::HashMap;
use std::time::Instant;

use super::state::{Group, GroupRecord, SnapshotGroup};

/// The subject of snapshot parts (an assertion needs one; a snapshot is about every group
/// of its partition, so replay ignores it).
pub const SUBJECT: &str = "steme.groups.snapshot";

/// When to write a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Records stored since the last snapshot before the next one; the state's size is
    /// added, so that a snapshot never costs more than the records it makes skippable.
    pub records_between: u64,
    /// The largest JSON of one snapshot part; a larger state is split into parts (still
    /// one batch).
    pub part_bytes: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            records_between: 1_000,
            part_bytes: 256 << 10,
        }
    }
}

impl Policy {
    /// Whether a snapshot is due after `since` records, with `entries` in the state.
    pub fn due(&self, since: u64, entries: u64) -> bool {
        since >= self.records_between.max(entries)
    }
}

/// How many entries (members and committed partitions) the groups hold.
pub fn entries(groups: &HashMap<String, Group>) -> u64 {
    groups
        .values()
        .map(|g| (g.members.len() + g.offsets.len()) as u64)
        .sum()
}

/// The snapshot parts of `groups`, each under `part_bytes` of JSON where one group allows.
/// Groups are in name order, so equal states give equal snapshots.
pub fn snapshot_records(groups: &HashMap<String, Group>, part_bytes: usize) -> Vec<GroupRecord> {
    let mut names: Vec<&String> = groups.keys().collect();
    names.sort();
    let mut parts: Vec<Vec<SnapshotGroup>> = vec![Vec::new()];
    let mut size = 0usize;
    for name in names {
        let g = groups[name].to_snapshot(name);
        let len = serde_json::to_vec(&g).map_or(0, |v| v.len());
        let last = parts.last_mut().expect("one part at least");
        if !last.is_empty() && size + len > part_bytes {
            parts.push(Vec::new());
            size = 0;
        }
        size += len;
        parts.last_mut().expect("one part at least").push(g);
    }
    let n = parts.len() as u32;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, groups)| GroupRecord::Snapshot {
            part: i as u32,
            parts: n,
            groups,
        })
        .collect()
}

/// Group state folded from the records of a groups partition, in offset order.
#[derive(Debug, Default)]
pub struct Fold {
    pub groups: HashMap<String, Group>,
    /// The first offset of the last complete snapshot folded.
    pub snapshot_at: Option<u64>,
    /// Records folded since that snapshot (or since the start, without one).
    pub since_snapshot: u64,
    /// Trusted records folded in all.
    pub records: u64,
    /// A snapshot being read: its first offset, the parts seen so far, their groups.
    pending: Option<(u64, u32, Vec<SnapshotGroup>)>,
}

impl Fold {
    /// Applies the trusted record at `offset` about `group`. Sessions start at `now`.
    pub fn apply(&mut self, offset: u64, group: String, record: GroupRecord, now: Instant) {
        self.records += 1;
        self.since_snapshot += 1;
        match record {
            GroupRecord::Snapshot {
                part,
                parts,
                groups,
            } => self.apply_part(offset, part, parts, groups, now),
            other => {
                // A snapshot's parts are one batch: anything between them means it is not
                // whole.
                self.pending = None;
                self.groups.entry(group).or_default().replay(other, now);
            }
        }
    }

    fn apply_part(
        &mut self,
        offset: u64,
        part: u32,
        parts: u32,
        groups: Vec<SnapshotGroup>,
        now: Instant,
    ) {
        let pending = match self.pending.take() {
            None if part == 0 => (offset, 0, groups),
            Some((first, seen, mut got)) if part == seen && offset == first + u64::from(part) => {
                got.extend(groups);
                (first, seen, got)
            }
            // Out of order, or a part left out: not a snapshot to trust.
            _ => return,
        };
        let (first, seen, got) = pending;
        if seen + 1 < parts {
            self.pending = Some((first, seen + 1, got));
            return;
        }
        self.groups = got
            .into_iter()
            .map(|s| (s.group.clone(), Group::from_snapshot(s, now)))
            .collect();
        self.snapshot_at = Some(first);
        self.since_snapshot = 0;
    }

    /// The groups, without those that hold nothing.
    pub fn into_groups(mut self) -> HashMap<String, Group> {
        self.groups
            .retain(|_, g| !(g.members.is_empty() && g.offsets.is_empty()));
        self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::CommitRecord;
    use super::*;

    fn commit(topic: &str, partition: u32, offset: u64) -> GroupRecord {
        GroupRecord::Commit {
            offsets: vec![CommitRecord {
                topic: topic.into(),
                partition,
                offset,
                metadata: String::new(),
            }],
        }
    }

    fn offsets(groups: &HashMap<String, Group>) -> Vec<(String, String, u32, u64)> {
        let mut v: Vec<_> = groups
            .iter()
            .flat_map(|(g, s)| {
                s.offsets
                    .iter()
                    .map(|((t, p), c)| (g.clone(), t.clone(), *p, c.offset))
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_snapshot_then_the_records_after_it_fold_to_the_whole_history() {
        let now = Instant::now();
        let mut full = Fold::default();
        let mut at = 0u64;
        for i in 0..300u64 {
            full.apply(
                at,
                format!("g{}", i % 7),
                commit("t", (i % 5) as u32, i),
                now,
            );
            at += 1;
        }
        // A snapshot of what was folded, split in small parts, then more records.
        let parts = snapshot_records(&full.groups, 200);
        assert!(parts.len() > 1, "{} parts", parts.len());
        let snapshot_at = at;
        let mut tail = Vec::new();
        for p in parts {
            tail.push((at, String::new(), p));
            at += 1;
        }
        for i in 300..320u64 {
            tail.push((at, format!("g{}", i % 7), commit("t", (i % 5) as u32, i)));
            at += 1;
        }
        tail.push((at, "g3".into(), GroupRecord::Delete));
        let mut from_snapshot = Fold::default();
        for (offset, g, r) in tail.iter().cloned() {
            full.apply(offset, g.clone(), r.clone(), now);
            from_snapshot.apply(offset, g, r, now);
        }
        assert_eq!(from_snapshot.snapshot_at, Some(snapshot_at));
        assert_eq!(from_snapshot.since_snapshot, 21);
        assert_eq!(
            offsets(&from_snapshot.into_groups()),
            offsets(&full.into_groups())
        );
    }

    #[test]
    fn a_snapshot_with_a_part_missing_is_not_trusted() {
        let now = Instant::now();
        let mut state = Fold::default();
        for i in 0..50u64 {
            state.apply(i, format!("g{i}"), commit("t", 0, i), now);
        }
        let parts = snapshot_records(&state.groups, 100);
        assert!(parts.len() >= 3);
        let mut fold = Fold::default();
        for (i, p) in parts.into_iter().enumerate() {
            if i != 1 {
                fold.apply(100 + i as u64, String::new(), p, now);
            }
        }
        assert_eq!(fold.snapshot_at, None);
        assert!(fold.groups.is_empty());
    }

    #[test]
    fn a_snapshot_is_due_after_at_least_as_many_records_as_entries() {
        let p = Policy {
            records_between: 10,
            part_bytes: 1 << 10,
        };
        assert!(!p.due(9, 0));
        assert!(p.due(10, 3));
        assert!(!p.due(10, 50));
        assert!(p.due(50, 50));
    }
}
