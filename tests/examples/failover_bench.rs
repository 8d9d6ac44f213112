//! Failover, measured: kill -9 the leader of a 3-replica partition while a producer writes
//! one record at a time, and time from the kill to the first acknowledged write sent after
//! it. Repeats with the killed broker restarted and caught up each time, then checks that
//! every acknowledged record is in the log. Prints each kill, the median and the maximum
//! (issue 13's targets: median <= 1 s, max <= 2 s over >= 10 kills).
//!
//!   cargo run --release -p steme-tests --example failover_bench -- [KILLS] [idle]
//!
//! With `idle`, the producer pauses for 4 s before each kill, so the group has gone quiet
//! (no heartbeats, no election timers: `broker/src/partition/quiet.rs`) when its leader
//! dies, and resumes right after the kill.
//!
//! The brokers run with their default timings (heartbeat 250 ms, election 1-2 s). The
//! binaries are `CARGO_BIN_EXE_steme-broker` and `CARGO_BIN_EXE_steme` if set (to measure
//! another build), else built into this target directory's `debug/` — set them to
//! `target/release/...` for figures.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::{Producer, ProducerConfig};
use steme_tests::cluster::{Cluster, ClusterOptions};
use steme_tests::process::BrokerOptions;
use steme_tests::workload::{check_acks_present, create_topic, read_topic, signed};
use tokio::time::Instant;

const TOPIC: &str = "failover";

/// Each write: when it was sent and when (if) it was acknowledged.
type Writes = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let kills: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("KILLS must be a number")?
        .unwrap_or(10);
    let idle = std::env::args().nth(2).is_some_and(|a| a == "idle");
    let assertions = signed(&steme_tests::unique("failover"), 200_000, 200)?;
    let mut opts = ClusterOptions::new(3);
    // Default timings; no preferred-leader moves while we measure.
    opts.broker = BrokerOptions {
        config_toml: Some("leader_rebalance_ms = 0\n".into()),
        args: Vec::new(),
    };
    let mut cluster = Cluster::start(opts).await?;
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, TOPIC, 1).await?;
    cluster
        .wait_for_leader(TOPIC, 0, None, Duration::from_secs(30))
        .await?;
    let producer = Producer::connect(&bootstrap, TOPIC, ProducerConfig::default()).await?;

    let writes: Writes = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (producer, writes, stop) = (producer.clone(), writes.clone(), stop.clone());
        let paused = paused.clone();
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for a in assertions {
                if stop.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                while paused.load(std::sync::atomic::Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let i = {
                    let mut w = writes.lock().expect("writes");
                    w.push((Instant::now(), None));
                    w.len() - 1
                };
                let ack = producer.send(a).await;
                writes.lock().expect("writes")[i].1 = Some(Instant::now());
                acks.push(ack);
            }
            acks
        })
    };

    let mut figures = Vec::new();
    for k in 1..=kills {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = cluster
            .wait_for_leader(TOPIC, 0, None, Duration::from_secs(60))
            .await?;
        if idle {
            paused.store(true, std::sync::atomic::Ordering::Release);
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        let t0 = Instant::now();
        cluster.broker_mut(leader).kill9()?;
        paused.store(false, std::sync::atomic::Ordering::Release);
        let acked_at = first_ack_sent_after(&writes, t0, Duration::from_secs(60)).await?;
        let took = acked_at - t0;
        println!(
            "kill {k}: broker {leader} killed; next acknowledged write after {} ms",
            took.as_millis()
        );
        figures.push(took);
        cluster.restart(leader)?;
        cluster
            .wait_converged(TOPIC, 0, Duration::from_secs(120))
            .await?;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let acks = writer.await?;
    let acked: Vec<_> = acks.into_iter().filter_map(Result::ok).collect();
    let log = read_topic(&bootstrap, TOPIC, Duration::from_secs(60)).await?;
    check_acks_present(&log, &acked)?;
    println!(
        "every one of {} acknowledged writes is in the log",
        acked.len()
    );

    figures.sort_unstable();
    let ms = |d: Duration| d.as_millis();
    let median = figures[figures.len() / 2];
    let max = *figures.last().context("no kills")?;
    println!(
        "failover over {} kills{}: median {} ms, max {} ms (targets: median <= 1000 ms, max <= 2000 ms)",
        figures.len(),
        if idle { " of quiet groups" } else { "" },
        ms(median),
        ms(max)
    );
    println!(
        "RESULT peer=steme replicas=3 op=failover idle={idle} kills={} median_ms={} max_ms={} min_ms={}",
        figures.len(),
        ms(median),
        ms(max),
        ms(figures[0])
    );
    Ok(())
}

/// When the first write sent after `t0` was acknowledged.
async fn first_ack_sent_after(
    writes: &Writes,
    t0: Instant,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = t0 + timeout;
    loop {
        let found = {
            let w = writes.lock().expect("writes");
            w.iter()
                .rev()
                .take_while(|(sent, _)| *sent > t0)
                .filter_map(|(_, acked)| *acked)
                .min()
        };
        if let Some(at) = found {
            return Ok(at);
        }
        ensure!(
            Instant::now() < deadline,
            "no write acknowledged within {timeout:?} of the kill"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
