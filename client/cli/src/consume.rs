//! `steme consume TOPIC`: one JSON line per record.
//!
//! Without `--follow`, each partition is read up to its high watermark as of the start, and
//! the command ends when every partition is there. A range an operator skipped (given up:
//! damaged on every replica) is named on stderr with the record of the skip, and passed.
//!
//! Reading every partition, each subject comes out in HLC order across partition splits:
//! a partition created by a split is not read until every old partition of the split has
//! been read past its split point (`gate`). With `--follow` the topic's metadata is looked
//! at every second, and partitions added meanwhile are read from their start, behind the
//! same gates. One partition asked for with `--partition` is read as it is.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use steme_client::{ClientError, Consumer, ConsumerConfig};
use tokio::time::Instant;

use crate::args::ConsumeArgs;

mod gate;

use gate::SplitGates;

/// How often `--follow` looks for partitions added to the topic and split points recorded.
const METADATA_REFRESH: Duration = Duration::from_secs(1);

pub use steme_client::json::RecordLine;

pub async fn run(bootstrap: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    if args.group.is_some() {
        return crate::group::consume(bootstrap, args).await;
    }
    let config = ConsumerConfig {
        start: args.from,
        verify: args.verify,
        ..crate::consumer_config()
    };
    let mut consumer = Consumer::connect(bootstrap, config)
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    // One partition asked for is read as it is; every partition is read behind split gates.
    let mut gates = None;
    let partitions = match args.partition {
        Some(p) => {
            consumer.assign(&args.topic, &[p]).await?;
            vec![p]
        }
        None => {
            let meta = consumer.topic_metadata(&args.topic).await?;
            let g = SplitGates::new(meta);
            let all = g.partitions();
            consumer.assign(&args.topic, &all).await?;
            gates = Some(g);
            all
        }
    };
    for &p in &partitions {
        consumer
            .seek(p, args.from)
            .await
            .with_context(|| format!("cannot find where to start in partition {p}"))?;
    }
    // Without --follow: where each partition ends, as of now.
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    if !args.follow {
        for &p in &partitions {
            let end = consumer
                .fetch_high_watermark(p)
                .await
                .with_context(|| format!("cannot read the high watermark of partition {p}"))?;
            if consumer.position(p).is_some_and(|pos| pos < end) {
                ends.insert(p, end);
            } else {
                consumer.pause(p)?;
            }
        }
        if ends.is_empty() {
            return Ok(());
        }
    }
    if let Some(g) = &mut gates {
        // Those with nothing to read are paused already, and stay so.
        let to_read: Vec<u32> = match args.follow {
            true => partitions.clone(),
            false => ends.keys().copied().collect(),
        };
        g.hold_closed(&mut consumer, &to_read)?;
    }

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let max = args.max.unwrap_or(u64::MAX);
    if max == 0 {
        return Ok(());
    }
    let mut refreshed_at = Instant::now();
    loop {
        let records = match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => records,
            // An operator gave the range up: said on stderr, then on past it.
            Err(e @ ClientError::SkippedData { .. }) => {
                out.flush()?;
                eprintln!("warning: {e}");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        for r in &records {
            if !args.follow {
                match ends.get(&r.partition()) {
                    Some(&end) if r.offset() < end => {}
                    _ => continue,
                }
            }
            serde_json::to_writer(&mut out, &RecordLine::new(r)?)?;
            out.write_all(b"\n")?;
            printed += 1;
            if printed >= max {
                out.flush()?;
                return Ok(());
            }
        }
        out.flush()?;
        if !args.follow {
            consumer.pause_reached(&mut ends)?;
        }
        if let Some(g) = &mut gates {
            if args.follow && refreshed_at.elapsed() >= METADATA_REFRESH {
                refreshed_at = Instant::now();
                // Partitions added since, and split points recorded since. A failure is
                // tried again at the next refresh; reading goes on meanwhile.
                match consumer.topic_metadata(&args.topic).await {
                    Ok(meta) => g.update(&mut consumer, meta)?,
                    Err(e) => tracing::debug!(error = %e, "metadata refresh failed"),
                }
            }
            g.release_open(&mut consumer)?;
            if !args.follow && !ends.is_empty() && ends.keys().all(|p| g.held().contains(p)) {
                anyhow::bail!(
                    "partitions {:?} wait for split points that the partitions they split \
                     from do not reach by their high watermarks",
                    g.held()
                );
            }
        }
        if !args.follow && ends.is_empty() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use steme_client::{Assertion, SigningKey, Value};
    use steme_protocol::BatchBuilder;
    use steme_protocol::batch::patch_header;

    #[test]
    fn record_line_has_position_signer_fields_and_signature() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let a = Assertion {
            subject: "urn:s".into(),
            predicate: "p".into(),
            object: Value::Ref("urn:o".into()),
            source: "src".into(),
            confidence: Some(0.5),
            supersedes: None,
            issued_at: 77,
        };
        let signed = a.sign(&key).unwrap();
        let mut b = BatchBuilder::default();
        b.push(&signed);
        let mut bytes = b.finish().to_vec();
        // 2026-11-29T10:00:00Z plus half a second, logical counter 3.
        let hlc = (1_795_946_400u64 << 32) + (1 << 31) + 3;
        patch_header(&mut bytes, 40, hlc, 1);
        let mut recs = Vec::new();
        steme_client::consumer::records_from(&"t".into(), 3, 40, &Bytes::from(bytes), &mut recs)
            .unwrap();
        let line = serde_json::to_value(RecordLine::new(&recs[0]).unwrap()).unwrap();
        let expect = serde_json::json!({
            "partition": 3,
            "offset": 40,
            "hlc": hlc,
            "time": "2026-11-29T10:00:00.500000000Z",
            "logical": 3,
            "id": signed.id().to_hex(),
            "signer": hex::encode(key.verifying_key().to_bytes()),
            "subject": "urn:s",
            "predicate": "p",
            "object": {"ref": "urn:o"},
            "source": "src",
            "confidence": 0.5,
            "issued_at": 77,
            "signature": hex::encode(signed.signature().to_bytes()),
        });
        assert_eq!(line, expect);
        // Field order on the line: position first, signature last.
        let text = serde_json::to_string(&RecordLine::new(&recs[0]).unwrap()).unwrap();
        assert!(text.starts_with(&format!(
            r#"{{"partition":3,"offset":40,"hlc":{hlc},"time":"2026-11-29T10:00:00.500000000Z","logical":3,"id":"#
        )));
        assert!(text.contains(r#""signature":""#) && text.ends_with("\"}"));
        assert!(
            !text.contains("supersedes"),
            "absent optional fields are omitted"
        );
    }
}
