//! `steme partition reassign`: moves a partition to other brokers (ReassignPartition). The
//! metadata group records the move and answers; the partition's leader carries it out.
//! With `--wait`, the metadata is read until the partition has exactly the requested
//! replicas and no target.

use std::time::Duration;

use anyhow::Context;
use steme_client::Admin;
use steme_client::admin::MetadataResponse;

use crate::args::PartitionCommand;
use crate::args_admin::ReassignArgs;
use crate::output::{ids, json_line};
use crate::watch::{Step, watch};

pub async fn run(bootstrap: &str, cmd: PartitionCommand) -> anyhow::Result<()> {
    match cmd {
        PartitionCommand::Reassign(a) => reassign(bootstrap, a).await,
    }
}

async fn reassign(bootstrap: &str, a: ReassignArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let want = a.replicas.0;
    let name = format!("{}/{}", a.topic, a.partition);
    let recorded = admin
        .reassign_partition(&a.topic, a.partition, want.clone())
        .await
        .with_context(|| format!("cannot move {name} to {}", ids(&want)))?;
    if a.json {
        json_line(&serde_json::json!({
            "topic": recorded.topic,
            "partition": recorded.partition,
            "replicas": recorded.replicas,
            "target": recorded.target,
        }))?;
    } else {
        println!(
            "{}",
            describe(&name, &recorded.replicas, recorded.target.as_deref())
        );
    }
    if !a.wait {
        if !a.json && recorded.target.is_some() {
            eprintln!(
                "the move runs in the background: follow it with `steme cluster status {}`",
                a.topic
            );
        }
        return Ok(());
    }
    let topics = [a.topic.clone()];
    let waited = watch(
        &admin,
        Some(&topics),
        Duration::from_secs(a.timeout),
        &format!("moving {name} to {}", ids(&want)),
        |meta| progress(meta, &a.topic, a.partition, &want),
    )
    .await?;
    if a.json {
        json_line(&serde_json::json!({
            "topic": a.topic,
            "partition": a.partition,
            "replicas": want,
            "target": None::<Vec<u64>>,
            "done": true,
            "elapsed_ms": u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        }))?;
    } else {
        println!(
            "{name}: moved to {} in {:.1}s",
            ids(&want),
            waited.as_secs_f64()
        );
    }
    Ok(())
}

/// One sentence for what the metadata group recorded.
fn describe(name: &str, replicas: &[u64], target: Option<&[u64]>) -> String {
    match target {
        Some(target) => format!(
            "{name}: replicas {}, moving to {} (the partition's leader carries the move out)",
            ids(replicas),
            ids(target)
        ),
        None => format!("{name}: replicas {}, not moving", ids(replicas)),
    }
}

/// Whether `topic`/`partition` is done moving to `want`: exactly those replicas, in that
/// order, and no target left.
fn progress(
    meta: &MetadataResponse,
    topic: &str,
    partition: u32,
    want: &[u64],
) -> anyhow::Result<Step> {
    let p = meta
        .topic(topic)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
        .with_context(|| {
            format!("{topic}/{partition} is no longer in the metadata (was it deleted?)")
        })?;
    let name = format!("{topic}/{partition}");
    Ok(match &p.target {
        None if p.replicas == want => Step::Done,
        None => Step::Waiting(format!(
            "{name}: replicas {}, no move recorded (another reassignment may have replaced it)",
            ids(&p.replicas)
        )),
        Some(target) => {
            let joining: Vec<u64> = target
                .iter()
                .copied()
                .filter(|id| !p.replicas.contains(id))
                .collect();
            let leaving: Vec<u64> = p
                .replicas
                .iter()
                .copied()
                .filter(|id| !target.contains(id))
                .collect();
            Step::Waiting(format!(
                "{name}: replicas {}, moving to {} (joining {}, leaving {})",
                ids(&p.replicas),
                ids(target),
                ids(&joining),
                ids(&leaving)
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_client::admin::{PartitionMetadata, TopicMetadata};

    fn meta(replicas: Vec<u64>, target: Option<Vec<u64>>) -> MetadataResponse {
        MetadataResponse {
            brokers: vec![],
            metadata_leader: Some(1),
            topics: vec![TopicMetadata {
                name: "facts".into(),
                partitions: vec![PartitionMetadata {
                    partition: 3,
                    leader: Some(1),
                    leader_epoch: 2,
                    replicas,
                    target,
                }],
                map_epoch: 0,
                splits: vec![],
            }],
        }
    }

    #[test]
    fn a_move_is_done_once_the_replicas_match_and_no_target_is_left() -> anyhow::Result<()> {
        let want = [4, 2, 3];
        let moving = progress(&meta(vec![1, 2, 3], Some(vec![4, 2, 3])), "facts", 3, &want)?;
        let Step::Waiting(line) = moving else {
            panic!("a moving partition is not done: {moving:?}")
        };
        assert!(line.contains("joining [4], leaving [1]"), "{line}");
        // Promoted but the old replica not yet removed: still moving.
        let promoted = progress(
            &meta(vec![1, 2, 3, 4], Some(vec![4, 2, 3])),
            "facts",
            3,
            &want,
        )?;
        assert!(matches!(promoted, Step::Waiting(_)));
        // The same replicas in another order are not the requested preferred leader.
        let reordered = progress(&meta(vec![2, 3, 4], None), "facts", 3, &want)?;
        assert!(matches!(reordered, Step::Waiting(_)));
        assert_eq!(
            progress(&meta(vec![4, 2, 3], None), "facts", 3, &want)?,
            Step::Done
        );
        Ok(())
    }

    #[test]
    fn a_partition_gone_from_the_metadata_ends_the_wait() {
        let err = progress(&meta(vec![1], None), "facts", 9, &[1]).unwrap_err();
        assert!(err.to_string().contains("facts/9 is no longer"), "{err}");
        assert!(progress(&meta(vec![1], None), "other", 3, &[1]).is_err());
    }

    #[test]
    fn the_recorded_move_is_one_sentence() {
        assert_eq!(
            describe("facts/3", &[1, 2, 3], Some(&[4, 2, 3])),
            "facts/3: replicas [1,2,3], moving to [4,2,3] (the partition's leader carries the \
             move out)"
        );
        assert_eq!(
            describe("facts/3", &[4, 2, 3], None),
            "facts/3: replicas [4,2,3], not moving"
        );
    }
}
