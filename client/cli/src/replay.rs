//! `steme replay`: the raw record batches of an offset range, byte for byte, to a file.
//!
//! Batches are written whole (cutting one would change its bytes), so the file starts with
//! the batch that holds `--from` and ends with the one that holds `--to - 1`; the summary
//! names the offsets the file actually covers.
//!
//! Batches that do not continue the log (a gap, an overlap), a damaged range (`CorruptData`
//! or, given up by an operator, `SkippedData`: replay from its end to go on)
//! or fetches that keep coming back empty below the high watermark end the replay with an
//! error (the file then holds the continuous run before it), never with a file that
//! silently lacks them.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use steme_client::admin::OffsetSpec;
use steme_client::consumer::continuous_batches;
use steme_client::{Admin, Backoff, ClientError};
use steme_protocol::messages::fetch::FetchRequest;
use steme_protocol::{BatchHeader, RecordBatch};

use crate::args::ReplayArgs;

/// Empty answers in a row below the high watermark that are retried (with backoff) before
/// the replay fails.
const STALLED_FETCH_RETRIES: u32 = 4;

/// What a replay wrote (and what `replay-inspect` read back).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    pub first_offset: Option<u64>,
    pub last_offset: Option<u64>,
    /// HLC of the first record written.
    pub first_hlc: Option<u64>,
    /// HLC of the last record written.
    pub last_hlc: Option<u64>,
}

impl Summary {
    /// Adds `batch` if it overlaps `[from, to)`; returns whether it did.
    pub fn take(&mut self, batch: &RecordBatch, from: u64, to: u64) -> bool {
        if batch.end_offset() <= from || batch.base_offset() >= to {
            return false;
        }
        self.add(batch.header());
        true
    }

    /// Counts a batch of `header`'s size and records.
    pub fn add(&mut self, header: &BatchHeader) {
        self.batches += 1;
        self.records += u64::from(header.record_count);
        self.bytes += u64::from(header.length);
        self.first_offset.get_or_insert(header.base_offset);
        self.first_hlc.get_or_insert(header.base_hlc);
        self.last_offset = Some(header.end_offset().saturating_sub(1));
        self.last_hlc = Some(header.last_hlc());
    }

    /// The summary as one JSON object: counts, offsets and times (absent when empty).
    pub fn to_json(&self) -> serde_json::Value {
        let time = |hlc: Option<u64>| hlc.map(crate::time::format_rfc3339);
        serde_json::json!({
            "batches": self.batches,
            "records": self.records,
            "bytes": self.bytes,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "first_hlc": self.first_hlc,
            "last_hlc": self.last_hlc,
            "first_time": time(self.first_hlc),
            "last_time": time(self.last_hlc),
        })
    }

    /// `offsets A..=B, stamped T1 to T2` (times in RFC 3339), or `None` when empty.
    pub fn span(&self) -> Option<String> {
        let (first, last) = self.first_offset.zip(self.last_offset)?;
        let (t1, t2) = self.first_hlc.zip(self.last_hlc)?;
        Some(format!(
            "offsets {first}..={last}, stamped {} to {}",
            crate::time::format_rfc3339(t1),
            crate::time::format_rfc3339(t2)
        ))
    }
}

pub async fn run(bootstrap: &str, args: ReplayArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let (topic, partition) = (args.topic.as_str(), args.partition);
    let bounds = admin
        .list_offsets(topic, partition, OffsetSpec::Latest)
        .await
        .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
    let end = match args.to {
        Some(to) if to > bounds.high_watermark => {
            eprintln!(
                "steme: note: --to {to} is beyond the high watermark {}; stopping there",
                bounds.high_watermark
            );
            bounds.high_watermark
        }
        Some(to) => to,
        None => bounds.high_watermark,
    };
    if args.from < bounds.log_start_offset {
        bail!(
            "offset {} of {topic}/{partition} is no longer retained (the log starts at {})",
            args.from,
            bounds.log_start_offset
        );
    }
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);

    let bar = ProgressBar::new(end.saturating_sub(args.from));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    let mut summary = Summary::default();
    let mut offset = args.from;
    let timeout = Duration::from_secs(30);
    // Empty answers in a row at `offset`, below `end` (so below the high watermark).
    let mut empty_answers = 0u32;
    while offset < end {
        let req = FetchRequest {
            topic: topic.to_owned(),
            partition,
            offset,
            max_bytes: 4 << 20,
            max_wait_ms: 100,
        };
        let resp = match admin
            .cluster()
            .call_leader(topic, partition, &req, timeout)
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_retriable() => {
                tracing::debug!(error = %e, "replay fetch failed, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => {
                return Err(e).context(format!("cannot fetch {topic}/{partition} at {offset}"));
            }
        };
        let before = offset;
        for batch in continuous_batches(topic, partition, offset, &resp.records) {
            let batch = batch?;
            if summary.take(&batch, args.from, end) {
                out.write_all(batch.as_bytes())
                    .with_context(|| format!("cannot write {}", args.out.display()))?;
            }
            offset = batch.end_offset();
        }
        if offset > before {
            empty_answers = 0;
        } else {
            // No whole batch came although `offset` is below the high watermark.
            empty_answers += 1;
            if empty_answers > STALLED_FETCH_RETRIES {
                return Err(ClientError::FetchStalled {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    high_watermark: resp.high_watermark,
                    empty_answers,
                }
                .into());
            }
            tokio::time::sleep(Backoff::default().delay(empty_answers - 1)).await;
        }
        bar.set_position(offset.min(end) - args.from);
    }
    out.flush()
        .and_then(|()| out.get_ref().sync_all())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    bar.finish_and_clear();
    if args.json {
        let mut line = summary.to_json();
        line["topic"] = topic.into();
        line["partition"] = partition.into();
        line["file"] = args.out.display().to_string().into();
        return crate::output::json_line(&line);
    }
    match summary.span() {
        Some(span) => println!(
            "replayed {} records in {} batches ({} bytes) of {topic}/{partition}, {span}, to {}",
            summary.records,
            summary.batches,
            summary.bytes,
            args.out.display()
        ),
        None => println!(
            "no records in {topic}/{partition} from {} to {end}; wrote an empty {}",
            args.from,
            args.out.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use steme_client::{Assertion, SigningKey, Value};
    use steme_protocol::BatchBuilder;
    use steme_protocol::batch::patch_header;

    fn batch(base: u64, n: u64) -> RecordBatch {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut b = BatchBuilder::default();
        for i in 0..n {
            let a = Assertion {
                subject: format!("s{}", base + i),
                predicate: "p".into(),
                object: Value::Boolean(true),
                source: String::new(),
                confidence: None,
                supersedes: None,
                issued_at: 1,
            };
            b.push(&a.sign(&key).unwrap());
        }
        let mut bytes = b.finish().to_vec();
        patch_header(&mut bytes, base, base, 1);
        RecordBatch::new(Bytes::from(bytes)).unwrap()
    }

    #[test]
    fn summary_keeps_whole_batches_overlapping_the_range() {
        let mut s = Summary::default();
        let batches = [batch(0, 5), batch(5, 5), batch(10, 5), batch(15, 5)];
        let taken: Vec<bool> = batches.iter().map(|b| s.take(b, 7, 12)).collect();
        assert_eq!(taken, vec![false, true, true, false]);
        assert_eq!(s.records, 10);
        assert_eq!(s.batches, 2);
        assert_eq!((s.first_offset, s.last_offset), (Some(5), Some(14)));
        assert_eq!((s.first_hlc, s.last_hlc), (Some(5), Some(14)));
        let json = s.to_json();
        assert_eq!(json["records"], 10);
        assert_eq!(json["first_time"], "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            s.bytes,
            (batches[1].as_bytes().len() + batches[2].as_bytes().len()) as u64
        );
    }
}
