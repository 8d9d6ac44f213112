//! `steme cluster health`: the cluster's state as one exit code, for scripts and probes
//! (D13). Healthy means every broker the metadata lists answers, and every partition has
//! a leader, no offline replica, and every replica in sync with its leader. Each problem
//! is named; `--json` prints the same as one document.
//!
//! Removed brokers (decommissioned) are gone: not asked, not listed, not a problem. A
//! draining broker is asked like an active one. A moving partition's joining replicas
//! (learners catching up) are not yet replicas: their lag is no problem.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use steme_client::Admin;
use steme_client::admin::BrokerState;
use steme_protocol::messages::api_versions::ApiVersionsRequest;

use crate::cluster::{PartitionStatus, Status, collect};

/// How long one broker may take to answer the reachability probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The verdict.
#[derive(Debug, Serialize)]
struct Health {
    healthy: bool,
    brokers: Vec<BrokerHealth>,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct BrokerHealth {
    node_id: u64,
    addr: String,
    /// `joining`, `active` or `draining` (removed brokers are not listed).
    state: &'static str,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One thing wrong, by kind: `unreachable_broker`, `leaderless`, `offline`,
/// `under_replicated`.
#[derive(Debug, Serialize)]
struct Problem {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<u32>,
    detail: String,
}

pub async fn run(bootstrap: &str, json: bool) -> anyhow::Result<()> {
    let mut status = collect(bootstrap, &[]).await?;
    probe(bootstrap, &mut status).await?;
    let health = judge(&status);
    if json {
        println!("{}", serde_json::to_string_pretty(&health)?);
    } else {
        for p in &health.problems {
            println!("{}", describe(p));
        }
        if health.healthy {
            println!(
                "healthy: {} broker(s) reachable, every partition led and in sync",
                health.brokers.len()
            );
        }
    }
    if !health.healthy {
        anyhow::bail!("cluster unhealthy: {} problem(s)", health.problems.len());
    }
    Ok(())
}

/// Asks every broker not already known unreachable, nor removed, for its API versions.
async fn probe(bootstrap: &str, status: &mut Status) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let req = ApiVersionsRequest {
        client_name: "steme-cli".into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
    };
    for b in status
        .brokers
        .iter_mut()
        .filter(|b| b.error.is_none() && b.state != BrokerState::Removed)
    {
        let answer = async {
            let conn = admin.cluster().connection(&b.addr).await?;
            conn.call(&req, PROBE_TIMEOUT).await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => b.error = Some(e.to_string()),
            Err(_) => b.error = Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }
    Ok(())
}

fn judge(s: &Status) -> Health {
    let mut problems = Vec::new();
    let listed = || s.brokers.iter().filter(|b| b.state != BrokerState::Removed);
    let unreachable = |id: u64| listed().any(|b| b.node_id == id && b.error.is_some());
    for b in listed().filter(|b| b.error.is_some()) {
        problems.push(Problem {
            kind: "unreachable_broker",
            node_id: Some(b.node_id),
            topic: None,
            partition: None,
            detail: b.error.clone().unwrap_or_default(),
        });
    }
    for t in &s.topics {
        for p in &t.partitions {
            if let Some((kind, detail)) = partition_problem(p, &unreachable) {
                problems.push(Problem {
                    kind,
                    node_id: None,
                    topic: Some(t.name.clone()),
                    partition: Some(p.partition),
                    detail,
                });
            }
        }
    }
    Health {
        healthy: problems.is_empty(),
        brokers: listed()
            .map(|b| BrokerHealth {
                node_id: b.node_id,
                addr: b.addr.clone(),
                state: b.state.name(),
                reachable: b.error.is_none(),
                error: b.error.clone(),
            })
            .collect(),
        problems,
    }
}

/// What is wrong with one partition, the worst first: no replica serving it (offline), no
/// leader, or replicas out of sync, unreachable or offline (under-replicated). Joining
/// replicas of a moving partition are left out: they are still catching up.
fn partition_problem(
    p: &PartitionStatus,
    unreachable: &dyn Fn(u64) -> bool,
) -> Option<(&'static str, String)> {
    let voters = || {
        p.replicas
            .iter()
            .filter(|r| r.reassignment != Some("joining"))
    };
    let serving: Vec<u64> = voters()
        .filter(|r| !unreachable(r.node_id) && r.offline.is_none() && r.log_end_offset.is_some())
        .map(|r| r.node_id)
        .collect();
    if serving.is_empty() {
        return Some(("offline", "no replica is serving".to_owned()));
    }
    let leader = p.leader.filter(|&l| serving.contains(&l));
    let Some(leader) = leader else {
        return Some((
            "leaderless",
            match p.leader {
                Some(l) => format!("its last known leader, broker {l}, is not serving"),
                None => "no replica knows a leader".to_owned(),
            },
        ));
    };
    let mut behind = Vec::new();
    for r in voters() {
        let why = if unreachable(r.node_id) {
            Some("unreachable".to_owned())
        } else if let Some(why) = &r.offline {
            Some(format!("offline: {why}"))
        } else if p
            .in_sync
            .as_ref()
            .is_some_and(|isr| !isr.contains(&r.node_id))
        {
            Some("out of sync with the leader".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            behind.push(format!("broker {} {why}", r.node_id));
        }
    }
    (!behind.is_empty()).then(|| {
        (
            "under_replicated",
            format!("leader {leader}; {}", behind.join(", ")),
        )
    })
}

fn describe(p: &Problem) -> String {
    match (&p.topic, p.partition, p.node_id) {
        (Some(t), Some(part), _) => format!("{}: {t}/{part}: {}", p.kind, p.detail),
        (_, _, Some(id)) => format!("{}: broker {id}: {}", p.kind, p.detail),
        _ => format!("{}: {}", p.kind, p.detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{BrokerStatus, ReplicaStatus, TopicStatus};

    fn broker(node_id: u64, state: BrokerState, error: Option<&str>) -> BrokerStatus {
        BrokerStatus {
            node_id,
            addr: format!("127.0.0.1:{node_id}"),
            state,
            error: error.map(str::to_owned),
        }
    }

    fn replica(node_id: u64, reassignment: Option<&'static str>) -> ReplicaStatus {
        ReplicaStatus::online(node_id, 100, reassignment)
    }

    fn status(brokers: Vec<BrokerStatus>, partition: PartitionStatus) -> Status {
        Status::new(
            Some(1),
            brokers,
            vec![TopicStatus {
                name: "facts".into(),
                partitions: vec![partition],
            }],
        )
    }

    fn partition(replicas: Vec<ReplicaStatus>, in_sync: Vec<u64>) -> PartitionStatus {
        PartitionStatus::led(0, 1, in_sync, replicas)
    }

    #[test]
    fn removed_brokers_are_no_problem_and_draining_ones_are_fine() {
        let s = status(
            vec![
                broker(1, BrokerState::Active, None),
                broker(2, BrokerState::Draining, None),
                broker(3, BrokerState::Removed, None),
            ],
            partition(vec![replica(1, None), replica(2, None)], vec![1, 2]),
        );
        let health = judge(&s);
        assert!(health.healthy, "{:?}", health.problems);
        let listed: Vec<(u64, &str)> = health
            .brokers
            .iter()
            .map(|b| (b.node_id, b.state))
            .collect();
        assert_eq!(listed, [(1, "active"), (2, "draining")]);
    }

    #[test]
    fn an_unreachable_draining_broker_is_still_a_problem() {
        let s = status(
            vec![
                broker(1, BrokerState::Active, None),
                broker(2, BrokerState::Draining, Some("connection refused")),
            ],
            partition(vec![replica(1, None), replica(2, None)], vec![1, 2]),
        );
        let health = judge(&s);
        let kinds: Vec<&str> = health.problems.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["unreachable_broker", "under_replicated"]);
    }

    #[test]
    fn a_joining_replica_catching_up_is_no_problem() {
        // Moving [1,2] to [1,3]: 3 is a learner, not yet in sync; 2 still is.
        let s = status(
            vec![
                broker(1, BrokerState::Active, None),
                broker(2, BrokerState::Active, None),
                broker(3, BrokerState::Active, None),
            ],
            partition(
                vec![
                    replica(1, None),
                    replica(2, Some("leaving")),
                    replica(3, Some("joining")),
                ],
                vec![1, 2],
            ),
        );
        let health = judge(&s);
        assert!(health.healthy, "{:?}", health.problems);
        // A leaving replica out of sync is, as any voter is.
        let s = status(
            vec![broker(1, BrokerState::Active, None)],
            partition(
                vec![
                    replica(1, None),
                    replica(2, Some("leaving")),
                    replica(3, Some("joining")),
                ],
                vec![1],
            ),
        );
        let health = judge(&s);
        assert_eq!(health.problems.len(), 1, "{:?}", health.problems);
        assert!(health.problems[0].detail.contains("broker 2 out of sync"));
    }
}
