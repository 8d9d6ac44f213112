//! Resource limits against a real broker process: requests that decode to far more memory
//! than their bytes are refused, out-of-range topic settings cannot get in (and the broker
//! restarts afterwards), and the partitions-per-broker cap holds.

use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::{Admin, ClientConfig, TopicOptions};
use steme_protocol::ErrorCode;
use steme_protocol::frame::{FRAME_HEADER_LEN, FrameHeader, MIN_LENGTH};
use steme_protocol::messages::metadata::{MetadataRequest, MetadataResponse};
use steme_protocol::messages::{ApiKey, Body, decode_response};
use steme_tests::workload::create_topic;
use steme_tests::{BrokerOptions, BrokerProcess, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The broker's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM has no value")?
        .parse()?;
    Ok(kib * 1024)
}

/// Sends one Metadata request body and returns the response body.
async fn metadata_call(s: &mut TcpStream, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let header = FrameHeader {
        api_key: ApiKey::Metadata as u16,
        api_version: 0,
        correlation_id: 7,
    };
    s.write_all(&header.encode_head(body.len())).await?;
    s.write_all(body).await?;
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await?;
    let mut frame = vec![0u8; u32::from_le_bytes(prefix) as usize];
    s.read_exact(&mut frame).await?;
    Ok(frame.split_off(MIN_LENGTH))
}

/// A Metadata request body as big as the default frame limit allows, listing `elem` (an
/// encoded topic name) over and over.
fn metadata_flood(elem: &[u8]) -> Vec<u8> {
    let body_len = (16 << 20) - FRAME_HEADER_LEN;
    let count = (body_len - 5) / elem.len();
    let mut body = Vec::with_capacity(body_len);
    body.push(1u8);
    body.extend_from_slice(&(count as u32).to_le_bytes());
    for _ in 0..count {
        body.extend_from_slice(elem);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_metadata_request_of_millions_of_names_without_the_memory() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let pid = broker.pid().context("the broker is running")?;
    within(Duration::from_secs(90), async {
        create_topic(&broker.bootstrap(), "facts", 1).await?;
        let before = peak_rss(pid)?;
        let mut s = TcpStream::connect(broker.addr()).await?;
        // 8 million empty names, then 5.6 million one-byte names: 213 MB and 140 MB of
        // `String`s if decoded.
        for elem in [&[0u8, 0][..], &[1, 0, b'a'][..]] {
            let answer = metadata_call(&mut s, &metadata_flood(elem)).await?;
            let err = decode_response::<MetadataResponse>(answer.into())?
                .err()
                .context("the flood was answered as if valid")?;
            ensure!(err.code() == ErrorCode::InvalidRequest, "answered {err:?}");
        }
        let grown = peak_rss(pid)?.saturating_sub(before);
        // The frames themselves are 16 MiB each; decoding them must add little.
        ensure!(
            grown < 100 << 20,
            "the broker's peak RSS grew by {} MiB",
            grown >> 20
        );
        // The same connection, and the broker, still serve.
        let mut body = Default::default();
        MetadataRequest {
            topics: Some(vec!["facts".into()]),
        }
        .encode(&mut body);
        let ok = metadata_call(&mut s, &body).await?;
        let meta = decode_response::<MetadataResponse>(ok.into())??;
        ensure!(meta.topic("facts").is_some(), "facts is missing: {meta:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_out_of_range_segment_bytes_and_restarts_cleanly() -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start_with(BrokerOptions::fast_elections())?;
    within(Duration::from_secs(90), async {
        let admin = Admin::connect(&broker.bootstrap(), ClientConfig::default()).await?;
        let huge = TopicOptions {
            replication_factor: 0,
            configs: vec![("segment.bytes".into(), "1000000000000000000".into())],
        };
        let err = admin
            .create_topic("huge", 1, huge)
            .await
            .err()
            .context("segment.bytes=10^18 was accepted")?;
        let msg = err.to_string();
        ensure!(
            msg.contains("segment.bytes") && msg.contains("1073741824"),
            "{msg}"
        );
        let fine = TopicOptions {
            replication_factor: 0,
            configs: vec![("segment.bytes".into(), "1073741824".into())],
        };
        admin.create_topic("fine", 1, fine).await?;
        Ok::<_, anyhow::Error>(())
    })
    .await?;
    broker.kill9()?;
    broker.restart()?;
    within(Duration::from_secs(60), async {
        let admin = Admin::connect(&broker.bootstrap(), ClientConfig::default()).await?;
        let d = admin.describe_topic("fine").await?;
        ensure!(d.partitions.len() == 1, "{d:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_topics_past_max_partitions_per_broker() -> anyhow::Result<()> {
    let mut options = BrokerOptions::fast_elections();
    options.args = vec!["--max-partitions-per-broker".into(), "4".into()];
    let broker = BrokerProcess::start_with(options)?;
    within(Duration::from_secs(90), async {
        let admin = Admin::connect(&broker.bootstrap(), ClientConfig::default()).await?;
        admin
            .create_topic("three", 3, TopicOptions::default())
            .await?;
        let err = admin
            .create_topic("two-more", 2, TopicOptions::default())
            .await
            .err()
            .context("a fifth and sixth partition were placed on a broker capped at 4")?;
        let msg = err.to_string();
        ensure!(msg.contains("cap of 4"), "{msg}");
        admin
            .create_topic("one-more", 1, TopicOptions::default())
            .await?;
        Ok(())
    })
    .await
}
