//! `steme topic add-partitions`: grows a topic (AddPartitions) and, unless `--no-wait`,
//! reads the metadata until every old partition has recorded its split point, when the new
//! partitions take records. Also the map epoch and split points `topic describe` shows.

use std::fmt::Write;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use steme_client::Admin;
use steme_client::admin::{MetadataResponse, SplitInfo, SplitPoint, TopicMetadata};

use crate::args::AddPartitionsArgs;
use crate::output::json_line;
use crate::watch::{Step, watch};

pub async fn run(admin: &Admin, a: AddPartitionsArgs) -> anyhow::Result<()> {
    let topic = &a.topic;
    let recorded = admin
        .add_partitions(topic, a.count)
        .await
        .with_context(|| format!("cannot grow topic {topic:?} to {} partitions", a.count))?;
    if a.json {
        json_line(&serde_json::json!({
            "topic": recorded.topic,
            "map_epoch": recorded.map_epoch,
            "partitions": recorded.partitions,
        }))?;
    } else {
        println!(
            "topic {} has {} partitions, map epoch {}",
            recorded.topic, recorded.partitions, recorded.map_epoch
        );
    }
    if a.no_wait {
        if !a.json {
            eprintln!(
                "not waiting: `steme topic describe {topic}` shows each split point once \
                 recorded"
            );
        }
        return Ok(());
    }
    let topics = [topic.clone()];
    let waited = watch(
        admin,
        Some(&topics),
        Duration::from_secs(a.timeout),
        &format!("splitting topic {topic}"),
        |meta| progress(meta, topic, recorded.map_epoch),
    )
    .await?;
    if a.json {
        json_line(&serde_json::json!({
            "topic": recorded.topic,
            "map_epoch": recorded.map_epoch,
            "partitions": recorded.partitions,
            "sealed": true,
            "elapsed_ms": u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        }))?;
    } else {
        println!(
            "topic {topic}: every split point recorded after {:.1}s; all {} partitions take \
             records",
            waited.as_secs_f64(),
            recorded.partitions
        );
    }
    Ok(())
}

/// Whether the split of map epoch `epoch` has every split point recorded. A topic that
/// never grew (epoch 0) has nothing to wait for; one the metadata leader does not show at
/// that epoch yet is waited for, and one it no longer lists is an error.
fn progress(meta: &MetadataResponse, topic: &str, epoch: u64) -> anyhow::Result<Step> {
    let t = meta
        .topics
        .iter()
        .find(|t| t.name == topic)
        .with_context(|| format!("topic {topic:?} is gone"))?;
    if epoch == 0 {
        return Ok(Step::Done);
    }
    let Some(split) = t.splits.iter().find(|s| s.epoch == epoch) else {
        return Ok(Step::Waiting(format!(
            "{topic}: the metadata leader is at map epoch {}, not yet {epoch}",
            t.map_epoch
        )));
    };
    if split.sealed() {
        return Ok(Step::Done);
    }
    let recorded = split.points.iter().flatten().count();
    Ok(Step::Waiting(format!(
        "{topic}: growing from {} to {} partitions, {recorded} of {} split points recorded",
        split.from, split.to, split.from
    )))
}

/// What `topic describe` prints about the topic's map: its epoch and, per split, each old
/// partition's split point or `pending`.
pub fn splits_text(t: &TopicMetadata) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "map epoch {}", t.map_epoch);
    for s in &t.splits {
        let state = if s.sealed() { "sealed" } else { "pending" };
        let _ = writeln!(
            out,
            "  split at epoch {}: {} -> {} partitions ({state})",
            s.epoch, s.from, s.to
        );
        for (p, point) in s.points.iter().enumerate() {
            match point {
                Some(SplitPoint { offset, hlc }) => {
                    let _ = writeln!(out, "    partition {p}: offset {offset}, hlc {hlc}");
                }
                None => {
                    let _ = writeln!(out, "    partition {p}: pending");
                }
            }
        }
    }
    out
}

/// One split as `topic describe --json` gives it: `points` has one entry per old
/// partition, in order, `null` until recorded.
#[derive(Debug, Serialize)]
pub struct SplitJson {
    epoch: u64,
    from: u32,
    to: u32,
    sealed: bool,
    points: Vec<Option<SplitPoint>>,
}

impl From<&SplitInfo> for SplitJson {
    fn from(s: &SplitInfo) -> Self {
        SplitJson {
            epoch: s.epoch,
            from: s.from,
            to: s.to,
            sealed: s.sealed(),
            points: s.points.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(points: Vec<Option<SplitPoint>>) -> TopicMetadata {
        TopicMetadata {
            name: "facts".into(),
            partitions: vec![],
            map_epoch: 1,
            splits: vec![SplitInfo {
                epoch: 1,
                from: 2,
                to: 5,
                points,
            }],
        }
    }

    fn meta(t: TopicMetadata) -> MetadataResponse {
        MetadataResponse {
            brokers: vec![],
            metadata_leader: Some(1),
            topics: vec![t],
        }
    }

    const POINT: SplitPoint = SplitPoint {
        offset: 42,
        hlc: 7000,
    };

    #[test]
    fn waits_until_every_split_point_is_recorded() -> anyhow::Result<()> {
        let half = meta(topic(vec![Some(POINT), None]));
        assert_eq!(
            progress(&half, "facts", 1)?,
            Step::Waiting(
                "facts: growing from 2 to 5 partitions, 1 of 2 split points recorded".into()
            )
        );
        let all = meta(topic(vec![Some(POINT), Some(POINT)]));
        assert_eq!(progress(&all, "facts", 1)?, Step::Done);
        // A metadata leader not yet at the recorded epoch is waited for.
        assert!(matches!(progress(&all, "facts", 2)?, Step::Waiting(l) if l.contains("not yet 2")));
        // A topic that never grew has nothing to wait for; a topic gone is an error.
        assert_eq!(progress(&all, "facts", 0)?, Step::Done);
        assert!(progress(&all, "other", 1).is_err());
        Ok(())
    }

    #[test]
    fn describe_shows_each_split_point_or_pending() -> anyhow::Result<()> {
        let t = topic(vec![Some(POINT), None]);
        let text = splits_text(&t);
        assert!(text.starts_with("map epoch 1\n"), "{text}");
        assert!(
            text.contains("  split at epoch 1: 2 -> 5 partitions (pending)\n"),
            "{text}"
        );
        assert!(
            text.contains("    partition 0: offset 42, hlc 7000\n"),
            "{text}"
        );
        assert!(text.contains("    partition 1: pending\n"), "{text}");
        let json = serde_json::to_value(SplitJson::from(&t.splits[0]))?;
        assert_eq!(
            json,
            serde_json::json!({
                "epoch": 1, "from": 2, "to": 5, "sealed": false,
                "points": [{"offset": 42, "hlc": 7000}, null],
            })
        );
        Ok(())
    }
}
