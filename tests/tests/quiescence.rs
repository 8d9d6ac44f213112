//! Quiet groups (`broker/src/partition/quiet.rs`): an idle partition group parks its Raft
//! ticker (no heartbeats, no election timers), so only the broker-level failure detector
//! can replace its leader. These tests kill or restart brokers while groups are quiet and
//! require that writes resume and nothing acknowledged is lost.

use std::time::Duration;

use anyhow::ensure;
use steme_client::{Producer, ProducerConfig};
use steme_tests::cluster::{Cluster, ClusterOptions};
use steme_tests::workload::{check_acks_present, create_topic, produce_all, read_topic, signed};
use steme_tests::{unique, within};

/// Long enough for a leader (2 s idle) and its followers (1 s) to go quiet.
const GO_QUIET: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_groups_dead_leader_is_replaced_and_nothing_is_lost() -> anyhow::Result<()> {
    within(Duration::from_secs(240), async {
        let mut cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("quiet");
        create_topic(&cluster.bootstrap(), &topic, 2).await?;
        let assertions = signed(&topic, 600, 150)?;
        let producer =
            Producer::connect(&cluster.bootstrap(), &topic, ProducerConfig::default()).await?;
        let mut acks = produce_all(&producer, &assertions[..200]).await?;

        // Quiet, then the leader of partition 0 dies: with no election timer running
        // anywhere, only the detector can elect a successor before the producer gives up.
        tokio::time::sleep(GO_QUIET).await;
        let leader = cluster
            .wait_for_leader(&topic, 0, None, Duration::from_secs(30))
            .await?;
        cluster.broker_mut(leader).kill9()?;
        acks.extend(produce_all(&producer, &assertions[200..400]).await?);

        // Quiet again, then the dead broker comes back: the groups it shares wake for it,
        // and it catches up without disturbing them.
        tokio::time::sleep(GO_QUIET).await;
        cluster.restart(leader)?;
        tokio::time::sleep(GO_QUIET).await;
        acks.extend(produce_all(&producer, &assertions[400..]).await?);
        for p in 0..2 {
            cluster
                .wait_converged(&topic, p, Duration::from_secs(60))
                .await?;
        }
        producer.close().await?;
        let log = read_topic(&cluster.bootstrap(), &topic, Duration::from_secs(30)).await?;
        check_acks_present(&log, &acks)?;
        let stored: usize = log.values().map(Vec::len).sum();
        ensure!(stored == assertions.len(), "{stored} records stored");
        cluster
            .check_replicas_identical(&topic, 2, Duration::from_secs(60))
            .await?;
        Ok(())
    })
    .await
}
