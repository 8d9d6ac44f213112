//! ApiVersions (the handshake) and Metadata (brokers, topics, partition leaders).

use steme_protocol::messages::api_versions::{ApiVersionsRequest, ApiVersionsResponse};
use steme_protocol::messages::metadata::{
    BrokerInfo, BrokerState, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata,
};

use steme_protocol::acl::{Operation, Target};

use crate::authz::Gate;
use crate::node::Broker;

pub fn api_versions(broker: &Broker, r: ApiVersionsRequest) -> ApiVersionsResponse {
    tracing::debug!(client = %r.client_name, version = %r.client_version, "handshake");
    ApiVersionsResponse::new(broker.node_id(), "steme")
}

/// Brokers, and the topics asked for (all, if none are named) that the principal may
/// describe.
pub fn metadata(broker: &Broker, gate: &Gate<'_>, r: MetadataRequest) -> MetadataResponse {
    let state = broker.metadata();
    let brokers = state
        .brokers
        .iter()
        .map(|(id, addr)| BrokerInfo {
            node_id: *id,
            addr: addr.clone(),
            state: match state.broker_state(*id) {
                // Removed from the metadata group, this broker no longer hears that it was
                // marked removed: it says so itself.
                BrokerState::Draining if *id == broker.node_id() && broker.left_metadata() => {
                    BrokerState::Removed
                }
                s => s,
            },
        })
        .collect();
    let metadata_leader = broker.metadata_leader();
    let wanted = |name: &String| {
        r.topics.as_ref().is_none_or(|ts| ts.contains(name))
            && gate.may(Operation::Describe, Target::Topic(name))
    };
    let topics = state
        .topics
        .values()
        .filter(|t| wanted(&t.name))
        .map(|t| TopicMetadata {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let leader = broker.leader_of(&state, &t.name, i as u32);
                    PartitionMetadata {
                        partition: i as u32,
                        leader: leader.node,
                        leader_epoch: leader.epoch,
                        replicas: m.replicas.clone(),
                        target: m.target.clone(),
                    }
                })
                .collect(),
            map_epoch: t.map_epoch,
            splits: t.splits.clone(),
        })
        .collect();
    MetadataResponse {
        brokers,
        metadata_leader,
        topics,
    }
}
