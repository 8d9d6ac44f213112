//! Tests of the metadata state machine: commands applied, refused, and encoded.

use super::*;

fn state_with_brokers(n: u64) -> MetadataState {
    let mut s = MetadataState::default();
    for id in 1..=n {
        s.apply(Command::RegisterBroker {
            peer_addr: None,
            signer: None,
            id,
            addr: format!("127.0.0.1:{}", 9000 + id),
        })
        .unwrap();
    }
    s
}

fn create(name: &str, partitions: u32, rf: u16) -> Command {
    Command::CreateTopic {
        name: name.into(),
        partitions,
        replication_factor: rf,
        configs: BTreeMap::new(),
        max_replicas_per_broker: None,
    }
}

fn create_capped(name: &str, partitions: u32, rf: u16, cap: u32) -> Command {
    match create(name, partitions, rf) {
        Command::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
            ..
        } => Command::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
            max_replicas_per_broker: Some(cap),
        },
        _ => unreachable!(),
    }
}

fn create_with(name: &str, key: &str, value: &str) -> Command {
    Command::CreateTopic {
        name: name.into(),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::from([(key.to_owned(), value.to_owned())]),
        max_replicas_per_broker: None,
    }
}

#[test]
fn refuses_topic_with_segment_bytes_out_of_range() {
    let mut s = state_with_brokers(1);
    let err = s
        .apply(create_with("t", "segment.bytes", "1000000000000000000"))
        .unwrap_err();
    assert!(
        err.contains("segment.bytes=1000000000000000000") && err.contains("4096 to 1073741824"),
        "{err}"
    );
    assert!(s.topics.is_empty(), "a refusal leaves the state unchanged");
    for (key, value) in [
        ("segment.bytes", "4095"),
        ("retention.bytes", "1152921504606846977"),
        ("retention.ms", "999"),
        ("retention.ms", "3153600000001"),
        ("verify.signatures", "maybe"),
    ] {
        let err = s.apply(create_with("t", key, value)).unwrap_err();
        assert!(err.contains(key), "{key}={value}: {err}");
    }
    s.apply(create_with("t", "segment.bytes", "1073741824"))
        .unwrap();
    assert_eq!(s.topics["t"].config().segment_bytes, Some(1 << 30));
}

#[test]
fn stored_out_of_range_settings_are_clamped_not_fatal() {
    // As an older broker might have stored it, bypassing today's checks.
    let t = TopicMeta {
        name: "old".into(),
        replication_factor: 1,
        configs: BTreeMap::from([
            ("segment.bytes".to_owned(), "1000000000000000000".to_owned()),
            ("retention.ms".to_owned(), "never".to_owned()),
        ]),
        partitions: vec![],
        map_epoch: 0,
        splits: Vec::new(),
        parsed: Default::default(),
    };
    assert_eq!(
        t.config().segment_bytes,
        Some(topic_config::MAX_SEGMENT_BYTES)
    );
    assert_eq!(t.config().retention_ms, None);
}

#[test]
fn refuses_topic_over_the_replicas_per_broker_cap() {
    let mut s = state_with_brokers(2);
    // 3 partitions × 2 replicas on 2 brokers: 3 replicas each.
    s.apply(create_capped("a", 3, 2, 4)).unwrap();
    // One more partition at rf 2 makes 4 each: at the cap, allowed.
    s.apply(create_capped("b", 1, 2, 4)).unwrap();
    let err = s.apply(create_capped("c", 1, 1, 4)).unwrap_err();
    assert!(
        err.contains("5 partition replicas on broker") && err.contains("cap of 4"),
        "{err}"
    );
    assert!(!s.topics.contains_key("c"));
    assert_eq!(s.next_group, 5, "a refusal numbers no groups");
    // Without a cap (a command from before the field existed) placement is unbounded.
    s.apply(create("c", 1, 1)).unwrap();
    // Deleting a topic frees its replicas' room.
    s.apply(Command::DeleteTopic { name: "a".into() }).unwrap();
    s.apply(create_capped("d", 2, 2, 4)).unwrap();
}

#[test]
fn replica_cap_names_the_broker_and_its_count() {
    let mut s = state_with_brokers(3);
    let err = s.apply(create_capped("big", 10, 1, 3)).unwrap_err();
    // Round-robin from broker 1: brokers 1, 2, 3, 1, ... so broker 1 gets 4.
    assert!(
        err.contains("would put 4 partition replicas on broker 1"),
        "{err}"
    );
}

#[test]
fn create_topic_commands_from_before_the_cap_still_decode() {
    let old = br#"{"cmd":"create_topic","name":"facts","partitions":3,"replication_factor":1,"configs":{}}"#;
    let c: Command = serde_json::from_slice(old).unwrap();
    assert_eq!(c, create("facts", 3, 1));
    let c = create_capped("facts", 3, 1, 7);
    let Proposal { bytes, .. } = c.encode();
    assert_eq!(serde_json::from_slice::<Command>(&bytes).unwrap(), c);
}

#[test]
fn create_spreads_replicas_and_numbers_groups() {
    let mut s = state_with_brokers(3);
    s.apply(create("facts", 6, 0)).unwrap();
    let t = &s.topics["facts"];
    assert_eq!(t.replication_factor, 3);
    let groups: Vec<u64> = t.partitions.iter().map(|p| p.group).collect();
    assert_eq!(groups, vec![1, 2, 3, 4, 5, 6]);
    let leaders: Vec<NodeId> = t.partitions.iter().map(|p| p.replicas[0]).collect();
    assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
    s.apply(create("more", 2, 1)).unwrap();
    assert_eq!(s.topics["more"].partitions[0].group, 7);
    // The next topic starts where the last left off: leaders stay even across topics.
    let more: Vec<NodeId> = s.topics["more"]
        .partitions
        .iter()
        .map(|p| p.replicas[0])
        .collect();
    assert_eq!(more, vec![1, 2]);
}

#[test]
fn leader_reports_keep_the_highest_term() {
    let mut s = state_with_brokers(3);
    s.apply(create("facts", 2, 3)).unwrap();
    let report = |node, term| Command::PartitionLeader {
        group: 1,
        node,
        term,
    };
    s.apply(report(2, 5)).unwrap();
    assert!(s.apply(report(1, 4)).unwrap_err().contains("stale"));
    assert_eq!(s.leaders[&1], GroupLeader { node: 2, term: 5 });
    s.apply(report(3, 6)).unwrap();
    assert_eq!(s.leaders[&1].node, 3);
    let unknown = Command::PartitionLeader {
        group: 99,
        node: 1,
        term: 1,
    };
    assert!(s.apply(unknown).is_err());
    s.apply(Command::DeleteTopic {
        name: "facts".into(),
    })
    .unwrap();
    assert!(s.leaders.is_empty());
}

#[test]
fn refuses_bad_topics() {
    let mut s = state_with_brokers(1);
    assert!(s.apply(create("bad name", 1, 1)).is_err());
    assert!(s.apply(create("ok", 0, 1)).is_err());
    assert!(s.apply(create("ok", 1, 2)).is_err());
    s.apply(create("ok", 1, 1)).unwrap();
    assert!(s.apply(create("ok", 1, 1)).unwrap_err().contains("exists"));
    assert!(
        s.apply(Command::DeleteTopic {
            name: "nope".into()
        })
        .is_err()
    );
    s.apply(Command::DeleteTopic { name: "ok".into() }).unwrap();
    assert!(s.topics.is_empty());
    let err = s.apply(create_with("c", "colour", "blue")).unwrap_err();
    assert!(err.contains("unknown topic config"));
}

fn alter(name: &str, set: &[(&str, &str)], delete: &[&str]) -> Command {
    Command::AlterTopicConfig {
        name: name.into(),
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        delete: delete.iter().map(|k| k.to_string()).collect(),
    }
}

#[test]
fn alter_topic_config_replaces_the_settings_and_their_parsed_form() {
    let mut s = state_with_brokers(1);
    s.apply(create_with("t", "retention.ms", "60000")).unwrap();
    assert_eq!(s.topics["t"].config().retention_ms, Some(60_000));
    s.apply(alter(
        "t",
        &[("retention.bytes", "65536")],
        &["retention.ms"],
    ))
    .unwrap();
    let t = &s.topics["t"];
    assert_eq!(
        t.configs,
        BTreeMap::from([("retention.bytes".to_owned(), "65536".to_owned())])
    );
    // The cached parse is the new one, not the one from before the alter.
    assert_eq!(t.config().retention_ms, None);
    assert_eq!(t.config().retention_bytes, Some(65_536));
}

#[test]
fn alter_topic_config_refusals_change_nothing() {
    let mut s = state_with_brokers(1);
    s.apply(create_with("t", "segment.bytes", "16384")).unwrap();
    let before = s.clone();
    for (cmd, says) in [
        (
            alter("t", &[("retention.bytes", "1")], &[]),
            "retention.bytes=1",
        ),
        (
            alter("t", &[("retention.ms", "soon")], &[]),
            "retention.ms=soon",
        ),
        (
            alter("t", &[("colour", "blue")], &[]),
            "unknown topic config",
        ),
        (
            alter("t", &[("segment.bytes", "8192")], &[]),
            "segment.bytes",
        ),
        (alter("t", &[("partitions", "8")], &[]), "partitions"),
        (
            alter("nope", &[("retention.ms", "60000")], &[]),
            "unknown topic `nope`",
        ),
        (
            alter("__groups", &[("retention.ms", "60000")], &[]),
            "internal topics",
        ),
    ] {
        let err = s.apply(cmd).unwrap_err();
        assert!(err.contains(says), "{says}: {err}");
        assert_eq!(s, before, "{says}: a refusal leaves the state unchanged");
    }
}

#[test]
fn alter_topic_config_commands_roundtrip_as_json() {
    for c in [
        alter("facts", &[("retention.ms", "60000")], &[]),
        alter("facts", &[], &["retention.ms"]),
    ] {
        let Proposal { bytes, .. } = c.encode();
        assert_eq!(serde_json::from_slice::<Command>(&bytes).unwrap(), c);
    }
}

#[test]
fn commands_roundtrip_as_json() {
    let c = create("facts", 3, 1);
    let Proposal { bytes, .. } = c.encode();
    assert_eq!(serde_json::from_slice::<Command>(&bytes).unwrap(), c);
}
