//! The consumer and `steme consume` fail closed on what a broker must never send: a fetch
//! answer with a gap or an overlap, empty answers below the high watermark, and (from a
//! broker whose copy of a range is damaged) `CorruptData`; a range an operator skipped is
//! passed with a notice, never in silence. The broker here is a scripted
//! fake speaking the real protocol (`fake_broker`), since a real one cannot be made to do
//! any of this.

mod fake_broker;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use fake_broker::{FakeBroker, TOPIC, batch, log, steme};
use steme_client::{Backoff, ClientError, Consumer, ConsumerConfig, Position, Record};
use steme_protocol::ApiError;
use steme_protocol::messages::fetch::FetchResponse;
use tokio::time::Instant;

/// Fast retries, so that the bounded ones run out quickly.
fn config() -> ConsumerConfig {
    ConsumerConfig {
        retry_backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        corrupt_data_retries: 3,
        stalled_fetch_retries: 3,
        ..ConsumerConfig::default()
    }
}

async fn consumer(broker: &FakeBroker, from: u64) -> anyhow::Result<Consumer> {
    let mut c = Consumer::connect(broker.addr(), config()).await?;
    c.assign(TOPIC, &[0]).await?;
    c.seek(0, Position::Offset(from)).await?;
    Ok(c)
}

fn offsets(records: &[Record]) -> Vec<u64> {
    records.iter().map(Record::offset).collect()
}

/// Polls until `poll` fails; returns the records it returned before. A test that would
/// otherwise poll forever (spinning on empty answers, say) fails after 10 s.
async fn read_until_error(c: &mut Consumer) -> anyhow::Result<(Vec<Record>, ClientError)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut read = Vec::new();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)).await {
            Ok(records) => read.extend(records),
            Err(e) => return Ok((read, e)),
        }
    }
    bail!(
        "poll returned no error within 10 s; it returned offsets {:?}",
        offsets(&read)
    )
}

fn corrupt_data() -> ApiError {
    ApiError::CorruptData {
        first_offset: 0,
        end_offset: 5,
        message: "partition t-0 offsets 0..5 are damaged on broker 1 (needs repair): \
                  frame header crc mismatch"
            .into(),
    }
}

#[tokio::test]
async fn gap_in_a_fetch_returns_the_records_before_it_then_fails() -> anyhow::Result<()> {
    // Offsets 3 and 4 are missing from the log.
    let broker = FakeBroker::start(8, log(vec![batch(0, 3), batch(5, 3)], 8)).await?;
    let mut c = consumer(&broker, 0).await?;
    let (read, err) = read_until_error(&mut c).await?;
    ensure!(offsets(&read) == [0, 1, 2], "read {:?}", offsets(&read));
    ensure!(
        matches!(
            err,
            ClientError::OffsetDiscontinuity {
                partition: 0,
                expected: 3,
                base_offset: 5,
                end_offset: 8,
                ..
            }
        ),
        "{err:?}"
    );
    ensure!(c.position(0) == Some(3), "the position stops at the gap");
    // Polling on does not step over it either.
    let again = c.poll(Duration::from_millis(200)).await;
    ensure!(
        matches!(
            again,
            Err(ClientError::OffsetDiscontinuity { expected: 3, .. })
        ),
        "{again:?}"
    );
    Ok(())
}

#[tokio::test]
async fn overlapping_batches_fail_after_the_first() -> anyhow::Result<()> {
    // The second batch repeats offset 2.
    let broker = FakeBroker::start(5, log(vec![batch(0, 3), batch(2, 3)], 5)).await?;
    let mut c = consumer(&broker, 0).await?;
    let (read, err) = read_until_error(&mut c).await?;
    ensure!(offsets(&read) == [0, 1, 2], "read {:?}", offsets(&read));
    ensure!(
        matches!(
            err,
            ClientError::OffsetDiscontinuity {
                expected: 3,
                base_offset: 2,
                end_offset: 5,
                ..
            }
        ),
        "{err:?}"
    );
    ensure!(
        err.to_string().contains("t/0"),
        "names the partition: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn answer_starting_before_the_requested_offset_is_refused() -> anyhow::Result<()> {
    // Whatever is asked, the answer starts at 0: a batch wholly before offset 3, then 3..6.
    let stale = log(vec![batch(0, 3), batch(3, 3)], 6);
    let broker = FakeBroker::start(6, move |req| {
        let mut from_start = req.clone();
        from_start.offset = 0;
        stale(&from_start)
    })
    .await?;
    let mut c = consumer(&broker, 3).await?;
    let (read, err) = read_until_error(&mut c).await?;
    ensure!(read.is_empty(), "read {:?}", offsets(&read));
    ensure!(
        matches!(
            err,
            ClientError::OffsetDiscontinuity {
                expected: 3,
                base_offset: 0,
                end_offset: 3,
                ..
            }
        ),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn empty_answers_below_the_high_watermark_back_off_then_fail() -> anyhow::Result<()> {
    // The high watermark says 10 records exist; none is ever served (and at once, so a
    // consumer that fetched again without pausing would spin).
    let broker = stalled_broker().await?;
    let mut c = consumer(&broker, 0).await?;
    let started = Instant::now();
    let (read, err) = read_until_error(&mut c).await?;
    ensure!(read.is_empty());
    ensure!(
        matches!(
            err,
            ClientError::FetchStalled {
                partition: 0,
                offset: 0,
                high_watermark: 10,
                empty_answers: 4,
                ..
            }
        ),
        "{err:?}"
    );
    let fetches = broker.fetches();
    ensure!(fetches == [0, 0, 0, 0], "fetched {fetches:?}");
    // Backoffs of 20, 40 and 80 ms, less up to 25 % jitter.
    ensure!(
        started.elapsed() >= Duration::from_millis(105),
        "no backoff"
    );
    ensure!(c.position(0) == Some(0));
    Ok(())
}

#[tokio::test]
async fn empty_long_poll_at_the_high_watermark_is_normal() -> anyhow::Result<()> {
    let broker = FakeBroker::start(3, log(vec![batch(0, 3)], 3)).await?;
    let mut c = consumer(&broker, 0).await?;
    let mut read = Vec::new();
    for _ in 0..8 {
        read.extend(c.poll(Duration::from_millis(100)).await?);
    }
    ensure!(offsets(&read) == [0, 1, 2], "read {:?}", offsets(&read));
    // One fetch per long poll: the ones at the high watermark wait `max_wait` each.
    let fetches = broker.fetches();
    ensure!(fetches.len() <= 10, "{} fetches in 8 polls", fetches.len());
    ensure!(!c.is_stalled());
    Ok(())
}

#[tokio::test]
async fn corrupt_data_is_retried_with_backoff_then_returned() -> anyhow::Result<()> {
    let broker = FakeBroker::start(5, |_| Err(corrupt_data())).await?;
    let mut c = consumer(&broker, 0).await?;
    let (read, err) = read_until_error(&mut c).await?;
    ensure!(read.is_empty());
    match &err {
        ClientError::CorruptData {
            topic,
            partition: 0,
            offset: 0,
            first_offset: 0,
            end_offset: 5,
            attempts: 4,
            message,
        } => ensure!(topic == TOPIC && message.contains("needs repair"), "{err}"),
        other => bail!("expected CorruptData, got {other:?}"),
    }
    ensure!(!err.is_retriable());
    let fetches = broker.fetches();
    ensure!(fetches == [0, 0, 0, 0], "fetched {fetches:?}");
    ensure!(c.position(0) == Some(0), "the damaged range is not skipped");
    Ok(())
}

#[tokio::test]
async fn corrupt_data_that_is_repaired_is_read_through() -> anyhow::Result<()> {
    // Damaged for the first two fetches, then healthy (repaired, or a healthy replica leads).
    let answers = AtomicU32::new(0);
    let healthy = log(vec![batch(0, 3), batch(3, 2)], 5);
    let broker = FakeBroker::start(5, move |req| {
        if answers.fetch_add(1, Ordering::Relaxed) < 2 {
            Err(corrupt_data())
        } else {
            healthy(req)
        }
    })
    .await?;
    let mut c = consumer(&broker, 0).await?;
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while read.len() < 5 && Instant::now() < deadline {
        read.extend(c.poll(Duration::from_millis(200)).await?);
    }
    ensure!(
        offsets(&read) == [0, 1, 2, 3, 4],
        "read {:?}",
        offsets(&read)
    );
    ensure!(!c.is_stalled());
    Ok(())
}

#[tokio::test]
async fn a_skipped_range_is_passed_with_a_notice_never_in_silence() -> anyhow::Result<()> {
    // Offsets 3..5 were given up by an operator; a read stops before them, as a broker's does.
    let before = log(vec![batch(0, 3)], 8);
    let after = log(vec![batch(5, 3)], 8);
    let broker = FakeBroker::start(8, move |req| match req.offset {
        0..3 => before(req),
        3..5 => Err(ApiError::SkippedData {
            first_offset: 3,
            end_offset: 5,
            message: "skipped by an operator at 1764000000000 (unix ms): lost; INC-7".into(),
        }),
        _ => after(req),
    })
    .await?;
    let mut c = consumer(&broker, 0).await?;
    let (read, notice) = read_until_error(&mut c).await?;
    ensure!(offsets(&read) == [0, 1, 2], "read {:?}", offsets(&read));
    match &notice {
        ClientError::SkippedData {
            partition: 0,
            first_offset: 3,
            end_offset: 5,
            message,
            ..
        } => ensure!(message.contains("INC-7"), "{notice}"),
        other => bail!("expected SkippedData, got {other:?}"),
    }
    ensure!(c.position(0) == Some(5), "position {:?}", c.position(0));
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rest.len() < 3 && Instant::now() < deadline {
        rest.extend(c.poll(Duration::from_millis(200)).await?);
    }
    ensure!(
        offsets(&rest) == [5, 6, 7],
        "then read {:?}",
        offsets(&rest)
    );
    Ok(())
}

fn printed_offsets(stdout: &str) -> anyhow::Result<Vec<u64>> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            v["offset"].as_u64().context("no offset")
        })
        .collect()
}

#[tokio::test]
async fn cli_consume_exits_non_zero_at_a_gap() -> anyhow::Result<()> {
    let broker = FakeBroker::start(8, log(vec![batch(0, 3), batch(5, 3)], 8)).await?;
    for extra in [&[][..], &["--verify"][..]] {
        let args = [&["consume", TOPIC][..], extra].concat();
        let (status, stdout, stderr) = steme(&broker, &args).await?;
        ensure!(
            status.code() == Some(1),
            "{extra:?}: {status}; stderr: {stderr}"
        );
        ensure!(
            printed_offsets(&stdout)? == [0, 1, 2],
            "{extra:?}: printed {stdout}"
        );
        ensure!(
            stderr.contains("fetch of t/0 is discontinuous: expected offset 3"),
            "{extra:?}: stderr: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn cli_consume_exits_non_zero_on_corrupt_data() -> anyhow::Result<()> {
    let broker = FakeBroker::start(5, |_| Err(corrupt_data())).await?;
    let (status, stdout, stderr) = steme(&broker, &["consume", TOPIC, "--verify"]).await?;
    ensure!(status.code() == Some(1), "{status}; stderr: {stderr}");
    ensure!(stdout.is_empty(), "printed {stdout}");
    ensure!(
        stderr.contains("offsets 0..5 are damaged") && stderr.contains("needs repair"),
        "stderr: {stderr}"
    );
    let fetches = broker.fetches().len();
    ensure!(fetches > 1, "retried before giving up: {fetches} fetch(es)");
    Ok(())
}

#[tokio::test]
async fn cli_consume_exits_non_zero_when_fetches_stall() -> anyhow::Result<()> {
    let broker = stalled_broker().await?;
    let (status, stdout, stderr) = steme(&broker, &["consume", TOPIC]).await?;
    ensure!(status.code() == Some(1), "{status}; stderr: {stderr}");
    ensure!(stdout.is_empty(), "printed {stdout}");
    ensure!(
        stderr.contains("t/0 serves no records at offset 0 although its high watermark is 10"),
        "stderr: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn cli_replay_writes_a_continuous_range_or_fails() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("replay.bin");
    let out = out.to_str().context("temp path is not UTF-8")?;
    let replay = ["replay", TOPIC, "-p", "0", "--from", "0", "--out", out];

    let healthy = FakeBroker::start(5, log(vec![batch(0, 3), batch(3, 2)], 5)).await?;
    let (status, stdout, stderr) = steme(&healthy, &replay).await?;
    ensure!(status.success(), "{status}; stderr: {stderr}");
    ensure!(
        stdout.contains("replayed 5 records in 2 batches"),
        "stdout: {stdout}"
    );

    let gap = FakeBroker::start(8, log(vec![batch(0, 3), batch(5, 3)], 8)).await?;
    let (status, _, stderr) = steme(&gap, &replay).await?;
    ensure!(status.code() == Some(1), "{status}; stderr: {stderr}");
    ensure!(
        stderr.contains("fetch of t/0 is discontinuous: expected offset 3"),
        "stderr: {stderr}"
    );

    let stall = stalled_broker().await?;
    let (status, _, stderr) = steme(&stall, &replay).await?;
    ensure!(status.code() == Some(1), "{status}; stderr: {stderr}");
    ensure!(
        stderr.contains("serves no records at offset 0"),
        "stderr: {stderr}"
    );
    Ok(())
}

/// A broker whose high watermark says 10 records exist and that serves none of them, at
/// once (a consumer that fetched again without pausing would spin).
async fn stalled_broker() -> std::io::Result<FakeBroker> {
    FakeBroker::start(10, |_| {
        Ok(FetchResponse {
            throttle_ms: 0,
            high_watermark: 10,
            log_start_offset: 0,
            records: Bytes::new(),
        })
    })
    .await
}
