//! The planner against its goals: unit cases, and a property test that holds every plan to
//! them (a brute force over leader choices says when leader balance is achievable).

use std::collections::BTreeMap;

use proptest::prelude::*;
use steme_client::admin::{BrokerInfo, PartitionMetadata, TopicMetadata};

use super::*;

fn place(topic: &str, partition: u32, replicas: &[u64]) -> Placement {
    Placement {
        topic: topic.into(),
        partition,
        replicas: replicas.to_vec(),
    }
}

/// `parts` with `moves` applied; every move must start from the list it replaces.
fn apply(parts: &[Placement], moves: &[Move]) -> Vec<Placement> {
    let mut out = parts.to_vec();
    for m in moves {
        let p = out
            .iter_mut()
            .find(|p| p.topic == m.topic && p.partition == m.partition)
            .expect("a move names an existing partition");
        assert_eq!(
            p.replicas, m.from,
            "a move starts from the current replicas"
        );
        p.replicas = m.to.clone();
    }
    out
}

fn spread(n: &BTreeMap<u64, usize>) -> usize {
    let max = n.values().max().copied().unwrap_or(0);
    let min = n.values().min().copied().unwrap_or(0);
    max - min
}

fn active_set(active: &[u64]) -> BTreeSet<u64> {
    active.iter().copied().collect()
}

/// Whether some choice of a leader among each partition's replicas leads within one.
fn leaders_can_balance(active: &[u64], parts: &[Placement]) -> bool {
    let brokers = active.len();
    let total = parts.iter().filter(|p| !p.replicas.is_empty()).count();
    let ceil = total.div_ceil(brokers.max(1));
    let floor = total / brokers.max(1);
    fn choose(
        parts: &[Placement],
        n: &mut BTreeMap<u64, usize>,
        ceil: usize,
        floor: usize,
    ) -> bool {
        let Some((p, rest)) = parts.split_first() else {
            return n.values().all(|&c| c >= floor);
        };
        if p.replicas.is_empty() {
            return choose(rest, n, ceil, floor);
        }
        for b in &p.replicas {
            let c = n.entry(*b).or_default();
            if *c < ceil {
                *c += 1;
                let ok = choose(rest, n, ceil, floor);
                *n.entry(*b).or_default() -= 1;
                if ok {
                    return true;
                }
            }
        }
        false
    }
    let mut n: BTreeMap<u64, usize> = active.iter().map(|&b| (b, 0)).collect();
    choose(parts, &mut n, ceil, floor)
}

#[test]
fn a_balanced_cluster_needs_no_move() {
    let parts = [
        place("facts", 0, &[1, 2, 3]),
        place("facts", 1, &[2, 3, 1]),
        place("facts", 2, &[3, 1, 2]),
        place("__groups", 0, &[1, 2]),
    ];
    assert_eq!(plan(&[1, 2, 3], &parts), vec![]);
    assert_eq!(plan(&[1, 2, 3], &[]), vec![]);
}

#[test]
fn a_new_broker_gets_its_share_with_few_copies() {
    // Three brokers hold six partitions of three replicas; broker 4 joins empty.
    let parts: Vec<Placement> = (0..6)
        .map(|p| {
            let r = [1, 2, 3];
            let k = p as usize % 3;
            place("facts", p, &[r[k], r[(k + 1) % 3], r[(k + 2) % 3]])
        })
        .collect();
    let moves = plan(&[1, 2, 3, 4], &parts);
    let after = apply(&parts, &moves);
    let active = active_set(&[1, 2, 3, 4]);
    let load = counts(&active, &after, false);
    // 18 replicas over 4 brokers: 4 or 5 each, so broker 4 gets 4 copies and no more.
    assert!(spread(&load) <= 1, "{load:?}");
    let copies: usize = moves.iter().map(|m| m.added().len()).sum();
    assert_eq!(copies, 4, "{moves:?}");
    assert!(moves.iter().all(|m| m.added().iter().all(|&b| b == 4)));
    assert!(spread(&counts(&active, &after, true)) <= 1);
}

#[test]
fn leaders_are_balanced_by_reordering_without_copies() {
    // Every partition on 1, 2 and 3, all led by 1.
    let parts: Vec<Placement> = (0..6).map(|p| place("facts", p, &[1, 2, 3])).collect();
    let moves = plan(&[1, 2, 3], &parts);
    assert!(moves.iter().all(|m| m.added().is_empty()), "{moves:?}");
    let after = apply(&parts, &moves);
    let leads = counts(&active_set(&[1, 2, 3]), &after, true);
    assert_eq!(leads.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    // Sorted by topic and partition, and the same plan every time.
    assert!(moves.windows(2).all(|w| w[0].partition < w[1].partition));
    assert_eq!(plan(&[1, 2, 3], &parts), moves);
}

#[test]
fn partitions_on_a_broker_that_is_not_active_are_left_alone() {
    // Broker 3 drains: the partitions on it are the cluster's to move, but their replicas on
    // 1 count toward 1's load.
    let parts = [
        place("facts", 0, &[1, 3]),
        place("facts", 1, &[1, 3]),
        place("facts", 2, &[1, 2]),
        place("facts", 3, &[1, 2]),
    ];
    let moves = plan(&[1, 2, 4], &parts);
    assert!(moves.iter().all(|m| !m.from.contains(&3)), "{moves:?}");
    let after = apply(&parts, &moves);
    let load = counts(&active_set(&[1, 2, 4]), &after, false);
    // 1 keeps the two it shares with 3 and gives the others to 4.
    assert_eq!(load.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    let leads = counts(&active_set(&[1, 2, 4]), &after, true);
    assert_eq!(leads.values().copied().collect::<Vec<_>>(), vec![2, 1, 1]);
    // Input order does not matter.
    let mut reversed = parts.to_vec();
    reversed.reverse();
    assert_eq!(plan(&[4, 2, 1], &reversed), moves);
}

#[test]
fn the_plan_leaves_moving_partitions_and_takes_only_active_brokers() {
    let broker = |node_id, state| BrokerInfo {
        node_id,
        addr: String::new(),
        state,
    };
    let partition = |partition, replicas: Vec<u64>, target| PartitionMetadata {
        partition,
        leader: replicas.first().copied(),
        leader_epoch: 1,
        replicas,
        target,
    };
    let meta = MetadataResponse {
        brokers: vec![
            broker(1, BrokerState::Active),
            broker(2, BrokerState::Draining),
            broker(3, BrokerState::Removed),
            broker(4, BrokerState::Joining),
            broker(5, BrokerState::Active),
        ],
        metadata_leader: Some(1),
        topics: vec![TopicMetadata {
            name: "__groups".into(),
            partitions: vec![
                partition(0, vec![1, 2], Some(vec![1, 5])),
                partition(1, vec![1, 5], None),
            ],
            map_epoch: 0,
            splits: vec![],
        }],
    };
    let (active, placements) = inputs(&meta);
    assert_eq!(active, vec![1, 5]);
    assert_eq!(placements, vec![place("__groups", 1, &[1, 5])]);
}

#[test]
fn the_dry_run_table_names_copies_and_reorders() {
    let moves = [
        Move {
            topic: "facts".into(),
            partition: 0,
            from: vec![1, 2, 3],
            to: vec![4, 2, 3],
        },
        Move {
            topic: "facts".into(),
            partition: 1,
            from: vec![1, 2, 3],
            to: vec![2, 1, 3],
        },
    ];
    let table = render(&moves);
    assert!(table.contains("move [1] → [4]"), "{table}");
    assert!(table.contains("reorder: preferred leader 2"), "{table}");
    assert!(
        table.contains("2 partition(s) to change, 1 replica(s) to copy"),
        "{table}"
    );
    assert_eq!(render(&[]), "balanced: nothing to move\n");
}

/// Up to 6 active brokers with arbitrary ids, and up to 10 partitions over them (some on the
/// same brokers, some not), each with 1 to 3 distinct replicas.
fn cluster() -> impl Strategy<Value = (Vec<u64>, Vec<Placement>)> {
    proptest::collection::btree_set(1u64..40, 1..=6).prop_flat_map(|ids| {
        let ids: Vec<u64> = ids.into_iter().collect();
        let n = ids.len();
        let partition = (1..=3usize.min(n), Just(ids.clone()).prop_shuffle());
        (
            Just(ids),
            proptest::collection::vec(partition, 0..=10).prop_map(move |ps| {
                ps.into_iter()
                    .enumerate()
                    .map(|(i, (rf, order))| Placement {
                        topic: if i % 3 == 0 { "__groups" } else { "facts" }.into(),
                        partition: i as u32,
                        replicas: order[..rf.min(n)].to_vec(),
                    })
                    .collect()
            }),
        )
    })
}

proptest! {
    #[test]
    fn plans_balance_without_duplicates_and_are_final((active, parts) in cluster()) {
        let moves = plan(&active, &parts);
        let after = apply(&parts, &moves);
        let set = active_set(&active);
        for (b, a) in parts.iter().zip(&after) {
            prop_assert_eq!(b.replicas.len(), a.replicas.len(), "replica count of {:?}", a);
            let distinct: BTreeSet<u64> = a.replicas.iter().copied().collect();
            prop_assert_eq!(distinct.len(), a.replicas.len(), "duplicate in {:?}", a);
            prop_assert!(distinct.is_subset(&set), "{:?} off the active brokers", a);
        }
        for m in &moves {
            prop_assert_ne!(&m.from, &m.to, "a move that changes nothing");
        }
        prop_assert!(
            moves.windows(2).all(|w| (&w[0].topic, w[0].partition) < (&w[1].topic, w[1].partition)),
            "moves not sorted: {:?}", moves
        );
        let load = counts(&set, &after, false);
        prop_assert!(spread(&load) <= 1, "replicas per broker {:?} after {:?}", load, moves);
        let leads = counts(&set, &after, true);
        if leaders_can_balance(&active, &after) {
            prop_assert!(spread(&leads) <= 1, "leaders per broker {:?} after {:?}", leads, moves);
        }
        // A balanced cluster (the plan's outcome) needs no further move.
        prop_assert_eq!(plan(&active, &after), vec![]);
    }
}
