//! The request handlers: one file per API area. Each takes the request it is given, does
//! its work through the node's narrow methods, and encodes its reply; [`handle`] is the one
//! match from request to handler. A [`BrokerError`] becomes a wire error here, once
//! (`From<BrokerError> for ApiError`).
//!
//! - [`access`]: what each request needs when authorization is on (checked first).
//! - [`acls`]: AlterAcl, ListAcls.
//! - [`cluster`]: ApiVersions, Metadata.
//! - [`topics`]: CreateTopic, DeleteTopic, DescribeTopic, AlterTopicConfig, SkipDamage.
//! - [`placement`]: ReassignPartition, DecommissionBroker.
//! - [`produce`]: Produce, with the batch checks (partition, ids, signatures).
//! - [`fetch`]: Fetch, records written from the segments as they are.
//! - [`offsets`]: the ListOffsets request.
//! - [`groups`]: Heartbeat, CommitOffsets, FetchOffsets, LeaveGroup, ListGroups,
//!   DescribeGroup, DeleteGroup.

pub mod access;
pub mod acls;
pub mod cluster;
mod earlier;
pub mod fetch;
pub mod groups;
pub mod offsets;
pub mod placement;
pub mod produce;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use steme_protocol::messages::Request;
use steme_protocol::messages::produce::ProduceResponse;
use steme_protocol::{ApiError, ErrorCode};

use crate::authz::Gate;
use crate::error::{BrokerError, Refusal};
use crate::node::Broker;
use crate::quota::Direction;
use crate::reply::Reply;

/// Answers one client request from a connection authenticated as `principal`, if it is,
/// once [`access::check`] has allowed it.
pub async fn handle(broker: &Broker, who: Option<&Arc<str>>, req: Request) -> Reply {
    let principal = who.map(|p| &**p);
    let metadata = broker.metadata();
    let gate = Gate {
        config: broker.config(),
        acls: &metadata.acls,
        principal,
    };
    if let Err(denied) = access::check(&gate, &req) {
        return Reply::error(denied);
    }
    match req {
        Request::ApiVersions(r) => Reply::ok(cluster::api_versions(broker, r)),
        Request::Metadata(r) => Reply::ok(cluster::metadata(broker, &gate, r)),
        Request::CreateTopic(r) => Reply::of(topics::create(broker, r).await),
        Request::DeleteTopic(r) => Reply::of(topics::delete(broker, r).await),
        Request::AlterTopicConfig(r) => Reply::of(topics::alter_config(broker, r).await),
        Request::AddPartitions(r) => Reply::of(topics::add_partitions(broker, r).await),
        Request::ReassignPartition(r) => Reply::of(placement::reassign(broker, r).await),
        Request::DecommissionBroker(r) => Reply::of(placement::decommission(broker, r).await),
        Request::DescribeTopic(r) => Reply::of(topics::describe(broker, r)),
        Request::SkipDamage(r) => Reply::of(topics::skip_damage(broker, r)),
        Request::Produce(r) => {
            // Bytes count against the quota as they arrive, accepted or not (as Kafka's).
            let throttle = broker
                .quotas()
                .charge(who, Direction::Produce, r.batch.len());
            let started = std::time::Instant::now();
            let answer = produce::produce(broker, principal, r).await;
            count_produce(broker.metrics(), &answer, started.elapsed());
            Reply::of(answer.map(|ack| ProduceResponse {
                throttle_ms: throttle_ms(throttle),
                ..ack
            }))
        }
        Request::Fetch(r) => fetch::fetch(broker, who, r).await,
        Request::ListOffsets(r) => Reply::of(offsets::list_offsets(broker, r)),
        Request::Heartbeat(r) => Reply::of(groups::heartbeat(broker, r).await),
        Request::CommitOffsets(r) => Reply::of(groups::commit_offsets(broker, r).await),
        Request::FetchOffsets(r) => Reply::of(groups::fetch_offsets(broker, &gate, r).await),
        Request::LeaveGroup(r) => Reply::of(groups::leave(broker, r).await),
        Request::ListGroups(_) => Reply::of(groups::list(broker, &gate).await),
        Request::DescribeGroup(r) => Reply::of(groups::describe(broker, &gate, r).await),
        Request::DeleteGroup(r) => Reply::of(groups::delete(broker, r).await),
        Request::AlterAcl(r) => Reply::of(acls::alter(broker, r).await),
        Request::ListAcls(_) => Reply::ok(acls::list(broker)),
        // Peer-only: brokers speak Raft to each other on the peer plane alone (D8).
        Request::Raft(_) => Reply::error(ApiError::other(
            ErrorCode::InvalidRequest,
            "Raft is a peer-plane API: brokers speak it to each other on their authenticated \
             --peer-listen address, never on the client listener",
        )),
        other => Reply::error(ApiError::other(
            ErrorCode::InvalidRequest,
            format!("{:?} is not served here", other.api_key()),
        )),
    }
}

/// Counts one produce request's outcome: records appended, duplicates, a signature
/// refused, and how long it took.
fn count_produce(
    m: &crate::metrics::Metrics,
    answer: &Result<ProduceResponse, ApiError>,
    took: Duration,
) {
    m.observe_produce(took);
    match answer {
        Ok(ack) => {
            let dups = ack.duplicates.iter().filter(|d| d.is_some()).count() as u64;
            m.duplicates.inc_by(dups);
            m.produce_records.inc_by(ack.duplicates.len() as u64 - dups);
        }
        Err(ApiError::InvalidSignature { .. }) => {
            m.signature_failures.inc();
        }
        Err(_) => {}
    }
}

/// A throttle hint as the wire carries it.
pub fn throttle_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        match e {
            BrokerError::Refused(api) => api,
            e @ BrokerError::NotHosted { .. } => ApiError::NotLeader {
                leader: None,
                message: e.to_string(),
            },
            e => ApiError::other(wire_code(&e), e.to_string()),
        }
    }
}

/// The error code a client sees for `e`.
fn wire_code(e: &BrokerError) -> ErrorCode {
    match e {
        BrokerError::Refused(api) => api.code(),
        BrokerError::NotHosted { .. } => ErrorCode::NotLeader,
        BrokerError::UnknownTopic { .. } => ErrorCode::UnknownTopic,
        BrokerError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        BrokerError::Recovering { .. } | BrokerError::Open { .. } => ErrorCode::Storage,
        BrokerError::MetadataTimeout { .. } | BrokerError::TopicNotReady { .. } => {
            ErrorCode::Timeout
        }
        BrokerError::MetadataRefused { refusal, .. } => match refusal {
            Refusal::TopicExists => ErrorCode::TopicExists,
            Refusal::UnknownTopic => ErrorCode::UnknownTopic,
            Refusal::Invalid => ErrorCode::InvalidRequest,
        },
        BrokerError::InvalidGroupId { .. } => ErrorCode::InvalidRequest,
        BrokerError::GroupsTopicCreated | BrokerError::NotCoordinator { .. } => {
            ErrorCode::NotCoordinator
        }
        BrokerError::Join(_) => ErrorCode::Internal,
        BrokerError::PartitionClosed => ErrorCode::ShuttingDown,
    }
}

/// Waits, up to `within`, until this broker's copy of the metadata satisfies `shows` (a
/// change the metadata leader applied reaches it a moment later), and returns it: past the
/// wait, what this copy holds.
pub(crate) async fn once_visible(
    broker: &Broker,
    within: std::time::Duration,
    shows: impl Fn(&crate::metadata::MetadataState) -> bool,
) -> Arc<crate::metadata::MetadataState> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let state = broker.metadata();
        if shows(&state) || tokio::time::Instant::now() >= deadline {
            return state;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
