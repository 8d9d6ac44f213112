//! CreateTopic, DeleteTopic, DescribeTopic, AlterTopicConfig, AddPartitions and
//! SkipDamage.

use std::collections::BTreeMap;
use std::time::Duration;

use steme_protocol::messages::alter_topic_config::{
    AlterTopicConfigRequest, AlterTopicConfigResponse,
};
use steme_protocol::messages::skip_damage::{SkipDamageRequest, SkipDamageResponse};

use steme_protocol::ApiError;
use steme_protocol::messages::add_partitions::{AddPartitionsRequest, AddPartitionsResponse};
use steme_protocol::messages::create_topic::{
    ConfigEntry, CreateTopicRequest, CreateTopicResponse,
};
use steme_protocol::messages::delete_topic::{DeleteTopicRequest, DeleteTopicResponse};
use steme_protocol::messages::describe_topic::{
    DescribeTopicRequest, DescribeTopicResponse, PartitionDescription,
};

use crate::metadata::Command;
use crate::node::Broker;

/// Creates the topic, and answers once every partition has a leader, so the topic can be
/// used at once.
pub async fn create(
    broker: &Broker,
    r: CreateTopicRequest,
) -> Result<CreateTopicResponse, ApiError> {
    let partitions = if r.partitions == 0 {
        broker.config().default_partitions
    } else {
        r.partitions
    };
    let configs: BTreeMap<String, String> =
        r.configs.into_iter().map(|c| (c.key, c.value)).collect();
    broker
        .propose_metadata(Command::CreateTopic {
            name: r.name.clone(),
            partitions,
            replication_factor: r.replication_factor,
            configs,
            max_replicas_per_broker: Some(broker.config().max_partitions_per_broker),
        })
        .await?;
    broker.await_leaders(&r.name, partitions).await?;
    let replication_factor = broker
        .metadata()
        .topics
        .get(&r.name)
        .map_or(0, |t| t.replication_factor);
    Ok(CreateTopicResponse {
        name: r.name,
        partitions,
        replication_factor,
    })
}

/// Grows the topic, and answers once the new partitions have leaders (the split points are
/// recorded after; `metadata::split`).
pub async fn add_partitions(
    broker: &Broker,
    r: AddPartitionsRequest,
) -> Result<AddPartitionsResponse, ApiError> {
    broker
        .propose_metadata(Command::AddPartitions {
            name: r.topic.clone(),
            count: r.count,
            max_replicas_per_broker: Some(broker.config().max_partitions_per_broker),
        })
        .await?;
    broker.await_leaders(&r.topic, r.count).await?;
    let state = broker.metadata();
    let t = state.topic(&r.topic)?;
    Ok(AddPartitionsResponse {
        topic: r.topic.clone(),
        map_epoch: t.map_epoch,
        partitions: t.partitions.len() as u32,
    })
}

pub async fn delete(
    broker: &Broker,
    r: DeleteTopicRequest,
) -> Result<DeleteTopicResponse, ApiError> {
    broker
        .propose_metadata(Command::DeleteTopic { name: r.name })
        .await?;
    Ok(DeleteTopicResponse {})
}

/// How long an applied alter may take to reach this broker's copy of the metadata (when
/// another broker led the metadata group), and how often it is looked for.
const ALTER_VISIBLE_WITHIN: Duration = Duration::from_secs(5);

/// Changes a topic's settings through the metadata group (validated there, see
/// [`crate::topic_config::TopicConfig::alter`]) and answers with the topic's overrides as
/// they stand once the change is applied. Every broker's reconcile then hands the new
/// settings to the partitions it hosts; produce reads them from the metadata per request.
pub async fn alter_config(
    broker: &Broker,
    r: AlterTopicConfigRequest,
) -> Result<AlterTopicConfigResponse, ApiError> {
    let set: BTreeMap<String, String> = r.set.into_iter().map(|c| (c.key, c.value)).collect();
    broker
        .propose_metadata(Command::AlterTopicConfig {
            name: r.topic.clone(),
            set: set.clone(),
            delete: r.delete.clone(),
        })
        .await?;
    // Applied on the metadata leader; this broker's copy (usually the leader's own) may
    // trail it by a moment. Bounded: past the wait, answer with what this copy holds.
    let shows_the_change = |configs: &BTreeMap<String, String>| {
        set.iter().all(|(k, v)| configs.get(k) == Some(v))
            && r.delete.iter().all(|k| !configs.contains_key(k))
    };
    let state = super::once_visible(broker, ALTER_VISIBLE_WITHIN, |s| {
        s.topics
            .get(&r.topic)
            .is_none_or(|t| shows_the_change(&t.configs))
    })
    .await;
    let t = state.topic(&r.topic)?;
    Ok(AlterTopicConfigResponse {
        topic: r.topic.clone(),
        configs: config_entries(&t.configs),
    })
}

fn config_entries(configs: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    configs
        .iter()
        .map(|(k, v)| ConfigEntry {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// The topic's configs and the partitions placed here, as this replica sees them (one that
/// is offline says why); a cluster view asks every broker (`steme cluster status`).
pub fn describe(
    broker: &Broker,
    r: DescribeTopicRequest,
) -> Result<DescribeTopicResponse, ApiError> {
    let state = broker.metadata();
    let t = state.topic(&r.name)?;
    let offline = broker.offline();
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .filter_map(|(p, placement)| {
            let p = p as u32;
            if let Ok(hosted) = broker.partition(&t.name, p) {
                return Some(hosted.describe());
            }
            let (_, why) = offline.iter().find(|(k, _)| k.0 == t.name && k.1 == p)?;
            Some(PartitionDescription {
                partition: p,
                leader: None,
                leader_epoch: 0,
                replicas: placement.replicas.clone(),
                log_start_offset: 0,
                high_watermark: 0,
                log_end_offset: 0,
                size_bytes: 0,
                offline: Some(why.clone()),
                damaged: Vec::new(),
                scrub: Default::default(),
                in_sync: None,
            })
        })
        .collect();
    Ok(DescribeTopicResponse {
        name: t.name.clone(),
        configs: config_entries(&t.configs),
        partitions,
    })
}

/// Gives up a quarantined damaged range of this broker's replica (see
/// [`crate::partition::Partition::skip_damage`]).
pub fn skip_damage(broker: &Broker, r: SkipDamageRequest) -> Result<SkipDamageResponse, ApiError> {
    let range = broker
        .partition(&r.topic, r.partition)?
        .skip_damage(r.first_offset, &r.reason)?;
    Ok(SkipDamageResponse { range })
}
