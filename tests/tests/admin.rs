//! The admin listener and `steme cluster health` against real broker processes (D13):
//! `/healthz`, `/readyz` and `/metrics` on a 3-broker cluster, then one broker killed (the
//! under-replicated count rises on the survivors and `cluster health` fails, naming it),
//! then a second (the last broker loses its metadata quorum and is no longer ready).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::Value;
use steme_client::{
    ClientConfig, Cluster as ClientCluster, GroupConfig, GroupConsumer, Producer, ProducerConfig,
};
use steme_tests::cli::steme;
use steme_tests::cluster::{Cluster, ClusterOptions};
use steme_tests::http::{self, sample, sum_of};
use steme_tests::workload::{create_topic, produce_all, signed};
use steme_tests::{eventually, unique, within};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

fn admin_cluster() -> ClusterOptions {
    let mut opts = ClusterOptions::new(3);
    opts.broker.args = vec!["--admin-listen".into(), "127.0.0.1:0".into()];
    opts
}

async fn scrape(cluster: &Cluster, id: u64) -> anyhow::Result<String> {
    let addr = cluster
        .broker(id)
        .admin_addr()
        .context("the broker printed no admin address")?;
    let answer = http::get(addr, "/metrics", HTTP_TIMEOUT).await?;
    ensure!(answer.status == 200, "/metrics answered {}", answer.status);
    Ok(answer.body)
}

/// The samples of `name` labelled with `topic`, summed.
fn topic_sum(metrics: &str, name: &str, topic: &str) -> f64 {
    let label = format!("topic=\"{topic}\"");
    let only: String = metrics
        .lines()
        .filter(|l| l.contains(&label))
        .map(|l| format!("{l}\n"))
        .collect();
    sum_of(&only, name)
}

/// Every contract metric exported by every broker, the produced records counted once, the
/// group's lag of 5, and no partition under-replicated or offline.
async fn settled_figures(cluster: &Cluster, topic: &str) -> anyhow::Result<()> {
    let mut produced = 0.0;
    let mut lag = 0.0;
    let mut committed = 0.0;
    for id in 1..=3 {
        let m = scrape(cluster, id).await?;
        for name in [
            "steme_partition_high_watermark",
            "steme_partition_log_end_offset",
            "steme_partition_log_start_offset",
            "steme_partition_is_leader",
            "steme_under_replicated_partitions",
            "steme_offline_partitions",
            "steme_raft_term",
            "steme_leader_changes_total",
            "steme_produce_records_total",
            "steme_produce_latency_seconds_bucket",
            "steme_fetch_bytes_total",
            "steme_fsync_latency_seconds_count",
            "steme_signature_failures_total",
            "steme_duplicates_total",
            "steme_connections",
        ] {
            ensure!(m.contains(name), "broker {id} does not export {name}");
        }
        // Every broker holds every partition (3 replicas of each).
        ensure!(
            topic_sum(&m, "steme_partition_high_watermark", topic) == 35.0,
            "broker {id}: high watermarks of {topic} do not add up to 35:\n{m}"
        );
        let zero = |name| sample(&m, name) == Some(0.0);
        ensure!(
            zero("steme_under_replicated_partitions") && zero("steme_offline_partitions"),
            "broker {id} counts a partition under-replicated or offline:\n{m}"
        );
        ensure!(sum_of(&m, "steme_fsync_latency_seconds_count") > 0.0);
        produced += sample(&m, "steme_produce_records_total").unwrap_or(0.0);
        lag += topic_sum(&m, "steme_group_lag", topic);
        committed += topic_sum(&m, "steme_group_committed_offset", topic);
    }
    ensure!(
        committed == 30.0,
        "committed offsets add up to {committed}, expected 30"
    );
    ensure!(produced == 35.0, "{produced} records counted as produced");
    ensure!(lag == 5.0, "group lag {lag}, expected 5");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readiness_and_health_follow_killed_brokers() -> anyhow::Result<()> {
    within(Duration::from_secs(240), async {
        let mut cluster = Cluster::start(admin_cluster()).await?;
        for id in 1..=3 {
            let addr = cluster
                .broker(id)
                .admin_addr()
                .context("no admin address")?;
            let health = http::get(addr, "/healthz", HTTP_TIMEOUT).await?;
            ensure!(
                health.status == 200 && health.body.trim() == "ok",
                "{health:?}"
            );
            eventually(
                Duration::from_secs(30),
                "every broker ready",
                || async move { Ok(http::get(addr, "/readyz", HTTP_TIMEOUT).await?.status == 200) },
            )
            .await?;
        }

        // Records, a group that commits some of them, and the figures that follow.
        let topic = unique("observed");
        create_topic(&cluster.bootstrap(), &topic, 3).await?;
        let producer =
            Producer::connect(&cluster.bootstrap(), &topic, ProducerConfig::default()).await?;
        let first = produce_all(&producer, &signed(&topic, 30, 100)?).await?;
        let client = ClientCluster::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let group = unique("lagging");
        let mut config = GroupConfig::new(&group);
        config.auto_commit = None;
        let mut member = GroupConsumer::new(client, &topic, config).await?;
        let mut read = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while read < first.len() {
            ensure!(Instant::now() < deadline, "read {read} of {}", first.len());
            read += member.poll(Duration::from_millis(200)).await?.len();
        }
        member.commit().await?;
        member.close().await?;
        // Five more the group has not read: its lag.
        produce_all(&producer, &signed(&format!("{topic}-more"), 5, 100)?).await?;

        // Followers learn the last commit with the leader's next message: poll until every
        // broker's figures settle, then hold them to the exact counts.
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = settled_figures(&cluster, &topic).await {
            ensure!(Instant::now() < deadline, "figures did not settle: {e:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let healthy = steme(
            &cluster.bootstrap(),
            &["cluster", "health"],
            "",
            CLI_TIMEOUT,
        )
        .await?;
        ensure!(
            healthy.status.success() && healthy.stdout.contains("healthy"),
            "cluster health on a whole cluster: {healthy:?}"
        );

        // Broker 3 dies: every partition loses a replica.
        cluster.broker_mut(3).kill9()?;
        let survivors = || async {
            let mut under = 0.0;
            for id in 1..=2 {
                under += sample(
                    &scrape(&cluster, id).await?,
                    "steme_under_replicated_partitions",
                )
                .unwrap_or(0.0);
            }
            anyhow::Ok(under)
        };
        eventually(
            Duration::from_secs(30),
            "the survivors count the 3 partitions under-replicated",
            || async { Ok(survivors().await? >= 3.0) },
        )
        .await?;
        let sick = steme(
            &cluster.bootstrap_except(3),
            &["cluster", "health"],
            "",
            CLI_TIMEOUT,
        )
        .await?;
        ensure!(
            !sick.status.success(),
            "cluster health passed without broker 3: {sick:?}"
        );
        ensure!(
            sick.stdout.contains("unreachable_broker: broker 3")
                && sick.stdout.contains("under_replicated"),
            "cluster health does not name the problems: {sick:?}"
        );
        // Once the partitions broker 3 led have failed over, each of the topic's three is
        // under-replicated (and none leaderless).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let json = steme(
                &cluster.bootstrap_except(3),
                &["cluster", "health", "--json"],
                "",
                CLI_TIMEOUT,
            )
            .await?;
            ensure!(!json.status.success(), "healthy without broker 3: {json:?}");
            let doc: Value = serde_json::from_str(&json.stdout).context("health --json")?;
            ensure!(doc["healthy"] == Value::Bool(false), "{doc}");
            let problems = doc["problems"].as_array().context("no problems array")?;
            ensure!(
                problems
                    .iter()
                    .any(|p| p["kind"] == "unreachable_broker" && p["node_id"] == 3),
                "{doc}"
            );
            let under = problems
                .iter()
                .filter(|p| p["kind"] == "under_replicated" && p["topic"] == topic.as_str())
                .count();
            if under == 3 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "not every partition failed over: {doc}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // Broker 2 dies too: broker 1 alone has no metadata quorum, so it is not ready.
        cluster.broker_mut(2).kill9()?;
        let addr = cluster.broker(1).admin_addr().context("no admin address")?;
        eventually(Duration::from_secs(30), "broker 1 unready", || async move {
            let r = http::get(addr, "/readyz", HTTP_TIMEOUT).await?;
            Ok(r.status == 503 && r.body.contains("metadata"))
        })
        .await?;
        let alive = http::get(addr, "/healthz", HTTP_TIMEOUT).await?;
        ensure!(alive.status == 200, "a broker without quorum still lives");
        Ok(())
    })
    .await
}
