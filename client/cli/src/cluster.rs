//! `steme cluster status`: the brokers and their state, and every replica of every
//! partition as the broker hosting it reports it — the leader, each replica's log end and
//! its lag behind the leader's, and the high watermark. A moving partition lists the
//! replicas it has and those it moves to (its target), so a joining replica's log end and
//! lag show its catch-up. `steme cluster damaged` lists the damaged ranges of every
//! replica; `steme cluster skip-damaged` gives a quarantined one up.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use serde::Serialize;
use steme_client::Admin;
use steme_client::admin::{BrokerState, PartitionDescription};

use crate::args::ClusterCommand;

pub async fn run(bootstrap: &str, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status { topics, json } => {
            let status = collect(bootstrap, &topics).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render(&status));
            }
            Ok(())
        }
        ClusterCommand::Health { json } => crate::health::run(bootstrap, json).await,
        ClusterCommand::Damaged { topics, json } => {
            let status = collect(bootstrap, &topics).await?;
            let ranges = damaged(&status);
            if json {
                for r in &ranges {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else {
                print!("{}", render_damaged(&ranges));
            }
            let open = ranges
                .iter()
                .filter(|r| r.range.why.is_some() && r.range.skipped.is_none())
                .count();
            if open > 0 {
                anyhow::bail!("{open} damaged range(s) quarantined: no healthy copy");
            }
            Ok(())
        }
        ClusterCommand::SkipDamaged {
            topic,
            partition,
            offset,
            reason,
            json,
        } => skip_damaged(bootstrap, &topic, partition, offset, &reason, json).await,
        ClusterCommand::Decommission(a) => crate::decommission::run(bootstrap, a).await,
        ClusterCommand::Rebalance(a) => crate::rebalance::run(bootstrap, a).await,
    }
}

async fn skip_damaged(
    bootstrap: &str,
    topic: &str,
    partition: u32,
    offset: u64,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let answers = admin
        .skip_damaged(topic, partition, offset, reason)
        .await
        .with_context(|| format!("cannot skip {topic}/{partition} at {offset}"))?;
    if answers.is_empty() {
        anyhow::bail!(
            "no replica of {topic}/{partition} lists a damaged range starting at offset {offset} \
             (see `steme cluster damaged {topic}`)"
        );
    }
    let mut refused = 0;
    for (node, answer) in &answers {
        match answer {
            Ok(r) if json => println!(
                "{}",
                serde_json::json!({
                    "node_id": node,
                    "topic": topic,
                    "partition": partition,
                    "skipped": true,
                    "first_offset": r.first_offset,
                    "end_offset": r.end_offset,
                    "reason": r.reason,
                })
            ),
            Ok(r) => println!(
                "broker {node}: skipped {topic}/{partition} offsets {}..{} ({})",
                r.first_offset, r.end_offset, r.reason
            ),
            Err(e) => {
                refused += 1;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "node_id": node,
                            "topic": topic,
                            "partition": partition,
                            "skipped": false,
                            "error": e.to_string(),
                        })
                    );
                } else {
                    println!("broker {node}: refused: {e}");
                }
            }
        }
    }
    if refused > 0 {
        anyhow::bail!(
            "{refused} of {} replica(s) did not record the skip",
            answers.len()
        );
    }
    Ok(())
}

/// One damaged range of one replica, as `steme cluster damaged` lists it.
#[derive(Debug, Serialize)]
struct DamagedReplica<'a> {
    topic: &'a str,
    partition: u32,
    node_id: u64,
    #[serde(flatten)]
    range: &'a DamageStatus,
}

fn damaged(s: &Status) -> Vec<DamagedReplica<'_>> {
    let mut out = Vec::new();
    for t in &s.topics {
        for p in &t.partitions {
            for r in &p.replicas {
                for d in &r.damaged {
                    out.push(DamagedReplica {
                        topic: &t.name,
                        partition: p.partition,
                        node_id: r.node_id,
                        range: d,
                    });
                }
            }
        }
    }
    out
}

fn render_damaged(ranges: &[DamagedReplica<'_>]) -> String {
    if ranges.is_empty() {
        return "no damaged range on any replica\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>7} {:>21} {:>17} STATE (REASON)",
        "TOPIC", "PARTITION", "BROKER", "OFFSETS", "RAFT_INDEXES"
    );
    for r in ranges {
        let d = r.range;
        let state = match (&d.skipped, &d.why) {
            (Some(skip), _) => format!("skipped at {} (unix ms): {}", skip.at_ms, skip.reason),
            (None, Some(why)) => format!("quarantined: {why}"),
            (None, None) => d.state.to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>7} {:>21} {:>17} {state} ({})",
            r.topic,
            r.partition,
            r.node_id,
            format!("{}..{}", d.first_offset, d.end_offset),
            format!("{}..{}", d.first_index, d.end_index),
            d.reason
        );
    }
    out
}

/// Every broker, and every replica of `topics` (all when empty) as its broker reports it.
pub(crate) async fn collect(bootstrap: &str, topics: &[String]) -> anyhow::Result<Status> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let meta = admin.metadata(None).await.context("cannot read metadata")?;
    let mut status = Status {
        metadata_leader: meta.metadata_leader,
        brokers: meta
            .brokers
            .iter()
            .map(|b| BrokerStatus {
                node_id: b.node_id,
                addr: b.addr.clone(),
                state: b.state,
                error: None,
            })
            .collect(),
        topics: Vec::new(),
    };
    let mut names: Vec<String> = meta.topics.iter().map(|t| t.name.clone()).collect();
    names.sort();
    if !topics.is_empty() {
        names.retain(|n| topics.contains(n));
    }
    for name in names {
        let views = admin
            .describe_replicas(&name)
            .await
            .with_context(|| format!("cannot describe {name}"))?;
        let mut partitions: BTreeMap<u32, Vec<(u64, PartitionDescription)>> = BTreeMap::new();
        for v in views {
            match v.result {
                Ok(d) => {
                    for p in d.partitions {
                        partitions
                            .entry(p.partition)
                            .or_default()
                            .push((v.node_id, p));
                    }
                }
                Err(e) => {
                    if let Some(b) = status.brokers.iter_mut().find(|b| b.node_id == v.node_id) {
                        b.error.get_or_insert(format!("{e}"));
                    }
                }
            }
        }
        let parts = meta
            .topics
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.partitions.clone())
            .unwrap_or_default();
        let topic = TopicStatus {
            partitions: parts
                .iter()
                .map(|pm| {
                    partition_status(
                        pm.partition,
                        pm.leader,
                        &pm.replicas,
                        pm.target.as_deref(),
                        partitions.get(&pm.partition),
                    )
                })
                .collect(),
            name,
        };
        status.topics.push(topic);
    }
    Ok(status)
}

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    metadata_leader: Option<u64>,
    pub brokers: Vec<BrokerStatus>,
    pub topics: Vec<TopicStatus>,
}

#[derive(Debug, Serialize)]
pub(crate) struct BrokerStatus {
    pub node_id: u64,
    pub addr: String,
    /// Where it stands in the cluster's life: joining, active, draining or removed.
    #[serde(serialize_with = "state_name")]
    pub state: BrokerState,
    /// Why the broker could not be asked, if it could not (a removed one is not asked).
    pub error: Option<String>,
}

fn state_name<S: serde::Serializer>(state: &BrokerState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.name())
}

#[derive(Debug, Serialize)]
pub(crate) struct TopicStatus {
    pub name: String,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PartitionStatus {
    pub partition: u32,
    pub leader: Option<u64>,
    leader_epoch: u64,
    high_watermark: Option<u64>,
    /// The replicas in sync with the leader, as the leader reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_sync: Option<Vec<u64>>,
    /// While the partition moves: the replicas it moves to, the preferred leader first.
    pub target: Option<Vec<u64>>,
    /// Its replicas and, while it moves, those of the target it does not have yet.
    pub replicas: Vec<ReplicaStatus>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReplicaStatus {
    pub node_id: u64,
    /// While the partition moves: `joining` for a replica of the target only (catching
    /// up), `leaving` for one the target drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reassignment: Option<&'static str>,
    /// `None` when the broker did not answer.
    pub log_end_offset: Option<u64>,
    high_watermark: Option<u64>,
    /// Entries behind the leader's log end (`None` without both figures).
    lag: Option<u64>,
    /// Why the replica is offline (it failed to open, or is recovering), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline: Option<String>,
    /// Ranges of this replica's log that failed their checks: never served, repaired from
    /// another replica ("needs repair") or, with no healthy copy anywhere, "quarantined".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    damaged: Vec<DamageStatus>,
    /// The background scrubber's progress over this replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    scrub: Option<ScrubStatus>,
}

#[cfg(test)]
impl Status {
    /// A status as a test writes it.
    pub fn new(
        metadata_leader: Option<u64>,
        brokers: Vec<BrokerStatus>,
        topics: Vec<TopicStatus>,
    ) -> Status {
        Status {
            metadata_leader,
            brokers,
            topics,
        }
    }
}

#[cfg(test)]
impl PartitionStatus {
    /// A partition led by `leader`, as a test writes it.
    pub fn led(
        partition: u32,
        leader: u64,
        in_sync: Vec<u64>,
        replicas: Vec<ReplicaStatus>,
    ) -> PartitionStatus {
        PartitionStatus {
            partition,
            leader: Some(leader),
            leader_epoch: 1,
            high_watermark: Some(0),
            in_sync: Some(in_sync),
            target: None,
            replicas,
        }
    }
}

#[cfg(test)]
impl ReplicaStatus {
    /// A serving replica at `log_end_offset`, as a test writes it.
    pub fn online(
        node_id: u64,
        log_end_offset: u64,
        reassignment: Option<&'static str>,
    ) -> ReplicaStatus {
        ReplicaStatus {
            node_id,
            reassignment,
            log_end_offset: Some(log_end_offset),
            high_watermark: Some(log_end_offset),
            lag: Some(0),
            offline: None,
            damaged: vec![],
            scrub: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct DamageStatus {
    first_offset: u64,
    end_offset: u64,
    first_index: u64,
    end_index: u64,
    state: &'static str,
    /// Why no healthy copy was found (quarantined ranges).
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
    /// What the first damaged frame failed.
    reason: String,
    /// When and why an operator gave the range up.
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<SkipStatus>,
}

#[derive(Debug, Serialize)]
struct SkipStatus {
    at_ms: u64,
    reason: String,
}

#[derive(Debug, Serialize)]
struct ScrubStatus {
    passes: u64,
    last_pass_ms: u64,
    verified_bytes: u64,
}

fn partition_status(
    partition: u32,
    metadata_leader: Option<u64>,
    replicas: &[u64],
    target: Option<&[u64]>,
    seen: Option<&Vec<(u64, PartitionDescription)>>,
) -> PartitionStatus {
    let seen = seen.map(Vec::as_slice).unwrap_or_default();
    let view = |id: u64| seen.iter().find(|(n, _)| *n == id).map(|(_, d)| d);
    // The leader is who a serving replica says leads in the highest epoch it reports.
    let best = seen
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d.offline.is_none())
        .max_by_key(|d| d.leader_epoch);
    let leader = best.and_then(|d| d.leader).or(metadata_leader);
    let leader_view = leader.and_then(view);
    let joining = target
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|id| !replicas.contains(id));
    let listed: Vec<u64> = replicas.iter().copied().chain(joining).collect();
    let reassignment = |id: u64| {
        let target = target?;
        if !replicas.contains(&id) {
            Some("joining")
        } else if !target.contains(&id) {
            Some("leaving")
        } else {
            None
        }
    };
    PartitionStatus {
        partition,
        leader,
        leader_epoch: best.map_or(0, |d| d.leader_epoch),
        high_watermark: leader_view.map(|d| d.high_watermark),
        in_sync: leader_view.and_then(|d| d.in_sync.clone()),
        target: target.map(<[u64]>::to_vec),
        replicas: listed
            .iter()
            .map(|&id| {
                let offline = view(id).and_then(|d| d.offline.clone());
                let v = view(id).filter(|d| d.offline.is_none());
                ReplicaStatus {
                    node_id: id,
                    reassignment: reassignment(id),
                    log_end_offset: v.map(|d| d.log_end_offset),
                    high_watermark: v.map(|d| d.high_watermark),
                    lag: leader_view
                        .zip(v)
                        .map(|(l, r)| l.log_end_offset.saturating_sub(r.log_end_offset)),
                    offline,
                    damaged: v.map_or_else(Vec::new, |d| {
                        d.damaged
                            .iter()
                            .map(|r| DamageStatus {
                                first_offset: r.first_offset,
                                end_offset: r.end_offset,
                                first_index: r.first_index,
                                end_index: r.end_index,
                                state: match (&r.skipped, &r.quarantined) {
                                    (Some(_), _) => "skipped",
                                    (None, Some(_)) => "quarantined",
                                    (None, None) => "needs repair",
                                },
                                why: r.quarantined.clone(),
                                reason: r.reason.clone(),
                                skipped: r.skipped.as_ref().map(|s| SkipStatus {
                                    at_ms: s.at_ms,
                                    reason: s.reason.clone(),
                                }),
                            })
                            .collect()
                    }),
                    scrub: v.map(|d| ScrubStatus {
                        passes: d.scrub.passes,
                        last_pass_ms: d.scrub.last_pass_ms,
                        verified_bytes: d.scrub.verified_bytes,
                    }),
                }
            })
            .collect(),
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "brokers (metadata leader: {})", opt(s.metadata_leader));
    let _ = writeln!(out, "{:>6}  {:<24} {:<9} STATUS", "ID", "ADDRESS", "STATE");
    for b in &s.brokers {
        let status = match (&b.error, b.state) {
            (Some(e), _) => format!("unreachable: {e}"),
            (None, BrokerState::Removed) => "- (not asked)".to_owned(),
            (None, _) => "up".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<24} {:<9} {status}",
            b.node_id,
            b.addr,
            b.state.name()
        );
    }
    for t in &s.topics {
        let _ = writeln!(out, "\ntopic {}", t.name);
        let _ = writeln!(
            out,
            "{:>9} {:>6} {:>6} {:>14} {:>8} {:>14} {:>14} {:>10} STATE",
            "PARTITION",
            "LEADER",
            "EPOCH",
            "HIGH_WATERMARK",
            "REPLICA",
            "LOG_END",
            "REPLICA_HWM",
            "LAG"
        );
        for p in &t.partitions {
            for (i, r) in p.replicas.iter().enumerate() {
                let (part, leader, epoch, hwm) = if i == 0 {
                    (
                        p.partition.to_string(),
                        opt(p.leader),
                        p.leader_epoch.to_string(),
                        opt(p.high_watermark),
                    )
                } else {
                    Default::default()
                };
                let mark = if Some(r.node_id) == p.leader { "*" } else { "" };
                let mut state = r
                    .offline
                    .as_deref()
                    .map_or_else(|| "online".to_owned(), |why| format!("offline: {why}"));
                if let Some(role) = r.reassignment {
                    let _ = write!(state, ", {role}");
                }
                for d in &r.damaged {
                    let _ = write!(
                        state,
                        ", damaged offsets {}..{} ({})",
                        d.first_offset, d.end_offset, d.state
                    );
                }
                if let (0, Some(target)) = (i, &p.target) {
                    let _ = write!(state, ", moving → {}", crate::output::ids(target));
                }
                let _ = writeln!(
                    out,
                    "{part:>9} {leader:>6} {epoch:>6} {hwm:>14} {:>8} {:>14} {:>14} {:>10} {state}",
                    format!("{}{mark}", r.node_id),
                    opt(r.log_end_offset),
                    opt(r.high_watermark),
                    opt(r.lag),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(leader: u64, epoch: u64, hwm: u64, end: u64) -> PartitionDescription {
        PartitionDescription {
            partition: 0,
            leader: Some(leader),
            leader_epoch: epoch,
            replicas: vec![1, 2, 3],
            log_start_offset: 0,
            high_watermark: hwm,
            log_end_offset: end,
            size_bytes: 0,
            offline: None,
            damaged: vec![],
            scrub: Default::default(),
            in_sync: Some(vec![1, 2, 3]),
        }
    }

    #[test]
    fn lag_is_measured_against_the_leader_and_silent_replicas_show_dashes() {
        // Broker 1 still believes it leads in epoch 2; 2 and 3 know of epoch 3 under 2.
        let seen = vec![
            (1, desc(1, 2, 90, 95)),
            (2, desc(2, 3, 100, 100)),
            (3, desc(2, 3, 100, 97)),
        ];
        let p = partition_status(0, Some(1), &[1, 2, 3, 4], None, Some(&seen));
        assert_eq!(p.leader, Some(2));
        assert_eq!(p.leader_epoch, 3);
        assert_eq!(p.high_watermark, Some(100));
        let lags: Vec<Option<u64>> = p.replicas.iter().map(|r| r.lag).collect();
        assert_eq!(lags, vec![Some(5), Some(0), Some(3), None]);
        let s = Status {
            metadata_leader: Some(1),
            brokers: vec![BrokerStatus {
                node_id: 4,
                addr: "127.0.0.1:4".into(),
                state: BrokerState::Active,
                error: Some("connection refused".into()),
            }],
            topics: vec![TopicStatus {
                name: "facts".into(),
                partitions: vec![p],
            }],
        };
        let table = render(&s);
        assert!(table.contains("unreachable: connection refused"), "{table}");
        assert!(table.contains("2*"), "{table}");
        let last: Vec<&str> = table.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(last[last.len() - 2..], ["-", "online"], "{table}");
    }

    #[test]
    fn an_offline_replica_shows_why_and_no_figures() {
        let mut broken = desc(0, 0, 0, 0);
        broken.leader = None;
        broken.offline = Some("cannot open: bad segment".into());
        let seen = vec![(1, desc(1, 4, 50, 50)), (2, broken)];
        let p = partition_status(0, Some(1), &[1, 2], None, Some(&seen));
        assert_eq!(p.leader, Some(1));
        assert_eq!(p.replicas[1].log_end_offset, None);
        assert_eq!(
            p.replicas[1].offline.as_deref(),
            Some("cannot open: bad segment")
        );
        let s = Status {
            metadata_leader: Some(1),
            brokers: vec![],
            topics: vec![TopicStatus {
                name: "facts".into(),
                partitions: vec![p],
            }],
        };
        let table = render(&s);
        assert!(
            table.contains("offline: cannot open: bad segment"),
            "{table}"
        );
    }

    #[test]
    fn a_moving_partition_lists_its_target_and_the_catch_up_of_joining_replicas() {
        // Moving from [1,2,3] to [4,2,3]: 4 is a learner 40 entries behind.
        let seen = vec![
            (1, desc(1, 3, 100, 100)),
            (2, desc(1, 3, 100, 100)),
            (3, desc(1, 3, 100, 100)),
            (4, desc(1, 3, 60, 60)),
        ];
        let p = partition_status(0, Some(1), &[1, 2, 3], Some(&[4, 2, 3]), Some(&seen));
        assert_eq!(p.target, Some(vec![4, 2, 3]));
        let listed: Vec<(u64, Option<&str>, Option<u64>)> = p
            .replicas
            .iter()
            .map(|r| (r.node_id, r.reassignment, r.lag))
            .collect();
        assert_eq!(
            listed,
            vec![
                (1, Some("leaving"), Some(0)),
                (2, None, Some(0)),
                (3, None, Some(0)),
                (4, Some("joining"), Some(40)),
            ]
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["target"], serde_json::json!([4, 2, 3]));
        assert_eq!(json["replicas"][3]["reassignment"], "joining");
        assert_eq!(json["replicas"][1].get("reassignment"), None);
        let s = Status {
            metadata_leader: Some(1),
            brokers: vec![],
            topics: vec![TopicStatus {
                name: "facts".into(),
                partitions: vec![p],
            }],
        };
        let table = render(&s);
        let rows: Vec<&str> = table.lines().skip(5).collect();
        assert!(
            rows[0].ends_with("online, leaving, moving → [4,2,3]"),
            "{table}"
        );
        assert!(rows[3].ends_with("online, joining"), "{table}");
        assert!(rows[3].contains(" 60 "), "the learner's log end: {table}");

        // Not moving: no target, no roles, `target: null` in JSON.
        let still = partition_status(0, Some(1), &[1, 2, 3], None, Some(&seen));
        assert!(still.replicas.iter().all(|r| r.reassignment.is_none()));
        assert_eq!(still.replicas.len(), 3);
        assert_eq!(
            serde_json::to_value(&still).unwrap()["target"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn brokers_show_their_state_and_removed_ones_are_not_asked() {
        let broker = |node_id: u64, state, error: Option<&str>| BrokerStatus {
            node_id,
            addr: format!("127.0.0.1:{node_id}"),
            state,
            error: error.map(str::to_owned),
        };
        let s = Status {
            metadata_leader: Some(1),
            brokers: vec![
                broker(1, BrokerState::Active, None),
                broker(2, BrokerState::Draining, None),
                broker(3, BrokerState::Removed, None),
                broker(4, BrokerState::Joining, Some("connection refused")),
            ],
            topics: vec![],
        };
        let table = render(&s);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["1", "127.0.0.1:1", "active", "up"], "{table}");
        assert_eq!(rows[1], ["2", "127.0.0.1:2", "draining", "up"], "{table}");
        assert_eq!(
            rows[2],
            ["3", "127.0.0.1:3", "removed", "-", "(not", "asked)"],
            "{table}"
        );
        assert_eq!(
            rows[3][..4],
            ["4", "127.0.0.1:4", "joining", "unreachable:"]
        );
        let json = serde_json::to_value(&s).unwrap();
        let states: Vec<&str> = json["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["state"].as_str())
            .collect();
        assert_eq!(states, ["active", "draining", "removed", "joining"]);
    }
}
