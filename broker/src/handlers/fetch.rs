//! Fetch: a long poll for records from one offset, answered with the batches as they lie in
//! the segments (zero copy).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use steme_protocol::ApiError;
use steme_protocol::messages::fetch::{FetchRequest, FetchResponse};

use crate::node::Broker;
use crate::quota::Direction;
use crate::reply::Reply;

/// The longest a fetch may wait for data.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub async fn fetch(broker: &Broker, who: Option<&Arc<str>>, r: FetchRequest) -> Reply {
    let p = match broker.partition(&r.topic, r.partition) {
        Ok(p) => p,
        Err(e) => return Reply::error(ApiError::from(e)),
    };
    let max_wait = Duration::from_millis(u64::from(r.max_wait_ms)).min(MAX_WAIT);
    match p.fetch(r.offset, r.max_bytes, max_wait).await {
        Err(e) => Reply::error(e),
        Ok(f) => {
            let records = f.batches.iter().map(Bytes::len).sum::<usize>();
            let throttle = broker.quotas().charge(who, Direction::Fetch, records);
            broker.metrics().fetch_bytes.inc_by(records as u64);
            // The response head, then the records written from the segments as they are.
            let mut head = BytesMut::with_capacity(FetchResponse::OK_HEAD_LEN);
            FetchResponse::encode_ok_head(
                super::throttle_ms(throttle),
                f.high_watermark,
                f.log_start_offset,
                records,
                &mut head,
            );
            Reply {
                head,
                tail: f.batches,
            }
        }
    }
}
