//! The command line of the commands that move replicas or grow topics: `partition
//! reassign`, `cluster decommission`, `cluster rebalance` and `topic add-partitions` (kept
//! apart from `args` so neither file grows too long).

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Move a partition to other brokers. The metadata group records the move and the
    /// partition's leader carries it out: the new replicas join as learners, catch up, are
    /// promoted, and the old ones are removed. Prints what was recorded: the replicas and
    /// the target. Without --wait it returns at once; watch `steme cluster status`.
    Reassign(ReassignArgs),
}

#[derive(Debug, Args)]
pub struct ReassignArgs {
    /// The topic.
    pub topic: String,
    /// The partition.
    #[arg(short, long)]
    pub partition: u32,
    /// The brokers to move to, comma-separated, the preferred leader first (1 to 16
    /// distinct active brokers), e.g. 4,2,3.
    #[arg(long, value_name = "A,B,C", value_parser = parse_replicas)]
    pub replicas: ReplicaList,
    /// Wait until the partition has exactly these replicas and no longer moves, printing
    /// progress on stderr; exits 1 if that takes longer than --timeout.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// JSON lines instead of sentences: what was recorded (`topic`, `partition`,
    /// `replicas`, `target`), and with --wait the final state (`done: true`, `elapsed_ms`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DecommissionArgs {
    /// The node id of the broker to retire.
    pub node_id: u64,
    /// Return once the broker is draining, without waiting for it to be removed.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the broker to be removed, in seconds; exits 1 after.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// JSON lines instead of sentences: the state recorded (`node_id`, `state`), and once
    /// removed the final one (`elapsed_ms` too).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddPartitionsArgs {
    /// The topic.
    pub topic: String,
    /// The new total number of partitions (more than the topic has; at most 10000).
    #[arg(long, value_name = "N")]
    pub count: u32,
    /// Return once the new map is recorded, without waiting for the split points.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for every split point, in seconds; exits 1 after.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// JSON lines instead of sentences: what was recorded (`topic`, `map_epoch`,
    /// `partitions`), and once every split point is recorded the final state (`sealed:
    /// true`, `elapsed_ms`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RebalanceArgs {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON lines, one per move (`topic`, `partition`, `from`, `to`, and once sent
    /// `replicas` and `target`, or `error`), instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A partition's replica list as `--replicas` takes it: distinct node ids, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaList(pub Vec<u64>);

/// `4,2,3`: distinct node ids, 1 to 16 of them.
pub fn parse_replicas(s: &str) -> Result<ReplicaList, String> {
    let mut ids: Vec<u64> = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let id = part
            .parse()
            .map_err(|_| format!("expected node ids separated by commas, got {part:?} in {s:?}"))?;
        if ids.contains(&id) {
            return Err(format!("broker {id} is listed twice in {s:?}"));
        }
        ids.push(id);
    }
    let max = steme_protocol::messages::reassign::MAX_REPLICAS;
    if ids.len() > max {
        return Err(format!(
            "a partition has at most {max} replicas, {s:?} lists {}",
            ids.len()
        ));
    }
    Ok(ReplicaList(ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, ClusterCommand, Command, TopicCommand};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("steme").chain(args.iter().copied()))
    }

    #[test]
    fn replicas_are_distinct_node_ids() {
        assert_eq!(parse_replicas("4,2,3"), Ok(ReplicaList(vec![4, 2, 3])));
        assert_eq!(parse_replicas(" 7 "), Ok(ReplicaList(vec![7])));
        assert!(parse_replicas("").is_err());
        assert!(parse_replicas("1,,2").is_err());
        assert!(parse_replicas("1,x").is_err());
        assert!(parse_replicas("-1").is_err());
        let twice = parse_replicas("1,2,1").unwrap_err();
        assert!(twice.contains("broker 1 is listed twice"), "{twice}");
        let many: Vec<String> = (1..=17).map(|i| i.to_string()).collect();
        assert!(parse_replicas(&many.join(",")).is_err());
    }

    #[test]
    fn partition_reassign_parses() {
        let Command::Partition(PartitionCommand::Reassign(a)) = parse(&[
            "partition",
            "reassign",
            "facts",
            "--partition",
            "3",
            "--replicas",
            "4,2,3",
            "--wait",
            "--timeout",
            "30",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!("not partition reassign")
        };
        assert_eq!((a.topic.as_str(), a.partition), ("facts", 3));
        assert_eq!(a.replicas, ReplicaList(vec![4, 2, 3]));
        assert!(a.wait && a.json);
        assert_eq!(a.timeout, 30);
        let Command::Partition(PartitionCommand::Reassign(a)) =
            parse(&["partition", "reassign", "t", "-p", "0", "--replicas", "1"])
                .unwrap()
                .command
        else {
            panic!("not partition reassign")
        };
        assert!(!a.wait);
        assert_eq!(a.timeout, 300);
        assert!(parse(&["partition", "reassign", "t", "-p", "0"]).is_err());
        assert!(parse(&["partition", "reassign", "t", "--replicas", "1"]).is_err());
        assert!(parse(&["partition", "reassign", "t", "-p", "0", "--replicas", "1,1"]).is_err());
    }

    #[test]
    fn cluster_decommission_and_rebalance_parse() {
        let Command::Cluster(ClusterCommand::Decommission(d)) =
            parse(&["cluster", "decommission", "3"]).unwrap().command
        else {
            panic!("not cluster decommission")
        };
        assert_eq!(
            (d.node_id, d.no_wait, d.timeout, d.json),
            (3, false, 600, false)
        );
        let Command::Cluster(ClusterCommand::Decommission(d)) = parse(&[
            "cluster",
            "decommission",
            "3",
            "--no-wait",
            "--timeout",
            "5",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!("not cluster decommission")
        };
        assert_eq!(
            (d.node_id, d.no_wait, d.timeout, d.json),
            (3, true, 5, true)
        );
        assert!(parse(&["cluster", "decommission"]).is_err());
        assert!(parse(&["cluster", "decommission", "three"]).is_err());

        let Command::Cluster(ClusterCommand::Rebalance(r)) =
            parse(&["cluster", "rebalance", "--dry-run", "--json"])
                .unwrap()
                .command
        else {
            panic!("not cluster rebalance")
        };
        assert!(r.dry_run && r.json);
    }

    #[test]
    fn topic_add_partitions_parses() {
        let Command::Topic(TopicCommand::AddPartitions(a)) =
            parse(&["topic", "add-partitions", "facts", "--count", "8"])
                .unwrap()
                .command
        else {
            panic!("not topic add-partitions")
        };
        assert_eq!(
            (a.topic.as_str(), a.count, a.no_wait, a.timeout, a.json),
            ("facts", 8, false, 60, false)
        );
        let Command::Topic(TopicCommand::AddPartitions(a)) = parse(&[
            "topic",
            "add-partitions",
            "facts",
            "--count",
            "8",
            "--no-wait",
            "--timeout",
            "5",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!("not topic add-partitions")
        };
        assert_eq!((a.count, a.no_wait, a.timeout, a.json), (8, true, 5, true));
        assert!(parse(&["topic", "add-partitions", "facts"]).is_err());
        assert!(parse(&["topic", "add-partitions", "--count", "8"]).is_err());
        assert!(parse(&["topic", "add-partitions", "facts", "--count", "-1"]).is_err());
    }

    #[test]
    fn every_new_command_has_help() {
        for args in [
            &["partition", "--help"][..],
            &["partition", "reassign", "--help"],
            &["cluster", "decommission", "--help"],
            &["cluster", "rebalance", "--help"],
            &["topic", "add-partitions", "--help"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
    }
}
