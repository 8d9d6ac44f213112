//! The `serde` feature of `steme-client`, as an application sees it: records and acks to
//! JSON (this crate enables the feature, so `cargo test --workspace` builds the impls).

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use steme_client::consumer::records_from;
use steme_client::{Ack, Assertion, Record, SigningKey};
use steme_protocol::BatchBuilder;
use steme_protocol::batch::patch_header;

#[test]
fn records_and_acks_serialise_to_json_with_their_keys() -> anyhow::Result<()> {
    let signed = Assertion::builder("urn:person:ada", "born")
        .object(1815)
        .source("wikipedia")
        .build()?
        .sign(&SigningKey::from_bytes(&[4; 32]))?;
    let mut batch = BatchBuilder::default();
    batch.push(&signed);
    let mut bytes = batch.finish().to_vec();
    patch_header(&mut bytes, 40, 7_713_603_779_369_791_536, 1);
    let mut records: Vec<Record> = Vec::new();
    records_from(
        &Arc::from("facts"),
        3,
        40,
        &Bytes::from(bytes),
        &mut records,
    )?;
    let record = records.first().context("one record")?;

    let v = serde_json::to_value(record)?;
    assert_eq!(v["topic"], "facts");
    assert_eq!(v["partition"], 3);
    assert_eq!(v["offset"], 40);
    assert_eq!(v["hlc"], 7_713_603_779_369_791_536u64);
    assert_eq!(v["id"], signed.id().to_hex());
    assert_eq!(v["assertion"]["subject"], "urn:person:ada");
    assert_eq!(v["assertion"]["object"], 1815);

    let ack = Ack {
        id: signed.id(),
        partition: 3,
        offset: 40,
        hlc: 7_713_603_779_369_791_536,
        duplicate: false,
    };
    let json = serde_json::to_string(&ack)?;
    assert_eq!(
        json,
        format!(
            r#"{{"id":"{}","partition":3,"offset":40,"hlc":7713603779369791536,"duplicate":false}}"#,
            signed.id()
        )
    );
    assert_eq!(serde_json::from_str::<Ack>(&json)?, ack);
    Ok(())
}
