//! The `steme` CLI contract against a real broker process.

mod cli_common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use cli_common::{T, assertion_lines, field, json_lines, keygen, ok, u64_of};
use serde_json::Value;
use steme_tests::cli::steme;
use steme_tests::{BrokerProcess, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_produce_and_consume_roundtrip() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("producer.key");
    let key = key.to_str().context("temp path is not UTF-8")?;
    within(Duration::from_secs(90), async {
        let b = broker.bootstrap();
        let public = steme(&b, &["keygen", "--out", key], "", T).await?.success()?;
        let public = public.stdout.trim().to_owned();
        ensure!(public.len() == 64, "keygen printed {public:?}");

        steme(&b, &["topic", "create", "facts", "--partitions", "2"], "", T)
            .await?
            .success()?;

        let input = concat!(
            r#"{"subject":"urn:person:ada","predicate":"born","object":1815,"source":"wikipedia"}"#,
            "\n",
            r#"{"subject":"urn:person:ada","predicate":"field","object":"mathematics","source":"wikipedia","confidence":0.9}"#,
            "\n",
            r#"{"subject":"urn:city:paris","predicate":"population","object":2102650,"source":"census"}"#,
            "\n",
        );
        let produced = steme(&b, &["produce", "facts", "--key", key], input, T)
            .await?
            .success()?;
        let acks = json_lines(&produced.stdout)?;
        ensure!(acks.len() == 3, "3 lines in, acks: {}", produced.stdout);
        for ack in &acks {
            ensure!(field(ack, "duplicate")? == &Value::Bool(false), "{ack}");
            for f in ["partition", "offset", "hlc"] {
                ensure!(field(ack, f)?.is_u64(), "{f} of {ack}");
            }
        }
        let acked: BTreeSet<(String, u64, u64)> = acks
            .iter()
            .map(|a| {
                Ok((
                    field(a, "id")?.as_str().context("id")?.to_owned(),
                    field(a, "partition")?.as_u64().context("partition")?,
                    field(a, "offset")?.as_u64().context("offset")?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;

        let consumed = steme(&b, &["consume", "facts", "--verify"], "", T)
            .await?
            .success()?;
        let records = json_lines(&consumed.stdout)?;
        ensure!(records.len() == 3, "consume printed: {}", consumed.stdout);
        let read: BTreeSet<(String, u64, u64)> = records
            .iter()
            .map(|r| {
                Ok((
                    field(r, "id")?.as_str().context("id")?.to_owned(),
                    field(r, "partition")?.as_u64().context("partition")?,
                    field(r, "offset")?.as_u64().context("offset")?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        ensure!(read == acked, "consumed {read:?}, acknowledged {acked:?}");
        for r in &records {
            ensure!(field(r, "signer")? == &Value::String(public.clone()), "{r}");
            ensure!(field(r, "hlc")?.is_u64());
        }
        let ada_born = records
            .iter()
            .find(|r| r["predicate"] == "born")
            .context("the `born` record")?;
        ensure!(ada_born["subject"] == "urn:person:ada" && ada_born["object"] == 1815);

        // Producing the same line again: the same place, reported as a duplicate.
        let fixed = r#"{"subject":"urn:x","predicate":"p","object":"o","source":"s","issued_at":1}"#;
        let first = steme(&b, &["produce", "facts", "--key", key], fixed, T)
            .await?
            .success()?;
        let again = steme(&b, &["produce", "facts", "--key", key], fixed, T)
            .await?
            .success()?;
        let (first, again) = (&json_lines(&first.stdout)?[0], &json_lines(&again.stdout)?[0]);
        ensure!(again["duplicate"] == true && again["offset"] == first["offset"]);
        ensure!(again["id"] == first["id"]);

        // A malformed line: the lines before it are acknowledged, then a non-zero exit and
        // an error naming the line.
        let bad = concat!(
            r#"{"subject":"urn:y","predicate":"p","object":"o","source":"s"}"#,
            "\n",
            "this is not json\n",
            r#"{"subject":"urn:z","predicate":"p","object":"o","source":"s"}"#,
            "\n",
        );
        let out = steme(&b, &["produce", "facts", "--key", key], bad, T).await?;
        ensure!(!out.status.success(), "a malformed line was accepted: {out:?}");
        ensure!(out.stderr.contains("line 2"), "stderr: {}", out.stderr);
        ensure!(
            out.stderr.trim().lines().count() == 1,
            "errors are one line: {}",
            out.stderr
        );
        ensure!(json_lines(&out.stdout)?.len() == 1, "stdout: {}", out.stdout);

        // Unknown topic: one clear line, non-zero exit.
        let out = steme(&b, &["consume", "nope"], "", T).await?;
        ensure!(!out.status.success());
        ensure!(out.stderr.contains("nope"), "stderr: {}", out.stderr);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_consumer_group_commits_and_group_commands_work() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    within(Duration::from_secs(120), async {
        let b = broker.bootstrap();
        steme_tests::workload::create_topic(&b, "grouped", 2).await?;
        let producer = steme_client::Producer::connect(&b, "grouped", Default::default()).await?;
        steme_tests::workload::produce_all(
            &producer,
            &steme_tests::workload::signed("cli-g", 100, 100)?,
        )
        .await?;
        let committed = |d: &Value| -> anyhow::Result<(u64, u64)> {
            let offsets = field(d, "offsets")?.as_array().context("offsets")?;
            let c = offsets
                .iter()
                .map(|o| o["committed"].as_u64().unwrap_or(0))
                .sum();
            let lag = offsets.iter().map(|o| o["lag"].as_u64().unwrap_or(0)).sum();
            Ok((c, lag))
        };
        // A member that prints 30 records and stops commits exactly those.
        let out = steme(
            &b,
            &["consume", "grouped", "--group", "g", "--max", "30"],
            "",
            T,
        )
        .await?
        .success()?;
        ensure!(json_lines(&out.stdout)?.len() == 30, "{}", out.stdout);
        let list = steme(&b, &["group", "list", "--json"], "", T)
            .await?
            .success()?;
        let groups = json_lines(&list.stdout)?;
        ensure!(
            groups
                .iter()
                .any(|g| g["group"] == "g" && g["state"] == "empty" && g["members"] == 0),
            "{}",
            list.stdout
        );
        let d: Value = serde_json::from_str(
            &steme(&b, &["group", "describe", "g", "--json"], "", T)
                .await?
                .success()?
                .stdout,
        )?;
        ensure!(committed(&d)? == (30, 70), "after 30 printed: {d}");
        // The next member goes on from there: 70 more, nothing twice.
        let out = steme(
            &b,
            &["consume", "grouped", "--group", "g", "--idle-ms", "1500"],
            "",
            T,
        )
        .await?
        .success()?;
        ensure!(json_lines(&out.stdout)?.len() == 70, "{}", out.stdout);
        // Reset to the start while nobody consumes, and read everything again.
        steme(
            &b,
            &[
                "group", "reset", "g", "--topic", "grouped", "--to", "earliest",
            ],
            "",
            T,
        )
        .await?
        .success()?;
        let d: Value = serde_json::from_str(
            &steme(&b, &["group", "describe", "g", "--json"], "", T)
                .await?
                .success()?
                .stdout,
        )?;
        ensure!(committed(&d)? == (0, 100), "after reset: {d}");
        let out = steme(
            &b,
            &["consume", "grouped", "--group", "g", "--idle-ms", "1500"],
            "",
            T,
        )
        .await?
        .success()?;
        ensure!(json_lines(&out.stdout)?.len() == 100, "{}", out.stdout);
        // Delete; then it is unknown.
        steme(&b, &["group", "delete", "g"], "", T)
            .await?
            .success()?;
        let gone = steme(&b, &["group", "describe", "g"], "", T).await?;
        ensure!(
            !gone.status.success() && gone.stderr.contains("UnknownGroup"),
            "{}",
            gone.stderr
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_the_same_file_produced_twice_gives_the_same_ids_and_only_duplicates()
-> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let dir = tempfile::tempdir()?;
    within(Duration::from_secs(90), async {
        let b = broker.bootstrap();
        let key = keygen(&b, dir.path()).await?;
        ok(&b, &["topic", "create", "again", "--partitions", "3"], "").await?;
        // No line has an issued_at: each signs as it stands.
        let input = assertion_lines("again", 0, 40);
        let produce = ["produce", "again", "--key", key.as_str()];
        let first = json_lines(&ok(&b, &produce, &input).await?)?;
        let second = json_lines(&ok(&b, &produce, &input).await?)?;
        ensure!(
            first.len() == 40 && second.len() == 40,
            "{first:?} {second:?}"
        );
        for (a, b) in first.iter().zip(&second) {
            ensure!(a["duplicate"] == false, "first run: {a}");
            ensure!(b["duplicate"] == true, "second run, not a duplicate: {b}");
            ensure!(a["id"] == b["id"], "ids differ: {a} vs {b}");
            ensure!(a["partition"] == b["partition"] && a["offset"] == b["offset"]);
        }
        // Stored once: 40 records, none with an invented issued_at.
        let records = json_lines(&ok(&b, &["consume", "again"], "").await?)?;
        ensure!(records.len() == 40, "{} records", records.len());
        for r in &records {
            ensure!(u64_of(r, "issued_at")? == 0, "{r}");
        }

        // --issued-at now opts in to stamping: new ids, stored anew, stamped.
        let stamped = [&produce[..], &["--issued-at", "now"]].concat();
        let third = json_lines(&ok(&b, &stamped, &input).await?)?;
        ensure!(third.len() == 40);
        for (a, c) in first.iter().zip(&third) {
            ensure!(c["duplicate"] == false && a["id"] != c["id"], "{a} vs {c}");
        }
        let records = json_lines(&ok(&b, &["consume", "again"], "").await?)?;
        ensure!(records.len() == 80, "{} records", records.len());
        let stamped = records.iter().filter(|r| r["issued_at"].as_u64() > Some(0));
        ensure!(stamped.count() == 40);
        Ok(())
    })
    .await
}
