//! A cluster that changes shape under load, with real broker processes on loopback: a
//! broker joins a running cluster, a partition moves onto it while its leader is killed
//! mid-move, and a broker is decommissioned and then killed.
//!
//! After each: every acknowledged record is in the log exactly once at its offset, every
//! replica of the new placement holds identical bytes, and the brokers left out deleted
//! their copies.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use steme_client::Producer;
use steme_client::connection::{Connection, ConnectionConfig};
use steme_protocol::messages::metadata::{BrokerState, MetadataRequest, MetadataResponse};
use steme_protocol::messages::reassign::{ReassignPartitionRequest, ReassignPartitionResponse};
use steme_tests::cluster::{Cluster, ClusterOptions, describe_replica};
use steme_tests::workload::{
    Producing, check_acks_present, check_log, create_topic, patient, read_topic, signed,
};
use steme_tests::{unique, within};

const RPC: Duration = Duration::from_secs(10);

async fn metadata(bootstrap: &str) -> anyhow::Result<MetadataResponse> {
    let addr = bootstrap.split(',').next().context("no broker")?;
    let conn = Connection::connect(addr, &ConnectionConfig::default()).await?;
    Ok(conn.call(&MetadataRequest { topics: None }, RPC).await?)
}

/// Waits until the metadata, as the broker at `addr` has it, satisfies `done`.
async fn wait_metadata(
    addr: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&MetadataResponse) -> bool,
) -> anyhow::Result<MetadataResponse> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = metadata(addr).await;
        if let Ok(m) = &seen
            && done(m)
        {
            return seen;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("not {what} within {timeout:?}: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn placement(m: &MetadataResponse, topic: &str, p: u32) -> Option<(Vec<u64>, Option<Vec<u64>>)> {
    let part = m.topic(topic)?.partitions.get(p as usize)?;
    Some((part.replicas.clone(), part.target.clone()))
}

async fn reassign(
    addr: &str,
    topic: &str,
    partition: u32,
    replicas: Vec<u64>,
) -> anyhow::Result<ReassignPartitionResponse> {
    let addr = addr.split(',').next().context("no broker")?;
    let conn = Connection::connect(addr, &ConnectionConfig::default()).await?;
    let req = ReassignPartitionRequest {
        topic: topic.to_owned(),
        partition,
        replicas,
    };
    Ok(conn.call(&req, Duration::from_secs(30)).await?)
}

/// Waits until broker `id` no longer hosts `topic`/`partition`.
async fn wait_unhosted(
    cluster: &Cluster,
    id: u64,
    topic: &str,
    partition: u32,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match describe_replica(&cluster.broker(id).bootstrap(), topic, partition).await {
            Err(e) if format!("{e:#}").contains("does not host") => return Ok(()),
            other if tokio::time::Instant::now() >= deadline => {
                bail!("broker {id} still hosts {topic}/{partition}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_onto_a_joined_broker_while_its_leader_is_killed() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let mut cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("moved");
        create_topic(&cluster.bootstrap(), &topic, 1).await?;

        // A fourth broker joins the running cluster: registered, then a member.
        let four = cluster.add_broker()?;
        let joined = wait_metadata(
            &cluster.bootstrap(),
            Duration::from_secs(60),
            "joined",
            |m| {
                m.broker(four)
                    .is_some_and(|b| b.state == BrokerState::Active)
            },
        )
        .await?;
        ensure!(
            joined
                .brokers
                .iter()
                .all(|b| b.state == BrokerState::Active),
            "every broker active: {:?}",
            joined.brokers
        );

        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let producing = Producing::start(producer, signed(&topic, 8_000, 200)?);
        ensure!(
            producing
                .wait_for_acks(1_000, Duration::from_secs(60))
                .await
                >= 1_000,
            "the first thousand acks did not arrive"
        );
        let leader = cluster
            .wait_for_leader(&topic, 0, None, Duration::from_secs(30))
            .await?;
        let (before, _) =
            placement(&metadata(&cluster.bootstrap()).await?, &topic, 0).context("no placement")?;
        // The leader leaves: it must hand over (or, killed, its successor goes on).
        let target: Vec<u64> = before
            .iter()
            .map(|&r| if r == leader { four } else { r })
            .collect();
        let recorded = reassign(&cluster.bootstrap(), &topic, 0, target.clone()).await?;
        ensure!(
            recorded.target.as_ref() == Some(&target) || recorded.replicas == target,
            "recorded {recorded:?}"
        );

        // Mid-move: the new replica has started to copy. Then the leader dies.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let d = describe_replica(&cluster.broker(four).bootstrap(), &topic, 0).await;
            if d.as_ref().is_ok_and(|d| d.log_end_offset > 0) {
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "broker {four} never started to copy: {d:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster.broker_mut(leader).kill9()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.restart(leader)?;

        let done = wait_metadata(
            &cluster.bootstrap(),
            Duration::from_secs(120),
            "moved",
            |m| placement(m, &topic, 0) == Some((target.clone(), None)),
        )
        .await?;
        let produced = producing.finish(Duration::from_secs(120)).await?;
        ensure!(
            produced.failed == 0,
            "failed acks: {:?}",
            produced.first_error
        );
        wait_unhosted(&cluster, leader, &topic, 0).await?;
        let log = read_topic(&cluster.bootstrap(), &topic, Duration::from_secs(120)).await?;
        check_log(&log)?;
        check_acks_present(&log, &produced.acks)?;
        ensure!(
            log[&0].len() == produced.acks.len(),
            "read {} records, acknowledged {}",
            log[&0].len(),
            produced.acks.len()
        );
        // The new replicas hold identical bytes (the old leader holds nothing).
        cluster
            .check_replicas_identical(&topic, 1, Duration::from_secs(60))
            .await?;
        ensure!(cluster.any_panic().is_none(), "a broker panicked");
        drop(done);
        Ok(())
    })
    .await
}
