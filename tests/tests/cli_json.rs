//! `--json` on every command that prints (issue 14, point 5), against a real broker
//! process: one JSON object per result (JSON lines for streams), snake_case keys, group
//! states as values; errors on stderr with a non-zero exit and nothing on stdout.

mod cli_common;

use std::time::Duration;

use anyhow::{Context, ensure};
use cli_common::{assertion_lines, field, json_lines, ok, ok_lines, one_json, str_of, u64_of};
use serde_json::json;
use steme_tests::cli::steme;
use steme_tests::{BrokerProcess, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_json_with_json() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let dir = tempfile::tempdir()?;
    within(Duration::from_secs(150), async {
        let b = broker.bootstrap();
        let key = dir.path().join("k.key");
        let key = key.to_str().context("temp path is not UTF-8")?;

        let made = one_json(&ok(&b, &["keygen", "--out", key, "--json"], "").await?)?;
        ensure!(str_of(&made, "public_key")?.len() == 64, "{made}");
        ensure!(str_of(&made, "path")? == key, "{made}");

        let created = ok(&b, &["topic", "create", "js", "-p", "2", "--json"], "").await?;
        let created = one_json(&created)?;
        ensure!(
            created
                == json!({"name": "js", "partitions": 2, "replication_factor": 1, "created": true}),
            "{created}"
        );
        let listed = json_lines(&ok(&b, &["topic", "list", "--json"], "").await?)?;
        ensure!(
            listed.contains(&json!({"name": "js", "partitions": 2})),
            "{listed:?}"
        );
        let described: serde_json::Value =
            serde_json::from_str(&ok(&b, &["topic", "describe", "js", "--json"], "").await?)?;
        ensure!(str_of(&described, "name")? == "js", "{described}");

        let acks = ok_lines(
            &b,
            &["produce", "js", "--key", key, "--json"],
            &assertion_lines("j", 0, 6),
        )
        .await?;
        ensure!(acks.len() == 6, "{acks:?}");
        for ack in &acks {
            for f in [
                "id",
                "partition",
                "offset",
                "hlc",
                "time",
                "logical",
                "duplicate",
            ] {
                field(ack, f)?;
            }
        }
        let records = json_lines(&ok(&b, &["consume", "js"], "").await?)?;
        ensure!(records.len() == 6, "{records:?}");

        // Groups: the state is a value, in JSON and in tables alike.
        ok(&b, &["consume", "js", "--group", "jg", "--max", "2"], "").await?;
        let groups = json_lines(&ok(&b, &["group", "list", "--json"], "").await?)?;
        ensure!(
            groups.contains(&json!({"group": "jg", "state": "empty", "members": 0})),
            "{groups:?}"
        );
        let table = ok(&b, &["group", "list"], "").await?;
        ensure!(
            table.contains("empty") && !table.contains("Empty"),
            "{table}"
        );
        let described: serde_json::Value =
            serde_json::from_str(&ok(&b, &["group", "describe", "jg", "--json"], "").await?)?;
        ensure!(str_of(&described, "state")? == "empty", "{described}");
        let table = ok(&b, &["group", "describe", "jg"], "").await?;
        ensure!(table.starts_with("group jg (empty, epoch"), "{table}");
        let reset = ok(
            &b,
            &[
                "group", "reset", "jg", "--topic", "js", "--to", "earliest", "--json",
            ],
            "",
        )
        .await?;
        let reset = one_json(&reset)?;
        ensure!(
            reset
                == json!({"group": "jg", "topic": "js", "offsets": [
                    {"partition": 0, "offset": 0}, {"partition": 1, "offset": 0}
                ]}),
            "{reset}"
        );
        let deleted = one_json(&ok(&b, &["group", "delete", "jg", "--json"], "").await?)?;
        ensure!(
            deleted == json!({"group": "jg", "deleted": true}),
            "{deleted}"
        );

        // Replay and inspect.
        let file = dir.path().join("p0.bin");
        let file = file.to_str().context("temp path is not UTF-8")?;
        let replay = [
            "replay", "js", "-p", "0", "--from", "0", "--out", file, "--json",
        ];
        let summary = one_json(&ok(&b, &replay, "").await?)?;
        let in_p0 = acks.iter().filter(|a| a["partition"] == 0).count() as u64;
        ensure!(u64_of(&summary, "records")? == in_p0, "{summary}");
        for f in [
            "topic",
            "partition",
            "file",
            "batches",
            "bytes",
            "first_time",
            "last_time",
        ] {
            field(&summary, f)?;
        }
        let inspected = ok(&b, &["replay-inspect", file, "--verify", "--json"], "").await?;
        let inspected = json_lines(&inspected)?;
        ensure!(inspected.len() as u64 == in_p0 + 1, "{inspected:?}");
        let last = field(inspected.last().context("a summary")?, "summary")?;
        ensure!(
            u64_of(last, "records")? == in_p0 && last["problems"] == json!([]),
            "{last}"
        );

        // ACLs (stored even while the broker does not enforce them).
        let acl = [
            "--principal",
            "anonymous",
            "--resource",
            "topic:js",
            "--operation",
            "produce",
        ];
        let added = ok(&b, &[&["acl", "add"][..], &acl, &["--json"]].concat(), "").await?;
        let want = json!({
            "principal": "anonymous", "resource": "topic:js", "operation": "produce"
        });
        let mut added_want = want.clone();
        added_want["added"] = true.into();
        ensure!(one_json(&added)? == added_want, "{added}");
        let acls = json_lines(&ok(&b, &["acl", "list", "--json"], "").await?)?;
        ensure!(acls.contains(&want), "{acls:?}");
        let removed = ok(
            &b,
            &[&["acl", "remove"][..], &acl, &["--json"]].concat(),
            "",
        )
        .await?;
        let mut removed_want = want.clone();
        removed_want["removed"] = true.into();
        ensure!(one_json(&removed)? == removed_want, "{removed}");

        // Benchmarks: the RESULT pairs as one object, numbers as numbers.
        let bench = [
            "bench", "produce", "--topic", "jsb", "--count", "20", "--json",
        ];
        let result = one_json(&ok(&b, &bench, "").await?)?;
        ensure!(result["op"] == "produce" && result["n"] == 20, "{result}");
        ensure!(field(&result, "msgs_per_s")?.is_number(), "{result}");

        let deleted = one_json(&ok(&b, &["topic", "delete", "js", "--json"], "").await?)?;
        ensure!(
            deleted == json!({"name": "js", "deleted": true}),
            "{deleted}"
        );

        // An error stays an error: stderr, a non-zero exit, nothing on stdout.
        let out = steme(&b, &["topic", "delete", "js", "--json"], "", cli_common::T).await?;
        ensure!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
        ensure!(out.stderr.starts_with("steme: error: "), "{out:?}");
        Ok(())
    })
    .await
}
