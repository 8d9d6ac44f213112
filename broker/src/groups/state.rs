//! One consumer group's state and the rules that change it (D10), free of I/O.
//!
//! The durable part — members, their subscriptions and assignments, the group epoch, and
//! committed offsets — is a fold over [`GroupRecord`]s (see `super` for where they live).
//! What each member reports it owns and when its session ends are known only to the
//! coordinator that is serving the group; a new coordinator starts every session afresh and
//! takes each member's last delivered assignment as what it owns until it reports.
//!
//! Assignment is incremental (Kafka's KIP-848): the coordinator keeps a balanced, sticky
//! *target* per member, and *delivers* to each member its target minus any partition another
//! member still owns. A partition taken from a member is withdrawn from its delivery at once;
//! it is delivered to its new owner only once the old owner reports it released. So no
//! partition is ever owned by two members, and members whose partitions do not move keep
//! them throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use steme_protocol::messages::heartbeat::TopicPartitions;
use steme_protocol::{ApiError, ErrorCode};

/// A topic partition.
pub type Tp = (String, u32);

/// What assignment needs of a topic: its partition count, and its growths.
#[derive(Debug, Clone, Default)]
pub struct TopicView {
    pub partitions: u32,
    pub splits: Vec<SplitGate>,
}

/// One growth of a topic (`metadata::split`): partitions `from..to` were added, and each
/// old partition's split offset, once recorded.
#[derive(Debug, Clone)]
pub struct SplitGate {
    pub from: u32,
    pub to: u32,
    pub points: Vec<Option<u64>>,
}

/// How the coordinator looks a topic up.
pub type Topics<'a> = dyn Fn(&str) -> Option<TopicView> + Sync + 'a;

impl TopicView {
    /// Whether a group that committed `offsets` may be given `partition` of `topic`. A
    /// partition a growth added holds the newer records of subjects that moved out of the
    /// old partitions, so (as Pravega orders a segment's successors behind it) it is given
    /// out only once the group has consumed every old partition past its split point:
    /// then every subject's older records were delivered before its newer ones.
    pub fn may_assign(
        &self,
        topic: &str,
        partition: u32,
        offsets: &BTreeMap<Tp, Committed>,
    ) -> bool {
        let Some(split) = self
            .splits
            .iter()
            .find(|s| partition >= s.from && partition < s.to)
        else {
            return true;
        };
        split.points.iter().enumerate().all(|(old, point)| {
            point.is_some_and(|at| {
                let committed = offsets
                    .get(&(topic.to_owned(), old as u32))
                    .map_or(0, |c| c.offset);
                committed >= at
            })
        })
    }
}

/// A durable change to a group, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GroupRecord {
    /// The whole membership and assignment, written on every change to it.
    Members {
        epoch: u32,
        members: Vec<MemberRecord>,
    },
    /// Offsets committed (each the next offset to consume).
    Commit { offsets: Vec<CommitRecord> },
    /// The group and its offsets are gone.
    Delete,
    /// Part `part` of `parts` of a snapshot of every group of the partition (see
    /// `super::snapshot`): it replaces the whole partition's state, not one group's.
    Snapshot {
        part: u32,
        parts: u32,
        groups: Vec<SnapshotGroup>,
    },
}

/// One group as a snapshot holds it: its last membership and its last commit per
/// partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotGroup {
    pub group: String,
    pub epoch: u32,
    pub members: Vec<MemberRecord>,
    pub offsets: Vec<CommitRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub subscription: Vec<String>,
    pub session_timeout_ms: u32,
    pub member_epoch: u32,
    pub target: Vec<Tp>,
    pub assigned: Vec<Tp>,
    /// Taken away, and not yet reported released.
    #[serde(default)]
    pub revoking: Vec<Tp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: u64,
    pub metadata: String,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub instance_id: Option<String>,
    pub subscription: BTreeSet<String>,
    pub session_timeout: Duration,
    pub member_epoch: u32,
    /// Where the balanced, sticky assignment wants this member.
    pub target: BTreeSet<Tp>,
    /// What it was last given.
    pub assigned: BTreeSet<Tp>,
    /// What it last said it owns.
    pub owned: BTreeSet<Tp>,
    /// Taken from its assignment but not yet reported released: still its own until then.
    pub revoking: BTreeSet<Tp>,
    pub deadline: Instant,
    /// Its assignment changed since its last answer.
    pub deliver: bool,
}

/// One group as its coordinator holds it.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub epoch: u32,
    pub members: BTreeMap<String, Member>,
    pub offsets: BTreeMap<Tp, Committed>,
}

/// What a heartbeat asked, in the coordinator's terms.
#[derive(Debug, Clone)]
pub struct Beat {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub member_epoch: u32,
    pub session_timeout: Duration,
    pub subscription: BTreeSet<String>,
    pub owned: BTreeSet<Tp>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeatAnswer {
    pub member_id: String,
    pub member_epoch: u32,
    /// `None` = unchanged.
    pub assignment: Option<BTreeSet<Tp>>,
}

pub fn to_topic_partitions(set: &BTreeSet<Tp>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for (t, p) in set {
        match out.last_mut() {
            Some(last) if &last.topic == t => last.partitions.push(*p),
            _ => out.push(TopicPartitions {
                topic: t.clone(),
                partitions: vec![*p],
            }),
        }
    }
    out
}

pub fn from_topic_partitions(list: &[TopicPartitions]) -> BTreeSet<Tp> {
    list.iter()
        .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p)))
        .collect()
}

impl Group {
    /// Applies a stored record (when a coordinator loads the group). Sessions start at `now`.
    pub fn replay(&mut self, record: GroupRecord, now: Instant) {
        match record {
            GroupRecord::Members { epoch, members } => {
                self.epoch = epoch;
                self.members = members
                    .into_iter()
                    .map(|m| {
                        let assigned: BTreeSet<Tp> = m.assigned.into_iter().collect();
                        let timeout = Duration::from_millis(u64::from(m.session_timeout_ms));
                        let member = Member {
                            instance_id: m.instance_id,
                            subscription: m.subscription.into_iter().collect(),
                            session_timeout: timeout,
                            member_epoch: m.member_epoch,
                            target: m.target.into_iter().collect(),
                            // Until it says otherwise, a member owns what it was given.
                            owned: assigned.clone(),
                            assigned,
                            revoking: m.revoking.into_iter().collect(),
                            deadline: now + timeout,
                            deliver: false,
                        };
                        (m.member_id, member)
                    })
                    .collect();
            }
            GroupRecord::Commit { offsets } => {
                for c in offsets {
                    self.offsets.insert(
                        (c.topic, c.partition),
                        Committed {
                            offset: c.offset,
                            metadata: c.metadata,
                        },
                    );
                }
            }
            GroupRecord::Delete => *self = Group::default(),
            // A snapshot is about the whole partition: `super::snapshot::Fold` applies it.
            GroupRecord::Snapshot { .. } => {}
        }
    }

    /// The group rebuilt from a snapshot of it. Sessions start at `now`.
    pub fn from_snapshot(s: SnapshotGroup, now: Instant) -> Group {
        let mut g = Group::default();
        g.replay(
            GroupRecord::Members {
                epoch: s.epoch,
                members: s.members,
            },
            now,
        );
        g.replay(GroupRecord::Commit { offsets: s.offsets }, now);
        g
    }

    /// The group's durable state as a snapshot holds it.
    pub fn to_snapshot(&self, name: &str) -> SnapshotGroup {
        SnapshotGroup {
            group: name.to_owned(),
            epoch: self.epoch,
            members: self.member_records(),
            offsets: self
                .offsets
                .iter()
                .map(|((topic, partition), c)| CommitRecord {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: c.offset,
                    metadata: c.metadata.clone(),
                })
                .collect(),
        }
    }

    /// The record that stores the membership as it is now.
    pub fn members_record(&self) -> GroupRecord {
        GroupRecord::Members {
            epoch: self.epoch,
            members: self.member_records(),
        }
    }

    fn member_records(&self) -> Vec<MemberRecord> {
        self.members
            .iter()
            .map(|(id, m)| MemberRecord {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                subscription: m.subscription.iter().cloned().collect(),
                session_timeout_ms: m.session_timeout.as_millis().min(u128::from(u32::MAX)) as u32,
                member_epoch: m.member_epoch,
                target: m.target.iter().cloned().collect(),
                assigned: m.assigned.iter().cloned().collect(),
                revoking: m.revoking.iter().cloned().collect(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Handles a heartbeat. Returns the answer and whether the durable membership changed
    /// (then the caller stores [`members_record`](Self::members_record) before answering).
    pub fn heartbeat(
        &mut self,
        beat: Beat,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
        topics: &Topics,
    ) -> Result<(BeatAnswer, bool), ApiError> {
        let mut changed = false;
        let id = if beat.member_id.is_empty() {
            // Static membership: the same instance coming back takes over its member.
            let returning = beat.instance_id.as_ref().and_then(|inst| {
                self.members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_ref() == Some(inst))
                    .map(|(id, _)| id.clone())
            });
            match returning {
                Some(id) => {
                    let m = self.members.get_mut(&id).expect("found");
                    // It restarted: it owns nothing yet, and must be told its assignment.
                    m.owned.clear();
                    m.revoking.clear();
                    m.deliver = true;
                    id
                }
                None => {
                    let id = new_member_id();
                    self.members.insert(
                        id.clone(),
                        Member {
                            instance_id: beat.instance_id.clone(),
                            subscription: BTreeSet::new(),
                            session_timeout: beat.session_timeout,
                            member_epoch: 0,
                            target: BTreeSet::new(),
                            assigned: BTreeSet::new(),
                            owned: BTreeSet::new(),
                            revoking: BTreeSet::new(),
                            deadline: now,
                            deliver: true,
                        },
                    );
                    changed = true;
                    id
                }
            }
        } else {
            let Some(m) = self.members.get(&beat.member_id) else {
                return Err(ApiError::other(
                    ErrorCode::UnknownMember,
                    format!(
                        "member {} is not in the group (expired or left); join again",
                        beat.member_id
                    ),
                ));
            };
            if beat.member_epoch > m.member_epoch {
                return Err(ApiError::FencedMember {
                    current_epoch: m.member_epoch,
                    message: format!(
                        "member {} sent epoch {}, the group has it at {}; join again",
                        beat.member_id, beat.member_epoch, m.member_epoch
                    ),
                });
            }
            beat.member_id.clone()
        };
        {
            let m = self.members.get_mut(&id).expect("present");
            m.deadline = now + beat.session_timeout;
            if m.session_timeout != beat.session_timeout {
                m.session_timeout = beat.session_timeout;
                changed = true;
            }
            if m.subscription != beat.subscription {
                m.subscription = beat.subscription.clone();
                changed = true;
            }
            if !beat.member_id.is_empty() {
                // Heartbeats of one member are sequential: what it no longer reports, it has
                // released.
                m.owned = beat.owned.clone();
                m.revoking.retain(|tp| m.owned.contains(tp));
            }
        }
        changed |= self.rebalance(topics);
        let m = self.members.get_mut(&id).expect("present");
        let assignment = std::mem::take(&mut m.deliver).then(|| m.assigned.clone());
        Ok((
            BeatAnswer {
                member_id: id,
                member_epoch: m.member_epoch,
                assignment,
            },
            changed,
        ))
    }

    /// Removes a member (it left, or its session ended). Returns whether it was there.
    pub fn remove(&mut self, member_id: &str, topics: &Topics) -> bool {
        if self.members.remove(member_id).is_none() {
            return false;
        }
        self.rebalance(topics);
        true
    }

    /// Members whose session ended by `now`.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Recomputes targets and deliveries; returns whether anything durable changed.
    pub fn rebalance(&mut self, topics: &Topics) -> bool {
        let targets = compute_targets(&self.members, topics);
        let mut changed = false;
        for (id, m) in self.members.iter_mut() {
            let t = targets.get(id).cloned().unwrap_or_default();
            if m.target != t {
                m.target = t;
                changed = true;
            }
        }
        if changed {
            self.epoch += 1;
        }
        // What others still hold — given to them, reported owned, or taken away and not yet
        // reported released — cannot be delivered yet.
        let mut owned_by: BTreeMap<&Tp, &str> = BTreeMap::new();
        for (id, m) in &self.members {
            for tp in m.owned.iter().chain(&m.assigned).chain(&m.revoking) {
                owned_by.insert(tp, id.as_str());
            }
        }
        // Partitions a growth added wait until the group has consumed the old ones past
        // their split points.
        let mut views: BTreeMap<&str, Option<TopicView>> = BTreeMap::new();
        for (t, _) in self.members.values().flat_map(|m| &m.target) {
            views.entry(t.as_str()).or_insert_with(|| topics(t));
        }
        let may_assign = |(t, p): &Tp| {
            views
                .get(t.as_str())
                .and_then(Option::as_ref)
                .is_none_or(|v| v.may_assign(t, *p, &self.offsets))
        };
        let mut deliveries = Vec::new();
        for (id, m) in &self.members {
            let deliverable: BTreeSet<Tp> = m
                .target
                .iter()
                .filter(|tp| owned_by.get(tp).is_none_or(|o| *o == id.as_str()))
                .filter(|tp| m.assigned.contains(*tp) || may_assign(tp))
                .cloned()
                .collect();
            if deliverable != m.assigned {
                deliveries.push((id.clone(), deliverable));
            }
        }
        for (id, d) in deliveries {
            let m = self.members.get_mut(&id).expect("present");
            let taken: Vec<Tp> = m.assigned.difference(&d).cloned().collect();
            m.revoking.extend(taken);
            m.assigned = d;
            m.member_epoch += 1;
            m.deliver = true;
            changed = true;
        }
        changed
    }

    /// Checks that `member_id` at `member_epoch` may commit offsets of `tp`.
    pub fn may_commit(&self, member_id: &str, member_epoch: u32, tp: &Tp) -> Result<(), ErrorCode> {
        if member_id.is_empty() {
            // From outside the group (an operator's reset): only while nobody consumes.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ErrorCode::GroupNotEmpty)
            };
        }
        let m = self
            .members
            .get(member_id)
            .ok_or(ErrorCode::UnknownMember)?;
        if member_epoch > m.member_epoch {
            return Err(ErrorCode::FencedMember);
        }
        if m.assigned.contains(tp) || m.owned.contains(tp) || m.revoking.contains(tp) {
            Ok(())
        } else {
            Err(ErrorCode::FencedMember)
        }
    }

    /// Who owns `tp` now (reported), if anyone.
    pub fn owner(&self, tp: &Tp) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, m)| {
                m.owned.contains(tp) || m.assigned.contains(tp) || m.revoking.contains(tp)
            })
            .map(|(id, _)| id.as_str())
    }

    /// Whether every member owns exactly what it was given and that is its target.
    pub fn is_stable(&self) -> bool {
        self.members
            .values()
            .all(|m| m.owned == m.target && m.assigned == m.target && m.revoking.is_empty())
    }
}

/// A balanced, sticky assignment: per topic, its partitions split among the members that
/// subscribe to it so that counts differ by at most one, each member keeping as many of its
/// current partitions as the balance allows.
pub fn compute_targets(
    members: &BTreeMap<String, Member>,
    topics: &Topics,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> = members
        .keys()
        .map(|id| (id.clone(), BTreeSet::new()))
        .collect();
    let subscribed: BTreeSet<&String> = members.values().flat_map(|m| &m.subscription).collect();
    for topic in subscribed {
        let Some(n) = topics(topic).map(|v| v.partitions) else {
            continue;
        };
        let subs: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.subscription.contains(topic))
            .map(|(id, _)| id)
            .collect();
        if subs.is_empty() || n == 0 {
            continue;
        }
        let k = subs.len() as u32;
        let (base, extra) = (n / k, n % k);
        // Members that already hold the most keep the extra slots (less movement).
        let current = |id: &String| -> Vec<u32> {
            members[id]
                .target
                .iter()
                .filter(|(t, p)| t == topic && *p < n)
                .map(|(_, p)| *p)
                .collect()
        };
        let mut order: Vec<&String> = subs.clone();
        order.sort_by_key(|id| std::cmp::Reverse(current(id).len()));
        let caps: BTreeMap<&String, u32> = order
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, base + u32::from((i as u32) < extra)))
            .collect();
        let mut taken = vec![false; n as usize];
        let mut counts: BTreeMap<&String, u32> = BTreeMap::new();
        for id in &subs {
            let keep: Vec<u32> = current(id).into_iter().take(caps[id] as usize).collect();
            for p in keep {
                if !taken[p as usize] {
                    taken[p as usize] = true;
                    out.get_mut(*id).expect("member").insert((topic.clone(), p));
                    *counts.entry(id).or_default() += 1;
                }
            }
        }
        for p in 0..n {
            if taken[p as usize] {
                continue;
            }
            let to = subs
                .iter()
                .filter(|id| counts.get(*id).copied().unwrap_or(0) < caps[*id])
                .min_by_key(|id| (counts.get(*id).copied().unwrap_or(0), **id))
                .expect("the caps add up to n");
            out.get_mut(*to).expect("member").insert((topic.clone(), p));
            *counts.entry(to).or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
