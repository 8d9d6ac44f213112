//! Live topic config against real brokers: `steme topic alter-config` changes a topic's
//! settings through the metadata group and every broker applies them without a restart —
//! retention moves `log_start_offset` on every replica, signer and signature settings
//! change what produce accepts — the change survives a restart and a metadata leader
//! change, `topic describe --json` shows it, and invalid values, unknown keys and keys
//! fixed at create are refused with the key named and nothing changed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::connection::{Connection, ConnectionConfig};
use steme_client::{Admin, ClientConfig, ClientError, Producer, ProducerConfig, TopicOptions};
use steme_protocol::messages::authenticate::key_principal;
use steme_protocol::messages::describe_topic::DescribeTopicRequest;
use steme_protocol::messages::metadata::MetadataRequest;
use steme_protocol::messages::produce::{Acks, ProduceRequest};
use steme_protocol::{ApiError, BatchBuilder, RecordBatch, SignedAssertion};
use steme_tests::cli::{CliOutput, steme};
use steme_tests::cluster::{Cluster, ClusterOptions, describe_replica};
use steme_tests::process::BrokerProcess;
use steme_tests::workload::{assertions, create_topic_with, key, produce_all, sign_all, signed};
use steme_tests::{eventually, unique, within};

const T: Duration = Duration::from_secs(30);

/// `steme <args>` against `bootstrap`.
async fn cli(bootstrap: &str, args: &[&str]) -> anyhow::Result<CliOutput> {
    steme(bootstrap, args, "", T).await
}

/// The topic's settings as `steme topic describe --json` prints them.
async fn described_configs(
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let out = cli(bootstrap, &["topic", "describe", topic, "--json"])
        .await?
        .success()?;
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("describe --json printed {:?}", out.stdout))?;
    Ok(serde_json::from_value(json["configs"].clone())?)
}

/// The topic's settings as the broker at `addr` alone has them in its metadata.
async fn configs_seen_by(addr: &str, topic: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let conn = Connection::connect(addr, &ConnectionConfig::default()).await?;
    let d = conn
        .call(
            &DescribeTopicRequest {
                name: topic.to_owned(),
            },
            T,
        )
        .await?;
    Ok(d.configs.into_iter().map(|c| (c.key, c.value)).collect())
}

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_retention_applies_live_on_every_replica_and_survives_restart_and_leader_change()
-> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let mut opts = ClusterOptions::new(3);
        if let Some(toml) = &mut opts.broker.config_toml {
            toml.push_str("retention_check_ms = 200\n");
        }
        let mut cluster = Cluster::start(opts).await?;
        let topic = unique("alter-retention");
        let admin = Admin::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        admin
            .create_topic(
                &topic,
                1,
                TopicOptions {
                    replication_factor: 3,
                    configs: vec![("segment.bytes".into(), "16384".into())],
                },
            )
            .await?;
        // Batches well under a segment: a batch is one Raft entry and never split, so
        // default-sized batches (over 100 KiB when records are produced fast) would each
        // fill a segment of their own, and the last would stay the active segment —
        // never deleted — however far it is over `segment.bytes`.
        let config = ProducerConfig {
            max_batch_bytes: 4 << 10,
            ..ProducerConfig::default()
        };
        let producer = Producer::connect(&cluster.bootstrap(), &topic, config).await?;
        // About 300 KB in 16 KiB segments, and no retention limit yet.
        produce_all(&producer, &signed(&topic, 1_000, 200)?).await?;
        cluster.check_replicas_identical(&topic, 1, T).await?;
        tokio::time::sleep(Duration::from_secs(1)).await; // several retention checks
        for id in cluster.ids() {
            let d = describe_replica(&cluster.broker(id).bootstrap(), &topic, 0).await?;
            ensure!(d.log_start_offset == 0, "retention ran unasked: {d:?}");
        }

        let out = cli(
            &cluster.bootstrap(),
            &[
                "topic",
                "alter-config",
                &topic,
                "--set",
                "retention.bytes=65536",
                "--json",
            ],
        )
        .await?
        .success()?;
        let printed: serde_json::Value = serde_json::from_str(out.stdout.trim())?;
        ensure!(
            printed["name"] == topic.as_str()
                && printed["configs"]["retention.bytes"] == "65536"
                && printed["configs"]["segment.bytes"] == "16384",
            "alter-config --json printed {printed}"
        );
        for id in cluster.ids() {
            let addr = cluster.broker(id).bootstrap();
            eventually(
                Duration::from_secs(30),
                &format!("broker {id} applies retention.bytes"),
                || async {
                    let d = describe_replica(&addr, &topic, 0).await?;
                    Ok(d.log_start_offset > 0)
                },
            )
            .await?;
        }
        ensure!(
            described_configs(&cluster.bootstrap(), &topic).await?
                == configs(&[("retention.bytes", "65536"), ("segment.bytes", "16384")]),
            "describe --json does not show the alter"
        );

        // A metadata leader change: kill the leader, alter through the others.
        let conn =
            Connection::connect(&cluster.broker(1).bootstrap(), &ConnectionConfig::default())
                .await?;
        let leader = conn
            .call(&MetadataRequest { topics: None }, T)
            .await?
            .metadata_leader
            .context("no metadata leader")?;
        let start_before_kill = describe_replica(&cluster.broker(leader).bootstrap(), &topic, 0)
            .await?
            .log_start_offset;
        cluster.broker_mut(leader).kill9()?;
        let others = cluster.bootstrap_except(leader);
        let mut altered = None;
        for _ in 0..30 {
            let out = cli(
                &others,
                &[
                    "topic",
                    "alter-config",
                    &topic,
                    "--set",
                    "retention.ms=86400000",
                ],
            )
            .await?;
            if out.status.success() {
                altered = Some(out);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let out = altered.context("no alter succeeded after the metadata leader died")?;
        ensure!(
            out.stdout.contains("retention.ms = 86400000")
                && out.stdout.contains("retention.bytes = 65536"),
            "alter-config printed {:?}",
            out.stdout
        );

        // The killed broker comes back with both changes (from its own disk and Raft).
        cluster.restart(leader)?;
        let addr = cluster.broker(leader).bootstrap();
        let want = configs(&[
            ("retention.bytes", "65536"),
            ("retention.ms", "86400000"),
            ("segment.bytes", "16384"),
        ]);
        eventually(
            Duration::from_secs(60),
            &format!("restarted broker {leader} sees both alters"),
            || async { Ok(configs_seen_by(&addr, &topic).await.ok() == Some(want.clone())) },
        )
        .await?;
        // ...and applies the altered retention after the restart, too.
        produce_all(&producer, &signed(&format!("{topic}-more"), 500, 200)?).await?;
        cluster
            .check_replicas_identical(&topic, 1, Duration::from_secs(60))
            .await?;
        eventually(
            // Its own retention check, then a snapshot and a purge: slow on a loaded machine.
            Duration::from_secs(90),
            &format!("restarted broker {leader} keeps to retention.bytes"),
            || async {
                let d = describe_replica(&addr, &topic, 0).await?;
                Ok(d.log_start_offset > start_before_kill)
            },
        )
        .await?;
        ensure!(cluster.any_panic().is_none(), "a broker panicked");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_unknown_keys_and_keys_fixed_at_create_are_refused_and_change_nothing()
-> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let addr = broker.bootstrap();
    within(Duration::from_secs(120), async {
        let topic = unique("alter-refused");
        let initial = [("retention.ms", "60000"), ("segment.bytes", "16384")];
        create_topic_with(
            &addr,
            &topic,
            1,
            initial
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .await?;
        let before = configs(&initial);
        ensure!(described_configs(&addr, &topic).await? == before);
        for (sets, says) in [
            (vec!["retention.bytes=1"], "retention.bytes=1"),
            (vec!["retention.bytes=1"], "out of range"),
            (vec!["retention.ms=soon"], "retention.ms=soon"),
            (vec!["retention.ms=soon"], "not a whole number"),
            (vec!["verify.signatures=maybe"], "verify.signatures"),
            (vec!["colour=blue"], "unknown topic config `colour`"),
            (vec!["segment.bytes=8192"], "segment.bytes"),
            (
                vec!["segment.bytes=8192"],
                "cannot be changed on a live topic",
            ),
            (vec!["partitions=8"], "partition count is fixed at create"),
            // One bad key refuses the whole change: the good one is not applied either.
            (vec!["retention.ms=120000", "colour=blue"], "colour"),
        ] {
            let mut args = vec!["topic", "alter-config", topic.as_str()];
            for s in &sets {
                args.extend(["--set", s]);
            }
            let out = cli(&addr, &args).await?;
            ensure!(
                !out.status.success(),
                "{sets:?} was accepted: {}",
                out.stdout
            );
            ensure!(
                out.stderr.contains(says),
                "{sets:?}: the error does not say {says:?}: {}",
                out.stderr
            );
            ensure!(
                described_configs(&addr, &topic).await? == before,
                "{sets:?} changed the settings"
            );
        }
        let out = cli(
            &addr,
            &["topic", "alter-config", &topic, "--delete", "segment.bytes"],
        )
        .await?;
        ensure!(
            !out.status.success() && out.stderr.contains("segment.bytes"),
            "--delete segment.bytes: {}",
            out.stderr
        );
        let out = cli(
            &addr,
            &[
                "topic",
                "alter-config",
                "__groups",
                "--set",
                "retention.ms=60000",
            ],
        )
        .await?;
        ensure!(
            !out.status.success() && out.stderr.contains("internal topics"),
            "altering __groups: {}",
            out.stderr
        );
        let out = cli(
            &addr,
            &[
                "topic",
                "alter-config",
                "no-such-topic",
                "--set",
                "retention.ms=60000",
            ],
        )
        .await?;
        ensure!(
            !out.status.success() && out.stderr.contains("no-such-topic"),
            "altering a missing topic: {}",
            out.stderr
        );
        ensure!(described_configs(&addr, &topic).await? == before);
        // A valid change after all that, and a key returned to the broker default.
        cli(
            &addr,
            &[
                "topic",
                "alter-config",
                &topic,
                "--set",
                "retention.ms=120000",
                "--set",
                "retention.bytes=1048576",
            ],
        )
        .await?
        .success()?;
        let out = cli(
            &addr,
            &[
                "topic",
                "alter-config",
                &topic,
                "--delete",
                "retention.ms",
                "--json",
            ],
        )
        .await?
        .success()?;
        let printed: serde_json::Value = serde_json::from_str(out.stdout.trim())?;
        let after = configs(&[("retention.bytes", "1048576"), ("segment.bytes", "16384")]);
        ensure!(
            serde_json::from_value::<BTreeMap<String, String>>(printed["configs"].clone())?
                == after,
            "alter-config --json printed {printed}"
        );
        ensure!(described_configs(&addr, &topic).await? == after);
        Ok(())
    })
    .await
}

/// One produce request of `batch` to partition 0.
async fn produce_batch(
    conn: &Connection,
    topic: &str,
    batch: bytes::Bytes,
) -> Result<(), ClientError> {
    let request = ProduceRequest {
        topic: topic.to_owned(),
        partition: 0,
        acks: Acks::All,
        timeout_ms: 10_000,
        causality: None,
        batch,
    };
    conn.call(&request, T).await.map(|_| ())
}

fn batch_of(records: &[SignedAssertion]) -> bytes::Bytes {
    let mut batch = BatchBuilder::with_capacity(64 << 10);
    for r in records {
        batch.push(r);
    }
    batch.finish()
}

/// `records` as one batch with record 1's signature flipped (CRCs made right again).
fn with_bad_signature(records: &[SignedAssertion]) -> anyhow::Result<bytes::Bytes> {
    let mut b = batch_of(records).to_vec();
    let batch = RecordBatch::new(bytes::Bytes::from(b.clone()))?;
    let at = {
        let r = batch.records().nth(1).context("record 1")?;
        r.signature.as_ptr() as usize - batch.as_bytes().as_ptr() as usize
    };
    b[at + 5] ^= 0x01;
    steme_protocol::batch::reseal(&mut b);
    Ok(bytes::Bytes::from(b))
}

fn refused_signature(r: &Result<(), ClientError>, words: &str) -> bool {
    matches!(r, Err(ClientError::Api(ApiError::InvalidSignature { message, .. }))
        if message.contains(words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_signer_and_signature_settings_change_what_produce_accepts_live()
-> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let addr = broker.bootstrap();
    within(Duration::from_secs(120), async {
        let topic = unique("alter-signers");
        create_topic_with(&addr, &topic, 1, vec![]).await?;
        let conn = Connection::connect(&addr, &ConnectionConfig::default()).await?;
        let (alice, mallory) = (key(41), key(42));
        let alice_hex = key_principal(&alice.verifying_key().to_bytes())["key:".len()..].to_owned();
        let run = assertions(&topic, 60, 100);
        let by = |k, from: usize| sign_all(&run[from..from + 5], k);
        let alter = |args: Vec<String>| {
            let addr = addr.clone();
            let topic = topic.clone();
            async move {
                let mut all = vec!["topic".to_owned(), "alter-config".to_owned(), topic];
                all.extend(args);
                let all: Vec<&str> = all.iter().map(String::as_str).collect();
                cli(&addr, &all).await?.success()
            }
        };

        // No allow-list: anyone's records are stored.
        produce_batch(&conn, &topic, batch_of(&by(&mallory, 0)?)).await?;
        alter(vec!["--set".into(), format!("signers.allowed={alice_hex}")]).await?;
        let r = produce_batch(&conn, &topic, batch_of(&by(&mallory, 5)?)).await;
        ensure!(
            refused_signature(&r, "signers.allowed"),
            "mallory's records after the allow-list: {r:?}"
        );
        produce_batch(&conn, &topic, batch_of(&by(&alice, 10)?)).await?;
        alter(vec!["--delete".into(), "signers.allowed".into()]).await?;
        produce_batch(&conn, &topic, batch_of(&by(&mallory, 15)?)).await?;

        // Signature verification (on by the broker's default): off, then on again.
        let forged = with_bad_signature(&by(&mallory, 20)?)?;
        let r = produce_batch(&conn, &topic, forged.clone()).await;
        ensure!(
            matches!(
                r,
                Err(ClientError::Api(ApiError::InvalidSignature {
                    record: 1,
                    ..
                }))
            ),
            "a bad signature while verifying: {r:?}"
        );
        alter(vec!["--set".into(), "verify.signatures=false".into()]).await?;
        produce_batch(&conn, &topic, forged).await?;
        alter(vec!["--set".into(), "verify.signatures=true".into()]).await?;
        let forged = with_bad_signature(&by(&mallory, 25)?)?;
        let r = produce_batch(&conn, &topic, forged).await;
        ensure!(
            matches!(
                r,
                Err(ClientError::Api(ApiError::InvalidSignature {
                    record: 1,
                    ..
                }))
            ),
            "a bad signature once verifying again: {r:?}"
        );
        ensure!(
            described_configs(&addr, &topic).await? == configs(&[("verify.signatures", "true")]),
            "describe --json does not show the last alter"
        );
        Ok(())
    })
    .await
}
