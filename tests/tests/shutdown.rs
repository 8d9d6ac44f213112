//! Prompt shutdown, measured on real processes: SIGTERM stops a cluster member under
//! produce load, and ctrl-c (SIGINT) stops `dev-cluster` with consumers long-polling, each
//! within 2 s and with nothing acknowledged lost (read back after a restart).

use std::time::{Duration, Instant};

use anyhow::ensure;
use steme_client::{Consumer, ConsumerConfig, Position, Producer, ProducerConfig};
use steme_tests::cluster::{Cluster, ClusterOptions};
use steme_tests::dev::DevCluster;
use steme_tests::workload::{
    Producing, check_acks_present, check_log, create_topic, patient, produce_all, read_topic,
    signed,
};
use steme_tests::{unique, within};

/// What the issue asks of a stop: SIGTERM or ctrl-c to exit.
const PROMPT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_member_under_load_promptly_losing_nothing() -> anyhow::Result<()> {
    within(Duration::from_secs(240), async {
        let mut cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("stop");
        create_topic(&cluster.bootstrap(), &topic, 3).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let producing = Producing::start(producer, signed(&topic, 6_000, 200)?);
        ensure!(
            producing
                .wait_for_acks(1_000, Duration::from_secs(60))
                .await
                >= 1_000,
            "the cluster did not take writes"
        );
        // Broker 1 leads partition 0 (its preferred replica) and serves produce requests.
        let stopped = Instant::now();
        let status = tokio::task::block_in_place(|| {
            cluster.broker_mut(1).terminate(Duration::from_secs(30))
        })?;
        let took = stopped.elapsed();
        eprintln!("[shutdown] broker 1 stopped on SIGTERM under load in {took:?} ({status})");
        ensure!(status.success(), "broker 1 exited with {status}");
        ensure!(took < PROMPT, "SIGTERM took {took:?}");
        let produced = producing.finish(Duration::from_secs(120)).await?;
        ensure!(
            produced.failed == 0,
            "{} produce(s) failed: {:?}",
            produced.failed,
            produced.first_error
        );
        cluster.restart(1)?;
        cluster
            .check_replicas_identical(&topic, 3, Duration::from_secs(60))
            .await?;
        let log = read_topic(&cluster.bootstrap(), &topic, Duration::from_secs(60)).await?;
        check_log(&log)?;
        check_acks_present(&log, &produced.acks)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_dev_cluster_promptly_with_consumers_attached() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    let (cluster, bootstrap) =
        tokio::task::spawn_blocking(move || DevCluster::start(&path, 3)).await??;
    let topic = unique("ctrlc");
    let acks = within(Duration::from_secs(120), async {
        create_topic(&bootstrap, &topic, 3).await?;
        let producer = Producer::connect(&bootstrap, &topic, ProducerConfig::default()).await?;
        let acks = produce_all(&producer, &signed(&topic, 500, 100)?).await?;
        anyhow::Ok(acks)
    })
    .await?;
    // Consumers at the end of each partition, long-polling when the signal comes.
    let mut tails = Vec::new();
    for partition in 0..3 {
        let config = ConsumerConfig {
            start: Position::Latest,
            ..ConsumerConfig::default()
        };
        let mut c = Consumer::connect(&bootstrap, config).await?;
        c.assign(&topic, &[partition]).await?;
        tails.push(tokio::spawn(async move {
            for _ in 0..100 {
                if c.poll(Duration::from_secs(5)).await.is_err() {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, took) =
        tokio::task::spawn_blocking(move || cluster.stop(libc::SIGINT, Duration::from_secs(60)))
            .await??;
    eprintln!("[shutdown] dev-cluster stopped on ctrl-c in {took:?} ({status})");
    ensure!(status.success(), "dev-cluster exited with {status}");
    ensure!(took < PROMPT, "ctrl-c took {took:?}");
    for t in tails {
        t.abort();
    }
    // Started again on its data: every acknowledged record is there.
    let path = dir.path().to_owned();
    let (cluster, bootstrap) =
        tokio::task::spawn_blocking(move || DevCluster::start(&path, 3)).await??;
    let log = read_topic(&bootstrap, &topic, Duration::from_secs(60)).await?;
    check_log(&log)?;
    check_acks_present(&log, &acks)?;
    cluster.terminate(Duration::from_secs(30))?;
    Ok(())
}
