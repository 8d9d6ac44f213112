//! The groups topic is compacted by snapshots: a coordinator loaded after a restart
//! recovers every group's last commit and membership, and replays only the last snapshot
//! and what follows it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Client, TestResult, create_topic};
use steme_broker::config::Config;
use steme_broker::groups::CompactionStats;
use steme_broker::node::{Advertised, Broker};
use steme_protocol::messages::RequestBody;
use steme_protocol::messages::commit_offsets::{CommitOffsetsRequest, OffsetCommit};
use steme_protocol::messages::describe_group::DescribeGroupRequest;
use steme_protocol::messages::fetch_offsets::FetchOffsetsRequest;
use steme_protocol::messages::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A broker in this process whose node the test can ask about its coordinators.
struct Node {
    addr: std::net::SocketAddr,
    broker: Arc<Broker>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    async fn start(
        dir: &tempfile::TempDir,
    ) -> Result<Node, Box<dyn std::error::Error + Send + Sync>> {
        Node::start_with(dir, |_| {}).await
    }

    /// [`Node::start`] with settings changed by `tweak`.
    async fn start_with(
        dir: &tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Node, Box<dyn std::error::Error + Send + Sync>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut cfg = Config {
            listen: addr,
            data_dir: dir.path().to_owned(),
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            // Every group in one coordinator, so that they share its snapshots.
            group_partitions: 1,
            ..Config::default()
        };
        tweak(&mut cfg);
        let broker = Broker::start(cfg, Advertised::client(addr.to_string())).await?;
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(steme_broker::server::run(listener, broker.clone(), async {
            let _ = rx.await;
        }));
        Ok(Node {
            addr,
            broker,
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.broker.shutdown().await;
    }

    async fn compaction(
        &self,
        group: &str,
    ) -> Result<CompactionStats, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.broker.group_compaction(group).await?)
    }
}

const TOPIC: &str = "facts";
const SESSION_MS: u32 = 120_000;

/// Calls until the coordinator answers (the groups topic is created on first use, and a
/// coordinator loads after a restart), for at most 10 s.
async fn retrying<R: RequestBody>(
    c: &mut Client,
    req: &R,
) -> Result<R::Response, Box<dyn std::error::Error + Send + Sync>> {
    let mut last = None;
    for _ in 0..100 {
        match c.call(req).await {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("no answer from the coordinator: {last:?}").into())
}

fn commit(
    group: &str,
    member: &str,
    epoch: u32,
    partition: u32,
    offset: u64,
) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group: group.into(),
        member_id: member.into(),
        member_epoch: epoch,
        offsets: vec![OffsetCommit {
            topic: TOPIC.into(),
            partition,
            offset,
            metadata: format!("at {offset}"),
        }],
    }
}

fn join(group: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        group: group.into(),
        member_id: String::new(),
        instance_id: None,
        member_epoch: 0,
        session_timeout_ms: SESSION_MS,
        subscription: vec![TOPIC.into()],
        owned: vec![],
    }
}

/// A member of `group` that owns its assignment.
async fn member(
    c: &mut Client,
    group: &str,
) -> Result<HeartbeatResponse, Box<dyn std::error::Error + Send + Sync>> {
    let joined = retrying(c, &join(group)).await?;
    let mut again = join(group);
    again.member_id = joined.member_id.clone();
    again.member_epoch = joined.member_epoch;
    again.owned = joined.assignment.clone().unwrap_or_default();
    let settled = c.call(&again).await?;
    Ok(HeartbeatResponse {
        assignment: joined.assignment,
        ..settled
    })
}

/// Every committed offset of `group`, by partition.
async fn committed(
    c: &mut Client,
    group: &str,
) -> Result<BTreeMap<u32, (u64, String)>, Box<dyn std::error::Error + Send + Sync>> {
    let req = FetchOffsetsRequest {
        group: group.into(),
        partitions: None,
    };
    let r = retrying(c, &req).await?;
    Ok(r.offsets
        .into_iter()
        .filter_map(|o| o.offset.map(|off| (o.partition, (off, o.metadata))))
        .collect())
}

/// Commits `n` offsets round-robin over 3 member-less groups and 4 partitions, starting at
/// `from`; returns what each group should have.
async fn commit_many(
    c: &mut Client,
    from: u64,
    n: u64,
    expected: &mut BTreeMap<String, BTreeMap<u32, (u64, String)>>,
) -> TestResult {
    for i in from..from + n {
        let (group, partition) = (format!("reset-{}", i % 3), (i % 4) as u32);
        let r = retrying(c, &commit(&group, "", 0, partition, i)).await?;
        assert!(r.results.iter().all(|p| p.error == 0), "{r:?}");
        expected
            .entry(group)
            .or_default()
            .insert(partition, (i, format!("at {i}")));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_recovers_every_last_commit_and_membership_from_a_snapshot()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let node = Node::start(&dir).await?;
    let mut c = Client::connect(node.addr).await;
    create_topic(&mut c, TOPIC, 4).await;
    let m = member(&mut c, "members").await?;
    let owned: Vec<u32> = m
        .assignment
        .iter()
        .flatten()
        .flat_map(|tp| tp.partitions.clone())
        .collect();
    assert_eq!(owned.len(), 4, "one member owns every partition");
    let mut expected = BTreeMap::new();
    commit_many(&mut c, 0, 2_500, &mut expected).await?;
    for (i, p) in owned.iter().enumerate() {
        let r = c
            .call(&commit(
                "members",
                &m.member_id,
                m.member_epoch,
                *p,
                7_000 + i as u64,
            ))
            .await?;
        assert!(r.results.iter().all(|p| p.error == 0), "{r:?}");
    }
    let before = node.compaction("members").await?;
    assert!(before.last_snapshot.is_some(), "{before:?}");
    node.stop().await;

    let node = Node::start(&dir).await?;
    let mut c = Client::connect(node.addr).await;
    for (group, offsets) in &expected {
        assert_eq!(&committed(&mut c, group).await?, offsets, "{group}");
    }
    let members = committed(&mut c, "members").await?;
    assert_eq!(members.len(), 4);
    assert!(members.values().all(|(o, _)| *o >= 7_000), "{members:?}");
    let d = c
        .call(&DescribeGroupRequest {
            group: "members".into(),
        })
        .await?;
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, m.member_id);
    assert_eq!(d.members[0].member_epoch, m.member_epoch);
    // The load read the last snapshot and what followed, not the 2,500 commits.
    let after = node.compaction("members").await?;
    assert_eq!(after.last_snapshot, before.last_snapshot);
    assert!(
        after.loaded_records <= 1_100,
        "replayed {} records",
        after.loaded_records
    );
    // The member carries on where it was.
    let r = c
        .call(&commit(
            "members",
            &m.member_id,
            m.member_epoch,
            owned[0],
            9_000,
        ))
        .await?;
    assert!(r.results.iter().all(|p| p.error == 0), "{r:?}");
    node.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_right_after_a_snapshot_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let node = Node::start(&dir).await?;
    let mut c = Client::connect(node.addr).await;
    create_topic(&mut c, TOPIC, 4).await;
    let mut expected = BTreeMap::new();
    // Commit until the last thing stored is a snapshot.
    let mut n = 0u64;
    loop {
        commit_many(&mut c, n, 1, &mut expected).await?;
        n += 1;
        let s = node.compaction("reset-0").await?;
        if s.last_snapshot.is_some() && s.since_snapshot == 0 {
            break;
        }
        assert!(n < 5_000, "no snapshot after {n} commits: {s:?}");
    }
    node.stop().await;

    let node = Node::start(&dir).await?;
    let mut c = Client::connect(node.addr).await;
    for (group, offsets) in &expected {
        assert_eq!(&committed(&mut c, group).await?, offsets, "{group}");
    }
    let s = node.compaction("reset-0").await?;
    // Only the snapshot's parts were read.
    assert!(
        s.loaded_records <= 2,
        "replayed {} records",
        s.loaded_records
    );
    node.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_groups_topic_deletes_what_its_last_snapshot_supersedes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let small = |c: &mut Config| {
        c.segment_bytes = 64 << 10;
        c.retention_check_ms = 100;
    };
    let node = Node::start_with(&dir, small).await?;
    let mut c = Client::connect(node.addr).await;
    create_topic(&mut c, TOPIC, 4).await;
    let mut expected = BTreeMap::new();
    commit_many(&mut c, 0, 2_500, &mut expected).await?;
    let groups_start = |r: steme_protocol::messages::describe_topic::DescribeTopicResponse| {
        r.partitions.first().map_or(0, |p| p.log_start_offset)
    };
    let describe = steme_protocol::messages::describe_topic::DescribeTopicRequest {
        name: steme_broker::groups::GROUPS_TOPIC.into(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let start = loop {
        let start = groups_start(c.call(&describe).await?);
        if start >= 1_000 {
            break start;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the groups topic still starts at {start} after 2,500 commits"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Never past the last snapshot: a restart still recovers every last commit.
    node.stop().await;
    let node = Node::start_with(&dir, small).await?;
    let mut c = Client::connect(node.addr).await;
    for (group, offsets) in &expected {
        assert_eq!(&committed(&mut c, group).await?, offsets, "{group}");
    }
    let after = groups_start(c.call(&describe).await?);
    assert!(
        after >= start,
        "the log start went back from {start} to {after}"
    );
    node.stop().await;
    Ok(())
}
