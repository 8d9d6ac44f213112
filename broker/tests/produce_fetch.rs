//! A real broker on 127.0.0.1:0: produce, dedup, fetch, long-poll, list offsets, bad input.

mod common;

use std::time::{Duration, Instant};

use common::*;
use steme_protocol::messages::describe_topic::DescribeTopicRequest;
use steme_protocol::messages::fetch::FetchRequest;
use steme_protocol::messages::list_offsets::{ListOffsetsRequest, OffsetSpec};
use steme_protocol::messages::metadata::MetadataRequest;
use steme_protocol::{ApiError, ErrorCode, RecordBatch};

fn fetch(topic: &str, partition: u32, offset: u64, max_wait_ms: u32) -> FetchRequest {
    FetchRequest {
        topic: topic.into(),
        partition,
        offset,
        max_bytes: 1 << 20,
        max_wait_ms,
    }
}

/// Every record of a partition from `offset` up to the high watermark: (offset, hlc, id).
/// A leader answers NotLeader at its watermark until it has applied its log (just after a
/// start): that is waited out, for a few seconds at most.
async fn read_all(
    c: &mut Client,
    topic: &str,
    partition: u32,
) -> Vec<(u64, u64, steme_protocol::AssertionId)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = match c.call(&fetch(topic, partition, offset, 0)).await {
            Err(ApiError::NotLeader { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            other => other.expect("fetch"),
        };
        if resp.records.is_empty() {
            return out;
        }
        for batch in RecordBatch::split_all(&resp.records) {
            let batch = batch.expect("valid batch");
            for r in batch.records() {
                if r.offset >= offset {
                    out.push((r.offset, r.hlc, r.id()));
                }
            }
            offset = batch.end_offset();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_fetch_in_offset_order_with_increasing_hlc() -> TestResult {
    let broker = TestBroker::start().await;
    let mut c = Client::connect(broker.addr).await;
    create_topic(&mut c, "facts", 2).await;
    let mut sent = [Vec::new(), Vec::new()];
    for round in 0..5 {
        for p in 0..2u32 {
            let recs = signed_for(p, 2, 20, &format!("r{round}"));
            let resp = produce(&mut c, "facts", p, &recs).await?;
            assert!(resp.duplicates.iter().all(Option::is_none));
            assert_eq!(resp.base_offset, round * 20);
            sent[p as usize].extend(recs.iter().map(|r| r.id()));
        }
    }
    for p in 0..2u32 {
        let got = read_all(&mut c, "facts", p).await;
        let ids: Vec<_> = got.iter().map(|(_, _, id)| *id).collect();
        assert_eq!(ids, sent[p as usize]);
        for (i, w) in got.windows(2).enumerate() {
            assert_eq!(w[1].0, w[0].0 + 1, "offsets consecutive at {i}");
            assert!(w[1].1 > w[0].1, "HLC strictly increases at {i}");
        }
    }
    broker.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_reported_with_their_offsets_and_not_appended() -> TestResult {
    let broker = TestBroker::start().await;
    let mut c = Client::connect(broker.addr).await;
    create_topic(&mut c, "dedup", 1).await;
    let recs = signed_for(0, 1, 10, "d");
    let first = produce(&mut c, "dedup", 0, &recs).await?;
    assert_eq!(first.base_offset, 0);
    let acks: Vec<_> = first.record_acks().collect();

    // The same records again: every one a duplicate, at its original offset and HLC.
    let again = produce(&mut c, "dedup", 0, &recs).await?;
    let again_acks: Vec<_> = again.record_acks().collect();
    for (a, b) in acks.iter().zip(&again_acks) {
        assert!(b.duplicate);
        assert_eq!((a.offset, a.hlc), (b.offset, b.hlc));
    }
    // A mix of old and new, with a repeat inside the request.
    let fresh = signed_for(0, 1, 3, "fresh");
    let mixed = vec![
        recs[2].clone(),
        fresh[0].clone(),
        fresh[1].clone(),
        fresh[0].clone(),
        fresh[2].clone(),
    ];
    let resp = produce(&mut c, "dedup", 0, &mixed).await?;
    let m: Vec<_> = resp
        .record_acks()
        .map(|a| (a.offset, a.duplicate))
        .collect();
    assert_eq!(
        m,
        vec![(2, true), (10, false), (11, false), (10, true), (12, false)]
    );
    let all = read_all(&mut c, "dedup", 0).await;
    assert_eq!(all.len(), 13, "only the three new records were appended");
    broker.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_wrong_partition_and_unknown_topic_are_refused() -> TestResult {
    let broker = TestBroker::start().await;
    let mut c = Client::connect(broker.addr).await;
    create_topic(&mut c, "t", 4).await;
    let recs = signed_for(1, 4, 5, "s");

    // Corrupt the signature of record 3 (byte 5 of its signature).
    let mut b = batch_of(&recs).to_vec();
    let batch = RecordBatch::new(bytes::Bytes::from(b.clone()))?;
    let sig_pos = {
        let r = batch.records().nth(3).expect("record 3");
        r.signature.as_ptr() as usize - batch.as_bytes().as_ptr() as usize
    };
    b[sig_pos + 5] ^= 0x01;
    steme_protocol::batch::reseal(&mut b);
    let err = c.call(&produce_req("t", 1, b.into())).await.unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidSignature { record: 3, .. }),
        "{err}"
    );

    let err = produce(&mut c, "t", 2, &recs).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::WrongPartition {
            record: 0,
            expected: 1
        }
    );

    let err = produce(&mut c, "nope", 0, &recs).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownTopic);
    let err = produce(&mut c, "t", 9, &recs).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownPartition);
    let err = c
        .call(&produce_req("t", 1, bytes::Bytes::from_static(b"garbage")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::CorruptBatch);

    // Nothing was appended by any of them.
    let d = c.call(&DescribeTopicRequest { name: "t".into() }).await?;
    assert!(d.partitions.iter().all(|p| p.high_watermark == 0));
    broker.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_waits_until_data_or_timeout() -> TestResult {
    let broker = TestBroker::start().await;
    let mut c = Client::connect(broker.addr).await;
    create_topic(&mut c, "poll", 1).await;

    // Nothing there: returns empty after about max_wait.
    let t = Instant::now();
    let resp = c.call(&fetch("poll", 0, 0, 300)).await?;
    assert!(resp.records.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(250));

    // A long poll is answered as soon as a record is committed.
    let mut waiter = Client::connect(broker.addr).await;
    let id = waiter.send(&fetch("poll", 0, 0, 20_000)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    produce(&mut c, "poll", 0, &signed_for(0, 1, 1, "p")).await?;
    let frame = waiter.recv_frame().await.expect("answer");
    assert_eq!(frame.header.correlation_id, id);
    let resp: steme_protocol::messages::fetch::FetchResponse =
        steme_protocol::messages::decode_response(frame.body)??;
    assert_eq!(resp.high_watermark, 1);
    assert!(!resp.records.is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "answered promptly, not at max_wait"
    );

    // Beyond the high watermark: a clear error with the range.
    let err = c.call(&fetch("poll", 0, 5, 0)).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::OffsetOutOfRange {
            log_start: 0,
            high_watermark: 1
        }
    );
    broker.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_time_and_causality_token_orders_across_partitions() -> TestResult {
    let broker = TestBroker::start().await;
    let mut c = Client::connect(broker.addr).await;
    create_topic(&mut c, "time", 2).await;
    let a = produce(&mut c, "time", 0, &signed_for(0, 2, 5, "a")).await?;
    let b = produce(&mut c, "time", 0, &signed_for(0, 2, 5, "b")).await?;
    let at = |spec| ListOffsetsRequest {
        topic: "time".into(),
        partition: 0,
        spec,
    };
    assert_eq!(c.call(&at(OffsetSpec::Earliest)).await?.offset, 0);
    assert_eq!(c.call(&at(OffsetSpec::Latest)).await?.offset, 10);
    let r = c.call(&at(OffsetSpec::AtOrAfterHlc(b.base_hlc))).await?;
    assert_eq!((r.offset, r.hlc), (5, Some(b.base_hlc)));
    let r = c
        .call(&at(OffsetSpec::AtOrAfterHlc(a.base_hlc + 2)))
        .await?;
    assert_eq!(r.offset, 2);
    let r = c.call(&at(OffsetSpec::AtOrAfterHlc(u64::MAX))).await?;
    assert_eq!(r.offset, 10);

    // Causality: a token ahead of the broker's clock (within skew) orders the next stamp.
    let now = b.base_hlc;
    let token = now + (1u64 << 31); // about half a second ahead
    let mut req = produce_req("time", 1, batch_of(&signed_for(1, 2, 1, "c")));
    req.causality = Some(token);
    let r = c.call(&req).await?;
    assert!(r.base_hlc > token, "stamped after the token");

    // A token far beyond the allowed skew is refused.
    let mut req = produce_req("time", 1, batch_of(&signed_for(1, 2, 1, "d")));
    req.causality = Some(now + (3600u64 << 32));
    let err = c.call(&req).await.unwrap_err();
    assert!(matches!(err, ApiError::ClockSkew { .. }), "{err}");
    broker.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() -> TestResult {
    let broker = TestBroker::start().await;
    let mut good = Client::connect(broker.addr).await;
    create_topic(&mut good, "x", 1).await;

    // Oversized length prefix: an error frame, then the connection closes.
    let mut big = Client::connect(broker.addr).await;
    big.raw(&u32::MAX.to_le_bytes()).await;
    let frame = big.recv_frame().await.expect("error frame");
    let err = steme_protocol::messages::decode_response::<()>(frame.body)?.unwrap_err();
    assert_eq!(err.code(), ErrorCode::FrameTooLarge);
    assert!(big.recv_frame().await.is_none(), "closed after the error");

    // A well-framed request with a garbage body: an error on that correlation id, and the
    // connection keeps working.
    let mut g = Client::connect(broker.addr).await;
    let mut raw = bytes::BytesMut::new();
    steme_protocol::Frame {
        header: steme_protocol::FrameHeader {
            api_key: 5,
            api_version: 1,
            correlation_id: 77,
        },
        body: bytes::Bytes::from_static(&[0xff; 3]),
    }
    .encode(&mut raw);
    g.raw(&raw).await;
    let frame = g.recv_frame().await.expect("answer");
    assert_eq!(frame.header.correlation_id, 77);
    let err = steme_protocol::messages::decode_response::<()>(frame.body)?.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    g.call(&MetadataRequest { topics: None }).await?;

    // A client that disconnects mid-request.
    let mut half = Client::connect(broker.addr).await;
    half.raw(&[40, 0, 0, 0, 5, 0]).await;
    drop(half);

    // Everyone else is still served.
    produce(&mut good, "x", 0, &signed_for(0, 1, 3, "g")).await?;
    let m = good.call(&MetadataRequest { topics: None }).await?;
    assert_eq!(m.topics.len(), 1);
    broker.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_acknowledged_record_at_its_offset() -> TestResult {
    let dir = std::sync::Arc::new(tempfile::tempdir()?);
    let broker = TestBroker::start_in(dir.clone()).await;
    let mut c = Client::connect(broker.addr).await;
    create_topic(&mut c, "keep", 2).await;
    let recs = signed_for(1, 2, 50, "k");
    let resp = produce(&mut c, "keep", 1, &recs).await?;
    let before = read_all(&mut c, "keep", 1).await;
    broker.stop().await;

    let broker = TestBroker::start_in(dir.clone()).await;
    let mut c = Client::connect(broker.addr).await;
    // The topic is known again, and the partition serves once it has applied its log.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let got = read_all(&mut c, "keep", 1).await;
        if got.len() == before.len() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after, before);
    // Producing the same records again after the restart: all duplicates.
    let again = produce(&mut c, "keep", 1, &recs).await?;
    assert!(again.duplicates.iter().all(Option::is_some));
    assert_eq!(
        again.record_acks().next().map(|a| a.offset),
        Some(resp.base_offset)
    );
    broker.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topic_removes_its_data_and_the_name_can_be_reused() -> TestResult {
    use steme_protocol::messages::delete_topic::DeleteTopicRequest;
    let broker = TestBroker::start().await;
    let mut c = Client::connect(broker.addr).await;
    create_topic(&mut c, "gone", 2).await;
    produce(&mut c, "gone", 0, &signed_for(0, 2, 5, "g")).await?;
    let dir = broker.dir.path().join("topics").join("gone-0");
    assert!(dir.exists());

    c.call(&DeleteTopicRequest {
        name: "gone".into(),
    })
    .await?;
    let err = c
        .call(&DescribeTopicRequest {
            name: "gone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownTopic);
    let err = produce(&mut c, "gone", 0, &signed_for(0, 2, 1, "h"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownTopic);
    let err = c
        .call(&DeleteTopicRequest {
            name: "gone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownTopic);
    let deadline = Instant::now() + Duration::from_secs(5);
    while dir.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!dir.exists(), "the partition's files are removed");

    // The same name again is a new, empty topic.
    create_topic(&mut c, "gone", 1).await;
    let d = c
        .call(&DescribeTopicRequest {
            name: "gone".into(),
        })
        .await?;
    assert_eq!(d.partitions.len(), 1);
    assert_eq!(d.partitions[0].high_watermark, 0);
    let err = c
        .call(
            &steme_protocol::messages::create_topic::CreateTopicRequest {
                name: "gone".into(),
                partitions: 1,
                replication_factor: 1,
                configs: vec![],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TopicExists);
    broker.stop().await;
    Ok(())
}
