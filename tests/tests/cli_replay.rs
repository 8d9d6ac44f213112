//! Replay files read and checked offline (issue 14, point 8): a file written by
//! `steme replay` from a real broker reads back with `steme replay-inspect`, every id and
//! signature checked; a changed byte or a cut file fails, naming where.

mod cli_common;

use std::time::Duration;

use anyhow::{Context, ensure};
use cli_common::{assertion_lines, field, json_lines, keygen, ok, str_of, u64_of};
use steme_tests::cli::steme;
use steme_tests::{BrokerProcess, within};

/// Produces three runs of 10 lines (`urn:{prefix}:0..30`) into a new one-partition topic,
/// replays it into `file`, and returns the acks in offset order.
async fn produce_and_replay(
    b: &str,
    dir: &std::path::Path,
    topic: &str,
    file: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let key = keygen(b, dir).await?;
    ok(b, &["topic", "create", topic, "--partitions", "1"], "").await?;
    let mut acks = Vec::new();
    for run in 0..3 {
        let lines = assertion_lines(topic, run * 10, 10);
        acks.extend(json_lines(
            &ok(b, &["produce", topic, "--key", &key], &lines).await?,
        )?);
    }
    acks.sort_by_key(|a| a["offset"].as_u64());
    let replay = ["replay", topic, "-p", "0", "--from", "0", "--out", file];
    let said = ok(b, &replay, "").await?;
    ensure!(said.contains("replayed 30 records"), "{said}");
    Ok(acks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_file_reads_back_with_the_ids_produced() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let dir = tempfile::tempdir()?;
    within(Duration::from_secs(120), async {
        let b = broker.bootstrap();
        let file = dir.path().join("rt.bin");
        let file = file.to_str().context("temp path is not UTF-8")?;
        let acks = produce_and_replay(&b, dir.path(), "rt", file).await?;

        let lines =
            json_lines(&ok(&b, &["replay-inspect", file, "--verify", "--json"], "").await?)?;
        let (summary, records) = lines.split_last().context("no output")?;
        ensure!(records.len() == 30, "{records:?}");
        for (r, ack) in records.iter().zip(&acks) {
            ensure!(
                r["id"] == ack["id"] && r["offset"] == ack["offset"],
                "{r} vs {ack}"
            );
            ensure!(
                r["hlc"] == ack["hlc"] && r["time"] == ack["time"],
                "{r} vs {ack}"
            );
            ensure!(r["ok"] == true && r.get("problems").is_none(), "{r}");
        }
        let summary = field(summary, "summary")?;
        ensure!(u64_of(summary, "records")? == 30, "{summary}");
        ensure!(u64_of(summary, "first_offset")? == 0 && u64_of(summary, "last_offset")? == 29);
        ensure!(summary["signatures_verified"] == true, "{summary}");
        ensure!(
            str_of(summary, "first_time")? == str_of(&acks[0], "time")?,
            "{summary}"
        );
        let bytes = std::fs::metadata(file)?.len();
        ensure!(u64_of(summary, "bytes")? == bytes, "{summary}");

        // The table: one row per record with its time, and the totals.
        let table = ok(&b, &["replay-inspect", file, "--verify"], "").await?;
        ensure!(table.lines().count() == 1 + 30 + 2, "{table}");
        ensure!(table.contains(str_of(&acks[7], "time")?), "{table}");
        ensure!(table.contains("30 records in"), "{table}");
        ensure!(table.contains("signatures verified"), "{table}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_inspect_names_a_changed_record_and_a_cut_file() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let dir = tempfile::tempdir()?;
    within(Duration::from_secs(120), async {
        let b = broker.bootstrap();
        let file = dir.path().join("bad.bin");
        let file = file.to_str().context("temp path is not UTF-8")?;
        let acks = produce_and_replay(&b, dir.path(), "bad", file).await?;
        let sound = std::fs::read(file)?;

        // One byte of record `urn:bad:17`'s subject changed.
        let needle = b"urn:bad:17";
        let at = sound
            .windows(needle.len())
            .position(|w| w == needle)
            .context("the subject is in the file")?;
        let mut changed = sound.clone();
        changed[at + needle.len() - 1] = b'X';
        std::fs::write(file, &changed)?;
        // One partition, produced in order: subject i is at offset i.
        let offset = 17;
        ensure!(acks[17]["offset"] == offset, "{:?}", acks[17]);
        let out = steme(&b, &["replay-inspect", file, "--verify"], "", cli_common::T).await?;
        ensure!(!out.status.success(), "a changed byte passed: {out:?}");
        ensure!(
            out.stderr.contains(&format!("offset {offset} (byte "))
                && out.stderr.contains("Ed25519 check failed"),
            "{}",
            out.stderr
        );
        ensure!(out.stderr.contains("CRC mismatch"), "{}", out.stderr);
        ensure!(!out.stderr.contains("panicked"), "{}", out.stderr);
        // Without --verify the batch is named, and the record is not guessed.
        let out = steme(&b, &["replay-inspect", file], "", cli_common::T).await?;
        ensure!(!out.status.success() && out.stderr.contains("--verify names the record"));

        // The file cut anywhere inside its last batch: a clear error, never a panic.
        for cut in [sound.len() - 1, sound.len() - 40, 20] {
            std::fs::write(file, &sound[..cut])?;
            let out = steme(&b, &["replay-inspect", file, "--verify"], "", cli_common::T).await?;
            ensure!(!out.status.success(), "cut at {cut} passed: {out:?}");
            ensure!(
                out.stderr.contains("truncated"),
                "cut at {cut}: {}",
                out.stderr
            );
            ensure!(
                !out.stderr.contains("panicked"),
                "cut at {cut}: {}",
                out.stderr
            );
        }
        Ok(())
    })
    .await
}
