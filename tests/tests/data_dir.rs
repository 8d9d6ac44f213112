//! One broker process per data directory. A second broker started on a directory another
//! holds exits at once, non-zero, naming the directory and the holder's pid, and the first
//! keeps serving with every record intact; once the holder dies (even by SIGKILL) the kernel
//! frees the lock and a new broker starts on the directory with every acknowledged record.
//! `dev-cluster` locks its base directory and each broker's `node-<id>`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use steme_client::{Ack, Producer, ProducerConfig};
use steme_tests::dev::DevCluster;
use steme_tests::workload::{
    check_acks_present, check_log, create_topic, produce_all, read_topic, signed,
};
use steme_tests::{BrokerProcess, binaries, unique, within};

/// How long a broker refused its data directory may take to exit (it takes milliseconds;
/// the margin is for a loaded machine).
const REFUSAL_WITHIN: Duration = Duration::from_secs(10);

/// A `steme-broker` that exited on its own: how, and what it wrote on stderr.
struct Exited {
    status: ExitStatus,
    stderr: String,
}

/// Runs `steme-broker` with `args` and waits for it to exit, at most [`REFUSAL_WITHIN`]
/// (still running then is an error: it did not refuse). Settings come from `args` only.
fn run_to_exit(args: &[&std::ffi::OsStr]) -> anyhow::Result<Exited> {
    let mut cmd = Command::new(binaries::broker()?);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STEME_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .args(args)
        .env("STEME_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start steme-broker")?;
    let mut stderr = child.stderr.take().context("stderr is piped")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + REFUSAL_WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap_or_default();
    let status = status.with_context(|| {
        format!("steme-broker {args:?} still ran after {REFUSAL_WITHIN:?}; stderr:\n{stderr}")
    })?;
    Ok(Exited { status, stderr })
}

/// Starts broker 1 on `data_dir` (on an ephemeral port, so only the directory is shared)
/// and checks that it is refused at once, naming the directory and `holder`.
fn check_refused(data_dir: &Path, holder: u32) -> anyhow::Result<()> {
    let t = Instant::now();
    let exited = run_to_exit(&[
        "--node-id".as_ref(),
        "1".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
    ])?;
    eprintln!(
        "second broker exited with {} after {:?}: {}",
        exited.status,
        t.elapsed(),
        exited.stderr.trim()
    );
    check_in_use(&exited, data_dir, holder)
}

/// `exited` failed, saying that `dir` is in use by pid `holder`.
fn check_in_use(exited: &Exited, dir: &Path, holder: u32) -> anyhow::Result<()> {
    let stderr = &exited.stderr;
    ensure!(
        !exited.status.success(),
        "a broker on a locked directory exited with {}; stderr:\n{stderr}",
        exited.status
    );
    let named = format!("data directory {} is in use", dir.display());
    ensure!(
        stderr.contains(&named),
        "stderr does not say {named:?}:\n{stderr}"
    );
    ensure!(
        stderr.contains(&format!("pid {holder}")),
        "stderr does not name the holder, pid {holder}:\n{stderr}"
    );
    Ok(())
}

/// The pid recorded in a data directory's lock file.
fn pid_in_lock_file(data_dir: &Path) -> anyhow::Result<u32> {
    let path = data_dir.join(steme_broker::data_dir::LOCK_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("no pid in {}: {text:?}", path.display()))
}

/// Produces `count` fresh assertions to `topic` and returns their acks.
async fn produce(bootstrap: &str, topic: &str, count: usize) -> anyhow::Result<Vec<Ack>> {
    let run = unique("lock");
    let batch = tokio::task::spawn_blocking(move || signed(&run, count, 100)).await??;
    let producer = Producer::connect(bootstrap, topic, ProducerConfig::default()).await?;
    let acks = produce_all(&producer, &batch).await?;
    producer.close().await?;
    Ok(acks)
}

/// Reads `topic` back: exactly `acks.len()` records, each ack at its offset.
async fn check_exactly(bootstrap: &str, topic: &str, acks: &[Ack]) -> anyhow::Result<()> {
    let log = read_topic(bootstrap, topic, Duration::from_secs(60)).await?;
    let index = check_log(&log)?;
    check_acks_present(&log, acks)?;
    ensure!(
        index.records == acks.len(),
        "the log holds {} records, {} were acknowledged",
        index.records,
        acks.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_broker_on_a_held_data_dir_exits_at_once_and_the_first_keeps_serving()
-> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    let pid = broker.pid().context("the broker runs")?;
    within(Duration::from_secs(120), async {
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, "facts", 2).await?;
        let mut acks = produce(&bootstrap, "facts", 200).await?;

        check_refused(&broker.data_dir(), pid)?;
        // The refused broker left the lock file alone.
        ensure!(pid_in_lock_file(&broker.data_dir())? == pid);

        // The first broker still serves, and nothing it held was touched.
        acks.extend(produce(&bootstrap, "facts", 200).await?);
        check_exactly(&bootstrap, "facts", &acks).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_frees_the_data_dir_and_the_next_broker_finds_every_ack() -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start()?;
    within(Duration::from_secs(120), async {
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, "facts", 2).await?;
        let acks = produce(&bootstrap, "facts", 300).await?;

        // SIGKILL: no chance to unlock; the kernel drops the lock with the process. The
        // lock file stays behind with the dead broker's pid, and does not stop the restart.
        broker.kill9()?;
        ensure!(
            broker
                .data_dir()
                .join(steme_broker::data_dir::LOCK_FILE)
                .is_file()
        );
        broker.restart()?;
        let pid = broker.pid().context("the broker runs")?;
        ensure!(pid_in_lock_file(&broker.data_dir())? == pid);
        check_exactly(&broker.bootstrap(), "facts", &acks).await?;

        // The new broker holds the directory as the first did.
        check_refused(&broker.data_dir(), pid)?;
        Ok(())
    })
    .await
}

/// A child process killed (and reaped) on drop, so a failing test leaves nothing running.
#[test]
fn dev_cluster_holds_its_base_dir_and_every_node_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cluster, _) = DevCluster::start(dir.path(), 2)?;
    let pid = cluster.pid().context("running")?;

    // A second dev-cluster stops at the base directory, before it binds anything.
    let exited = run_to_exit(&[
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
        "dev-cluster".as_ref(),
        "--nodes".as_ref(),
        "2".as_ref(),
        "--base-port".as_ref(),
        "0".as_ref(),
    ])?;
    check_in_use(&exited, dir.path(), pid)?;
    // A lone broker on one of the cluster's node directories is refused too.
    check_refused(&dir.path().join("node-2"), pid)?;
    drop(cluster);
    Ok(())
}
