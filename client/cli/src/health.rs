//! `steme cluster health`: the cluster's state as one exit code, for scripts and probes
//! (D13). Healthy means every broker the metadata lists answers, and every partition has
//! a leader, no offline replica, and every replica in sync with its leader. Each problem
//! is named; `--json` prints the same as one document.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use steme_client::Admin;
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

/// Asks every broker not already known unreachable for its API versions.
async fn probe(bootstrap: &str, status: &mut Status) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let req = ApiVersionsRequest {
        client_name: "steme-cli".into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
    };
    for b in status.brokers.iter_mut().filter(|b| b.error.is_none()) {
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
    let unreachable = |id: u64| {
        s.brokers
            .iter()
            .any(|b| b.node_id == id && b.error.is_some())
    };
    for b in s.brokers.iter().filter(|b| b.error.is_some()) {
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
        brokers: s
            .brokers
            .iter()
            .map(|b| BrokerHealth {
                node_id: b.node_id,
                addr: b.addr.clone(),
                reachable: b.error.is_none(),
                error: b.error.clone(),
            })
            .collect(),
        problems,
    }
}

/// What is wrong with one partition, the worst first: no replica serving it (offline), no
/// leader, or replicas out of sync, unreachable or offline (under-replicated).
fn partition_problem(
    p: &PartitionStatus,
    unreachable: &dyn Fn(u64) -> bool,
) -> Option<(&'static str, String)> {
    let serving: Vec<u64> = p
        .replicas
        .iter()
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
    for r in &p.replicas {
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
