//! Tests of how the consumer applies fetch answers (no broker: answers are handed to
//! `handle` directly).

use super::testing::{batch_bytes, fetched};
use super::*;
use bytes::Bytes;

/// A consumer whose cluster is never contacted by these tests.
fn consumer_with(partitions: &[u32]) -> Consumer {
    let cluster = Cluster::lazy("127.0.0.1:1", ClientConfig::default()).unwrap();
    let mut c = Consumer::new(cluster, ConsumerConfig::default());
    c.topic = "facts".into();
    c.partitions = partitions
        .iter()
        .map(|&p| (p, PartitionState::new(Position::Earliest)))
        .collect();
    c
}

fn done(
    partition: u32,
    epoch: u64,
    offset: u64,
    result: Result<FetchResponse, ClientError>,
) -> FetchDone {
    FetchDone {
        partition,
        epoch,
        offset,
        result,
    }
}

#[test]
fn position_advances_past_returned_records() {
    let mut c = consumer_with(&[0, 1]);
    c.partitions.get_mut(&0).unwrap().position = Some(11);
    let mut out = Vec::new();
    let resp = FetchResponse {
        throttle_ms: 0,
        high_watermark: 15,
        log_start_offset: 0,
        records: fetched(),
    };
    c.handle(done(0, 0, 11, Ok(resp)), &mut out).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(c.position(0), Some(15));
    assert_eq!(c.high_watermark(0), Some(15));
    assert_eq!(c.position(1), None);
}

#[test]
fn fetch_issued_before_a_seek_is_discarded() {
    let mut c = consumer_with(&[0]);
    let st = c.partitions.get_mut(&0).unwrap();
    st.position = Some(12);
    st.epoch = 1;
    let mut out = Vec::new();
    let resp = FetchResponse {
        throttle_ms: 0,
        high_watermark: 15,
        log_start_offset: 0,
        records: fetched(),
    };
    c.handle(done(0, 0, 11, Ok(resp)), &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(c.position(0), Some(12));
}

#[test]
fn out_of_range_follows_the_reset_policy() {
    let oor = || {
        Err(ClientError::Api(ApiError::OffsetOutOfRange {
            log_start: 100,
            high_watermark: 200,
        }))
    };
    let mut c = consumer_with(&[0]);
    c.partitions.get_mut(&0).unwrap().position = Some(5);
    let err = c.handle(done(0, 0, 5, oor()), &mut Vec::new()).unwrap_err();
    assert!(matches!(
        err,
        ClientError::OffsetOutOfRange {
            offset: 5,
            log_start: 100,
            ..
        }
    ));

    for (policy, expect) in [(OffsetReset::Earliest, 100), (OffsetReset::Latest, 200)] {
        let mut c = consumer_with(&[0]);
        c.config.offset_reset = policy;
        c.partitions.get_mut(&0).unwrap().position = Some(5);
        c.handle(done(0, 0, 5, oor()), &mut Vec::new()).unwrap();
        assert_eq!(c.position(0), Some(expect));
    }
}

#[test]
fn retriable_fetch_error_backs_off_instead_of_failing() {
    let mut c = consumer_with(&[0]);
    c.partitions.get_mut(&0).unwrap().position = Some(5);
    let err = ClientError::Api(ApiError::NotLeader {
        leader: None,
        message: String::new(),
    });
    c.handle(done(0, 0, 5, Err(err)), &mut Vec::new()).unwrap();
    let st = &c.partitions[&0];
    assert!(st.retry_at.is_some());
    assert_eq!(st.failures, 1);
    assert_eq!(st.position, Some(5));
}

fn answer(high_watermark: u64, records: Bytes) -> Result<FetchResponse, ClientError> {
    Ok(FetchResponse {
        throttle_ms: 0,
        high_watermark,
        log_start_offset: 0,
        records,
    })
}

fn corrupt_data() -> Result<FetchResponse, ClientError> {
    Err(ClientError::Api(ApiError::CorruptData {
        first_offset: 826,
        end_offset: 970,
        message: "partition facts-0 offsets 826..970 are damaged on broker 2 (needs repair)".into(),
    }))
}

#[test]
fn gap_returns_the_records_before_it_then_the_error() {
    let mut c = consumer_with(&[0]);
    c.partitions.get_mut(&0).unwrap().position = Some(11);
    // 10..13, then 15..17: 13 and 14 are missing.
    let gap = Bytes::from([batch_bytes(10, 0..3), batch_bytes(15, 3..5)].concat());
    let mut out = Vec::new();
    c.handle(done(0, 0, 11, answer(17, gap)), &mut out).unwrap();
    let offsets: Vec<u64> = out.iter().map(Record::offset).collect();
    assert_eq!(offsets, vec![11, 12]);
    assert_eq!(c.position(0), Some(13), "the position stops at the gap");
    assert!(
        matches!(
            c.deferred,
            Some(ClientError::OffsetDiscontinuity {
                partition: 0,
                expected: 13,
                base_offset: 15,
                ..
            })
        ),
        "{:?}",
        c.deferred
    );

    // Fetched again from the gap: nothing before it, so the error comes at once.
    let after = Bytes::from(batch_bytes(15, 3..5));
    let err = c
        .handle(done(0, 0, 13, answer(17, after)), &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::OffsetDiscontinuity {
                expected: 13,
                base_offset: 15,
                end_offset: 17,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(c.position(0), Some(13));
}

#[test]
fn corrupt_data_is_retried_with_backoff_then_returned() {
    let mut c = consumer_with(&[0]);
    c.config.corrupt_data_retries = 2;
    c.partitions.get_mut(&0).unwrap().position = Some(826);
    for _ in 0..2 {
        c.handle(done(0, 0, 826, corrupt_data()), &mut Vec::new())
            .unwrap();
        let st = &c.partitions[&0];
        assert!(st.retry_at.is_some_and(|t| t > Instant::now()), "backs off");
        assert!(!st.fetching);
    }
    let err = c
        .handle(done(0, 0, 826, corrupt_data()), &mut Vec::new())
        .unwrap_err();
    match &err {
        ClientError::CorruptData {
            topic,
            partition: 0,
            offset: 826,
            first_offset: 826,
            end_offset: 970,
            attempts: 3,
            message,
        } => {
            assert_eq!(topic, "facts");
            assert!(message.contains("needs repair"), "{message}");
        }
        other => panic!("expected CorruptData, got {other:?}"),
    }
    assert!(!err.is_retriable());
    assert_eq!(c.position(0), Some(826), "the damaged range is not skipped");
}

#[test]
fn records_after_corrupt_data_clear_the_count() {
    let mut c = consumer_with(&[0]);
    c.config.corrupt_data_retries = 1;
    c.partitions.get_mut(&0).unwrap().position = Some(10);
    c.handle(done(0, 0, 10, corrupt_data()), &mut Vec::new())
        .unwrap();
    assert!(c.is_stalled(), "retrying a damaged range is not idle");
    // The range was repaired (or another replica leads): records come.
    c.handle(done(0, 0, 10, answer(15, fetched())), &mut Vec::new())
        .unwrap();
    assert_eq!(c.position(0), Some(15));
    assert!(!c.is_stalled());
    // A new damaged range gets the whole budget again.
    c.handle(done(0, 0, 15, corrupt_data()), &mut Vec::new())
        .unwrap();
}

#[test]
fn empty_answers_below_the_high_watermark_back_off_then_fail() {
    let mut c = consumer_with(&[0]);
    c.config.stalled_fetch_retries = 3;
    c.partitions.get_mut(&0).unwrap().position = Some(5);
    let mut last_delay = Duration::ZERO;
    for _ in 0..3 {
        let before = Instant::now();
        c.handle(done(0, 0, 5, answer(20, Bytes::new())), &mut Vec::new())
            .unwrap();
        let delay = c.partitions[&0].retry_at.expect("backs off") - before;
        assert!(delay > last_delay, "{delay:?} after {last_delay:?}");
        last_delay = delay;
    }
    let err = c
        .handle(done(0, 0, 5, answer(20, Bytes::new())), &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::FetchStalled {
                partition: 0,
                offset: 5,
                high_watermark: 20,
                empty_answers: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(c.position(0), Some(5));
}

#[test]
fn empty_answer_at_the_high_watermark_is_a_normal_long_poll() {
    let mut c = consumer_with(&[0]);
    c.config.stalled_fetch_retries = 1;
    c.partitions.get_mut(&0).unwrap().position = Some(15);
    for _ in 0..10 {
        c.handle(done(0, 0, 15, answer(15, Bytes::new())), &mut Vec::new())
            .unwrap();
        let st = &c.partitions[&0];
        assert_eq!(st.retry_at, None, "fetched again at once");
        assert!(st.no_progress.is_clear());
    }
    assert!(!c.is_stalled());
}
