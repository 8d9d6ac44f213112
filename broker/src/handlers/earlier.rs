//! Dedup across a topic's growth: a record produced to a partition may already be stored in
//! an older partition of its subject, from before the topic grew and the subject moved
//! (`broker/SPLITS.md`). Dedup is per partition, so the produce path asks each such old
//! partition — its replica here if there is one, else any replica over the peer plane —
//! whether it holds the record's id below its split point, where its log never changes.
//! A record found is acknowledged where it is, and not stored again.

use std::collections::BTreeMap;
use std::time::Duration;

use steme_protocol::assertion::subject_of;
use steme_protocol::messages::produce::Existing;
use steme_protocol::{
    ApiError, AssertionId, ErrorCode, RecordBatch, jump_consistent_hash, subject_key,
};

use crate::metadata::TopicMeta;
use crate::node::Broker;

/// How long one remote lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// For each record of `batch` (produced to `partition`), where it already is in an older
/// partition of its subject, if it is. Empty when the topic never grew.
pub async fn earlier_copies(
    broker: &Broker,
    t: &TopicMeta,
    partition: u32,
    batch: &RecordBatch,
    ids: &[AssertionId],
) -> Result<Vec<Option<Existing>>, ApiError> {
    if t.splits.is_empty() {
        return Ok(Vec::new());
    }
    // (old partition, its split point) -> the records to look for there.
    let mut asks: BTreeMap<(u32, u64), Vec<usize>> = BTreeMap::new();
    for (i, r) in batch.records().enumerate() {
        let Ok(subject) = subject_of(r.assertion) else {
            continue;
        };
        let key = subject_key(subject);
        for s in &t.splits {
            let (old, new) = (
                jump_consistent_hash(key, s.from),
                jump_consistent_hash(key, s.to),
            );
            if old == new || old == partition {
                continue;
            }
            let Some(point) = s.points.get(old as usize).copied().flatten() else {
                continue;
            };
            asks.entry((old, point.offset)).or_default().push(i);
        }
    }
    let mut out = vec![None; ids.len()];
    for ((old, below), records) in asks {
        let wanted: Vec<[u8; 32]> = records.iter().map(|&i| ids[i].0).collect();
        let found = lookup(broker, t, old, below, wanted).await?;
        for (k, offset, hlc) in found {
            if let Some(&i) = records.get(k as usize) {
                out[i] = Some(Existing {
                    offset,
                    hlc,
                    partition: Some(old),
                });
            }
        }
    }
    Ok(out)
}

/// Asks a replica of `old` (this broker's first) which of `ids` it holds below `below`.
async fn lookup(
    broker: &Broker,
    t: &TopicMeta,
    old: u32,
    below: u64,
    ids: Vec<[u8; 32]>,
) -> Result<Vec<(u32, u64, u64)>, ApiError> {
    let mut why = Vec::new();
    if let Ok(p) = broker.partition(&t.name, old) {
        match p.lookup_below(below, &ids) {
            Ok(found) => return Ok(found),
            Err(e) => why.push(format!("here: {e}")),
        }
    }
    let meta = t
        .partitions
        .get(old as usize)
        .ok_or_else(|| ApiError::other(ErrorCode::Internal, "split of an unknown partition"))?;
    for node in meta.hosts().into_iter().filter(|&n| n != broker.node_id()) {
        let asked = broker
            .transport()
            .lookup_ids(node, meta.group, below, ids.clone(), LOOKUP_TIMEOUT)
            .await;
        match asked {
            Ok(found) => return Ok(found),
            Err(e) => why.push(format!("broker {node}: {e}")),
        }
    }
    Err(ApiError::other(
        ErrorCode::NotEnoughReplicas,
        format!(
            "cannot tell whether records were stored in {}-{old} before the topic grew (no \
             replica answered: {}); retry",
            t.name,
            why.join("; ")
        ),
    ))
}
