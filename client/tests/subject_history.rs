//! `Consumer::subject_history` against a real broker in this process: one subject's records,
//! and only them, in HLC order, before and across a partition split.

mod common;

use std::time::Duration;

use steme_client::{
    Assertion, Cluster, Consumer, ConsumerConfig, Producer, SignedAssertion, SigningKey, Value,
};
use steme_protocol::messages::add_partitions::AddPartitionsRequest;
use steme_protocol::partition_for;

use common::{TestBroker, producer_config, within};

/// Assertion `i` about `subject`.
fn about(subject: &str, i: u64) -> anyhow::Result<SignedAssertion> {
    let a = Assertion {
        subject: subject.to_owned(),
        predicate: "step".into(),
        object: Value::Integer(i as i64),
        source: "client-tests".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_700_000_000_000 + i,
    };
    Ok(a.sign(&SigningKey::from_bytes(&[9; 32]))?)
}

/// Sends `count` assertions about each of `subjects`, interleaved, numbered from `first`.
async fn produce(
    bootstrap: &str,
    topic: &str,
    subjects: &[&str],
    first: u64,
    count: u64,
) -> anyhow::Result<()> {
    let producer = Producer::connect(bootstrap, topic, producer_config(1 << 20)).await?;
    for i in first..first + count {
        for s in subjects {
            producer.send(about(s, i)?).await?;
        }
    }
    producer.flush().await?;
    Ok(())
}

/// The `step` numbers of `records`, checking that they are about `subject`, in HLC order.
fn steps(records: &[steme_client::Record], subject: &str) -> anyhow::Result<Vec<i64>> {
    anyhow::ensure!(
        records.windows(2).all(|w| w[0].hlc() < w[1].hlc()),
        "not in HLC order: {records:?}"
    );
    records
        .iter()
        .map(|r| {
            let a = r.assertion()?;
            anyhow::ensure!(a.subject == subject, "{} is not {subject}", a.subject);
            match a.object {
                Value::Integer(i) => Ok(i),
                other => anyhow::bail!("unexpected object {other:?}"),
            }
        })
        .collect()
}

/// The first subject `urn:moves:{i}` that a split from `from` to `to` partitions moves.
fn moving_subject(from: u32, to: u32) -> String {
    (0..)
        .map(|i| format!("urn:moves:{i}"))
        .find(|s| partition_for(s, from) != partition_for(s, to))
        .expect("some subject moves")
}

/// One staying put through the same split.
fn staying_subject(from: u32, to: u32) -> String {
    (0..)
        .map(|i| format!("urn:stays:{i}"))
        .find(|s| partition_for(s, from) == partition_for(s, to))
        .expect("some subject stays")
}

#[tokio::test]
async fn history_is_one_subject_in_hlc_order() -> anyhow::Result<()> {
    within(Duration::from_secs(60), async {
        let broker = TestBroker::start().await?;
        broker.create_topic("facts", 4).await?;
        let others = ["urn:a", "urn:b", "urn:c", "urn:d", "urn:e"];
        produce(&broker.bootstrap, "facts", &others, 0, 20).await?;

        let consumer = Consumer::connect(&broker.bootstrap, ConsumerConfig::default()).await?;
        let history = consumer.subject_history("facts", "urn:c").await?;
        assert_eq!(steps(&history, "urn:c")?, (0..20).collect::<Vec<_>>());
        assert!(
            consumer
                .subject_history("facts", "urn:nobody")
                .await?
                .is_empty()
        );
        assert!(
            consumer.assignment().is_empty(),
            "the consumer's own assignment is untouched"
        );
        broker.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn history_follows_a_subject_across_a_split() -> anyhow::Result<()> {
    within(Duration::from_secs(60), async {
        let broker = TestBroker::start().await?;
        broker.create_topic("facts", 4).await?;
        let moves = moving_subject(4, 6);
        let stays = staying_subject(4, 6);
        let subjects = [moves.as_str(), stays.as_str(), "urn:a", "urn:b"];
        produce(&broker.bootstrap, "facts", &subjects, 0, 10).await?;

        let cluster = Cluster::connect(&broker.bootstrap, Default::default()).await?;
        cluster
            .call_metadata_leader(&AddPartitionsRequest {
                topic: "facts".into(),
                count: 6,
            })
            .await?;
        let consumer = Consumer::new(cluster, ConsumerConfig::default());
        // The new partitions take records once every old one has recorded its split point.
        loop {
            let meta = consumer.topic_metadata("facts").await?;
            if meta.splits.first().is_some_and(|s| s.sealed()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        produce(&broker.bootstrap, "facts", &subjects, 10, 10).await?;

        let history = consumer.subject_history("facts", &moves).await?;
        assert_eq!(steps(&history, &moves)?, (0..20).collect::<Vec<_>>());
        let partitions: Vec<u32> = history.iter().map(|r| r.partition()).collect();
        assert_eq!(partitions[0], partition_for(&moves, 4));
        assert_eq!(partitions[19], partition_for(&moves, 6));

        let history = consumer.subject_history("facts", &stays).await?;
        assert_eq!(steps(&history, &stays)?, (0..20).collect::<Vec<_>>());
        broker.stop().await;
        Ok(())
    })
    .await
}
