//! The examples' code (`steme-examples`) against a real broker process, so that what a
//! newcomer runs first is known to work.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::ensure;
use steme_client::{Position, Producer, ProducerConfig};
use steme_tests::{BrokerProcess, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_example_produces_and_reads_back() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    within(Duration::from_secs(60), async {
        let bootstrap = broker.bootstrap();
        for run in 0..2 {
            // The second run finds the topic already there.
            let mut out = Vec::new();
            let report = steme_examples::quickstart(&bootstrap, "quickstart", &mut out).await?;
            let text = String::from_utf8(out)?;
            ensure!(report.produced.len() == 4, "{text}");
            ensure!(
                report.produced.iter().all(|(_, ack)| !ack.duplicate),
                "run {run}: a fresh key's assertions were duplicates\n{text}"
            );
            let acked: BTreeSet<_> = report
                .produced
                .iter()
                .map(|(a, ack)| (a.id(), ack.partition, ack.offset))
                .collect();
            let read: BTreeSet<_> = report
                .read_back
                .iter()
                .map(|r| (r.id(), r.partition(), r.offset()))
                .collect();
            ensure!(read == acked, "read {read:?}, acked {acked:?}\n{text}");
            for r in &report.read_back {
                r.verify()?;
            }
            let (mistaken, correction) = (&report.produced[2].0, &report.produced[3].0);
            ensure!(correction.assertion().supersedes == Some(mistaken.id()));
            ensure!(text.matches("\nread ").count() == 4, "{text}");
            ensure!(text.contains("(supersedes "), "{text}");
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_tail_examples_roundtrip() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    within(Duration::from_secs(60), async {
        let bootstrap = broker.bootstrap();
        let admin = steme_client::Admin::connect(&bootstrap, Default::default()).await?;
        ensure!(steme_examples::ensure_topic(&admin, "facts", 3).await? == 3);
        ensure!(
            steme_examples::ensure_topic(&admin, "facts", 3).await? == 3,
            "an existing topic is fine"
        );

        let producer = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;
        let key = steme_examples::random_key()?;
        let input = steme_examples::generated(500, "tail")
            .into_iter()
            .map(Ok)
            .chain([steme_examples::parse_line(
                r#"{"subject":"urn:person:ada","predicate":"born","object":1815,"source":"wiki"}"#,
            )]);
        let mut acks = Vec::new();
        let (new, dup) = steme_examples::produce_lines(&producer, &key, input, &mut acks).await?;
        ensure!((new, dup) == (501, 0));
        ensure!(String::from_utf8(acks)?.lines().count() == 501);

        let mut out = Vec::new();
        let never = std::future::pending::<()>();
        let n = steme_examples::tail(
            &bootstrap,
            "facts",
            Position::Earliest,
            Some(501),
            &mut out,
            never,
        )
        .await?;
        ensure!(n == 501);
        let text = String::from_utf8(out)?;
        ensure!(text.contains("urn:person:ada born 1815 [wiki]"), "{text}");

        // Tailing from the end with a stop signal: nothing printed, and it stops.
        let mut out = Vec::new();
        let stop = tokio::time::sleep(Duration::from_millis(500));
        let n = steme_examples::tail(&bootstrap, "facts", Position::Latest, None, &mut out, stop)
            .await?;
        ensure!(n == 0 && out.is_empty());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_without_a_broker_says_how_to_start_one() -> anyhow::Result<()> {
    // A port nobody listens on: bind, note it, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let err = steme_examples::quickstart(&addr.to_string(), "quickstart", &mut Vec::new())
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("quickstart succeeded without a broker"))?;
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("no Steme broker is reachable")
            && msg.contains("cargo run --release -p steme-broker"),
        "{msg}"
    );
    Ok(())
}
