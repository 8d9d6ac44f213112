//! Group administration from outside the group: list, describe (with lags), delete, and
//! reset committed offsets. Each goes to the group's coordinator through
//! [`call_coordinator`].

use std::collections::{BTreeMap, HashMap};

use steme_protocol::messages::commit_offsets::{CommitOffsetsRequest, OffsetCommit};
use steme_protocol::messages::delete_group::DeleteGroupRequest;
use steme_protocol::messages::describe_group::{DescribeGroupRequest, DescribeGroupResponse};
use steme_protocol::messages::list_groups::{GroupListing, ListGroupsRequest};
use steme_protocol::messages::list_offsets::OffsetSpec;
use steme_protocol::{ApiError, ErrorCode};

use super::call_coordinator;
use crate::cluster::Cluster;
use crate::error::ClientError;

/// Every group the cluster coordinates (each broker lists the groups it coordinates).
pub async fn list_groups(cluster: &Cluster) -> Result<Vec<GroupListing>, ClientError> {
    let meta = cluster.refresh(None).await?;
    let timeout = cluster.config().request_timeout;
    let mut out = Vec::new();
    for b in &meta.brokers {
        let conn = cluster.connection(&b.addr).await?;
        out.extend(conn.call(&ListGroupsRequest {}, timeout).await?.groups);
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out.dedup_by(|a, b| a.group == b.group);
    Ok(out)
}

/// A group's members, assignment, committed offsets and lag, from its coordinator.
///
/// The coordinator knows the high watermarks of the partitions its own broker hosts; the
/// others are asked of their leaders here (`ListOffsets`, latest), and the partitions' and
/// members' lags completed with them, as Kafka's admin client does. A partition whose leader
/// cannot be reached keeps an unknown high watermark and a lag of 0.
pub async fn describe_group(
    cluster: &Cluster,
    group: &str,
) -> Result<DescribeGroupResponse, ClientError> {
    let mut d = call_coordinator(
        cluster,
        group,
        &DescribeGroupRequest {
            group: group.to_owned(),
        },
    )
    .await?;
    complete_lags(cluster, &mut d).await;
    Ok(d)
}

/// Fills the high watermarks the coordinator left unknown and recomputes every lag.
async fn complete_lags(cluster: &Cluster, d: &mut DescribeGroupResponse) {
    let config = cluster.config();
    let asks = d
        .offsets
        .iter_mut()
        .filter(|o| o.high_watermark.is_none())
        .map(|o| async move {
            let latest = crate::consumer::list_offsets(
                cluster,
                &o.topic,
                o.partition,
                OffsetSpec::Latest,
                config.request_timeout,
                config.reconnect_backoff,
            )
            .await;
            match latest {
                Ok(r) => o.high_watermark = Some(r.high_watermark),
                Err(e) => tracing::debug!(
                    topic = %o.topic,
                    partition = o.partition,
                    error = %e,
                    "no high watermark for a group's partition"
                ),
            }
        });
    futures::future::join_all(asks).await;
    let mut lag_of: HashMap<(&str, u32), u64> = HashMap::new();
    for o in &mut d.offsets {
        o.lag = o
            .high_watermark
            .map_or(0, |h| h.saturating_sub(o.committed.unwrap_or(0)));
        lag_of.insert((o.topic.as_str(), o.partition), o.lag);
    }
    for m in &mut d.members {
        m.lag = m
            .assignment
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.as_str(), *p)))
            .map(|tp| lag_of.get(&tp).copied().unwrap_or(0))
            .sum();
    }
}

/// Deletes a group with no members, and its committed offsets.
pub async fn delete_group(cluster: &Cluster, group: &str) -> Result<(), ClientError> {
    call_coordinator(
        cluster,
        group,
        &DeleteGroupRequest {
            group: group.to_owned(),
        },
    )
    .await
    .map(drop)
}

/// Sets a group's committed offsets from outside the group (refused while it has members).
pub async fn reset_offsets(
    cluster: &Cluster,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<u32, u64>,
) -> Result<(), ClientError> {
    let req = CommitOffsetsRequest {
        group: group.to_owned(),
        member_id: String::new(),
        member_epoch: 0,
        offsets: offsets
            .iter()
            .map(|(p, o)| OffsetCommit {
                topic: topic.to_owned(),
                partition: *p,
                offset: *o,
                metadata: "reset".to_owned(),
            })
            .collect(),
    };
    let resp = call_coordinator(cluster, group, &req).await?;
    if let Some(bad) = resp
        .results
        .iter()
        .find(|r| r.error != ErrorCode::None as u16)
    {
        let code = ErrorCode::try_from(bad.error).unwrap_or(ErrorCode::Unknown);
        return Err(ClientError::Api(ApiError::other(
            code,
            format!(
                "reset of {}/{} refused ({code:?}); stop the group's members first",
                bad.topic, bad.partition
            ),
        )));
    }
    Ok(())
}
