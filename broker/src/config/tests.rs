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
