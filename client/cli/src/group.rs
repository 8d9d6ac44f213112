//! `steme group list|describe|reset|delete`, and `steme consume --group`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use steme_client::group::{delete_group, describe_group, list_groups, reset_offsets};
use steme_client::{Admin, Cluster, ConsumerConfig, GroupConfig, GroupConsumer, Position};
use steme_protocol::messages::describe_group::DescribeGroupResponse;
use steme_protocol::messages::list_groups::GroupState;
use steme_protocol::messages::list_offsets::OffsetSpec;

use crate::args::{ConsumeArgs, GroupCommand};
use crate::consume::RecordLine;

pub async fn run(bootstrap: &str, cmd: GroupCommand) -> anyhow::Result<()> {
    let cluster = Cluster::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    match cmd {
        GroupCommand::List { json } => {
            let groups = list_groups(&cluster).await.context("cannot list groups")?;
            if json {
                for g in &groups {
                    let line = json!({"group": g.group, "state": state_name(g.state), "members": g.members});
                    println!("{line}");
                }
            } else {
                println!("{:<40} {:<12} MEMBERS", "GROUP", "STATE");
                for g in &groups {
                    println!("{:<40} {:<12} {}", g.group, state_name(g.state), g.members);
                }
            }
        }
        GroupCommand::Describe { group, json } => {
            let d = describe_group(&cluster, &group)
                .await
                .with_context(|| format!("cannot describe group {group:?}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&describe_json(&d))?);
            } else {
                print!("{}", describe_table(&d));
            }
        }
        GroupCommand::Reset {
            group,
            topic,
            to,
            json,
        } => {
            let admin = Admin::new(cluster.clone());
            let n = cluster.partition_count(&topic).await?;
            let mut offsets = BTreeMap::new();
            for p in 0..n {
                let spec = match to {
                    Position::Earliest => OffsetSpec::Earliest,
                    Position::Latest => OffsetSpec::Latest,
                    Position::Time(t) => OffsetSpec::AtOrAfterHlc(t),
                    Position::Offset(o) => {
                        offsets.insert(p, o);
                        continue;
                    }
                };
                let o = admin.list_offsets(&topic, p, spec).await.with_context(|| {
                    format!("cannot resolve {} in {topic}/{p}", position_text(to))
                })?;
                offsets.insert(p, o.offset);
            }
            reset_offsets(&cluster, &group, &topic, &offsets)
                .await
                .with_context(|| format!("cannot reset group {group:?}"))?;
            if json {
                let offsets: Vec<_> = offsets
                    .iter()
                    .map(|(p, o)| json!({"partition": p, "offset": o}))
                    .collect();
                crate::output::json_line(&json!({
                    "group": group,
                    "topic": topic,
                    "offsets": offsets,
                }))?;
            } else {
                for (p, o) in &offsets {
                    println!("{group} {topic}/{p} -> {o}");
                }
            }
        }
        GroupCommand::Delete { group, json } => {
            delete_group(&cluster, &group)
                .await
                .with_context(|| format!("cannot delete group {group:?}"))?;
            if json {
                crate::output::json_line(&json!({"group": group, "deleted": true}))?;
            } else {
                println!("deleted group {group}");
            }
        }
    }
    Ok(())
}

/// A group's state as printed, in tables and JSON alike.
pub fn state_name(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "empty",
        GroupState::Stable => "stable",
        GroupState::Reconciling => "reconciling",
        GroupState::Dead => "dead",
    }
}

fn describe_json(d: &DescribeGroupResponse) -> serde_json::Value {
    json!({
        "group": d.group,
        "state": state_name(d.state),
        "epoch": d.epoch,
        "coordinator": d.coordinator,
        "members": d.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "instance_id": m.instance_id,
            "member_epoch": m.member_epoch,
            "subscription": m.subscription,
            "assignment": m.assignment.iter().map(|tp| json!({"topic": tp.topic, "partitions": tp.partitions})).collect::<Vec<_>>(),
            "lag": m.lag,
        })).collect::<Vec<_>>(),
        "offsets": d.offsets.iter().map(|o| json!({
            "topic": o.topic,
            "partition": o.partition,
            "committed": o.committed,
            "high_watermark": o.high_watermark,
            "lag": o.lag,
            "owner": o.owner,
        })).collect::<Vec<_>>(),
    })
}

fn describe_table(d: &DescribeGroupResponse) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "group {} ({}, epoch {}, coordinator broker {})",
        d.group,
        state_name(d.state),
        d.epoch,
        d.coordinator
    );
    let _ = writeln!(
        out,
        "{:<40} {:>6} {:>8}  ASSIGNMENT",
        "MEMBER", "EPOCH", "LAG"
    );
    for m in &d.members {
        let parts: Vec<String> = m
            .assignment
            .iter()
            .map(|tp| format!("{}:{:?}", tp.topic, tp.partitions))
            .collect();
        let _ = writeln!(
            out,
            "{:<40} {:>6} {:>8}  {}",
            m.member_id,
            m.member_epoch,
            m.lag,
            parts.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:>9} {:>12} {:>14} {:>8}  OWNER",
        "TOPIC", "PARTITION", "COMMITTED", "HIGH_WATERMARK", "LAG"
    );
    for o in &d.offsets {
        let committed = o
            .committed
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        let high_watermark = o
            .high_watermark
            .map_or_else(|| "-".to_owned(), |h| h.to_string());
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>12} {:>14} {:>8}  {}",
            o.topic,
            o.partition,
            committed,
            high_watermark,
            o.lag,
            o.owner.as_deref().unwrap_or("-")
        );
    }
    out
}

/// `steme consume TOPIC --group G`: prints the records of the partitions the group assigns
/// this member, committing as it goes; on ctrl-c or SIGTERM (or when idle without
/// `--follow`) it commits, leaves the group and exits.
pub async fn consume(bootstrap: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    let group = args.group.clone().expect("checked by the caller");
    let mut config = GroupConfig::new(&group);
    config.instance_id = args.instance_id.clone();
    config.session_timeout = Duration::from_millis(args.session_timeout_ms);
    config.no_offset = args.from;
    config.consumer = ConsumerConfig {
        verify: args.verify,
        ..crate::consumer_config()
    };
    let mut member = GroupConsumer::join(bootstrap, &args.topic, config)
        .await
        .with_context(|| format!("cannot join group {group:?} at {bootstrap}"))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let max = args.max.unwrap_or(u64::MAX);
    let idle = Duration::from_millis(args.idle_ms);
    let mut printed = 0u64;
    let mut quiet_since = tokio::time::Instant::now();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    while printed < max {
        let records = tokio::select! {
            _ = &mut stop => break,
            r = member.poll(Duration::from_millis(250)) => r?,
        };
        if records.is_empty() {
            // Not idle while a partition retries a damaged range: that ends in records or
            // in an error, never in a silent exit.
            if !args.follow && quiet_since.elapsed() >= idle && !member.is_stalled() {
                break;
            }
            continue;
        }
        quiet_since = tokio::time::Instant::now();
        for (i, r) in records.iter().enumerate() {
            if printed >= max {
                // Not printed, so not committed: the first unprinted offset of each partition.
                let mut first: std::collections::BTreeMap<u32, u64> = Default::default();
                for rest in &records[i..] {
                    first.entry(rest.partition()).or_insert(rest.offset());
                }
                for (p, o) in first {
                    member.rewind(p, o).await?;
                }
                break;
            }
            serde_json::to_writer(&mut out, &RecordLine::new(r)?)?;
            out.write_all(b"\n")?;
            printed += 1;
        }
        out.flush()?;
    }
    out.flush()?;
    member
        .close()
        .await
        .context("cannot commit and leave the group")?;
    Ok(())
}

/// A position as the command line takes it, times in RFC 3339.
fn position_text(position: Position) -> String {
    match position {
        Position::Earliest => "earliest".to_owned(),
        Position::Latest => "latest".to_owned(),
        Position::Offset(o) => format!("offset {o}"),
        Position::Time(hlc) => format!("time:{}", crate::time::format_rfc3339(hlc)),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
