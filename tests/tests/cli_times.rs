//! Times a person can use (issue 14, point 4), against a real broker process: records print
//! `time` (RFC 3339, UTC, nanoseconds) and `logical` beside `hlc`, and `--from time:…` and
//! `group reset --to time:…` take RFC 3339 (any offset), relative times and raw HLCs.

mod cli_common;

use std::time::Duration;

use anyhow::ensure;
use cli_common::{
    assertion_lines, check_time_form, json_lines, keygen, ok, ok_lines, one_json, str_of, u64_of,
};
use steme_tests::cli::steme;
use steme_tests::{BrokerProcess, within};

/// The offsets of consumed record lines, in the order printed.
fn offsets(records: &[serde_json::Value]) -> anyhow::Result<Vec<u64>> {
    records.iter().map(|r| u64_of(r, "offset")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prints_rfc3339_times_and_a_printed_time_finds_its_record() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let dir = tempfile::tempdir()?;
    within(Duration::from_secs(120), async {
        let b = broker.bootstrap();
        let key = keygen(&b, dir.path()).await?;
        ok(&b, &["topic", "create", "times", "--partitions", "1"], "").await?;
        // Two runs, apart in time: offsets 0..5, then 5..10.
        let acks = ok_lines(
            &b,
            &["produce", "times", "--key", &key],
            &assertion_lines("early", 0, 5),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        ok(
            &b,
            &["produce", "times", "--key", &key],
            &assertion_lines("late", 0, 5),
        )
        .await?;
        for ack in &acks {
            check_time_form(str_of(ack, "time")?)?;
            ensure!(
                u64_of(ack, "logical")? == u64_of(ack, "hlc")? & 0xf,
                "{ack}"
            );
        }

        let records = json_lines(&ok(&b, &["consume", "times"], "").await?)?;
        ensure!(
            offsets(&records)? == (0..10).collect::<Vec<_>>(),
            "{records:?}"
        );
        for r in &records {
            check_time_form(str_of(r, "time")?)?;
            ensure!(u64_of(r, "logical")? == u64_of(r, "hlc")? & 0xf, "{r}");
        }
        let (fifth, sixth) = (&records[4], &records[5]);
        let time = str_of(sixth, "time")?;
        ensure!(str_of(fifth, "time")? < time, "{fifth} then {sixth}");

        // The printed time, as printed and with an explicit offset, starts at that record.
        for form in [time.to_owned(), time.replace('Z', "+00:00")] {
            let from = format!("time:{form}");
            let read = json_lines(&ok(&b, &["consume", "times", "--from", &from], "").await?)?;
            ensure!(
                offsets(&read)? == (5..10).collect::<Vec<_>>(),
                "{from}: {read:?}"
            );
            ensure!(str_of(&read[0], "subject")? == "urn:late:0");
        }
        // The raw HLC still works, for scripts that use it.
        let raw = format!("time:{}", u64_of(sixth, "hlc")?);
        let read = json_lines(&ok(&b, &["consume", "times", "--from", &raw], "").await?)?;
        ensure!(offsets(&read)? == (5..10).collect::<Vec<_>>(), "{read:?}");
        // Relative to now: everything was produced within the hour, nothing after now.
        let read = json_lines(&ok(&b, &["consume", "times", "--from", "time:-1h"], "").await?)?;
        ensure!(read.len() == 10, "{read:?}");
        let read = json_lines(&ok(&b, &["consume", "times", "--from", "time:-0s"], "").await?)?;
        ensure!(read.is_empty(), "{read:?}");

        // group reset --to the same time: the group starts at that record.
        ok(&b, &["consume", "times", "--group", "tg", "--max", "1"], "").await?;
        let at = format!("time:{time}");
        let reset = ok(
            &b,
            &[
                "group", "reset", "tg", "--topic", "times", "--to", &at, "--json",
            ],
            "",
        )
        .await?;
        let reset = one_json(&reset)?;
        ensure!(
            reset
                == serde_json::json!({
                    "group": "tg", "topic": "times", "offsets": [{"partition": 0, "offset": 5}]
                }),
            "{reset}"
        );
        let read = ok_lines(
            &b,
            &["consume", "times", "--group", "tg", "--idle-ms", "1500"],
            "",
        )
        .await?;
        ensure!(offsets(&read)? == (5..10).collect::<Vec<_>>(), "{read:?}");

        // A time that is not one: a usage error naming the forms.
        for bad in [
            "time:2026-13-01T00:00:00Z",
            "time:2026-11-29T10:00:00",
            "time:-1w",
        ] {
            let out = steme(&b, &["consume", "times", "--from", bad], "", cli_common::T).await?;
            ensure!(!out.status.success(), "{bad} was accepted");
            ensure!(out.stderr.contains("-1h"), "{bad}: {}", out.stderr);
        }
        Ok(())
    })
    .await
}
