//! `GET /v1/topics` and `GET /v1/topics/{topic}`: what the cluster holds, as the caller's
//! principal may see it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use steme_client::Admin;

use crate::error::HttpError;
use crate::principals::Caller;
use crate::routes::PathParams;
use crate::state::Gateway;

#[derive(Serialize)]
pub struct TopicList {
    topics: Vec<TopicSummary>,
}

#[derive(Serialize)]
struct TopicSummary {
    name: String,
    partitions: usize,
    replication_factor: usize,
    map_epoch: u64,
}

pub async fn list(
    State(_gateway): State<Arc<Gateway>>,
    Caller(identity): Caller,
) -> Result<Json<TopicList>, HttpError> {
    let topics = Admin::new(identity.cluster().clone()).list_topics().await?;
    Ok(Json(TopicList {
        topics: topics
            .into_iter()
            .map(|t| TopicSummary {
                replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len()),
                partitions: t.partitions.len(),
                map_epoch: t.map_epoch,
                name: t.name,
            })
            .collect(),
    }))
}

#[derive(Serialize)]
pub struct TopicDescription {
    name: String,
    map_epoch: u64,
    configs: BTreeMap<String, String>,
    partitions: Vec<PartitionView>,
}

#[derive(Serialize)]
struct PartitionView {
    partition: u32,
    leader: Option<u64>,
    replicas: Vec<u64>,
    log_start: u64,
    high_watermark: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    offline: Option<String>,
}

pub async fn describe(
    State(_gateway): State<Arc<Gateway>>,
    Caller(identity): Caller,
    PathParams(topic): PathParams<String>,
) -> Result<Json<TopicDescription>, HttpError> {
    let admin = Admin::new(identity.cluster().clone());
    let d = admin.describe_topic(&topic).await?;
    let meta = admin.metadata(Some(std::slice::from_ref(&topic))).await?;
    let map_epoch = meta
        .topics
        .iter()
        .find(|t| t.name == topic)
        .map_or(0, |t| t.map_epoch);
    Ok(Json(TopicDescription {
        name: d.name,
        map_epoch,
        configs: d.configs.into_iter().map(|c| (c.key, c.value)).collect(),
        partitions: d
            .partitions
            .into_iter()
            .map(|p| PartitionView {
                partition: p.partition,
                leader: p.leader,
                replicas: p.replicas,
                log_start: p.log_start_offset,
                high_watermark: p.high_watermark,
                offline: p.offline,
            })
            .collect(),
    }))
}
