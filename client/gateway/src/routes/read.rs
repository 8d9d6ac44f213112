//! Reading a partition: `GET …/records` (a page of JSON lines) and `GET …/stream` (a
//! Server-Sent Events tail that `Last-Event-ID` resumes).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use steme_client::json::RecordLine;
use steme_client::json::time::{now, parse_time};
use steme_client::{Consumer, ConsumerConfig, Position, Record};
use tokio::sync::mpsc;

use crate::error::{HttpError, error_chain};
use crate::identity::Identity;
use crate::principals::Caller;
use crate::routes::post::to_lines;
use crate::routes::{PathParams, QueryParams};
use crate::state::Gateway;

/// `?from=…&max=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    from: Option<String>,
    max: Option<u64>,
}

/// Records asked for when `max` is not given.
const DEFAULT_MAX: u64 = 100;
/// How often an idle stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events a stream may have ready before it stops fetching until the caller reads.
const STREAM_BUFFER: usize = 1024;

/// `from`: an offset, `earliest`, `latest` or `time:T`.
fn position(from: Option<&str>, default: Position) -> Result<Position, HttpError> {
    let Some(from) = from else {
        return Ok(default);
    };
    match from {
        "earliest" => Ok(Position::Earliest),
        "latest" => Ok(Position::Latest),
        _ => {
            if let Some(t) = from.strip_prefix("time:") {
                return parse_time(t, now())
                    .map(Position::Time)
                    .map_err(|e| HttpError::bad_request(format!("from={from}: {e}")));
            }
            from.parse().map(Position::Offset).map_err(|_| {
                HttpError::bad_request(format!(
                    "from={from}: give an offset, earliest, latest or time:T (RFC 3339, -15m, or an HLC)"
                ))
            })
        }
    }
}

/// A consumer of one partition, at `start`.
async fn open(
    identity: &Identity,
    topic: &str,
    partition: u32,
    start: Position,
    max_records: u64,
) -> Result<Consumer, HttpError> {
    let config = ConsumerConfig {
        start,
        // About a kilobyte a record: a small page does not fetch a megabyte.
        max_bytes_per_partition: (max_records.saturating_mul(1024)).clamp(64 << 10, 4 << 20) as u32,
        client: identity.cluster().config().clone(),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(identity.cluster().clone(), config);
    consumer.assign(topic, &[partition]).await?;
    consumer.seek(partition, start).await?;
    Ok(consumer)
}

pub async fn records(
    State(gateway): State<Arc<Gateway>>,
    Caller(identity): Caller,
    PathParams((topic, partition)): PathParams<(String, u32)>,
    QueryParams(q): QueryParams<ReadQuery>,
) -> Result<Response, HttpError> {
    let max = q.max.unwrap_or(DEFAULT_MAX);
    let limit = gateway.limits.max_records as u64;
    if max == 0 || max > limit {
        return Err(HttpError::bad_request(format!(
            "max={max}: give 1 to {limit}"
        )));
    }
    let start = position(q.from.as_deref(), Position::Earliest)?;
    let mut consumer = open(&identity, &topic, partition, start, max).await?;
    let end = consumer.fetch_high_watermark(partition).await?;
    let mut next = consumer.position(partition).unwrap_or(0);
    if next > end {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "offset_out_of_range",
            format!("offset {next} is past the end of {topic}/{partition} ({end})"),
        ));
    }
    let mut lines = Vec::new();
    // Each poll returns what one fetch brought: bounded by `max` records and the
    // request's timeout (the router's), and it stops at the high watermark.
    while next < end && (lines.len() as u64) < max {
        for r in consumer.poll(Duration::from_millis(500)).await? {
            if (lines.len() as u64) < max && r.partition() == partition {
                next = r.offset() + 1;
                lines.push(record_line(&r)?);
            }
        }
    }
    gateway.metrics.read(lines.len());
    let body = to_lines(&lines)
        .map_err(|e| HttpError::bad_request(format!("cannot write the records: {e}")))?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert("steme-next-offset", HeaderValue::from(next));
    h.insert("steme-high-watermark", HeaderValue::from(end));
    Ok(response)
}

fn record_line(r: &Record) -> Result<RecordLine, HttpError> {
    RecordLine::new(r).map_err(HttpError::from)
}

pub async fn stream(
    State(gateway): State<Arc<Gateway>>,
    Caller(identity): Caller,
    PathParams((topic, partition)): PathParams<(String, u32)>,
    QueryParams(q): QueryParams<ReadQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    if q.max.is_some() {
        return Err(HttpError::bad_request("a stream takes no max"));
    }
    let start = match headers.get("last-event-id") {
        Some(v) => {
            let last: u64 = v
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| HttpError::bad_request("Last-Event-ID is not an offset"))?;
            Position::Offset(last.checked_add(1).ok_or_else(|| {
                HttpError::bad_request("Last-Event-ID is the largest offset there is")
            })?)
        }
        None => position(q.from.as_deref(), Position::Latest)?,
    };
    let consumer = open(&identity, &topic, partition, start, 1000).await?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(tail(gateway.clone(), consumer, partition, tx));
    let events =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Feeds a stream until its caller goes, the gateway stops, or reading fails (then the
/// last event is an `error` with the reason, and the caller resumes with `Last-Event-ID`).
async fn tail(
    gateway: Arc<Gateway>,
    mut consumer: Consumer,
    partition: u32,
    tx: mpsc::Sender<Event>,
) {
    let _open = gateway.metrics.stream_opened();
    let mut stopping = gateway.stopping();
    loop {
        let polled = tokio::select! {
            polled = consumer.poll(Duration::from_secs(1)) => polled,
            _ = tx.closed() => return,
            _ = stopping.changed() => return,
        };
        let records = match polled {
            Ok(records) => records,
            Err(e) => {
                let error = HttpError::from(&e);
                let data = serde_json::json!({"error": {"code": error.code(), "message": error_chain(&e)}});
                let _ = tx
                    .send(Event::default().event("error").data(data.to_string()))
                    .await;
                return;
            }
        };
        gateway.metrics.read(records.len());
        for r in records.iter().filter(|r| r.partition() == partition) {
            let event = match record_line(r).and_then(|l| {
                serde_json::to_string(&l).map_err(|e| HttpError::bad_request(e.to_string()))
            }) {
                Ok(data) => Event::default()
                    .id(r.offset().to_string())
                    .event("record")
                    .data(data),
                Err(e) => Event::default().event("error").data(format!("{e:?}")),
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_takes_offsets_names_and_times() {
        assert!(matches!(
            position(None, Position::Latest),
            Ok(Position::Latest)
        ));
        assert!(matches!(
            position(Some("earliest"), Position::Latest),
            Ok(Position::Earliest)
        ));
        assert!(matches!(
            position(Some("40"), Position::Latest),
            Ok(Position::Offset(40))
        ));
        let ten = 1_795_946_400u64 << 32;
        assert!(matches!(
            position(Some("time:2026-11-29T10:00:00Z"), Position::Latest),
            Ok(Position::Time(t)) if t == ten
        ));
        for bad in ["-1", "x", "time:yesterday", "time:", "18446744073709551616"] {
            assert!(position(Some(bad), Position::Latest).is_err(), "{bad}");
        }
    }
}
