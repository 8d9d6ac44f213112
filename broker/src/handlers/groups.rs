//! The consumer-group APIs (D10), each answered by the group's coordinator on this broker
//! (the node finds or loads it): Heartbeat, CommitOffsets, FetchOffsets, LeaveGroup,
//! ListGroups, DescribeGroup, DeleteGroup.

use std::collections::HashMap;

use steme_protocol::ApiError;
use steme_protocol::messages::commit_offsets::{CommitOffsetsRequest, CommitOffsetsResponse};
use steme_protocol::messages::delete_group::{DeleteGroupRequest, DeleteGroupResponse};
use steme_protocol::messages::describe_group::{DescribeGroupRequest, DescribeGroupResponse};
use steme_protocol::messages::fetch_offsets::{FetchOffsetsRequest, FetchOffsetsResponse};
use steme_protocol::messages::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use steme_protocol::messages::leave_group::{LeaveGroupRequest, LeaveGroupResponse};
use steme_protocol::messages::list_groups::ListGroupsResponse;

use steme_protocol::acl::{Operation, Target};

use crate::authz::Gate;
use crate::node::Broker;

pub async fn heartbeat(
    broker: &Broker,
    r: HeartbeatRequest,
) -> Result<HeartbeatResponse, ApiError> {
    let c = broker.coordinator(&r.group).await?;
    c.heartbeat(r, &|t| broker.topic_view(t)).await
}

pub async fn commit_offsets(
    broker: &Broker,
    r: CommitOffsetsRequest,
) -> Result<CommitOffsetsResponse, ApiError> {
    broker.coordinator(&r.group).await?.commit(r).await
}

/// The group's committed offsets, of the topics the principal may describe.
pub async fn fetch_offsets(
    broker: &Broker,
    gate: &Gate<'_>,
    r: FetchOffsetsRequest,
) -> Result<FetchOffsetsResponse, ApiError> {
    let mut resp = broker.coordinator(&r.group).await?.fetch_offsets(r).await;
    resp.offsets
        .retain(|o| gate.may(Operation::Describe, Target::Topic(&o.topic)));
    Ok(resp)
}

pub async fn leave(broker: &Broker, r: LeaveGroupRequest) -> Result<LeaveGroupResponse, ApiError> {
    let c = broker.coordinator(&r.group).await?;
    c.leave(&r.group, &r.member_id, &|t| broker.topic_view(t))
        .await?;
    Ok(LeaveGroupResponse {})
}

pub async fn delete(
    broker: &Broker,
    r: DeleteGroupRequest,
) -> Result<DeleteGroupResponse, ApiError> {
    broker.coordinator(&r.group).await?.delete(&r.group).await?;
    Ok(DeleteGroupResponse {})
}

/// The groups coordinated by this broker that the principal may describe (a cluster-wide
/// list asks every broker).
pub async fn list(broker: &Broker, gate: &Gate<'_>) -> Result<ListGroupsResponse, ApiError> {
    let mut groups = Vec::new();
    for c in broker.led_coordinators().await? {
        groups.extend(c.list().await);
    }
    groups.retain(|g| gate.may(Operation::Describe, Target::Group(&g.group)));
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(ListGroupsResponse { groups })
}

/// The group with its committed offsets and lags. The coordinator knows the high watermark
/// of the partitions hosted on its broker; for the others it says "unknown", and the client
/// asks their leaders (as Kafka's admin client does).
pub async fn describe(
    broker: &Broker,
    gate: &Gate<'_>,
    r: DescribeGroupRequest,
) -> Result<DescribeGroupResponse, ApiError> {
    let c = broker.coordinator(&r.group).await?;
    let tps = c
        .described_partitions(&r.group, &|t| broker.topic_view(t))
        .await?;
    let high_watermarks: HashMap<_, _> = tps
        .into_iter()
        .map(|(topic, partition)| {
            let hwm = broker
                .partition(&topic, partition)
                .ok()
                .map(|p| p.high_watermark());
            ((topic, partition), hwm)
        })
        .collect();
    let mut d = c
        .describe(&r.group, broker.node_id(), &high_watermarks)
        .await?;
    // Offsets and lag only of the topics the principal may describe.
    d.offsets
        .retain(|o| gate.may(Operation::Describe, Target::Topic(&o.topic)));
    Ok(d)
}
