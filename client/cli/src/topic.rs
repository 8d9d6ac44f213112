//! `steme topic create|list|describe|alter-config|add-partitions|delete`.

use anyhow::Context;
use serde::Serialize;
use steme_client::admin::{DescribeTopicResponse, TopicMetadata};
use steme_client::{Admin, TopicOptions};

use crate::add_partitions::{SplitJson, splits_text};
use crate::args::TopicCommand;

pub async fn run(bootstrap: &str, cmd: TopicCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            json,
        } => {
            let r = admin
                .create_topic(
                    &name,
                    partitions,
                    TopicOptions {
                        replication_factor,
                        configs,
                    },
                )
                .await
                .with_context(|| format!("cannot create topic {name:?}"))?;
            if json {
                crate::output::json_line(&serde_json::json!({
                    "name": r.name,
                    "partitions": r.partitions,
                    "replication_factor": r.replication_factor,
                    "created": true,
                }))?;
            } else {
                println!(
                    "created topic {} with {} partitions, replication factor {}",
                    r.name, r.partitions, r.replication_factor
                );
            }
        }
        TopicCommand::List { json } => {
            let topics = admin.list_topics().await.context("cannot list topics")?;
            if json {
                for t in &topics {
                    let line =
                        serde_json::json!({"name": t.name, "partitions": t.partitions.len()});
                    println!("{line}");
                }
            } else {
                println!("{:<40} PARTITIONS", "TOPIC");
                for t in &topics {
                    println!("{:<40} {}", t.name, t.partitions.len());
                }
            }
        }
        TopicCommand::Describe { name, json } => {
            let d = admin
                .describe_topic(&name)
                .await
                .with_context(|| format!("cannot describe topic {name:?}"))?;
            // The map (epoch, split points) is in the metadata, not in DescribeTopic.
            let map = admin
                .metadata(Some(std::slice::from_ref(&name)))
                .await
                .with_context(|| format!("cannot read the metadata of topic {name:?}"))?
                .topics
                .into_iter()
                .find(|t| t.name == name)
                .with_context(|| format!("topic {name:?} is gone"))?;
            if json {
                let out = DescribeJson::new(&d, &map);
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", describe_table(&d));
                print!("{}", splits_text(&map));
            }
        }
        TopicCommand::AlterConfig {
            name,
            set,
            delete,
            json,
        } => {
            anyhow::ensure!(
                !set.is_empty() || !delete.is_empty(),
                "nothing to change: give --set KEY=VALUE or --delete KEY"
            );
            let configs = admin
                .alter_topic_config(&name, set, delete)
                .await
                .with_context(|| format!("cannot alter the config of topic {name:?}"))?;
            let configs: std::collections::BTreeMap<String, String> =
                configs.into_iter().map(|c| (c.key, c.value)).collect();
            if json {
                crate::output::json_line(&serde_json::json!({
                    "name": name,
                    "configs": configs,
                }))?;
            } else {
                print!("{}", altered_text(&name, &configs));
            }
        }
        TopicCommand::AddPartitions(a) => crate::add_partitions::run(&admin, a).await?,
        TopicCommand::Delete { name, json } => {
            admin
                .delete_topic(&name)
                .await
                .with_context(|| format!("cannot delete topic {name:?}"))?;
            if json {
                crate::output::json_line(&serde_json::json!({"name": name, "deleted": true}))?;
            } else {
                println!("deleted topic {name}");
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct DescribeJson {
    name: String,
    configs: std::collections::BTreeMap<String, String>,
    /// How many times the partition count changed, and each change's split points.
    map_epoch: u64,
    splits: Vec<SplitJson>,
    partitions: Vec<PartitionJson>,
}

#[derive(Serialize)]
struct PartitionJson {
    partition: u32,
    leader: Option<u64>,
    leader_epoch: u64,
    replicas: Vec<u64>,
    log_start_offset: u64,
    high_watermark: u64,
    log_end_offset: u64,
    size_bytes: u64,
    /// Why the replica is not serving, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    offline: Option<String>,
}

impl DescribeJson {
    fn new(d: &DescribeTopicResponse, map: &TopicMetadata) -> Self {
        DescribeJson {
            name: d.name.clone(),
            configs: d
                .configs
                .iter()
                .map(|c| (c.key.clone(), c.value.clone()))
                .collect(),
            map_epoch: map.map_epoch,
            splits: map.splits.iter().map(SplitJson::from).collect(),
            partitions: d
                .partitions
                .iter()
                .map(|p| PartitionJson {
                    partition: p.partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    log_end_offset: p.log_end_offset,
                    size_bytes: p.size_bytes,
                    offline: p.offline.clone(),
                })
                .collect(),
        }
    }
}

/// What `alter-config` prints: the topic's settings after the change.
fn altered_text(name: &str, configs: &std::collections::BTreeMap<String, String>) -> String {
    use std::fmt::Write;
    let mut out = format!("altered topic {name}; its settings now:\n");
    if configs.is_empty() {
        out.push_str("  (none: every setting is the broker's default)\n");
    }
    for (k, v) in configs {
        let _ = writeln!(out, "  {k} = {v}");
    }
    out
}

fn describe_table(d: &DescribeTopicResponse) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "topic {} ({} partitions)", d.name, d.partitions.len());
    for c in &d.configs {
        let _ = writeln!(out, "  {} = {}", c.key, c.value);
    }
    let _ = writeln!(
        out,
        "{:>9} {:>7} {:>6} {:<12} {:>12} {:>14} {:>12} {:>12}",
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "LOG_START",
        "HIGH_WATERMARK",
        "LOG_END",
        "BYTES"
    );
    for p in &d.partitions {
        let leader = p.leader.map_or_else(|| "-".to_owned(), |l| l.to_string());
        let replicas = p
            .replicas
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(
            out,
            "{:>9} {:>7} {:>6} {:<12} {:>12} {:>14} {:>12} {:>12}",
            p.partition,
            leader,
            p.leader_epoch,
            replicas,
            p.log_start_offset,
            p.high_watermark,
            p.log_end_offset,
            p.size_bytes
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_client::admin::{ConfigEntry, PartitionDescription};

    #[test]
    fn alter_config_prints_every_setting_in_the_describe_form() {
        let configs = std::collections::BTreeMap::from([
            ("retention.bytes".to_owned(), "65536".to_owned()),
            ("verify.signatures".to_owned(), "true".to_owned()),
        ]);
        let text = altered_text("facts", &configs);
        assert!(text.starts_with("altered topic facts"), "{text}");
        assert!(text.contains("  retention.bytes = 65536\n"), "{text}");
        assert!(text.contains("  verify.signatures = true\n"), "{text}");
        let none = altered_text("facts", &Default::default());
        assert!(none.contains("broker's default"), "{none}");
    }

    #[test]
    fn describe_renders_table_and_json() {
        let d = DescribeTopicResponse {
            name: "facts".into(),
            configs: vec![ConfigEntry {
                key: "retention.ms".into(),
                value: "1000".into(),
            }],
            partitions: vec![PartitionDescription {
                partition: 0,
                leader: None,
                leader_epoch: 2,
                replicas: vec![1, 2],
                log_start_offset: 0,
                high_watermark: 10,
                log_end_offset: 12,
                size_bytes: 4096,
                offline: None,
                damaged: vec![],
                scrub: Default::default(),
                in_sync: None,
            }],
        };
        let table = describe_table(&d);
        assert!(table.contains("retention.ms = 1000"));
        assert!(table.lines().nth(3).unwrap().contains("1,2"));
        let map = TopicMetadata {
            name: "facts".into(),
            partitions: vec![],
            map_epoch: 0,
            splits: vec![],
        };
        let json = serde_json::to_value(DescribeJson::new(&d, &map)).unwrap();
        assert_eq!(json["map_epoch"], 0);
        assert_eq!(json["splits"], serde_json::json!([]));
        assert_eq!(json["partitions"][0]["high_watermark"], 10);
        assert_eq!(json["partitions"][0]["leader"], serde_json::Value::Null);
        assert_eq!(json["configs"]["retention.ms"], "1000");
    }
}
