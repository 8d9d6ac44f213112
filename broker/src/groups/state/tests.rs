//! The group state's rules, without I/O: assignment, fencing, replay, and the gate on
//! partitions a topic's growth added.

use super::*;

fn parts(t: &str) -> Option<TopicView> {
    (t == "facts").then(|| TopicView {
        partitions: 16,
        splits: Vec::new(),
    })
}

fn beat(id: &str, epoch: u32, owned: &BTreeSet<Tp>) -> Beat {
    Beat {
        member_id: id.into(),
        instance_id: None,
        member_epoch: epoch,
        session_timeout: Duration::from_secs(10),
        subscription: BTreeSet::from(["facts".to_string()]),
        owned: owned.clone(),
    }
}

fn join(g: &mut Group, name: &str, now: Instant) -> BeatAnswer {
    let (a, _) = g
        .heartbeat(beat("", 0, &BTreeSet::new()), now, || name.into(), &parts)
        .unwrap();
    a
}

/// Heartbeats a member reporting it owns exactly what it was last given.
fn settle(g: &mut Group, now: Instant) {
    for _ in 0..4 {
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let m = &g.members[&id];
            let (owned, epoch) = (m.assigned.clone(), m.member_epoch);
            g.heartbeat(beat(&id, epoch, &owned), now, || unreachable!(), &parts)
                .unwrap();
        }
    }
}

fn no_partition_twice(g: &Group) {
    let mut seen = BTreeSet::new();
    for m in g.members.values() {
        for tp in m.assigned.iter().chain(&m.owned) {
            let owners = g
                .members
                .values()
                .filter(|o| {
                    o.assigned.contains(tp) || o.owned.contains(tp) || o.revoking.contains(tp)
                })
                .count();
            assert_eq!(owners, 1, "{tp:?} held by {owners} members");
            seen.insert(tp.clone());
        }
    }
}

#[test]
fn a_partition_a_growth_added_waits_until_the_old_ones_are_consumed_past_their_split() {
    // "facts" grew from 2 to 3 partitions; partition 1's split point is not recorded yet.
    let grown = |points: Vec<Option<u64>>| {
        move |t: &str| {
            (t == "facts").then(|| TopicView {
                partitions: 3,
                splits: vec![SplitGate {
                    from: 2,
                    to: 3,
                    points: points.clone(),
                }],
            })
        }
    };
    let now = Instant::now();
    let mut g = Group::default();
    let pending = grown(vec![Some(10), None]);
    let (a, _) = g
        .heartbeat(beat("", 0, &BTreeSet::new()), now, || "a".into(), &pending)
        .unwrap();
    let given = a.assignment.expect("first assignment");
    assert!(given.contains(&("facts".into(), 0)) && given.contains(&("facts".into(), 1)));
    assert!(
        !given.contains(&("facts".into(), 2)),
        "split not sealed: {given:?}"
    );
    // Sealed, but the group has consumed partition 0 only up to 7 of its 10.
    let sealed = grown(vec![Some(10), Some(0)]);
    let commit = |g: &mut Group, p: u32, offset: u64| {
        g.offsets.insert(
            ("facts".into(), p),
            Committed {
                offset,
                metadata: String::new(),
            },
        );
    };
    let again = |g: &mut Group, epoch: u32| {
        g.heartbeat(beat("a", epoch, &given), now, || unreachable!(), &sealed)
            .unwrap()
            .0
    };
    commit(&mut g, 0, 7);
    let a = again(&mut g, a.member_epoch);
    assert!(a.assignment.is_none(), "nothing new yet");
    commit(&mut g, 0, 10);
    let a = again(&mut g, a.member_epoch);
    assert!(
        a.assignment
            .expect("partition 2 given")
            .contains(&("facts".into(), 2))
    );
}

#[test]
fn joins_balance_and_move_only_released_partitions() {
    let now = Instant::now();
    let mut g = Group::default();
    let a = join(&mut g, "a", now);
    assert_eq!(a.assignment.unwrap().len(), 16);
    settle(&mut g, now);
    let a_before = g.members["a"].assigned.clone();
    join(&mut g, "b", now);
    // b gets nothing a holds; a is told to give up half.
    assert!(g.members["b"].assigned.is_empty());
    assert_eq!(g.members["a"].assigned.len(), 8);
    assert!(
        g.members["a"].assigned.is_subset(&a_before),
        "a keeps its own"
    );
    no_partition_twice(&g);
    settle(&mut g, now);
    assert_eq!(g.members["a"].assigned.len(), 8);
    assert_eq!(g.members["b"].assigned.len(), 8);
    assert!(g.is_stable());
    join(&mut g, "c", now);
    settle(&mut g, now);
    let sizes: Vec<usize> = g.members.values().map(|m| m.assigned.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 16);
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
        "{sizes:?}"
    );
    no_partition_twice(&g);
}

#[test]
fn what_was_given_but_not_yet_reported_is_not_given_twice() {
    let now = Instant::now();
    let mut g = Group::default();
    join(&mut g, "a", now);
    // b joins before a has heartbeated once more: a has not reported owning anything.
    join(&mut g, "b", now);
    assert!(
        g.members["b"].assigned.is_empty(),
        "{:?}",
        g.members["b"].assigned
    );
    no_partition_twice(&g);
    settle(&mut g, now);
    assert_eq!(g.members["b"].assigned.len(), 8);
    no_partition_twice(&g);
}

#[test]
fn what_was_taken_but_not_yet_reported_released_is_not_given_away() {
    let now = Instant::now();
    let mut g = Group::default();
    // a gets all 16 and, before it heartbeats again, b and c join.
    join(&mut g, "a", now);
    join(&mut g, "b", now);
    join(&mut g, "c", now);
    no_partition_twice(&g);
    assert!(g.members["b"].assigned.is_empty() && g.members["c"].assigned.is_empty());
    // a reports owning all 16 (it applied its first assignment), then releases.
    settle(&mut g, now);
    no_partition_twice(&g);
    let sizes: Vec<usize> = g.members.values().map(|m| m.assigned.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 16, "{sizes:?}");
}

#[test]
fn a_removed_member_is_fenced_and_its_partitions_move() {
    let now = Instant::now();
    let mut g = Group::default();
    join(&mut g, "a", now);
    join(&mut g, "b", now);
    settle(&mut g, now);
    let b_had = g.members["b"].assigned.clone();
    let tp = b_had.iter().next().unwrap().clone();
    assert!(g.may_commit("b", g.members["b"].member_epoch, &tp).is_ok());
    // b's session ends.
    let later = now + Duration::from_secs(11);
    g.members.get_mut("a").unwrap().deadline = later + Duration::from_secs(10);
    assert_eq!(g.expired(later), vec!["b".to_string()]);
    assert!(g.remove("b", &parts));
    settle(&mut g, later);
    assert_eq!(g.members["a"].assigned.len(), 16);
    // The zombie can no longer commit or heartbeat.
    assert_eq!(g.may_commit("b", 99, &tp), Err(ErrorCode::UnknownMember));
    let err = g
        .heartbeat(beat("b", 3, &b_had), later, || unreachable!(), &parts)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownMember);
    // Not the owner: refused; from outside while members exist: refused.
    g.members.get_mut("a").unwrap().owned.remove(&tp);
    g.members.get_mut("a").unwrap().assigned.remove(&tp);
    assert_eq!(g.may_commit("a", 0, &tp), Err(ErrorCode::FencedMember));
    assert_eq!(g.may_commit("", 0, &tp), Err(ErrorCode::GroupNotEmpty));
}

#[test]
fn static_members_come_back_to_their_partitions() {
    let now = Instant::now();
    let mut g = Group::default();
    for name in ["a", "b"] {
        let mut b = beat("", 0, &BTreeSet::new());
        b.instance_id = Some(format!("host-{name}"));
        g.heartbeat(b, now, || name.into(), &parts).unwrap();
    }
    settle(&mut g, now);
    let had = g.members["a"].assigned.clone();
    let mut again = beat("", 0, &BTreeSet::new());
    again.instance_id = Some("host-a".into());
    let (ans, changed) = g.heartbeat(again, now, || unreachable!(), &parts).unwrap();
    assert_eq!(ans.member_id, "a");
    assert_eq!(ans.assignment, Some(had));
    assert!(!changed, "no rebalance for a returning static member");
}

#[test]
fn records_replay_to_the_same_group() {
    let now = Instant::now();
    let mut g = Group::default();
    join(&mut g, "a", now);
    join(&mut g, "b", now);
    settle(&mut g, now);
    let mut copy = Group::default();
    copy.replay(g.members_record(), now);
    copy.replay(
        GroupRecord::Commit {
            offsets: vec![CommitRecord {
                topic: "facts".into(),
                partition: 3,
                offset: 42,
                metadata: "m".into(),
            }],
        },
        now,
    );
    assert_eq!(copy.epoch, g.epoch);
    for (id, m) in &g.members {
        assert_eq!(copy.members[id].assigned, m.assigned);
        assert_eq!(copy.members[id].owned, m.assigned);
    }
    assert_eq!(copy.offsets[&("facts".to_string(), 3)].offset, 42);
    let json = serde_json::to_string(&g.members_record()).unwrap();
    assert_eq!(
        serde_json::from_str::<GroupRecord>(&json).unwrap(),
        g.members_record()
    );
    copy.replay(GroupRecord::Delete, now);
    assert!(copy.members.is_empty() && copy.offsets.is_empty());
}
