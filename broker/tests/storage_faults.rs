//! A failed fsync: produce fails with a clear error, nothing acknowledged is lost, and the
//! partition comes back by itself once the disk works again.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use steme_protocol::ErrorCode;
use steme_protocol::messages::fetch::FetchRequest;
use steme_segments::{Fault, FaultyIo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fsync_fails_produce_then_partition_recovers() -> TestResult {
    let io = Arc::new(FaultyIo::new());
    let dir = Arc::new(tempfile::tempdir()?);
    let broker = TestBroker::start_with_io(dir, io.clone()).await;
    let mut c = Client::connect(broker.addr).await;
    create_topic(&mut c, "disk", 1).await;
    let acked = signed_for(0, 1, 20, "before");
    let first = produce(&mut c, "disk", 0, &acked).await?;
    assert_eq!(first.base_offset, 0);

    // The next data sync fails (as on a full or failing disk).
    let (_, syncs) = io.counts();
    io.inject(Fault::FailSync(syncs + 1));
    let lost = signed_for(0, 1, 5, "during");
    let err = produce(&mut c, "disk", 0, &lost).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            ErrorCode::Storage
                | ErrorCode::NotLeader
                | ErrorCode::Timeout
                | ErrorCode::ShuttingDown
        ),
        "clear storage error, got {err}"
    );

    // The partition is reopened from what is durable and serves again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let retried = loop {
        match produce(&mut c, "disk", 0, &lost).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_retriable() || e.code() == ErrorCode::Storage, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("partition did not recover: {e}").into()),
        }
    };
    // The failed batch was never reported durable: it was discarded and is appended now.
    assert!(retried.duplicates.iter().all(Option::is_none));
    assert_eq!(retried.base_offset, 20);

    // Everything acknowledged before the failure is still there, at the same offsets.
    let resp = c
        .call(&FetchRequest {
            topic: "disk".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        })
        .await?;
    let ids: Vec<_> = steme_protocol::RecordBatch::split_all(&resp.records)
        .flat_map(|b| {
            b.expect("valid")
                .records()
                .map(|r| (r.offset, r.id()))
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<_> = acked
        .iter()
        .chain(&lost)
        .enumerate()
        .map(|(i, a)| (i as u64, a.id()))
        .collect();
    assert_eq!(ids, expected);
    broker.stop().await;
    Ok(())
}
