//! ListOffsets: the earliest or latest offset of a partition, or the first at or after an
//! HLC time.

use steme_protocol::ApiError;
use steme_protocol::messages::list_offsets::{ListOffsetsRequest, ListOffsetsResponse};

use crate::node::Broker;

pub fn list_offsets(
    broker: &Broker,
    r: ListOffsetsRequest,
) -> Result<ListOffsetsResponse, ApiError> {
    broker
        .partition(&r.topic, r.partition)?
        .list_offsets(r.spec)
}
