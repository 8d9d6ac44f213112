//! Quotas against a real broker process: a client producing or fetching as fast as it can
//! is held to its principal's bytes/s (measured here over a steady window, within 10 %),
//! told so with `throttle_ms` hints and never disconnected; connections over a principal's
//! quota are refused with a clear error; per-principal overrides beat the defaults.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use steme_client::ClientError;
use steme_client::connection::{AuthKey, Connection, ConnectionConfig};
use steme_protocol::messages::authenticate::key_principal;
use steme_protocol::messages::create_topic::CreateTopicRequest;
use steme_protocol::messages::fetch::FetchRequest;
use steme_protocol::messages::metadata::MetadataRequest;
use steme_protocol::messages::produce::{Acks, ProduceRequest};
use steme_protocol::{BatchBuilder, RecordBatch, SignedAssertion};
use steme_tests::process::{BrokerOptions, BrokerProcess};
use steme_tests::workload::{key, signed};
use steme_tests::{unique, within};

const T: Duration = Duration::from_secs(30);
const PRODUCE_QUOTA: u64 = 512 << 10;
const FETCH_QUOTA: u64 = 256 << 10;
/// How long each direction runs flat out, and the steady window measured within it (the
/// first second is the burst every principal may take).
const RUN: Duration = Duration::from_secs(8);
const STEADY_FROM: Duration = Duration::from_secs(2);

/// The rate between `STEADY_FROM` and the end, from (elapsed, cumulative bytes) samples.
fn steady_rate(samples: &[(Duration, u64)]) -> anyhow::Result<f64> {
    let first = samples
        .iter()
        .find(|(t, _)| *t >= STEADY_FROM)
        .ok_or_else(|| anyhow::anyhow!("no sample after {STEADY_FROM:?}"))?;
    let last = samples.last().expect("non-empty");
    ensure!(
        last.0 > first.0 + Duration::from_secs(3),
        "window too short: {first:?}..{last:?}"
    );
    Ok((last.1 - first.1) as f64 / (last.0 - first.0).as_secs_f64())
}

/// Prints the steady rate against `quota` and checks it is within 10 %, with hints given.
fn held_to(
    what: &str,
    samples: &[(Duration, u64)],
    quota: u64,
    hinted: usize,
) -> anyhow::Result<()> {
    let rate = steady_rate(samples)?;
    let ratio = rate / quota as f64;
    eprintln!(
        "{what}: {rate:.0} B/s against a quota of {quota} B/s ({ratio:.3}x), \
         {hinted} of {} responses throttled",
        samples.len()
    );
    ensure!(
        (0.9..=1.1).contains(&ratio),
        "{what} rate {ratio:.3}x the quota"
    );
    ensure!(hinted > 0, "no {what} response carried a throttle hint");
    Ok(())
}

fn batches(records: &[SignedAssertion], topic: &str) -> Vec<ProduceRequest> {
    records
        .chunks(80)
        .map(|chunk| {
            let mut b = BatchBuilder::with_capacity(20 << 10);
            for r in chunk {
                b.push(r);
            }
            ProduceRequest {
                topic: topic.to_owned(),
                partition: 0,
                acks: Acks::All,
                timeout_ms: 10_000,
                causality: None,
                batch: b.finish(),
            }
        })
        .collect()
}

/// A connection that has made a request, and so counts against its principal's quota.
async fn counted(addr: &str, config: &ConnectionConfig) -> Result<Connection, ClientError> {
    let conn = Connection::connect(addr, config).await?;
    conn.call(
        &MetadataRequest {
            topics: Some(Vec::new()),
        },
        T,
    )
    .await?;
    Ok(conn)
}

fn refused_for_quota<T: std::fmt::Debug>(r: &Result<T, ClientError>) -> bool {
    matches!(r, Err(e) if format!("{e:?}").contains("connection quota"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_quotas_hold_the_rate_and_connection_quotas_refuse_the_excess() -> anyhow::Result<()> {
    let alice = key(51);
    let alice_p = key_principal(&alice.verifying_key().to_bytes());
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: Some(format!("[quotas.\"{alice_p}\"]\nconnections = 6\n")),
        args: vec![
            "--auth".into(),
            "optional".into(),
            "--quota-produce-bytes-per-sec".into(),
            PRODUCE_QUOTA.to_string(),
            "--quota-fetch-bytes-per-sec".into(),
            FETCH_QUOTA.to_string(),
            "--quota-connections".into(),
            "3".into(),
        ],
    })?;
    let addr = broker.bootstrap();
    let run = unique("quota");
    let records = tokio::task::spawn_blocking(move || signed(&run, 26_000, 200)).await??;
    within(Duration::from_secs(120), async {
        // Connections: three anonymous ones, not a fourth; alice's override lets her six.
        let anon = ConnectionConfig::default();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(counted(&addr, &anon).await?);
        }
        let r = counted(&addr, &anon).await;
        ensure!(
            refused_for_quota(&r),
            "a fourth anonymous connection: {r:?}"
        );
        let as_alice = ConnectionConfig {
            auth_key: Some(AuthKey(alice.clone())),
            ..ConnectionConfig::default()
        };
        let mut hers = Vec::new();
        for _ in 0..6 {
            hers.push(counted(&addr, &as_alice).await?);
        }
        let r = counted(&addr, &as_alice).await;
        ensure!(
            refused_for_quota(&r),
            "a seventh of alice's connections: {r:?}"
        );
        // A slot comes back once the broker sees the connection close.
        held.pop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let conn = loop {
            match counted(&addr, &anon).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    ensure!(refused_for_quota(&Err::<(), _>(e)), "unexpected refusal");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        drop((held, hers));

        // Produce as fast as one connection goes: held to the quota, hinted, still open.
        let topic = unique("quota");
        let create = CreateTopicRequest {
            name: topic.clone(),
            partitions: 1,
            replication_factor: 0,
            configs: Vec::new(),
        };
        conn.call(&create, T).await.context("create the topic")?;
        let requests = batches(&records, &topic);
        let (start, mut sent, mut hinted) = (Instant::now(), 0u64, 0);
        let mut samples = Vec::new();
        for req in &requests {
            if start.elapsed() >= RUN {
                break;
            }
            let ack = conn
                .call(req, T)
                .await
                .with_context(|| format!("produce after {sent} bytes"))?;
            hinted += usize::from(ack.throttle_ms > 0);
            sent += req.batch.len() as u64;
            samples.push((start.elapsed(), sent));
        }
        ensure!(start.elapsed() >= RUN, "ran out of records to produce");
        held_to("produce", &samples, PRODUCE_QUOTA, hinted)?;

        // Fetch as fast as one connection goes, from the start of what was produced.
        let (start, mut got, mut offset, mut hinted) = (Instant::now(), 0u64, 0u64, 0);
        let mut samples = Vec::new();
        while start.elapsed() < RUN {
            let req = FetchRequest {
                topic: topic.clone(),
                partition: 0,
                offset,
                max_bytes: 16 << 10,
                max_wait_ms: 0,
            };
            let resp = conn
                .call(&req, T)
                .await
                .with_context(|| format!("fetch at {offset}"))?;
            ensure!(
                !resp.records.is_empty(),
                "fetched everything before {RUN:?}"
            );
            hinted += usize::from(resp.throttle_ms > 0);
            for batch in RecordBatch::split_all(&resp.records) {
                let batch = batch.map_err(|(at, e)| anyhow::anyhow!("batch at {at}: {e}"))?;
                offset = batch.base_offset() + u64::from(batch.record_count());
            }
            got += resp.records.len() as u64;
            samples.push((start.elapsed(), got));
        }
        held_to("fetch", &samples, FETCH_QUOTA, hinted)?;
        Ok(())
    })
    .await
}
