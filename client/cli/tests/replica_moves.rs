//! `steme partition reassign`, `cluster decommission` and `cluster rebalance` end to end,
//! against the scripted fake broker (`fake_broker`), which records moves and plays them out
//! over its Metadata answers as the cluster's partition leaders would.

mod fake_broker;

use anyhow::{Context, ensure};
use fake_broker::{FakeBroker, Layout, steme};
use serde_json::{Value, json};
use steme_protocol::messages::metadata::BrokerState;

/// Brokers 1 to 4, all active; the partition on 1, 2 and 3.
fn four_brokers(polls_per_move: u32) -> Layout {
    Layout {
        brokers: (1..=4).map(|id| (id, BrokerState::Active)).collect(),
        replicas: vec![1, 2, 3],
        polls_per_move,
    }
}

fn json_lines(stdout: &str) -> anyhow::Result<Vec<Value>> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

#[tokio::test]
async fn partition_reassign_waits_until_the_partition_has_moved() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(four_brokers(3)).await?;
    let args = [
        "partition",
        "reassign",
        "t",
        "--partition",
        "0",
        "--replicas",
        "4,2,3",
        "--wait",
        "--json",
    ];
    let (status, stdout, stderr) = steme(&broker, &args).await?;
    ensure!(status.success(), "{status}: {stderr}");
    let lines = json_lines(&stdout)?;
    ensure!(lines.len() == 2, "{stdout}");
    ensure!(
        lines[0]
            == json!({"topic": "t", "partition": 0, "replicas": [1, 2, 3], "target": [4, 2, 3]}),
        "recorded: {}",
        lines[0]
    );
    ensure!(
        lines[1]["done"] == true && lines[1]["replicas"] == json!([4, 2, 3]),
        "final: {}",
        lines[1]
    );
    ensure!(lines[1]["target"].is_null(), "final: {}", lines[1]);
    ensure!(
        stderr.contains("t/0: replicas [1,2,3], moving to [4,2,3] (joining [4], leaving [1])"),
        "progress on stderr: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn partition_reassign_gives_up_after_its_timeout() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(four_brokers(u32::MAX)).await?;
    let (status, stdout, stderr) = steme(
        &broker,
        &[
            "partition",
            "reassign",
            "t",
            "-p",
            "0",
            "--replicas",
            "4,2,3",
            "--wait",
            "--timeout",
            "1",
        ],
    )
    .await?;
    ensure!(status.code() == Some(1), "{status}: {stdout} {stderr}");
    ensure!(
        stdout.starts_with("t/0: replicas [1,2,3], moving to [4,2,3]"),
        "the recorded move is printed first: {stdout}"
    );
    ensure!(
        stderr.contains("moving t/0 to [4,2,3]: not done after 1s: last seen: t/0: replicas"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_reassignment_exits_1_naming_the_move() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(four_brokers(0)).await?;
    let (status, _, stderr) = steme(
        &broker,
        &["partition", "reassign", "t", "-p", "0", "--replicas", "9"],
    )
    .await?;
    ensure!(status.code() == Some(1), "{status}: {stderr}");
    ensure!(stderr.contains("cannot move t/0 to [9]"), "{stderr}");
    ensure!(
        stderr.contains("broker 9 is not an active broker"),
        "{stderr}"
    );
    // A usage error is clap's, with status 2, and nothing is sent.
    let (status, _, stderr) = steme(
        &broker,
        &["partition", "reassign", "t", "-p", "0", "--replicas", "4,4"],
    )
    .await?;
    ensure!(status.code() == Some(2), "{status}: {stderr}");
    ensure!(stderr.contains("broker 4 is listed twice"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn cluster_decommission_waits_until_the_broker_is_removed() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(four_brokers(2)).await?;
    let (status, stdout, stderr) =
        steme(&broker, &["cluster", "decommission", "2", "--json"]).await?;
    ensure!(status.success(), "{status}: {stderr}");
    let lines = json_lines(&stdout)?;
    ensure!(lines.len() == 2, "{stdout}");
    ensure!(
        lines[0] == json!({"node_id": 2, "state": "draining"}),
        "{}",
        lines[0]
    );
    ensure!(
        lines[1]["node_id"] == 2 && lines[1]["state"] == "removed",
        "{}",
        lines[1]
    );
    ensure!(
        stderr
            .contains("broker 2 is draining: 1 partition(s) still have a replica or target on it"),
        "{stderr}"
    );
    // Asking again for a removed broker changes nothing and does not wait.
    let (status, stdout, stderr) = steme(&broker, &["cluster", "decommission", "2"]).await?;
    ensure!(status.success(), "{status}: {stderr}");
    ensure!(
        stdout == "broker 2 is removed (nothing left on it)\n",
        "{stdout}"
    );
    Ok(())
}

#[tokio::test]
async fn cluster_decommission_no_wait_returns_once_draining() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(four_brokers(u32::MAX)).await?;
    let (status, stdout, stderr) =
        steme(&broker, &["cluster", "decommission", "3", "--no-wait"]).await?;
    ensure!(status.success(), "{status}: {stderr}");
    ensure!(
        stdout == "broker 3 is draining: its replicas move to other brokers\n",
        "{stdout}"
    );
    ensure!(stderr.contains("steme cluster status"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn cluster_rebalance_of_a_balanced_cluster_sends_nothing() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(four_brokers(0)).await?;
    for args in [
        &["cluster", "rebalance", "--dry-run"][..],
        &["cluster", "rebalance"],
    ] {
        let (status, stdout, stderr) = steme(&broker, args).await?;
        ensure!(status.success(), "{args:?}: {status}: {stderr}");
        ensure!(
            stdout == "balanced: nothing to move\n",
            "{args:?}: {stdout}"
        );
    }
    let (status, stdout, stderr) =
        steme(&broker, &["cluster", "rebalance", "--dry-run", "--json"]).await?;
    ensure!(
        status.success() && stdout.is_empty(),
        "{status}: {stdout} {stderr}"
    );
    Ok(())
}
