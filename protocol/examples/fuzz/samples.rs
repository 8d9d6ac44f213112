//! One or more valid encodings of every message, batch and assertion, for the fuzz driver
//! to mutate.

use bytes::{Bytes, BytesMut};
use steme_protocol::error::{ApiError, ErrorCode, LeaderHint};
use steme_protocol::frame::{Frame, FrameHeader};
use steme_protocol::messages::*;
use steme_protocol::{Assertion, AssertionId, BatchBuilder, Request, Response, SigningKey, Value};

use crate::driver::Samples;

fn tp(topic: &str, partitions: &[u32]) -> heartbeat::TopicPartitions {
    heartbeat::TopicPartitions {
        topic: topic.into(),
        partitions: partitions.to_vec(),
    }
}

pub fn samples() -> Samples {
    let key = SigningKey::from_bytes(&[3; 32]);
    let objects = [
        Value::Text("a text value".into()),
        Value::Integer(-5),
        Value::Float(2.5),
        Value::Boolean(true),
        Value::Bytes(vec![1, 2, 3]),
        Value::Ref("urn:other".into()),
    ];
    let signed: Vec<_> = objects
        .into_iter()
        .enumerate()
        .map(|(i, object)| {
            Assertion {
                subject: format!("urn:s:{i}"),
                predicate: "p".into(),
                object,
                source: "fuzz".into(),
                confidence: (i % 2 == 0).then_some(0.5),
                supersedes: (i % 3 == 0).then_some(AssertionId([i as u8; 32])),
                issued_at: i as u64,
            }
            .sign(&key)
            .expect("valid")
        })
        .collect();
    let assertions: Vec<Bytes> = signed
        .iter()
        .map(|s| Bytes::copy_from_slice(s.canonical()))
        .collect();
    let batches: Vec<Bytes> = (1..=3)
        .map(|n| {
            let mut b = BatchBuilder::default();
            for s in signed.iter().take(n * 2) {
                b.push(s);
            }
            b.finish()
        })
        .collect();

    let requests: Vec<Request> = vec![
        api_versions::ApiVersionsRequest {
            client_name: "steme-fuzz".into(),
            client_version: "0.1.0".into(),
        }
        .into(),
        metadata::MetadataRequest { topics: None }.into(),
        metadata::MetadataRequest {
            topics: Some(vec!["a".into(), "bb".into()]),
        }
        .into(),
        create_topic::CreateTopicRequest {
            name: "facts".into(),
            partitions: 16,
            replication_factor: 3,
            configs: vec![create_topic::ConfigEntry {
                key: "retention.ms".into(),
                value: "1000".into(),
            }],
        }
        .into(),
        delete_topic::DeleteTopicRequest {
            name: "facts".into(),
        }
        .into(),
        describe_topic::DescribeTopicRequest {
            name: "facts".into(),
        }
        .into(),
        authenticate::AuthChallengeRequest {}.into(),
        authenticate::AuthenticateRequest {
            public_key: [3; 32],
            signature: [4; 64],
        }
        .into(),
        acls::AlterAclRequest {
            add: true,
            acl: acls::AclEntry {
                principal: "cert:alice".into(),
                resource: "topic:facts*".into(),
                operation: "produce".into(),
            },
        }
        .into(),
        acls::ListAclsRequest {}.into(),
        alter_topic_config::AlterTopicConfigRequest {
            topic: "facts".into(),
            set: vec![create_topic::ConfigEntry {
                key: "retention.bytes".into(),
                value: "65536".into(),
            }],
            delete: vec!["retention.ms".into()],
        }
        .into(),
        reassign::ReassignPartitionRequest {
            topic: "facts".into(),
            partition: 2,
            replicas: vec![4, 2, 3],
        }
        .into(),
        reassign::DecommissionBrokerRequest { node_id: 3 }.into(),
        add_partitions::AddPartitionsRequest {
            topic: "facts".into(),
            count: 6,
        }
        .into(),
        skip_damage::SkipDamageRequest {
            topic: "facts".into(),
            partition: 1,
            first_offset: 826,
            reason: "lost on every replica".into(),
        }
        .into(),
        produce::ProduceRequest {
            topic: "facts".into(),
            partition: 1,
            acks: produce::Acks::All,
            timeout_ms: 1000,
            causality: Some(77),
            batch: batches[1].clone(),
        }
        .into(),
        fetch::FetchRequest {
            topic: "facts".into(),
            partition: 1,
            offset: 9,
            max_bytes: 1 << 20,
            max_wait_ms: 500,
        }
        .into(),
        list_offsets::ListOffsetsRequest {
            topic: "facts".into(),
            partition: 0,
            spec: list_offsets::OffsetSpec::AtOrAfterHlc(12345),
        }
        .into(),
        heartbeat::HeartbeatRequest {
            group: "g".into(),
            member_id: "m-1".into(),
            instance_id: Some("host-a".into()),
            member_epoch: 3,
            session_timeout_ms: 10_000,
            subscription: vec!["facts".into()],
            owned: vec![tp("facts", &[0, 1, 2])],
        }
        .into(),
        commit_offsets::CommitOffsetsRequest {
            group: "g".into(),
            member_id: "m-1".into(),
            member_epoch: 3,
            offsets: vec![commit_offsets::OffsetCommit {
                topic: "facts".into(),
                partition: 2,
                offset: 99,
                metadata: "meta".into(),
            }],
        }
        .into(),
        fetch_offsets::FetchOffsetsRequest {
            group: "g".into(),
            partitions: Some(vec![tp("facts", &[1])]),
        }
        .into(),
        leave_group::LeaveGroupRequest {
            group: "g".into(),
            member_id: "m-1".into(),
            member_epoch: 3,
        }
        .into(),
        list_groups::ListGroupsRequest {}.into(),
        delete_group::DeleteGroupRequest {
            group: "indexers".into(),
        }
        .into(),
        describe_group::DescribeGroupRequest { group: "g".into() }.into(),
        raft::RaftRequest {
            group_id: 4,
            payload: Bytes::from_static(b"opaque raft rpc"),
        }
        .into(),
    ];

    let responses: Vec<Response> = vec![
        api_versions::ApiVersionsResponse {
            broker_id: 1,
            cluster_id: "c".into(),
            apis: vec![api_versions::ApiVersionRange {
                api_key: 5,
                min: 0,
                max: 0,
            }],
        }
        .into(),
        metadata::MetadataResponse {
            brokers: vec![metadata::BrokerInfo {
                node_id: 1,
                addr: "127.0.0.1:9092".into(),
                state: metadata::BrokerState::Active,
            }],
            metadata_leader: Some(1),
            topics: vec![metadata::TopicMetadata {
                name: "facts".into(),
                partitions: vec![metadata::PartitionMetadata {
                    partition: 0,
                    leader: Some(1),
                    leader_epoch: 2,
                    replicas: vec![1, 2, 3],
                    target: None,
                }],
                map_epoch: 1,
                splits: vec![metadata::SplitInfo {
                    epoch: 1,
                    from: 1,
                    to: 2,
                    points: vec![Some(metadata::SplitPoint {
                        offset: 9,
                        hlc: 1 << 33,
                    })],
                }],
            }],
        }
        .into(),
        create_topic::CreateTopicResponse {
            name: "facts".into(),
            partitions: 3,
            replication_factor: 1,
        }
        .into(),
        delete_topic::DeleteTopicResponse {}.into(),
        alter_topic_config::AlterTopicConfigResponse {
            topic: "facts".into(),
            configs: vec![create_topic::ConfigEntry {
                key: "retention.bytes".into(),
                value: "65536".into(),
            }],
        }
        .into(),
        reassign::ReassignPartitionResponse {
            topic: "facts".into(),
            partition: 2,
            replicas: vec![1, 2, 3],
            target: Some(vec![4, 2, 3]),
        }
        .into(),
        reassign::DecommissionBrokerResponse {
            node_id: 3,
            state: metadata::BrokerState::Draining,
        }
        .into(),
        add_partitions::AddPartitionsResponse {
            topic: "facts".into(),
            map_epoch: 1,
            partitions: 6,
        }
        .into(),
        authenticate::AuthChallengeResponse { nonce: [9; 32] }.into(),
        authenticate::AuthenticateResponse {
            principal: "key:0303".into(),
        }
        .into(),
        acls::AlterAclResponse {}.into(),
        acls::ListAclsResponse {
            acls: vec![acls::AclEntry {
                principal: "cert:alice".into(),
                resource: "topic:facts*".into(),
                operation: "produce".into(),
            }],
        }
        .into(),
        skip_damage::SkipDamageResponse {
            range: describe_topic::DamagedRange {
                first_offset: 826,
                end_offset: 970,
                first_index: 40,
                end_index: 47,
                quarantined: Some("no other replica holds the partition".into()),
                reason: "batch crc mismatch".into(),
                skipped: Some(describe_topic::SkipRecord {
                    at_ms: 1_764_000_000_000,
                    reason: "lost on every replica".into(),
                }),
            },
        }
        .into(),
        describe_topic::DescribeTopicResponse {
            name: "facts".into(),
            configs: vec![],
            partitions: vec![describe_topic::PartitionDescription {
                partition: 0,
                leader: Some(1),
                leader_epoch: 1,
                replicas: vec![1],
                log_start_offset: 0,
                high_watermark: 10,
                log_end_offset: 10,
                size_bytes: 4096,
                offline: None,
                damaged: vec![],
                scrub: Default::default(),
                in_sync: Some(vec![1]),
            }],
        }
        .into(),
        produce::ProduceResponse {
            base_offset: 5,
            base_hlc: 6,
            throttle_ms: 0,
            duplicates: vec![
                None,
                Some(produce::Existing {
                    offset: 1,
                    hlc: 2,
                    partition: None,
                }),
                Some(produce::Existing {
                    offset: 3,
                    hlc: 4,
                    partition: Some(1),
                }),
            ],
        }
        .into(),
        fetch::FetchResponse {
            throttle_ms: 0,
            high_watermark: 10,
            log_start_offset: 0,
            records: batches[0].clone(),
        }
        .into(),
        list_offsets::ListOffsetsResponse {
            offset: 3,
            hlc: Some(4),
            high_watermark: 5,
            log_start_offset: 0,
        }
        .into(),
        heartbeat::HeartbeatResponse {
            member_id: "m-1".into(),
            member_epoch: 4,
            heartbeat_interval_ms: 1000,
            assignment: Some(vec![tp("facts", &[0, 3])]),
        }
        .into(),
        commit_offsets::CommitOffsetsResponse {
            results: vec![commit_offsets::PartitionResult {
                topic: "facts".into(),
                partition: 2,
                error: 0,
            }],
        }
        .into(),
        fetch_offsets::FetchOffsetsResponse {
            offsets: vec![fetch_offsets::CommittedOffset {
                topic: "facts".into(),
                partition: 1,
                offset: Some(7),
                metadata: String::new(),
            }],
        }
        .into(),
        leave_group::LeaveGroupResponse {}.into(),
        delete_group::DeleteGroupResponse {}.into(),
        list_groups::ListGroupsResponse {
            groups: vec![list_groups::GroupListing {
                group: "g".into(),
                state: list_groups::GroupState::Stable,
                members: 2,
            }],
        }
        .into(),
        describe_group::DescribeGroupResponse {
            group: "g".into(),
            state: list_groups::GroupState::Stable,
            epoch: 3,
            coordinator: 1,
            members: vec![describe_group::MemberDescription {
                member_id: "m-1".into(),
                instance_id: None,
                member_epoch: 3,
                subscription: vec!["facts".into()],
                assignment: vec![tp("facts", &[0])],
                lag: 4,
            }],
            offsets: vec![describe_group::PartitionLag {
                topic: "facts".into(),
                partition: 0,
                committed: Some(6),
                high_watermark: Some(10),
                lag: 4,
                owner: Some("m-1".into()),
            }],
        }
        .into(),
        raft::RaftResponse {
            payload: Bytes::from_static(b"reply"),
        }
        .into(),
    ];

    let errors = vec![
        ApiError::NotLeader {
            leader: Some(LeaderHint {
                node_id: 2,
                addr: "127.0.0.1:1".into(),
            }),
            message: "m".into(),
        },
        ApiError::OffsetOutOfRange {
            log_start: 1,
            high_watermark: 2,
        },
        ApiError::InvalidSignature {
            record: 3,
            message: "bad".into(),
        },
        ApiError::WrongPartition {
            record: 0,
            expected: 1,
        },
        ApiError::ClockSkew { broker_now: 5 },
        ApiError::FencedMember {
            current_epoch: 2,
            message: "x".into(),
        },
        ApiError::CorruptData {
            first_offset: 3,
            end_offset: 9,
            message: "damaged".into(),
        },
        ApiError::other(ErrorCode::UnknownTopic, "no such topic"),
    ];

    let frames = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut body = BytesMut::new();
            r.encode(&mut body);
            let frame = Frame {
                header: FrameHeader {
                    api_key: r.api_key() as u16,
                    api_version: 0,
                    correlation_id: i as u32,
                },
                body: body.freeze(),
            };
            let mut out = BytesMut::new();
            frame.encode(&mut out);
            frame.encode(&mut out);
            out.freeze()
        })
        .collect();

    Samples {
        requests,
        responses,
        errors,
        frames,
        batches,
        assertions,
    }
}
