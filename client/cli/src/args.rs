//! The command line. Every command and flag has `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use steme_client::{Acks, Position};

pub use crate::args_admin::{AddPartitionsArgs, DecommissionArgs, PartitionCommand, RebalanceArgs};

#[derive(Debug, Parser)]
#[command(
    name = "steme",
    version,
    about = "Operate a Steme cluster: keys, topics, produce, consume, replay, bench",
    propagate_version = true
)]
pub struct Cli {
    /// Brokers to start from, comma-separated host:port (any one of them answers).
    #[arg(
        long,
        global = true,
        env = "STEME_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_delimiter = ','
    )]
    pub bootstrap: Vec<String>,

    /// Connect with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, global = true, env = "STEME_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to present over TLS (with --tls-key).
    #[arg(
        long,
        global = true,
        env = "STEME_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        global = true,
        env = "STEME_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// Authenticate as `key:<public key>` by proving the Ed25519 key in this file (the
    /// hex seed `steme keygen` writes).
    #[arg(long, global = true, env = "STEME_AUTH_KEY", value_name = "FILE")]
    pub auth_key: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 signing key (hex seed, mode 0600) and print its public key.
    Keygen(KeygenArgs),
    /// Create, list, describe, grow and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Sign assertions read as JSON lines on stdin and produce them; one ack line each.
    Produce(ProduceArgs),
    /// Sign assertions read as JSON lines on stdin, offline; one signed JSON line each.
    ///
    /// Each output line is the signed form (id, the fields, signer, signature) that the
    /// HTTP gateway takes and `steme consume` prints. A bad line stops the command, naming
    /// it, after the lines before it are printed.
    Sign(SignArgs),
    /// Print records as JSON lines.
    #[command(after_long_help = CONSUME_OUTPUT)]
    Consume(ConsumeArgs),
    /// Write the raw record batches of an offset range to a file.
    Replay(ReplayArgs),
    /// Print and check a file written by `steme replay`, offline: every record's id
    /// recomputed from its bytes, and with --verify every signature. Exits 1 naming each bad
    /// record.
    ReplayInspect(ReplayInspectArgs),
    /// Benchmarks: produce, consume and produce-to-consume latency.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The cluster as the brokers see it; retire brokers and spread replicas evenly.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Partitions: move one to other brokers.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Consumer groups: list, describe, reset offsets, delete.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Access control: who may do what (enforced by brokers run with --authorization on).
    #[command(subcommand)]
    Acl(AclCommand),
}

/// One ACL, as `steme acl add` and `remove` take it.
#[derive(Debug, Args)]
pub struct AclArgs {
    /// Who: key:<hex public key>, cert:<CN>, anonymous, or * (anyone).
    #[arg(long)]
    pub principal: String,
    /// What: topic:NAME, topic:PREFIX*, group:NAME, group:PREFIX* or cluster.
    #[arg(long)]
    pub resource: String,
    /// produce, consume, describe, create, delete, alter or admin.
    #[arg(long)]
    pub operation: String,
    /// Print the result as one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Allow a principal an operation on a resource (a no-op if already allowed).
    Add(AclArgs),
    /// Take an allowance away (an error if there is no such ACL).
    Remove(AclArgs),
    /// Every ACL of the cluster.
    List {
        /// JSON lines, one per ACL, instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers and their state (joining, active, draining, removed), and per partition the
    /// leader, each replica's log end and lag, and the high watermark; a moving partition
    /// also lists its target, and its joining replicas' catch-up.
    Status {
        /// Only these topics (default: all).
        topics: Vec<String>,
        /// One JSON document instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Exits 0 only when every broker is reachable and no partition is under-replicated,
    /// leaderless or offline; otherwise names each problem and exits 1. Removed brokers
    /// are not asked (nor listed); draining ones are asked like active ones.
    Health {
        /// One JSON document: `healthy`, `brokers` and `problems`.
        #[arg(long)]
        json: bool,
    },
    /// Every damaged range of every replica: its offsets, whether it is being repaired
    /// from another replica, is quarantined (no healthy copy) and why, or was skipped.
    /// Exits 1 if any range is quarantined and not skipped.
    Damaged {
        /// Only these topics (default: all).
        topics: Vec<String>,
        /// JSON lines, one per range, instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Gives up a quarantined damaged range (no healthy copy on any replica), on every
    /// replica that lists it, with a recorded reason: consumers then move past it with a
    /// warning instead of stopping. Its records are lost. Exits 1 unless every replica
    /// listing the range recorded the skip.
    SkipDamaged {
        /// The topic.
        topic: String,
        /// The partition.
        #[arg(short, long)]
        partition: u32,
        /// Where the range starts (its first offset, as `steme cluster damaged` lists it).
        #[arg(long)]
        offset: u64,
        /// Why it is given up (kept with the skip, shown to consumers that pass it).
        #[arg(long)]
        reason: String,
        /// JSON lines, one per replica's answer, instead of sentences.
        #[arg(long)]
        json: bool,
    },
    /// Retire a broker: it becomes draining, the cluster moves every replica off it, then it
    /// becomes removed. Waits for that (printing on stderr how many partitions still have a
    /// replica or target on it) unless --no-wait; exits 1 on timeout.
    Decommission(DecommissionArgs),
    /// Spread replicas, and then preferred leaders (the first replica of each partition),
    /// evenly over the active brokers: each holds within one replica, and leads within one
    /// partition, of the others, with as few replica moves as possible (leaders are
    /// balanced by reordering replicas first, which moves no data). Partitions that are
    /// moving or have a replica on a broker that is not active are left alone. Sends one
    /// reassignment per partition to change and exits without waiting for the moves to
    /// finish: watch them with `steme cluster status`.
    Rebalance(RebalanceArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print `{"public_key": …, "path": …}` instead of the bare public key.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, short = 'p')]
        partitions: u32,
        /// Replicas per partition (0 = the broker's default).
        #[arg(long, short = 'r', default_value_t = 0)]
        replication_factor: u16,
        /// A topic setting overriding the broker's default, as key=value (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Print the result as one JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// List topics with their partition counts.
    List {
        /// One JSON line per topic instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a topic's settings, its map epoch and split points, and per partition leader,
    /// replicas and log figures.
    Describe {
        name: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a topic's settings while it runs (through the metadata group; every broker
    /// applies them without a restart), and print the settings it then has. Values are
    /// checked as at create; unknown keys and keys fixed at create (segment.bytes) are
    /// refused and nothing changes.
    AlterConfig {
        name: String,
        /// A setting to change, as key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// A setting to return to the broker's default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Print the resulting settings as one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Grow a topic to --count partitions, keeping every subject's order. Subjects that
    /// move to a new partition are written there from each old partition's split point on;
    /// the new partitions take records once every split point is recorded, which this
    /// waits for (unless --no-wait).
    AddPartitions(AddPartitionsArgs),
    /// Delete a topic and all its data.
    Delete {
        name: String,
        /// Print the result as one JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Secret key file written by `steme keygen`.
    #[arg(long)]
    pub key: PathBuf,
    /// How long a partition's batch waits for more records, in ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
    /// Records sent and not yet acknowledged at most (acks are printed in input order).
    #[arg(long, default_value_t = 10_000)]
    pub window: usize,
    /// `now`: stamp lines that have no `issued_at` with the current time. By default a line
    /// is signed as it stands (no `issued_at` is 0), so the same input always gives the same
    /// ids and producing it again is answered with `"duplicate": true`.
    #[arg(long, value_enum, value_name = "now")]
    pub issued_at: Option<IssuedAtArg>,
    /// Accepted for symmetry with the other commands: acks are always JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Secret key file written by `steme keygen`.
    #[arg(long)]
    pub key: PathBuf,
    /// `now`: stamp lines that have no `issued_at` with the current time, as `produce`.
    #[arg(long, value_enum, value_name = "now")]
    pub issued_at: Option<IssuedAtArg>,
    /// Accepted for symmetry with the other commands: the output is always JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// `--issued-at` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IssuedAtArg {
    /// The current time, in milliseconds since the Unix epoch.
    Now,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: every partition).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Where to start: earliest, latest, an offset, or time:T, the first record stamped at
    /// or after T: RFC 3339 (time:2026-11-29T10:00:00Z, any offset), relative to now
    /// (time:-90s, time:-15m, time:-1h, time:-2d) or a raw HLC (time:7713603779369791536).
    #[arg(long, default_value = "earliest", value_parser = parse_position)]
    pub from: Position,
    /// Keep waiting for new records instead of stopping at the high watermark.
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Verify every signature; a bad one is an error naming its partition and offset.
    #[arg(long)]
    pub verify: bool,
    /// Join this consumer group: read only the partitions it assigns this member, from
    /// the group's committed offsets (`--from` for partitions without one), committing as
    /// records are printed.
    #[arg(long)]
    pub group: Option<String>,
    /// Static membership: a stable name for this member (with --group).
    #[arg(long, requires = "group")]
    pub instance_id: Option<String>,
    /// Session timeout of the group member, in milliseconds (with --group).
    #[arg(long, default_value_t = 10_000, requires = "group")]
    pub session_timeout_ms: u64,
    /// With --group and without --follow: stop after this long without records.
    #[arg(long, default_value_t = 3_000, requires = "group")]
    pub idle_ms: u64,
    /// Accepted for symmetry with the other commands: records are always JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Every consumer group, its state and member count.
    List {
        /// One JSON line per group instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A group's members, their assignments, committed offsets and lag.
    Describe {
        group: String,
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Set a group's committed offsets of a topic (only while it has no members).
    Reset {
        group: String,
        #[arg(long)]
        topic: String,
        /// earliest, latest, an offset, or time:T (RFC 3339 with any offset, relative to now
        /// as -90s, -15m, -1h, -2d, or a raw HLC): the first record stamped at or after T.
        #[arg(long, value_parser = parse_position)]
        to: Position,
        /// Print the result as one JSON object instead of lines of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a group without members, and its committed offsets.
    Delete {
        group: String,
        /// Print the result as one JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    pub topic: String,
    #[arg(long, short = 'p')]
    pub partition: u32,
    /// First offset (the batch holding it is written whole).
    #[arg(long)]
    pub from: u64,
    /// End offset, exclusive (default: the high watermark when the replay starts).
    #[arg(long)]
    pub to: Option<u64>,
    /// File to write the batches to (overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summary as one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayInspectArgs {
    /// A file written by `steme replay`.
    pub file: PathBuf,
    /// Also verify every record's Ed25519 signature.
    #[arg(long)]
    pub verify: bool,
    /// One JSON line per record, then one summary line, instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `steme consume --help`: what each output line holds.
const CONSUME_OUTPUT: &str = "\
Output: one JSON object per line and record:
  partition, offset   where the record is
  hlc                 the broker's Hybrid Logical Clock stamp (NTP64, u64)
  time                the physical part of hlc as RFC 3339 in UTC with 9 fractional
                      digits, e.g. \"2026-11-29T10:00:00.123456789Z\"
  logical             the HLC's logical counter (0 when none)
  id                  the assertion's BLAKE3 id (hex)
  signer              the signer's Ed25519 public key (hex)
  subject, predicate, object, source, confidence?, supersedes?, issued_at
  signature           Ed25519 over the id (hex)
--from time:<a printed time> starts at that record (the first stamped at or after it).";

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce pre-signed assertions; records/s, MB/s and ack latency.
    Produce(BenchArgs),
    /// Read a topic from earliest to its high watermark; records/s and MB/s.
    Consume(BenchArgs),
    /// Produce while a consumer tails; produce-to-consume latency.
    E2e(BenchArgs),
    /// Consumer groups: throughput with 1, 2, 4 members; rebalance times; pauses.
    Group(GroupBenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct GroupBenchArgs {
    /// Topic name prefix (a fresh topic per run).
    #[arg(long, default_value = "bench-group")]
    pub topic: String,
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Records the groups read.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Member counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub members: Vec<u32>,
    /// Session timeout of the members in the rebalance phase.
    #[arg(long, default_value_t = 3_000)]
    pub session_timeout_ms: u64,
    /// Time cap of each throughput run, in seconds.
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
    /// One JSON object per result (the `RESULT` pairs) on stdout; sentences go to stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Records to produce (consume: at most this many; 0 = all).
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Bytes of each canonical assertion (the payload; the record adds 68 bytes).
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Records awaiting their ack at most.
    #[arg(long, default_value_t = 8192)]
    pub window: usize,
    /// Time cap of the measured phase, in seconds.
    #[arg(long, default_value_t = 60)]
    pub max_secs: u64,
    /// Consume: verify every signature while reading.
    #[arg(long)]
    pub verify: bool,
    /// One JSON object per result (the `RESULT` pairs) on stdout; sentences go to stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// Answered once a quorum has the batch and the leader has applied it.
    All,
    /// Answered once the leader has it durably.
    Leader,
}

impl AcksArg {
    pub fn to_acks(self) -> Acks {
        match self {
            AcksArg::All => Acks::All,
            AcksArg::Leader => Acks::Leader,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AcksArg::All => "all",
            AcksArg::Leader => "leader",
        }
    }
}

/// `earliest`, `latest`, an offset, or `time:T` (see [`crate::time::parse_time`]).
pub fn parse_position(s: &str) -> Result<Position, String> {
    match s {
        "earliest" => Ok(Position::Earliest),
        "latest" => Ok(Position::Latest),
        _ => {
            if let Some(t) = s.strip_prefix("time:") {
                crate::time::parse_time(t, crate::time::now()).map(Position::Time)
            } else {
                s.parse().map(Position::Offset).map_err(|_| {
                    format!(
                        "expected earliest, latest, an offset or time:T \
                         (time:2026-11-29T10:00:00Z, time:-1h), got {s:?}"
                    )
                })
            }
        }
    }
}

/// `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("steme").chain(args.iter().copied()))
    }

    #[test]
    fn bootstrap_defaults_and_splits() {
        // clap reads STEME_BOOTSTRAP; the default applies only when it is unset.
        let cli = parse(&["topic", "list"]).unwrap();
        if std::env::var_os("STEME_BOOTSTRAP").is_none() {
            assert_eq!(cli.bootstrap, vec!["127.0.0.1:9092"]);
        }
        let cli = parse(&["--bootstrap", "a:1,b:2", "topic", "list"]).unwrap();
        assert_eq!(cli.bootstrap, vec!["a:1", "b:2"]);
        // Global: also accepted after the subcommand.
        let cli = parse(&["topic", "list", "--bootstrap", "c:3"]).unwrap();
        assert_eq!(cli.bootstrap, vec!["c:3"]);
    }

    #[test]
    fn topic_create_takes_partitions_and_configs() {
        let cli = parse(&[
            "topic",
            "create",
            "facts",
            "--partitions",
            "8",
            "--replication-factor",
            "3",
            "--config",
            "retention.ms=1000",
            "--config",
            "segment.bytes=1048576",
        ])
        .unwrap();
        match cli.command {
            Command::Topic(TopicCommand::Create {
                name,
                partitions,
                replication_factor,
                configs,
                ..
            }) => {
                assert_eq!(
                    (name.as_str(), partitions, replication_factor),
                    ("facts", 8, 3)
                );
                assert_eq!(configs[0], ("retention.ms".into(), "1000".into()));
                assert_eq!(configs.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["topic", "create", "facts"]).is_err(),
            "partitions required"
        );
        assert!(parse(&["topic", "create", "f", "-p", "1", "--config", "novalue"]).is_err());
    }

    #[test]
    fn consume_parses_every_from_form() {
        let from = |s: &str| match parse(&["consume", "t", "--from", s]).map(|c| c.command) {
            Ok(Command::Consume(a)) => Ok(a.from),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(from("earliest").unwrap(), Position::Earliest);
        assert_eq!(from("latest").unwrap(), Position::Latest);
        assert_eq!(from("42").unwrap(), Position::Offset(42));
        assert_eq!(from("time:123456").unwrap(), Position::Time(123456));
        assert_eq!(
            from("time:2026-11-29T10:00:00Z").unwrap(),
            Position::Time(1_795_946_400 << 32)
        );
        assert_eq!(
            from("time:2026-11-29T12:00:00+02:00").unwrap(),
            Position::Time(1_795_946_400 << 32)
        );
        let Position::Time(hour_ago) = from("time:-1h").unwrap() else {
            panic!("a relative time is a time")
        };
        let now = crate::time::parse_time("-0s", crate::time::now()).unwrap();
        let hour = 3600u64 << 32;
        let ago = now - hour_ago;
        assert!(ago >= hour - (1 << 32) && ago <= hour + (1 << 32), "{ago}");
        assert!(from("yesterday").is_err());
        assert!(from("time:x").is_err());
        assert!(from("time:2026-11-29T10:00:00").is_err(), "no offset");

        let Command::Consume(a) = parse(&[
            "consume", "t", "-p", "3", "--follow", "--max", "10", "--verify", "--json",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(a.partition, Some(3));
        assert!(a.follow && a.verify);
        assert_eq!(a.max, Some(10));
        assert_eq!(a.from, Position::Earliest);
    }

    #[test]
    fn produce_replay_keygen_and_bench_parse() {
        let Command::Produce(p) = parse(&["produce", "t", "--key", "k.hex"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(p.key, PathBuf::from("k.hex"));
        assert_eq!(p.acks, AcksArg::All);
        assert!(parse(&["produce", "t"]).is_err(), "--key required");

        let Command::Replay(r) = parse(&[
            "replay",
            "t",
            "--partition",
            "1",
            "--from",
            "5",
            "--to",
            "9",
            "--out",
            "o.bin",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!((r.partition, r.from, r.to), (1, 5, Some(9)));
        assert!(parse(&["replay", "t", "--partition", "1", "--out", "o"]).is_err());

        let Command::Keygen(k) = parse(&["keygen", "--out", "k", "--force"]).unwrap().command
        else {
            panic!()
        };
        assert!(k.force);

        let Command::Bench(BenchCommand::Produce(b)) = parse(&[
            "bench",
            "produce",
            "--count",
            "10",
            "--size",
            "300",
            "--acks",
            "leader",
            "--window",
            "64",
            "--linger-ms",
            "0",
            "--max-secs",
            "5",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(
            (b.count, b.size, b.window, b.linger_ms, b.max_secs),
            (10, 300, 64, 0, 5)
        );
        assert_eq!(b.acks, AcksArg::Leader);
        assert!(parse(&["bench", "e2e"]).is_ok());
        assert!(parse(&["bench", "consume", "--partitions", "4"]).is_ok());
    }

    #[test]
    fn every_command_has_help() {
        for args in [
            &["--help"][..],
            &["topic", "--help"],
            &["topic", "create", "--help"],
            &["produce", "--help"],
            &["consume", "--help"],
            &["replay", "--help"],
            &["replay-inspect", "--help"],
            &["keygen", "--help"],
            &["bench", "produce", "--help"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
    }
}
