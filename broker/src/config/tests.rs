//! Tests of the broker settings: defaults, file and flag precedence, bounds, and the
//! peer plane's requirements.

use super::*;

#[test]
fn defaults_are_valid_and_local() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
    assert_eq!(c.data_dir, PathBuf::from("./steme-data"));
}

#[test]
fn file_then_flags_override() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steme.toml");
    std::fs::write(
        &path,
        "node_id = 3\nlisten = \"127.0.0.1:7000\"\nflush = \"interval\"\n\
         peer_listen = \"127.0.0.1:7002\"\ncluster_secret_file = \"/etc/steme/secret\"\n\
         [[peers]]\nid = 1\naddr = \"127.0.0.1:7001\"\n",
    )
    .unwrap();
    let o = Overrides {
        config: Some(path),
        listen: Some("127.0.0.1:7100".parse().unwrap()),
        ..Overrides::default()
    };
    let c = Config::load(&o).unwrap();
    assert_eq!(c.node_id, 3);
    assert_eq!(c.listen.port(), 7100);
    assert_eq!(c.flush, FlushMode::Interval);
    assert_eq!(
        c.peers,
        vec![Peer {
            id: 1,
            addr: "127.0.0.1:7001".into()
        }]
    );
}

#[test]
fn client_limit_settings_come_from_flags() {
    let o = Overrides {
        max_partitions_per_broker: Some(100),
        idle_timeout_ms: Some(5_000),
        frame_timeout_ms: Some(1_000),
        max_connections_per_ip: Some(8),
        ..Overrides::default()
    };
    let c = Config::load(&o).unwrap();
    assert_eq!(c.max_partitions_per_broker, 100);
    assert_eq!(c.idle_timeout_ms, 5_000);
    assert_eq!(c.frame_timeout_ms, 1_000);
    assert_eq!(c.max_connections_per_ip, 8);
    let d = Config::default();
    assert_eq!(
        (
            d.max_partitions_per_broker,
            d.idle_timeout_ms,
            d.frame_timeout_ms,
            d.max_connections_per_ip
        ),
        (4096, 600_000, 30_000, 256)
    );
}

#[test]
fn client_limit_flags_parse_in_kebab_case() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        o: Overrides,
    }
    let cli = Cli::try_parse_from([
        "steme-broker",
        "--max-partitions-per-broker",
        "10",
        "--idle-timeout-ms",
        "20",
        "--frame-timeout-ms",
        "30",
        "--max-connections-per-ip",
        "40",
    ])
    .unwrap();
    assert_eq!(cli.o.max_partitions_per_broker, Some(10));
    assert_eq!(cli.o.idle_timeout_ms, Some(20));
    assert_eq!(cli.o.frame_timeout_ms, Some(30));
    assert_eq!(cli.o.max_connections_per_ip, Some(40));
}

#[test]
fn rejects_each_numeric_setting_outside_its_bounds() {
    let cases: Vec<(&str, Config)> = vec![
        (
            "max_frame_bytes",
            Config {
                max_frame_bytes: 1023,
                ..Config::default()
            },
        ),
        (
            "max_frame_bytes",
            Config {
                max_frame_bytes: (1 << 30) + 1,
                ..Config::default()
            },
        ),
        (
            "max_connections",
            Config {
                max_connections: 0,
                ..Config::default()
            },
        ),
        (
            "max_connections_per_ip",
            Config {
                max_connections_per_ip: 0,
                ..Config::default()
            },
        ),
        (
            "max_inflight_per_connection",
            Config {
                max_inflight_per_connection: 0,
                ..Config::default()
            },
        ),
        (
            "default_partitions",
            Config {
                default_partitions: 0,
                ..Config::default()
            },
        ),
        (
            "default_partitions",
            Config {
                default_partitions: 10_001,
                ..Config::default()
            },
        ),
        (
            "group_partitions",
            Config {
                group_partitions: 0,
                ..Config::default()
            },
        ),
        (
            "group_partitions",
            Config {
                group_partitions: 1_001,
                ..Config::default()
            },
        ),
        (
            "max_partitions_per_broker",
            Config {
                max_partitions_per_broker: 0,
                ..Config::default()
            },
        ),
        (
            "segment_bytes",
            Config {
                segment_bytes: 4095,
                ..Config::default()
            },
        ),
        (
            "segment_bytes",
            Config {
                segment_bytes: 1_000_000_000_000_000_000,
                ..Config::default()
            },
        ),
        (
            "retention_bytes",
            Config {
                retention_bytes: Some(1),
                ..Config::default()
            },
        ),
        (
            "retention_ms",
            Config {
                retention_ms: Some(999),
                ..Config::default()
            },
        ),
        (
            "flush_interval_ms",
            Config {
                flush_interval_ms: 0,
                ..Config::default()
            },
        ),
        (
            "heartbeat_interval_ms",
            Config {
                heartbeat_interval_ms: 0,
                ..Config::default()
            },
        ),
        (
            "election_timeout_max_ms",
            Config {
                election_timeout_max_ms: 10_000_000,
                ..Config::default()
            },
        ),
        (
            "retention_check_ms",
            Config {
                retention_check_ms: 0,
                ..Config::default()
            },
        ),
        (
            "idle_timeout_ms",
            Config {
                idle_timeout_ms: 0,
                ..Config::default()
            },
        ),
        (
            "frame_timeout_ms",
            Config {
                frame_timeout_ms: 0,
                ..Config::default()
            },
        ),
    ];
    for (name, c) in cases {
        match c.validate() {
            Err(e @ ConfigError::OutOfRange { setting, .. }) => {
                assert_eq!(setting, name);
                let msg = e.to_string();
                assert!(msg.contains(name) && msg.contains("out of range"), "{msg}");
            }
            other => panic!("{name}: expected out of range, got {other:?}"),
        }
    }
}

#[test]
fn a_cluster_member_needs_a_peer_listener_and_credentials() {
    let member = Config {
        peers: vec!["2=127.0.0.1:9193".parse().unwrap()],
        ..Config::default()
    };
    let e = member.validate().unwrap_err().to_string();
    assert!(e.contains("--peer-listen"), "{e}");
    let no_secret = Config {
        peer_listen: Some("127.0.0.1:9192".parse().unwrap()),
        ..member.clone()
    };
    let e = no_secret.validate().unwrap_err().to_string();
    assert!(e.contains("--cluster-secret-file"), "{e}");
    // A single broker may listen for peers, with credentials.
    let single = Config {
        peer_listen: Some("127.0.0.1:9192".parse().unwrap()),
        ..Config::default()
    };
    assert!(single.validate().is_err());
    let single = Config {
        cluster_secret_file: Some("secret".into()),
        ..single
    };
    single.validate().unwrap();
    Config {
        cluster_secret_file: Some("secret".into()),
        ..no_secret
    }
    .validate()
    .unwrap();
}

#[test]
fn rejects_unknown_keys_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "nodeid = 3\n").unwrap();
    assert!(matches!(
        Config::from_file(&path),
        Err(ConfigError::Parse { .. })
    ));
    let o = Overrides {
        node_id: Some(0),
        ..Overrides::default()
    };
    assert!(matches!(Config::load(&o), Err(ConfigError::Invalid(_))));
    assert!("7".parse::<Peer>().is_err());
    assert_eq!(
        "2=127.0.0.1:9".parse::<Peer>().unwrap(),
        Peer {
            id: 2,
            addr: "127.0.0.1:9".into()
        }
    );
}

/// The sample file in the repository, `broker/steme.toml`.
fn sample() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/steme.toml"))
        .expect("broker/steme.toml")
}

#[test]
fn the_sample_config_lists_every_setting() {
    let text = sample();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    for key in Config::keys() {
        let listed = lines.iter().any(|l| {
            l.strip_prefix(key.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with('='))
                || l.starts_with(&format!("[{key}"))
        });
        assert!(listed, "broker/steme.toml does not list `{key}`");
    }
}

#[test]
fn the_sample_config_parses_as_is_and_uncommented() {
    let text = sample();
    let dir = tempfile::tempdir().unwrap();
    let as_is = dir.path().join("as-is.toml");
    std::fs::write(&as_is, &text).unwrap();
    assert_eq!(Config::from_file(&as_is).unwrap(), Config::default());
    // Every commented setting taken at its word: the right keys, the right types.
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            let key = l.split(" =").next().unwrap_or_default();
            let a_key = l.contains(" =")
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            a_key || l.starts_with('[') || l.starts_with("  {") || *l == "]"
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let all = dir.path().join("uncommented.toml");
    std::fs::write(&all, &uncommented).unwrap();
    let c = Config::from_file(&all)
        .unwrap_or_else(|e| panic!("{e}\n--- uncommented sample:\n{uncommented}"));
    assert_ne!(c, Config::default(), "nothing was uncommented");
    assert!(c.admin_listen.is_some() && c.quotas.contains_key("cert:ingest"));
}

#[test]
fn every_setting_has_a_flag_and_an_environment_variable() {
    use clap::CommandFactory;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        o: Overrides,
    }
    let cmd = Cli::command();
    let args: Vec<&clap::Arg> = cmd.get_arguments().collect();
    for arg in &args {
        if arg.get_id() == "help" {
            continue;
        }
        assert!(
            arg.get_env().is_some(),
            "--{} has no STEME_* variable",
            arg.get_id()
        );
    }
    // Settings whose flag is named differently (a range, or the defaults' limits).
    let flag_of = |key: &str| -> Vec<&str> {
        match key {
            "election_timeout_min_ms" | "election_timeout_max_ms" => vec!["election_timeout_ms"],
            "quota_defaults" => vec![
                "quota_produce_bytes_per_sec",
                "quota_fetch_bytes_per_sec",
                "quota_connections",
            ],
            other => vec![Box::leak(other.to_owned().into_boxed_str())],
        }
    };
    for key in Config::keys() {
        for flag in flag_of(&key) {
            assert!(
                args.iter().any(|a| a.get_id() == flag),
                "setting `{key}` has no flag `{flag}`"
            );
        }
    }
}

#[test]
fn printed_config_reads_back_as_the_same_config() {
    let mut c = Config {
        admin_listen: Some("127.0.0.1:9644".parse().unwrap()),
        peers: vec![Peer {
            id: 2,
            addr: "127.0.0.1:9193".into(),
        }],
        retention_ms: Some(60_000),
        superusers: vec!["cert:ops".into()],
        ..Config::default()
    };
    c.quotas.insert(
        "cert:app".into(),
        QuotaLimits {
            connections: Some(3),
            ..QuotaLimits::default()
        },
    );
    let text = c.to_toml().unwrap();
    assert!(text.contains("# retention_bytes ="), "{text}");
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, c);
}

#[test]
fn flags_reach_every_kind_of_setting() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        o: Overrides,
    }
    let cli = Cli::try_parse_from([
        "steme-broker",
        "--max-connections",
        "7",
        "--verify-signatures",
        "false",
        "--retention-ms",
        "60000",
        "--group-partitions",
        "2",
        "--quota",
        "cert:app/connections=3",
        "--quota",
        "cert:app/produce_bytes_per_sec=4096",
    ])
    .unwrap();
    let c = Config::load(&cli.o).unwrap();
    assert_eq!(c.max_connections, 7);
    assert!(!c.verify_signatures);
    assert_eq!(c.retention_ms, Some(60_000));
    assert_eq!(c.group_partitions, 2);
    let q = c.quotas["cert:app"];
    assert_eq!(
        (q.connections, q.produce_bytes_per_sec),
        (Some(3), Some(4096))
    );
    assert!(Cli::try_parse_from(["steme-broker", "--quota", "cert:app/speed=3"]).is_err());
}
