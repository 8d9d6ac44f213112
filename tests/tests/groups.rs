//! Consumer groups against a real 3-broker cluster: members splitting a topic, a member
//! killed with SIGKILL (its partitions move on from its last commit), members joining and
//! leaving under load (members that keep partitions are never interrupted, and no partition
//! is ever held by two members at once), the coordinator's broker killed, and a member paused
//! past its session that tries to commit over its successor.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use steme_client::group::describe_group;
use steme_client::{
    AssertionId, ClientConfig, Cluster as ClientCluster, GroupConfig, GroupConsumer, Producer,
    ProducerConfig, Rebalance,
};
use steme_tests::cli::CliProcess;
use steme_tests::cluster::{Cluster, ClusterOptions};
use steme_tests::workload::{create_topic, produce_all, signed};
use steme_tests::{unique, within};

fn ids_printed(lines: &[String]) -> anyhow::Result<Vec<(u32, AssertionId)>> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).with_context(|| format!("bad line {l:?}"))?;
            let p = v["partition"].as_u64().context("no partition")? as u32;
            let id = AssertionId::from_hex(v["id"].as_str().context("no id")?).context("bad id")?;
            Ok((p, id))
        })
        .collect()
}

/// Waits until the members together printed every id in `want`.
async fn wait_all_printed(
    members: &[&CliProcess],
    want: &HashSet<AssertionId>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = HashSet::new();
        for m in members {
            seen.extend(ids_printed(&m.lines())?.into_iter().map(|(_, id)| id));
        }
        let missing = want.iter().filter(|id| !seen.contains(*id)).count();
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let errs: Vec<String> = members.iter().map(|m| m.stderr()).collect();
            bail!(
                "{missing} of {} records never printed; member logs:\n{}",
                want.len(),
                errs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_a_topic_and_a_killed_members_partitions_move_on() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("grouped");
        create_topic(&cluster.bootstrap(), &topic, 4).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, ProducerConfig::default()).await?;
        let first = produce_all(&producer, &signed(&topic, 2_000, 200)?).await?;
        let args = ["consume", &topic, "--group", "g", "--follow", "--session-timeout-ms", "2000"];
        let mut a = CliProcess::start(&cluster.bootstrap(), &args)?;
        let b = CliProcess::start(&cluster.bootstrap(), &args)?;
        let want: HashSet<AssertionId> = first.iter().map(|a| a.id).collect();
        wait_all_printed(&[&a, &b], &want, Duration::from_secs(60)).await?;
        let parts = |m: &CliProcess| -> anyhow::Result<BTreeSet<u32>> {
            Ok(ids_printed(&m.lines())?.into_iter().map(|(p, _)| p).collect())
        };
        // The two split the partitions, two each.
        let client = ClientCluster::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let d = describe_group(&client, "g").await?;
            let sizes: Vec<usize> = d
                .members
                .iter()
                .map(|m| m.assignment.iter().map(|tp| tp.partitions.len()).sum())
                .collect();
            if sizes == [2, 2] {
                break;
            }
            ensure!(Instant::now() < deadline, "no even split: {d:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (a_lines, b_lines) = (a.lines().len(), b.lines().len());
        eprintln!("[groups] a printed {a_lines}, b printed {b_lines} (a: {:?}, b: {:?})", parts(&a)?, parts(&b)?);

        // a dies without leaving; b must take over a's partitions from a's last commit.
        a.signal(libc::SIGKILL)?;
        a.wait(Duration::from_secs(10))?;
        let killed = Instant::now();
        let second = produce_all(&producer, &signed(&format!("{topic}-2"), 2_000, 200)?).await?;
        let want2: HashSet<AssertionId> = second.iter().map(|a| a.id).collect();
        wait_all_printed(&[&b], &want2, Duration::from_secs(60)).await?;
        eprintln!(
            "[groups] after kill -9 of a member, the survivor read all 4 partitions' new records within {:?} (session timeout 2 s)",
            killed.elapsed()
        );
        let b_ids: Vec<(u32, AssertionId)> = ids_printed(&b.lines())?;
        let partitions_after: BTreeSet<u32> = b_ids[b_lines..].iter().map(|(p, _)| *p).collect();
        ensure!(partitions_after.len() == 4, "b reads {partitions_after:?} after a died");
        // Nothing skipped: every first-round record was printed by someone (at least once).
        let mut all: HashSet<AssertionId> = ids_printed(&a.lines())?.into_iter().map(|(_, i)| i).collect();
        all.extend(b_ids.iter().map(|(_, i)| *i));
        ensure!(want.iter().chain(&want2).all(|id| all.contains(id)), "a record was skipped");
        let dups = a.lines().len() + b.lines().len() - all.len();
        eprintln!("[groups] {dups} records were printed twice (at least once, not exactly once)");

        // The survivor commits as it goes: the group's lag drains to zero.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let d = describe_group(&client, "g").await?;
            let lag: u64 = d.offsets.iter().filter(|o| o.topic == topic).map(|o| o.lag).sum();
            if lag == 0 && d.members.len() == 1 {
                break;
            }
            ensure!(Instant::now() < deadline, "lag did not drain: {d:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await
}

/// What one in-process member saw: records with when they came, and its rebalances.
#[derive(Debug, Default)]
struct Seen {
    records: Vec<(Instant, u32, AssertionId)>,
    events: Vec<(Instant, Rebalance)>,
}

fn spawn_member(
    cluster: ClientCluster,
    topic: String,
    config: GroupConfig,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (
    Arc<Mutex<Seen>>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut m = GroupConsumer::new(cluster, &topic, config).await?;
        let events = log.clone();
        m.on_rebalance(move |e| {
            events
                .lock()
                .unwrap()
                .events
                .push((Instant::now(), e.clone()))
        });
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let records = m.poll(Duration::from_millis(100)).await?;
            let now = Instant::now();
            let mut s = log.lock().unwrap();
            for r in records {
                s.records.push((now, r.partition(), r.id()));
            }
        }
        m.close().await?;
        Ok(())
    });
    (seen, task)
}

/// Per partition, the intervals each member held it, from its rebalance events.
fn holdings(
    members: &[(&str, &Seen)],
    end: Instant,
) -> BTreeMap<u32, Vec<(Instant, Instant, String)>> {
    let mut out: BTreeMap<u32, Vec<(Instant, Instant, String)>> = BTreeMap::new();
    for (name, seen) in members {
        let mut since: BTreeMap<u32, Instant> = BTreeMap::new();
        for (at, e) in &seen.events {
            match e {
                Rebalance::Assigned(ps) => ps.iter().for_each(|p| {
                    since.insert(*p, *at);
                }),
                Rebalance::Revoked(ps) => {
                    for p in ps {
                        if let Some(from) = since.remove(p) {
                            out.entry(*p)
                                .or_default()
                                .push((from, *at, name.to_string()));
                        }
                    }
                }
            }
        }
        for (p, from) in since {
            out.entry(p)
                .or_default()
                .push((from, end, name.to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_under_load_never_share_or_pause_partitions()
-> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("churn");
        create_topic(&cluster.bootstrap(), &topic, 6).await?;
        let client = ClientCluster::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, ProducerConfig::default()).await?;
        let group = unique("churners");
        let config = || {
            let mut c = GroupConfig::new(&group);
            c.session_timeout = Duration::from_secs(3);
            c
        };
        let stop_all: Vec<Arc<std::sync::atomic::AtomicBool>> =
            (0..3).map(|_| Arc::new(std::sync::atomic::AtomicBool::new(false))).collect();
        let (m1, t1) = spawn_member(client.clone(), topic.clone(), config(), stop_all[0].clone());
        let (m2, t2) = spawn_member(client.clone(), topic.clone(), config(), stop_all[1].clone());
        // Load throughout, in rounds.
        let load = {
            let producer = producer.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                let mut acks = Vec::new();
                for round in 0..12 {
                    acks.extend(produce_all(&producer, &signed(&format!("{topic}-{round}"), 500, 200)?).await?);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                anyhow::Ok(acks)
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let churn_from = Instant::now();
        let (m3, t3) = spawn_member(client.clone(), topic.clone(), config(), stop_all[2].clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        // m1 leaves cleanly.
        let m1_leaves = Instant::now();
        stop_all[0].store(true, std::sync::atomic::Ordering::Release);
        t1.await??;
        let acks = load.await??;
        let want: HashSet<AssertionId> = acks.iter().map(|a| a.id).collect();
        // Let the remaining two drain everything.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut seen: HashSet<AssertionId> = HashSet::new();
            for m in [&m1, &m2, &m3] {
                seen.extend(m.lock().unwrap().records.iter().map(|r| r.2));
            }
            if want.iter().all(|id| seen.contains(id)) {
                break;
            }
            ensure!(Instant::now() < deadline, "{} records never read", want.iter().filter(|i| !seen.contains(*i)).count());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let churn_to = Instant::now();
        for s in &stop_all[1..] {
            s.store(true, std::sync::atomic::Ordering::Release);
        }
        t2.await??;
        t3.await??;
        let end = Instant::now();
        let (s1, s2, s3) = (m1.lock().unwrap(), m2.lock().unwrap(), m3.lock().unwrap());
        let held = holdings(&[("m1", &s1), ("m2", &s2), ("m3", &s3)], end);
        // No partition held by two members at once.
        for (p, spans) in &held {
            for (i, a) in spans.iter().enumerate() {
                for b in &spans[i + 1..] {
                    ensure!(
                        a.1 <= b.0 || b.1 <= a.0,
                        "partition {p} held by {} and {} at once: {spans:?}\nm1 {:?}\nm2 {:?}\nm3 {:?}",
                        a.2,
                        b.2,
                        s1.events,
                        s2.events,
                        s3.events
                    );
                }
            }
        }
        // Longest gap between records on the partitions a member kept through the changes:
        // m2 through m3 joining and m1 leaving, m3 through m1 leaving.
        for (name, s, churn_from) in [("m2", &s2, churn_from), ("m3", &s3, m1_leaves)] {
            let kept: BTreeSet<u32> = held
                .iter()
                .filter(|(_, spans)| {
                    spans.iter().any(|(from, until, who)| {
                        who == name && *from <= churn_from && *until >= churn_to
                    })
                })
                .map(|(p, _)| *p)
                .collect();
            let times: Vec<Instant> = s
                .records
                .iter()
                .filter(|r| kept.contains(&r.1) && r.0 >= churn_from && r.0 <= churn_to)
                .map(|r| r.0)
                .collect();
            let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
            eprintln!("[groups] {name} kept {kept:?}; longest gap between its records: {gap:?} (load arrives every ~0.3 s)");
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_carries_on_when_its_coordinators_broker_dies() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let mut cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("coord");
        create_topic(&cluster.bootstrap(), &topic, 3).await?;
        let client = ClientCluster::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let producer =
            Producer::connect(&cluster.bootstrap(), &topic, ProducerConfig::default()).await?;
        let first = produce_all(&producer, &signed(&topic, 1_500, 200)?).await?;
        let group = unique("survivors");
        let mut config = GroupConfig::new(&group);
        config.auto_commit = None;
        let mut m = GroupConsumer::new(client.clone(), &topic, config).await?;
        let mut read: HashSet<AssertionId> = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while read.len() < first.len() {
            ensure!(
                Instant::now() < deadline,
                "read only {} of {}",
                read.len(),
                first.len()
            );
            read.extend(
                m.poll(Duration::from_millis(200))
                    .await?
                    .iter()
                    .map(|r| r.id()),
            );
        }
        m.commit().await?;
        let before = describe_group(&client, &group).await?;
        let committed_before: u64 = before.offsets.iter().filter_map(|o| o.committed).sum();
        ensure!(
            committed_before == 1_500,
            "committed {committed_before} of 1500: {before:?}"
        );
        let coordinator = before.coordinator;
        eprintln!("[groups] group {group} is coordinated by broker {coordinator}; killing it");
        cluster.broker_mut(coordinator).kill9()?;
        let producer = Producer::connect(
            &cluster.bootstrap_except(coordinator),
            &topic,
            ProducerConfig::default(),
        )
        .await?;
        let second = produce_all(&producer, &signed(&format!("{topic}-2"), 500, 200)?).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !second.iter().all(|a| read.contains(&a.id)) {
            ensure!(
                Instant::now() < deadline,
                "the member stopped reading after the coordinator died"
            );
            read.extend(
                m.poll(Duration::from_millis(200))
                    .await?
                    .iter()
                    .map(|r| r.id()),
            );
        }
        // Commits reach the new coordinator, which kept the old offsets.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match m.commit().await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("[groups] commit during failover: {e}");
                    m.poll(Duration::from_millis(200)).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let client2 = ClientCluster::connect(
            &cluster.bootstrap_except(coordinator),
            ClientConfig::default(),
        )
        .await?;
        let after = describe_group(&client2, &group).await?;
        ensure!(
            after.coordinator != coordinator,
            "still coordinated by the dead broker: {after:?}"
        );
        let committed_after: u64 = after.offsets.iter().filter_map(|o| o.committed).sum();
        ensure!(
            committed_after == 2_000,
            "committed {committed_after} of 2000 after failover: {after:?}"
        );
        eprintln!(
            "[groups] broker {} took over; offsets intact",
            after.coordinator
        );
        m.close().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_paused_past_its_session_cannot_commit_over_its_successor() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("zombie");
        create_topic(&cluster.bootstrap(), &topic, 2).await?;
        let client = ClientCluster::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, ProducerConfig::default()).await?;
        produce_all(&producer, &signed(&topic, 400, 200)?).await?;
        let group = unique("zombies");
        let committed = async |client: &ClientCluster| -> anyhow::Result<u64> {
            let d = describe_group(client, &group).await?;
            Ok(d.offsets.iter().filter_map(|o| o.committed).sum())
        };
        // The zombie-to-be: a member process that reads and commits all 400.
        let args = ["consume", &topic, "--group", &group, "--follow", "--session-timeout-ms", "1500"];
        let zombie = CliProcess::start(&cluster.bootstrap(), &args)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while committed(&client).await.unwrap_or(0) < 400 {
            ensure!(Instant::now() < deadline, "the member did not commit 400; {}", zombie.stderr());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // It freezes (SIGSTOP) past its session; a successor takes both partitions, reads
        // 200 more, and commits 600.
        zombie.signal(libc::SIGSTOP)?;
        produce_all(&producer, &signed(&format!("{topic}-2"), 200, 200)?).await?;
        let mut config = GroupConfig::new(&group);
        config.session_timeout = Duration::from_millis(1_500);
        config.auto_commit = None;
        let mut successor = GroupConsumer::new(client.clone(), &topic, config).await?;
        let mut read = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while read < 200 {
            ensure!(Instant::now() < deadline, "the successor read {read} of 200");
            read += successor.poll(Duration::from_millis(100)).await?.len();
        }
        successor.commit().await?;
        ensure!(committed(&client).await? == 600, "the successor's commit");
        // The zombie wakes up: whatever it commits (its own positions, 400) is refused; it
        // learns it was removed and joins again.
        zombie.signal(libc::SIGCONT)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let d = describe_group(&client, &group).await?;
            if d.members.len() == 2 {
                break;
            }
            ensure!(Instant::now() < deadline, "the zombie did not rejoin: {d:?}\n{}", zombie.stderr());
            successor.poll(Duration::from_millis(100)).await?;
        }
        for _ in 0..20 {
            successor.poll(Duration::from_millis(100)).await?;
        }
        ensure!(committed(&client).await? == 600, "the zombie moved the offsets back");
        let log = zombie.stderr();
        eprintln!("[groups] the zombie was fenced and rejoined; offsets stayed at 600 ({} fence lines in its log)", log.matches("fenced").count());
        successor.close().await?;
        Ok(())
    })
    .await
}

/// `count` signed assertions about `subjects` subjects; some supersede the previous one of
/// their subject.
fn with_supersession(
    run: &str,
    count: usize,
    subjects: usize,
) -> anyhow::Result<Vec<steme_client::SignedAssertion>> {
    let key = steme_tests::workload::key(9);
    let mut last: BTreeMap<usize, AssertionId> = BTreeMap::new();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let s = i % subjects;
        let a = steme_client::Assertion {
            subject: format!("urn:{run}:s{s}"),
            predicate: "count".into(),
            object: steme_client::Value::Integer(i as i64),
            source: "indexer-test".into(),
            confidence: None,
            supersedes: if i % 3 == 0 {
                last.get(&s).copied()
            } else {
                None
            },
            issued_at: 1_764_000_000_000 + i as u64,
        };
        let signed = a.sign(&key)?;
        last.insert(s, signed.id());
        out.push(signed);
    }
    Ok(out)
}

/// The index the indexer should build, from the log in offset order.
fn expected_index(
    log: &BTreeMap<u32, Vec<steme_client::Record>>,
) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut index: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut superseded: HashSet<String> = HashSet::new();
    for records in log.values() {
        for r in records {
            let a = r.assertion()?;
            let id = r.id().to_hex();
            if let Some(old) = a.supersedes {
                let old = old.to_hex();
                if let Some(ids) = index.get_mut(&a.subject) {
                    ids.remove(&old);
                }
                superseded.insert(old);
            }
            if !superseded.contains(&id) {
                index.entry(a.subject.clone()).or_default().insert(id);
            }
        }
    }
    index.retain(|_, ids| !ids.is_empty());
    Ok(index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_copies_split_the_work_survive_a_crash_and_build_a_complete_index()
-> anyhow::Result<()> {
    use steme_examples::indexer::{IndexerConfig, read_index, run_indexer};
    within(Duration::from_secs(300), async {
        let cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("indexed");
        create_topic(&cluster.bootstrap(), &topic, 6).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, ProducerConfig {
            max_in_flight_per_partition: 1,
            ..ProducerConfig::default()
        })
        .await?;
        let all = with_supersession(&topic, 3_000, 200)?;
        let (first, second) = all.split_at(1_500);
        produce_all(&producer, first).await?;
        let dir = tempfile::tempdir()?;
        let group = unique("indexers");
        let cfg = IndexerConfig {
            bootstrap: cluster.bootstrap(),
            topic: topic.clone(),
            group: group.clone(),
            dir: dir.path().to_owned(),
            follow: true,
            idle: Duration::from_secs(3),
            session_timeout: Duration::from_secs(2),
            instance_id: None,
        };
        let mut stops = Vec::new();
        let mut copies = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stops.push(tx);
            copies.push(tokio::spawn(run_indexer(cfg.clone(), async {
                let _ = rx.await;
            })));
        }
        let client = ClientCluster::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let lag_of = async |client: &ClientCluster| -> anyhow::Result<(u64, usize)> {
            let d = describe_group(client, &group).await?;
            let lag = d.offsets.iter().filter(|o| o.topic == topic).map(|o| o.lag).sum();
            Ok((lag, d.members.len()))
        };
        // The three split the partitions and catch up.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((0, 3)) = lag_of(&client).await {
                break;
            }
            ensure!(Instant::now() < deadline, "the indexers did not catch up: {:?}", describe_group(&client, &group).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // One crashes (no commit, no leave); the rest go on with more records.
        copies.remove(0).abort();
        stops.remove(0);
        produce_all(&producer, second).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((0, 2)) = lag_of(&client).await {
                break;
            }
            ensure!(Instant::now() < deadline, "the survivors did not take over: {:?}", describe_group(&client, &group).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for s in stops {
            let _ = s.send(());
        }
        let mut applied = 0;
        for c in copies {
            applied += c.await??;
        }
        let log = steme_tests::workload::read_topic(&cluster.bootstrap(), &topic, Duration::from_secs(60)).await?;
        let want = expected_index(&log)?;
        let got = read_index(dir.path())?;
        ensure!(got == want, "index differs: {} subjects built, {} expected", got.len(), want.len());
        let ids: usize = got.values().map(BTreeSet::len).sum();
        eprintln!("[indexer] 3 copies, one crashed: {} subjects, {ids} current ids, complete and without duplicates ({applied} records applied by the survivors)", got.len());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarting_within_its_session_keeps_its_partitions() -> anyhow::Result<()>
{
    within(Duration::from_secs(120), async {
        let cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("static");
        create_topic(&cluster.bootstrap(), &topic, 4).await?;
        let client = ClientCluster::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let group = unique("statics");
        let config = |instance: &str| {
            let mut c = GroupConfig::new(&group);
            c.instance_id = Some(instance.to_owned());
            c.session_timeout = Duration::from_secs(10);
            c
        };
        let mut a = GroupConsumer::new(client.clone(), &topic, config("host-a")).await?;
        let mut b = GroupConsumer::new(client.clone(), &topic, config("host-b")).await?;
        let b_events = Arc::new(Mutex::new(Vec::new()));
        let log = b_events.clone();
        b.on_rebalance(move |e| log.lock().unwrap().push(e.clone()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.assignment().len() != 2 || b.assignment().len() != 2 {
            ensure!(Instant::now() < deadline, "no even split");
            a.poll(Duration::from_millis(50)).await?;
            b.poll(Duration::from_millis(50)).await?;
        }
        let (a_parts, a_id) = (a.assignment(), a.member_id().to_owned());
        let b_before = b_events.lock().unwrap().len();
        // a's process dies (no leave) and comes back at once under the same instance id.
        drop(a);
        let mut again = GroupConsumer::new(client.clone(), &topic, config("host-a")).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while again.assignment().is_empty() {
            ensure!(
                Instant::now() < deadline,
                "the returning member got nothing"
            );
            again.poll(Duration::from_millis(50)).await?;
            b.poll(Duration::from_millis(50)).await?;
        }
        ensure!(
            again.member_id() == a_id,
            "a new member id: {} vs {a_id}",
            again.member_id()
        );
        ensure!(
            again.assignment() == a_parts,
            "{:?} vs {a_parts:?}",
            again.assignment()
        );
        // b was never disturbed.
        for _ in 0..10 {
            b.poll(Duration::from_millis(50)).await?;
        }
        let b_after = b_events.lock().unwrap().len();
        ensure!(
            b_after == b_before,
            "b saw a rebalance: {:?}",
            b_events.lock().unwrap()
        );
        let d = describe_group(&client, &group).await?;
        ensure!(d.members.len() == 2, "{d:?}");
        again.close().await?;
        b.close().await?;
        Ok(())
    })
    .await
}
