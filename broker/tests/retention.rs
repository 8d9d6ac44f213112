//! Retention deletes whole old segments through Raft (snapshot, then purge) and moves the
//! log start offset; reads below it get a clear error.

mod common;

use std::time::{Duration, Instant};

use common::*;
use steme_protocol::ApiError;
use steme_protocol::messages::create_topic::{ConfigEntry, CreateTopicRequest};
use steme_protocol::messages::describe_topic::DescribeTopicRequest;
use steme_protocol::messages::fetch::FetchRequest;
use steme_protocol::messages::list_offsets::{ListOffsetsRequest, OffsetSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_bytes_moves_log_start_and_survives_restart() -> TestResult {
    let dir = std::sync::Arc::new(tempfile::tempdir()?);
    let broker = TestBroker::start_in(dir.clone()).await;
    let mut c = Client::connect(broker.addr).await;
    let cfg = |k: &str, v: &str| ConfigEntry {
        key: k.into(),
        value: v.into(),
    };
    c.call(&CreateTopicRequest {
        name: "short".into(),
        partitions: 1,
        replication_factor: 1,
        configs: vec![
            cfg("segment.bytes", "16384"),
            cfg("retention.bytes", "32768"),
        ],
    })
    .await?;
    // About 300 KB in 30 batches: many 16 KiB segments, of which about two are kept.
    let recs = signed_for(0, 1, 1000, "ret");
    for chunk in recs.chunks(33) {
        produce(&mut c, "short", 0, chunk).await?;
    }
    let earliest = ListOffsetsRequest {
        topic: "short".into(),
        partition: 0,
        spec: OffsetSpec::Earliest,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let start = loop {
        let start = c.call(&earliest).await?.offset;
        if start > 500 || Instant::now() > deadline {
            break start;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(start > 500, "old segments deleted (log start {start})");
    let d = c
        .call(&DescribeTopicRequest {
            name: "short".into(),
        })
        .await?;
    assert_eq!(d.partitions[0].log_start_offset, start);
    assert_eq!(d.partitions[0].high_watermark, 1000);
    let size = d.partitions[0].size_bytes;
    assert!(
        size > 16_384 && size < 100_000,
        "only the retained segments remain on disk ({size} bytes)"
    );

    let fetch = |offset| FetchRequest {
        topic: "short".into(),
        partition: 0,
        offset,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
    };
    let err = c.call(&fetch(0)).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::OffsetOutOfRange {
            log_start: start,
            high_watermark: 1000
        }
    );
    let resp = c.call(&fetch(start)).await?;
    assert!(!resp.records.is_empty());

    // After a restart the log still starts there and still ends at 1000.
    broker.stop().await;
    let broker = TestBroker::start_in(dir).await;
    let mut c = Client::connect(broker.addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let latest = c
            .call(&ListOffsetsRequest {
                spec: OffsetSpec::Latest,
                ..earliest.clone()
            })
            .await;
        if latest.as_ref().is_ok_and(|l| l.offset == 1000) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = c.call(&earliest).await?.offset;
    assert!(
        after >= start,
        "log start does not move back ({after} < {start})"
    );
    let latest = c
        .call(&ListOffsetsRequest {
            spec: OffsetSpec::Latest,
            ..earliest
        })
        .await?;
    assert_eq!(latest.offset, 1000);
    broker.stop().await;
    Ok(())
}
