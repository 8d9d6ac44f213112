//! ReassignPartition and DecommissionBroker: recorded through the metadata group; the
//! partition leaders and the metadata leader carry them out (`partition::reassign`,
//! `node::controller`).

use std::time::Duration;

use steme_protocol::ApiError;
use steme_protocol::messages::metadata::BrokerState;
use steme_protocol::messages::reassign::{
    DecommissionBrokerRequest, DecommissionBrokerResponse, ReassignPartitionRequest,
    ReassignPartitionResponse,
};

use crate::error::BrokerError;
use crate::metadata::{Command, MetadataState};
use crate::node::Broker;

/// How long an answer waits for this broker's copy of the metadata to show the change.
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);

pub async fn reassign(
    broker: &Broker,
    r: ReassignPartitionRequest,
) -> Result<ReassignPartitionResponse, ApiError> {
    broker
        .propose_metadata(Command::ReassignPartition {
            topic: r.topic.clone(),
            partition: r.partition,
            replicas: r.replicas.clone(),
        })
        .await?;
    let state = super::once_visible(broker, VISIBLE_WITHIN, |s| {
        s.group_of(&r.topic, r.partition)
            .is_some_and(|p| p.target.as_ref() == Some(&r.replicas) || (p.replicas == r.replicas))
    })
    .await;
    let meta = state
        .group_of(&r.topic, r.partition)
        .ok_or_else(|| BrokerError::UnknownTopic {
            topic: r.topic.clone(),
        })?;
    Ok(ReassignPartitionResponse {
        topic: r.topic,
        partition: r.partition,
        replicas: meta.replicas.clone(),
        target: meta.target.clone(),
    })
}

pub async fn decommission(
    broker: &Broker,
    r: DecommissionBrokerRequest,
) -> Result<DecommissionBrokerResponse, ApiError> {
    broker
        .propose_metadata(Command::DecommissionBroker { id: r.node_id })
        .await?;
    let retiring = |s: &MetadataState| {
        matches!(
            s.broker_state(r.node_id),
            BrokerState::Draining | BrokerState::Removed
        )
    };
    let state = super::once_visible(broker, VISIBLE_WITHIN, retiring).await;
    Ok(DecommissionBrokerResponse {
        node_id: r.node_id,
        state: state.broker_state(r.node_id),
    })
}
