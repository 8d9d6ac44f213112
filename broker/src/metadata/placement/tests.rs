//! Moves, decommissioning and broker states, as the metadata state machine applies them.

use std::collections::BTreeMap;

use steme_protocol::messages::metadata::BrokerState;

use crate::metadata::{Command, MetadataState, Retirement};

fn cluster(brokers: u64) -> MetadataState {
    let mut s = crate::metadata::registered(brokers);
    s.apply(Command::CreateTopic {
        name: "facts".into(),
        partitions: 2,
        replication_factor: 3,
        configs: BTreeMap::new(),
        max_replicas_per_broker: None,
    })
    .unwrap();
    s
}

fn reassign(replicas: &[u64]) -> Command {
    Command::ReassignPartition {
        topic: "facts".into(),
        partition: 0,
        replicas: replicas.to_vec(),
    }
}

#[test]
fn a_move_is_recorded_then_completed_by_its_group() {
    let mut s = cluster(4);
    let before = s.topics["facts"].partitions[0].clone();
    assert_eq!(before.replicas, vec![1, 2, 3]);
    s.apply(reassign(&[4, 2, 3])).unwrap();
    let moving = &s.topics["facts"].partitions[0];
    assert_eq!(moving.replicas, vec![1, 2, 3]);
    assert_eq!(moving.target, Some(vec![4, 2, 3]));
    assert_eq!(moving.hosts(), vec![1, 2, 3, 4]);
    assert!(moving.hosted_on(4) && moving.hosted_on(1));

    // Asked again (a retried request): nothing changes. Another target: refused.
    s.apply(reassign(&[4, 2, 3])).unwrap();
    let err = s.apply(reassign(&[1, 2, 4])).unwrap_err();
    assert!(err.contains("already moving"), "{err}");

    // A stale completion names another target; the real one lands, and again is a no-op.
    let group = before.group;
    let stale = Command::CompleteReassignment {
        group,
        replicas: vec![1, 2, 4],
    };
    assert!(s.apply(stale).is_err());
    let done = Command::CompleteReassignment {
        group,
        replicas: vec![4, 2, 3],
    };
    s.apply(done.clone()).unwrap();
    s.apply(done).unwrap();
    let moved = &s.topics["facts"].partitions[0];
    assert_eq!(
        (moved.replicas.clone(), moved.target.clone()),
        (vec![4, 2, 3], None)
    );
    assert!(!moved.hosted_on(1));
}

#[test]
fn moves_refuse_bad_replica_lists() {
    let mut s = cluster(3);
    for (replicas, why) in [
        (vec![], "1 to 16"),
        (vec![1, 1, 2], "twice"),
        (vec![1, 2, 9], "broker 9"),
        ((1..=17).collect::<Vec<u64>>(), "1 to 16"),
    ] {
        let err = s.apply(reassign(&replicas)).unwrap_err();
        assert!(err.contains(why), "{replicas:?}: {err}");
    }
    let err = s
        .apply(Command::ReassignPartition {
            topic: "facts".into(),
            partition: 7,
            replicas: vec![1],
        })
        .unwrap_err();
    assert!(err.contains("no partition 7"), "{err}");
    // The same replicas: nothing to do.
    s.apply(reassign(&[1, 2, 3])).unwrap();
    assert_eq!(s.topics["facts"].partitions[0].target, None);
}

#[test]
fn a_decommissioned_broker_drains_then_is_removed() {
    let mut s = cluster(4);
    s.members = (1..=4).collect();
    assert_eq!(s.broker_state(4), BrokerState::Active);
    s.apply(Command::DecommissionBroker { id: 1 }).unwrap();
    assert_eq!(s.broker_state(1), BrokerState::Draining);
    assert!(!s.placeable().contains(&1));
    // No new replicas on it, by move or by topic.
    assert!(
        s.apply(reassign(&[1, 2, 4]))
            .unwrap_err()
            .contains("broker 1")
    );
    s.apply(Command::CreateTopic {
        name: "more".into(),
        partitions: 4,
        replication_factor: 3,
        configs: BTreeMap::new(),
        max_replicas_per_broker: None,
    })
    .unwrap();
    assert_eq!(s.hosted_on(1).filter(|(t, _, _)| *t == "more").count(), 0);

    // Removed only once nothing is on it and it left the metadata group.
    let err = s.apply(Command::RemoveBroker { id: 1 }).unwrap_err();
    assert!(err.contains("still hosts"), "{err}");
    for p in 0..2u32 {
        let meta = s.topics["facts"].partitions[p as usize].clone();
        let to: Vec<u64> = meta
            .replicas
            .iter()
            .map(|&r| if r == 1 { 4 } else { r })
            .collect();
        s.apply(Command::ReassignPartition {
            topic: "facts".into(),
            partition: p,
            replicas: to.clone(),
        })
        .unwrap();
        s.apply(Command::CompleteReassignment {
            group: meta.group,
            replicas: to,
        })
        .unwrap();
    }
    let err = s.apply(Command::RemoveBroker { id: 1 }).unwrap_err();
    assert!(err.contains("metadata group"), "{err}");
    s.members.remove(&1);
    s.apply(Command::RemoveBroker { id: 1 }).unwrap();
    assert_eq!(s.broker_state(1), BrokerState::Removed);
    assert_eq!(s.retiring.get(&1), Some(&Retirement::Removed));
    // It cannot come back under the same id.
    let err = s
        .apply(Command::RegisterBroker {
            id: 1,
            addr: "x".into(),
            peer_addr: None,
            signer: None,
        })
        .unwrap_err();
    assert!(err.contains("new id"), "{err}");
}

#[test]
fn decommissioning_keeps_enough_brokers_for_every_replication_factor() {
    let mut s = cluster(3);
    let err = s.apply(Command::DecommissionBroker { id: 2 }).unwrap_err();
    assert!(err.contains("only 2 other brokers"), "{err}");
    assert_eq!(s.broker_state(2), BrokerState::Active);
    assert!(s.apply(Command::DecommissionBroker { id: 9 }).is_err());
}

#[test]
fn a_registered_broker_joins_until_it_is_a_member() {
    let mut s = cluster(3);
    s.members = (1..=3).collect();
    s.apply(Command::RegisterBroker {
        id: 4,
        addr: "127.0.0.1:9004".into(),
        peer_addr: None,
        signer: None,
    })
    .unwrap();
    assert_eq!(s.broker_state(4), BrokerState::Joining);
    s.members.insert(4);
    assert_eq!(s.broker_state(4), BrokerState::Active);
}

#[test]
fn old_states_and_commands_still_decode() {
    // A state written before moves and retirement existed.
    let old = r#"{"brokers":{"1":"a"},"topics":{},"next_group":1}"#;
    let s: MetadataState = serde_json::from_str(old).unwrap();
    assert_eq!(s.broker_state(1), BrokerState::Active);
    let p: crate::metadata::PartitionMeta =
        serde_json::from_str(r#"{"group":3,"replicas":[1,2]}"#).unwrap();
    assert_eq!(p.target, None);
    for cmd in [
        reassign(&[1, 2]),
        Command::CompleteReassignment {
            group: 3,
            replicas: vec![2, 1],
        },
        Command::DecommissionBroker { id: 2 },
        Command::RemoveBroker { id: 2 },
    ] {
        let json = serde_json::to_vec(&cmd).unwrap();
        assert_eq!(serde_json::from_slice::<Command>(&json).unwrap(), cmd);
    }
}
