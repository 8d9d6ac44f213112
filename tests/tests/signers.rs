//! Signer allow-lists against a real broker: `signers.allowed` refuses a record signed by
//! any other key, naming the record, and stores nothing from that request (a batch with one
//! bad record in the middle included); `signers.must_match_principal` lets a `key:`
//! principal produce only records it signed, and refuses an unauthenticated producer.
//! Forged signatures that would cancel out in a per-key sum are refused.

use std::time::Duration;

use anyhow::{Context, ensure};
use bytes::Bytes;
use curve25519_dalek::scalar::Scalar;
use steme_client::ClientError;
use steme_client::connection::{AuthKey, Connection, ConnectionConfig};
use steme_protocol::messages::authenticate::key_principal;
use steme_protocol::messages::produce::{Acks, ProduceRequest};
use steme_protocol::{ApiError, BatchBuilder, ErrorCode, RecordBatch, SignedAssertion};
use steme_tests::cli::steme;
use steme_tests::process::{BrokerOptions, BrokerProcess};
use steme_tests::workload::{assertions, create_topic_with, high_watermarks, key, sign_all};
use steme_tests::{unique, within};

const T: Duration = Duration::from_secs(30);

/// One produce request of `records` to partition 0, on `conn`.
async fn produce(
    conn: &Connection,
    topic: &str,
    records: &[SignedAssertion],
) -> Result<(), ClientError> {
    produce_bytes(conn, topic, batch_of(records)).await
}

fn batch_of(records: &[SignedAssertion]) -> Bytes {
    let mut batch = BatchBuilder::with_capacity(64 << 10);
    for r in records {
        batch.push(r);
    }
    batch.finish()
}

async fn produce_bytes(conn: &Connection, topic: &str, batch: Bytes) -> Result<(), ClientError> {
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

fn refused_at(r: &Result<(), ClientError>, index: u32, words: &str) -> bool {
    matches!(r, Err(ClientError::Api(ApiError::InvalidSignature { record, message }))
        if *record == index && message.contains(words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_lists_and_must_match_refuse_other_signers_and_store_nothing() -> anyhow::Result<()> {
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: None,
        args: vec!["--auth".into(), "optional".into()],
    })?;
    let addr = broker.bootstrap();
    within(Duration::from_secs(90), async {
        let (alice, mallory) = (key(31), key(32));
        let alice_hex = hex_of(&alice.verifying_key().to_bytes());
        let run = unique("signers");
        let by = |k, from: usize| -> anyhow::Result<Vec<SignedAssertion>> {
            sign_all(&assertions(&run, 40, 100)[from..from + 10], k)
        };

        // signers.allowed: alice only.
        let listed = unique("allowed");
        // (Made with the CLI, as the README shows: a comma-separated list of keys.)
        let other_hex = hex_of(&key(33).verifying_key().to_bytes());
        let setting = format!("signers.allowed={alice_hex},{other_hex}");
        let args = ["topic", "create", &listed, "-p", "1", "--config", &setting];
        steme(&addr, &args, "", T).await?.success()?;
        let anon = Connection::connect(&addr, &ConnectionConfig::default()).await?;
        produce(&anon, &listed, &by(&alice, 0)?).await?;
        let r = produce(&anon, &listed, &by(&mallory, 10)?).await;
        ensure!(refused_at(&r, 0, "signers.allowed"), "{r:?}");
        // One of mallory's in the middle of alice's: the whole request is refused.
        let mut mixed = by(&alice, 20)?;
        mixed[5] = by(&mallory, 30)?.remove(0);
        let r = produce(&anon, &listed, &mixed).await;
        ensure!(refused_at(&r, 5, "signers.allowed"), "{r:?}");
        ensure!(
            high_watermarks(&addr, &listed).await? == [10],
            "records of a refused request were stored"
        );

        // signers.must_match_principal: only your own records, and you must say who you are.
        let own = unique("own");
        create_topic_with(
            &addr,
            &own,
            1,
            vec![("signers.must_match_principal".into(), "true".into())],
        )
        .await?;
        let r = produce(&anon, &own, &by(&alice, 0)?).await;
        ensure!(
            matches!(&r, Err(ClientError::Api(e)) if e.code() == ErrorCode::AuthenticationRequired),
            "{r:?}"
        );
        let as_alice = ConnectionConfig {
            auth_key: Some(AuthKey(alice.clone())),
            ..ConnectionConfig::default()
        };
        let conn = Connection::connect(&addr, &as_alice).await?;
        produce(&conn, &own, &by(&alice, 0)?).await?;
        let r = produce(&conn, &own, &by(&mallory, 10)?).await;
        ensure!(refused_at(&r, 0, "must_match_principal"), "{r:?}");
        ensure!(high_watermarks(&addr, &own).await? == [10]);

        // A bad allow-list is refused when the topic is made.
        let bad = create_topic_with(
            &addr,
            &unique("bad"),
            1,
            vec![("signers.allowed".into(), "not-a-key".into())],
        )
        .await;
        ensure!(bad.is_err(), "a malformed allow-list was accepted");
        ensure!(!broker.log_shows_panic());
        Ok(())
    })
    .await
}

/// The broker batch-verifies with one term per signer key (the `A` terms of one key are
/// summed). The attack on that: two signatures of one key, each forged, whose errors would
/// cancel in such a sum (`s + d` on one, `s - d` on the other), hidden among 1500 good
/// records of that key. Records 700 and 740 share a verification chunk (the second of
/// the first part, on one core or two, for chunks of 256 or 512), so they meet in one
/// equation. Refused, naming the first, and
/// nothing of the request stored; the same records unforged are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensating_forgeries_among_one_signers_records_are_refused() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let addr = broker.bootstrap();
    within(Duration::from_secs(90), async {
        let topic = unique("forged");
        create_topic_with(&addr, &topic, 1, vec![]).await?;
        let conn = Connection::connect(&addr, &ConnectionConfig::default()).await?;
        let records = sign_all(&assertions(&topic, 1500, 100), &key(34))?;
        let good = batch_of(&records);
        let mut forged = good.to_vec();
        let d = Scalar::from(0x5eed_u64);
        for (index, delta) in [(700, d), (740, -d)] {
            let at = {
                let batch = RecordBatch::new(good.clone())?;
                let r = batch.records().nth(index).context("record")?;
                r.signature.as_ptr() as usize - good.as_ptr() as usize + 32
            };
            let s: [u8; 32] = forged[at..at + 32].try_into()?;
            let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).context("s")?;
            forged[at..at + 32].copy_from_slice((s + delta).as_bytes());
        }
        steme_protocol::batch::reseal(&mut forged);
        let r = produce_bytes(&conn, &topic, Bytes::from(forged)).await;
        ensure!(refused_at(&r, 700, "signature"), "{r:?}");
        ensure!(
            high_watermarks(&addr, &topic).await? == [0],
            "records of a refused request were stored"
        );
        produce_bytes(&conn, &topic, good).await?;
        ensure!(high_watermarks(&addr, &topic).await? == [1500]);
        ensure!(!broker.log_shows_panic());
        Ok(())
    })
    .await
}

/// A public key as hex (its `key:` principal without the prefix).
fn hex_of(public_key: &[u8; 32]) -> String {
    key_principal(public_key)["key:".len()..].to_owned()
}
