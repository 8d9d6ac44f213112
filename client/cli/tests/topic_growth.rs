//! `steme topic add-partitions` and the split points `topic describe` shows, end to end
//! against the scripted fake broker (`fake_broker`), which records a growth and its split
//! points over its Metadata answers as the partitions' leaders would.

mod fake_broker;

use anyhow::{Context, ensure};
use fake_broker::{FakeBroker, Layout, steme};
use serde_json::{Value, json};

/// The fake alone, recording a split's points after `polls` Metadata answers.
fn layout(polls: u32) -> Layout {
    Layout {
        polls_per_move: polls,
        ..Layout::default()
    }
}

fn json_lines(stdout: &str) -> anyhow::Result<Vec<Value>> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

#[tokio::test]
async fn add_partitions_waits_until_every_split_point_is_recorded() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(layout(3)).await?;
    let (status, stdout, stderr) = steme(
        &broker,
        &["topic", "add-partitions", "t", "--count", "4", "--json"],
    )
    .await?;
    ensure!(status.success(), "{status}: {stderr}");
    let lines = json_lines(&stdout)?;
    ensure!(lines.len() == 2, "{stdout}");
    ensure!(
        lines[0] == json!({"topic": "t", "map_epoch": 1, "partitions": 4}),
        "recorded: {}",
        lines[0]
    );
    ensure!(
        lines[1]["sealed"] == true && lines[1]["map_epoch"] == 1 && lines[1]["partitions"] == 4,
        "final: {}",
        lines[1]
    );
    ensure!(
        stderr.contains("t: growing from 1 to 4 partitions, 0 of 1 split points recorded"),
        "progress on stderr: {stderr}"
    );

    // Describe shows the map epoch and the recorded split point.
    let (status, stdout, stderr) = steme(&broker, &["topic", "describe", "t"]).await?;
    ensure!(status.success(), "{status}: {stderr}");
    ensure!(stdout.contains("topic t (4 partitions)"), "{stdout}");
    ensure!(stdout.contains("map epoch 1\n"), "{stdout}");
    ensure!(
        stdout.contains("  split at epoch 1: 1 -> 4 partitions (sealed)\n"),
        "{stdout}"
    );
    ensure!(
        stdout.contains("    partition 0: offset 100, hlc 5000\n"),
        "{stdout}"
    );
    let (status, stdout, stderr) = steme(&broker, &["topic", "describe", "t", "--json"]).await?;
    ensure!(status.success(), "{status}: {stderr}");
    let d: Value = serde_json::from_str(&stdout)?;
    ensure!(d["map_epoch"] == 1, "{d}");
    ensure!(
        d["splits"]
            == json!([{"epoch": 1, "from": 1, "to": 4, "sealed": true,
                        "points": [{"offset": 100, "hlc": 5000}]}]),
        "{d}"
    );
    ensure!(d["partitions"].as_array().map(Vec::len) == Some(4), "{d}");
    Ok(())
}

#[tokio::test]
async fn add_partitions_no_wait_returns_and_describe_shows_pending() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(layout(u32::MAX)).await?;
    let (status, stdout, stderr) = steme(
        &broker,
        &["topic", "add-partitions", "t", "--count", "3", "--no-wait"],
    )
    .await?;
    ensure!(status.success(), "{status}: {stderr}");
    ensure!(
        stdout == "topic t has 3 partitions, map epoch 1\n",
        "{stdout}"
    );
    ensure!(stderr.contains("steme topic describe t"), "{stderr}");
    let (status, stdout, stderr) = steme(&broker, &["topic", "describe", "t"]).await?;
    ensure!(status.success(), "{status}: {stderr}");
    ensure!(
        stdout.contains("  split at epoch 1: 1 -> 3 partitions (pending)\n"),
        "{stdout}"
    );
    ensure!(stdout.contains("    partition 0: pending\n"), "{stdout}");

    // A second growth while the first records its split points is refused; waiting for a
    // split that never seals gives up after --timeout.
    let (status, _, stderr) =
        steme(&broker, &["topic", "add-partitions", "t", "--count", "5"]).await?;
    ensure!(status.code() == Some(1), "{status}: {stderr}");
    ensure!(
        stderr.contains("cannot grow topic \"t\" to 5 partitions"),
        "{stderr}"
    );
    ensure!(
        stderr.contains("still recording its split points"),
        "{stderr}"
    );
    let (status, _, stderr) = steme(
        &broker,
        &[
            "topic",
            "add-partitions",
            "t",
            "--count",
            "3",
            "--timeout",
            "1",
        ],
    )
    .await?;
    ensure!(status.code() == Some(1), "{status}: {stderr}");
    ensure!(
        stderr.contains("splitting topic t: not done after 1s"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn add_partitions_refuses_fewer_partitions() -> anyhow::Result<()> {
    let broker = FakeBroker::with_layout(layout(0)).await?;
    let (status, stdout, stderr) =
        steme(&broker, &["topic", "add-partitions", "t", "--count", "2"]).await?;
    ensure!(status.success(), "{status}: {stderr}");
    ensure!(
        stdout.starts_with("topic t has 2 partitions, map epoch 1\n"),
        "{stdout}"
    );
    let (status, _, stderr) =
        steme(&broker, &["topic", "add-partitions", "t", "--count", "1"]).await?;
    ensure!(status.code() == Some(1), "{status}: {stderr}");
    ensure!(stderr.contains("never removed"), "{stderr}");
    Ok(())
}
