//! A cluster that changes shape under load, with real broker processes on loopback: a
//! broker joins a running cluster, a partition moves onto it while its leader is killed
//! mid-move, `steme cluster rebalance` spreads replicas onto a new broker, and a broker is
//! decommissioned (`steme cluster decommission`) and then killed.
//!
//! After each: every acknowledged record is in the log exactly once at its offset, every
//! replica of the new placement holds identical bytes, and the brokers left out deleted
//! their copies.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use steme_client::connection::{Connection, ConnectionConfig};
use steme_client::{ClientConfig, GroupConfig, GroupConsumer, Producer};
use steme_protocol::messages::metadata::{BrokerState, MetadataRequest, MetadataResponse};
use steme_protocol::messages::reassign::{ReassignPartitionRequest, ReassignPartitionResponse};
use steme_tests::cli::steme;
use steme_tests::cluster::{Cluster, ClusterOptions, describe_replica};
use steme_tests::workload::{
    Produced, Producing, check_acks_present, check_log, create_topic, patient, produce_all,
    read_topic, signed,
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
        wait_unhosted(&cluster, leader, &topic, 0).await?;
        // The new replicas hold identical bytes (the old leader holds nothing).
        let produced = check_nothing_lost(&cluster, &topic, 1, producing).await?;
        // Dedup still holds on the moved partition: the first 500 again are duplicates, at
        // the offsets first acknowledged.
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let again = produce_all(&producer, &signed(&topic, 500, 200)?).await?;
        for (second, first) in again.iter().zip(&produced.acks) {
            ensure!(
                second.duplicate && second.offset == first.offset,
                "after the move, {:?} was acknowledged as {second:?}, first as {first:?}",
                second.id
            );
        }
        ensure!(cluster.any_panic().is_none(), "a broker panicked");
        drop(done);
        Ok(())
    })
    .await
}

/// How many replicas, and how many preferred leaderships (first replicas), each broker
/// holds; `None` while any partition moves.
fn spread(m: &MetadataResponse) -> Option<(BTreeMap<u64, usize>, BTreeMap<u64, usize>)> {
    let mut replicas = BTreeMap::new();
    let mut preferred = BTreeMap::new();
    for p in m.topics.iter().flat_map(|t| &t.partitions) {
        if p.target.is_some() {
            return None;
        }
        for r in &p.replicas {
            *replicas.entry(*r).or_default() += 1;
        }
        *preferred.entry(*p.replicas.first()?).or_default() += 1;
    }
    Some((replicas, preferred))
}

fn even(counts: &BTreeMap<u64, usize>, brokers: &[u64]) -> bool {
    let n: Vec<usize> = brokers
        .iter()
        .map(|b| counts.get(b).copied().unwrap_or(0))
        .collect();
    n.iter()
        .max()
        .zip(n.iter().min())
        .is_some_and(|(hi, lo)| hi - lo <= 1)
}

/// Produces `count` assertions of run `run` to `topic` in the background, through a
/// patient producer, once the first acks arrived.
async fn producing(
    cluster: &Cluster,
    topic: &str,
    run: &str,
    count: usize,
) -> anyhow::Result<Producing> {
    let producer = Producer::connect(&cluster.bootstrap(), topic, patient()).await?;
    let producing = Producing::start(producer, signed(run, count, 200)?);
    ensure!(
        producing.wait_for_acks(500, Duration::from_secs(60)).await >= 500,
        "the first acks did not arrive"
    );
    Ok(producing)
}

/// Every ack is in the log once, and the replicas of every partition agree; what was
/// produced.
async fn check_nothing_lost(
    cluster: &Cluster,
    topic: &str,
    partitions: u32,
    producing: Producing,
) -> anyhow::Result<Produced> {
    let produced = producing.finish(Duration::from_secs(120)).await?;
    ensure!(
        produced.failed == 0,
        "failed acks: {:?}",
        produced.first_error
    );
    let log = read_topic(&cluster.bootstrap(), topic, Duration::from_secs(120)).await?;
    check_log(&log)?;
    check_acks_present(&log, &produced.acks)?;
    let read: usize = log.values().map(Vec::len).sum();
    ensure!(
        read == produced.acks.len(),
        "read {read} records, acknowledged {}",
        produced.acks.len()
    );
    cluster
        .check_replicas_identical(topic, partitions, Duration::from_secs(60))
        .await?;
    ensure!(cluster.any_panic().is_none(), "a broker panicked");
    Ok(produced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_broker_joins_and_rebalance_evens_out_replicas_and_leaders() -> anyhow::Result<()>
{
    within(Duration::from_secs(300), async {
        let mut cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("grown");
        create_topic(&cluster.bootstrap(), &topic, 4).await?;
        let producing = producing(&cluster, &topic, &topic, 6_000).await?;

        let four = cluster.add_broker()?;
        wait_metadata(
            &cluster.bootstrap(),
            Duration::from_secs(60),
            "joined",
            |m| {
                m.broker(four)
                    .is_some_and(|b| b.state == BrokerState::Active)
            },
        )
        .await?;
        let bootstrap = cluster.bootstrap();
        let before = metadata(&bootstrap).await?;
        let (held, _) = spread(&before).context("moving before any move")?;
        ensure!(!held.contains_key(&four), "broker {four} holds {held:?}");

        // A dry run plans moves onto the new broker and changes nothing.
        let plan = steme(
            &bootstrap,
            &["cluster", "rebalance", "--dry-run", "--json"],
            "",
            RPC,
        )
        .await?
        .success()?;
        let moves: Vec<serde_json::Value> = plan
            .stdout
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        ensure!(
            moves.iter().any(|m| m["to"]
                .as_array()
                .is_some_and(|to| to.contains(&four.into()))),
            "no move onto broker {four}: {}",
            plan.stdout
        );
        ensure!(
            spread(&metadata(&bootstrap).await?) == spread(&before),
            "a dry run changed the placement"
        );

        steme(&bootstrap, &["cluster", "rebalance"], "", RPC)
            .await?
            .success()?;
        let brokers = [1, 2, 3, four];
        wait_metadata(&bootstrap, Duration::from_secs(180), "balanced", |m| {
            spread(m).is_some_and(|(r, p)| even(&r, &brokers) && even(&p, &brokers))
        })
        .await?;
        let again = steme(
            &bootstrap,
            &["cluster", "rebalance", "--dry-run", "--json"],
            "",
            RPC,
        )
        .await?
        .success()?;
        ensure!(
            again.stdout.trim().is_empty(),
            "still moves: {}",
            again.stdout
        );
        check_nothing_lost(&cluster, &topic, 4, producing).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_broker_drains_then_can_be_killed() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let mut cluster = Cluster::start(ClusterOptions::new(4)).await?;
        let topic = unique("drained");
        create_topic(&cluster.bootstrap(), &topic, 4).await?;
        let producing = producing(&cluster, &topic, &topic, 6_000).await?;
        // A group commits what it read: its offsets live in `__groups`, which moves too.
        let group = unique("drained-group");
        let committed = commit_some(&cluster, &topic, &group, 300).await?;

        // Broker 1 initialised the cluster: it is likely the metadata leader as well.
        let bootstrap = cluster.bootstrap();
        let out = steme(
            &bootstrap,
            &["cluster", "decommission", "1", "--timeout", "180", "--json"],
            "",
            Duration::from_secs(200),
        )
        .await?
        .success()?;
        let m = metadata(&cluster.bootstrap_except(1)).await?;
        ensure!(
            m.broker(1).is_some_and(|b| b.state == BrokerState::Removed),
            "broker 1 is not removed: {:?}; the command said {}",
            m.brokers,
            out.stdout
        );
        let (held, _) = spread(&m).context("still moving")?;
        ensure!(
            !held.contains_key(&1),
            "broker 1 still holds replicas: {held:?}"
        );
        for p in 0..4 {
            wait_unhosted(&cluster, 1, &topic, p).await?;
        }

        cluster.broker_mut(1).kill9()?;
        let admin =
            steme_client::Admin::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let kept: u64 = admin
            .describe_group(&group)
            .await?
            .offsets
            .iter()
            .filter_map(|o| o.committed)
            .sum();
        ensure!(
            kept == committed,
            "the group's committed offsets add up to {kept} after the drain, {committed} before"
        );
        let health = steme(
            &cluster.bootstrap(),
            &["cluster", "health", "--json"],
            "",
            RPC,
        )
        .await?;
        ensure!(
            health.status.success(),
            "health after removing broker 1: {}",
            health.stdout
        );
        check_nothing_lost(&cluster, &topic, 4, producing).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_copies_at_the_throttled_rate_while_clients_go_on() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        const RATE: u64 = 256 << 10;
        let mut opts = ClusterOptions::new(4);
        if let Some(toml) = &mut opts.broker.config_toml {
            toml.push_str(&format!("reassign_bytes_per_sec = {RATE}\n"));
        }
        let cluster = Cluster::start(opts).await?;
        let topic = unique("paced");
        create_topic(&cluster.bootstrap(), &topic, 1).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let acks =
            steme_tests::workload::produce_all(&producer, &signed(&topic, 6_000, 200)?).await?;
        // At least the fields' bytes are copied: 6,000 × 200 B.
        let bytes = acks.len() as u64 * 200;
        let bootstrap = cluster.bootstrap();
        let (before, _) =
            placement(&metadata(&bootstrap).await?, &topic, 0).context("no placement")?;
        let spare = (1..=4)
            .find(|b| !before.contains(b))
            .context("no spare broker")?;
        let leader = cluster
            .wait_for_leader(&topic, 0, None, Duration::from_secs(30))
            .await?;
        // Replace a follower, so that only the copy to the new replica is paced.
        let leaving = *before
            .iter()
            .find(|&&r| r != leader)
            .context("no follower")?;
        let target: Vec<u64> = before
            .iter()
            .map(|&r| if r == leaving { spare } else { r })
            .collect();

        // New assertions (duplicates would be answered at once, before the move starts).
        let during = format!("{topic}-during");
        let producing = producing(&cluster, &topic, &during, 8_000).await?;
        let started = tokio::time::Instant::now();
        reassign(&bootstrap, &topic, 0, target.clone()).await?;
        let acked_at_start = producing.acked();
        wait_metadata(&bootstrap, Duration::from_secs(120), "moved", |m| {
            placement(m, &topic, 0) == Some((target.clone(), None))
        })
        .await?;
        let took = started.elapsed();
        let floor = Duration::from_secs_f64(bytes as f64 / RATE as f64 * 0.6);
        ensure!(
            took >= floor,
            "{bytes} bytes moved in {took:?}, faster than {RATE} B/s allows ({floor:?})"
        );
        ensure!(
            producing.acked() > acked_at_start,
            "producers were held up during the move"
        );
        let produced = producing.finish(Duration::from_secs(120)).await?;
        ensure!(
            produced.failed == 0,
            "failed acks: {:?}",
            produced.first_error
        );
        let log = read_topic(&bootstrap, &topic, Duration::from_secs(120)).await?;
        check_acks_present(&log, &acks)?;
        check_acks_present(&log, &produced.acks)?;
        cluster
            .check_replicas_identical(&topic, 1, Duration::from_secs(60))
            .await?;
        Ok(())
    })
    .await
}

/// A group member reads at least `at_least` records of `topic`, commits and leaves; the
/// committed offsets, summed.
async fn commit_some(
    cluster: &Cluster,
    topic: &str,
    group: &str,
    at_least: usize,
) -> anyhow::Result<u64> {
    let client =
        steme_client::Cluster::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
    let mut config = GroupConfig::new(group);
    config.auto_commit = None;
    let mut member = GroupConsumer::new(client, topic, config).await?;
    let mut read = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while read < at_least {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "read {read} of {at_least}"
        );
        read += member.poll(Duration::from_millis(200)).await?.len();
    }
    member.commit().await?;
    member.close().await?;
    let admin = steme_client::Admin::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
    let offsets = admin.describe_group(group).await?.offsets;
    Ok(offsets.iter().filter_map(|o| o.committed).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_broker_with_the_lowest_id_joins_instead_of_founding_a_cluster()
-> anyhow::Result<()> {
    within(Duration::from_secs(180), async {
        // Brokers 2, 3 and 4; broker 1 comes later, naming them all as peers. As the lowest
        // id it would found a cluster of its own, but it finds theirs running and joins.
        let mut cluster = Cluster::start(ClusterOptions {
            first_id: 2,
            ..ClusterOptions::new(3)
        })
        .await?;
        let topic = unique("founded");
        create_topic(&cluster.bootstrap(), &topic, 2).await?;
        cluster.add_broker_as(1)?;
        let seen_by_members = wait_metadata(
            &cluster.bootstrap_except(1),
            Duration::from_secs(60),
            "joined",
            |m| m.broker(1).is_some_and(|b| b.state == BrokerState::Active),
        )
        .await?;
        let own = wait_metadata(
            &cluster.broker(1).bootstrap(),
            Duration::from_secs(60),
            "caught up",
            |m| m.topic(&topic).is_some() && m.broker(1).is_some(),
        )
        .await?;
        ensure!(
            own.metadata_leader == seen_by_members.metadata_leader && own.brokers.len() == 4,
            "broker 1 sees {own:?}, the others {seen_by_members:?}"
        );
        // It never founded a group of its own (its log says what it did at start).
        let log = cluster.broker(1).log_tail(100_000);
        ensure!(
            !log.contains("initialising the cluster") && log.contains("found a running cluster"),
            "broker 1 did not join the running cluster:\n{log}"
        );
        Ok(())
    })
    .await
}
