//! The produce response: where each record of a request landed, once every one is known
//! (appended, or a duplicate already here, in flight, or in an older partition).

use std::sync::Arc;

use steme_protocol::messages::produce::{Existing, ProduceResponse};
use steme_protocol::{ApiError, ErrorCode};
use tokio::sync::oneshot;

use super::{Fate, PRODUCE_TIMEOUT, Partition};

/// Builds the produce response once every record's place is known.
pub(super) async fn answer(
    p: Arc<Partition>,
    fates: Vec<Fate>,
    landed: Option<Result<(u64, u64), ApiError>>,
    reply: oneshot::Sender<Result<ProduceResponse, ApiError>>,
) {
    let result =
        async {
            let (base_offset, base_hlc) = match &landed {
                Some(Ok(l)) => *l,
                Some(Err(e)) => return Err(e.clone()),
                None => (p.high_watermark(), 0),
            };
            let mut duplicates = Vec::with_capacity(fates.len());
            for fate in fates {
                duplicates.push(match fate {
                    Fate::New(_) => None,
                    Fate::Existing(e) => Some(e),
                    Fate::RepeatOf(n) => Some(Existing {
                        offset: base_offset + n,
                        hlc: base_hlc + n,
                        partition: None,
                    }),
                    Fate::Pending(offset) => {
                        let mut rx = p.state.high_watermark.subscribe();
                        tokio::time::timeout(PRODUCE_TIMEOUT, rx.wait_for(|h| *h > offset))
                            .await
                            .map_err(|_| {
                                ApiError::other(ErrorCode::Timeout, "duplicate not yet committed")
                            })?
                            .map_err(|_| {
                                ApiError::other(ErrorCode::ShuttingDown, "partition closed")
                            })?;
                        Some(Existing {
                            offset,
                            hlc: p.hlc_at(offset).unwrap_or(0),
                            partition: None,
                        })
                    }
                    Fate::InFlight(mut landing, rank) => {
                        let done = tokio::time::timeout(
                            PRODUCE_TIMEOUT,
                            landing.wait_for(|l| l.is_some()),
                        )
                        .await
                        .map_err(|_| ApiError::other(ErrorCode::Timeout, "earlier copy in flight"))?
                        .map_err(|_| ApiError::other(ErrorCode::ShuttingDown, "partition closed"))?
                        .clone()
                        .expect("waited for Some");
                        let (o, h) = done?;
                        Some(Existing {
                            offset: o + rank,
                            hlc: h + rank,
                            partition: None,
                        })
                    }
                });
            }
            Ok(ProduceResponse {
                base_offset,
                base_hlc,
                throttle_ms: 0,
                duplicates,
            })
        }
        .await;
    let _ = reply.send(result);
}
