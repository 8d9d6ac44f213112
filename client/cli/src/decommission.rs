//! `steme cluster decommission`: retires a broker (DecommissionBroker). It becomes
//! *draining*; the cluster moves every replica off it, then it becomes *removed*. Unless
//! `--no-wait`, the metadata is read until then, with the partitions still on it counted
//! on stderr.

use std::time::Duration;

use anyhow::Context;
use steme_client::Admin;
use steme_client::admin::{BrokerState, MetadataResponse};

use crate::args::DecommissionArgs;
use crate::output::json_line;
use crate::watch::{Step, watch};

pub async fn run(bootstrap: &str, a: DecommissionArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let id = a.node_id;
    let recorded = admin
        .decommission_broker(id)
        .await
        .with_context(|| format!("cannot decommission broker {id}"))?;
    if a.json {
        json_line(&serde_json::json!({
            "node_id": recorded.node_id,
            "state": recorded.state.name(),
        }))?;
    } else if recorded.state == BrokerState::Removed {
        println!("broker {id} is removed (nothing left on it)");
    } else {
        println!(
            "broker {id} is {}: its replicas move to other brokers",
            recorded.state
        );
    }
    if recorded.state == BrokerState::Removed {
        return Ok(());
    }
    if a.no_wait {
        if !a.json {
            eprintln!(
                "not waiting: follow it with `steme cluster status` (the broker shows \
                 `removed` once empty)"
            );
        }
        return Ok(());
    }
    let waited = watch(
        &admin,
        None,
        Duration::from_secs(a.timeout),
        &format!("decommissioning broker {id}"),
        |meta| Ok(progress(meta, id)),
    )
    .await?;
    if a.json {
        json_line(&serde_json::json!({
            "node_id": id,
            "state": BrokerState::Removed.name(),
            "elapsed_ms": u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        }))?;
    } else {
        println!("broker {id} is removed, after {:.1}s", waited.as_secs_f64());
    }
    Ok(())
}

/// Whether broker `id` is removed yet, and if not how many partitions still have a replica
/// or a target on it. A broker the metadata no longer lists is gone, as good as removed.
fn progress(meta: &MetadataResponse, id: u64) -> Step {
    let Some(broker) = meta.broker(id) else {
        return Step::Done;
    };
    if broker.state == BrokerState::Removed {
        return Step::Done;
    }
    let on_it = meta
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.replicas.contains(&id) || p.target.as_ref().is_some_and(|t| t.contains(&id)))
        .count();
    Step::Waiting(format!(
        "broker {id} is {}: {on_it} partition(s) still have a replica or target on it",
        broker.state
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_client::admin::{BrokerInfo, PartitionMetadata, TopicMetadata};

    fn partition(
        partition: u32,
        replicas: Vec<u64>,
        target: Option<Vec<u64>>,
    ) -> PartitionMetadata {
        PartitionMetadata {
            partition,
            leader: replicas.first().copied(),
            leader_epoch: 1,
            replicas,
            target,
        }
    }

    fn meta(state: BrokerState) -> MetadataResponse {
        MetadataResponse {
            brokers: [1, 2, 3, 4]
                .into_iter()
                .map(|node_id| BrokerInfo {
                    node_id,
                    addr: format!("127.0.0.1:{node_id}"),
                    state: if node_id == 3 {
                        state
                    } else {
                        BrokerState::Active
                    },
                })
                .collect(),
            metadata_leader: Some(1),
            topics: vec![TopicMetadata {
                name: "facts".into(),
                partitions: vec![
                    // Moving off 3.
                    partition(0, vec![1, 2, 3], Some(vec![1, 2, 4])),
                    // Not yet moving.
                    partition(1, vec![3, 1, 2], None),
                    // Not on 3.
                    partition(2, vec![1, 2, 4], None),
                ],
                map_epoch: 0,
                splits: vec![],
            }],
        }
    }

    #[test]
    fn counts_the_partitions_still_on_a_draining_broker() {
        let Step::Waiting(line) = progress(&meta(BrokerState::Draining), 3) else {
            panic!("a draining broker is not done")
        };
        assert_eq!(
            line,
            "broker 3 is draining: 2 partition(s) still have a replica or target on it"
        );
        // A target on the broker counts too (it was moving onto it when it started to drain).
        let mut m = meta(BrokerState::Draining);
        m.topics[0].partitions[2].target = Some(vec![3, 2, 4]);
        assert!(matches!(progress(&m, 3), Step::Waiting(l) if l.contains(": 3 partition(s)")));
    }

    #[test]
    fn a_removed_or_unlisted_broker_is_done() {
        assert_eq!(progress(&meta(BrokerState::Removed), 3), Step::Done);
        assert_eq!(progress(&meta(BrokerState::Draining), 9), Step::Done);
    }
}
