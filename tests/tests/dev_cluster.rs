//! The README's first command: `steme-broker dev-cluster --nodes 3`, a real process. It
//! makes its own cluster secret, its brokers reach each other on the authenticated peer
//! plane, and clients produce and read back through any of them; SIGTERM stops it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use steme_client::{Producer, ProducerConfig};
use steme_tests::workload::{check_log, create_topic, produce_all, read_topic, signed};
use steme_tests::{binaries, unique, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_serves_with_a_secret_of_its_own() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(binaries::broker()?)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["dev-cluster", "--nodes", "3", "--base-port", "0"])
        .env("STEME_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start dev-cluster")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(list) = line.strip_prefix("dev cluster of 3 up; bootstrap: ") {
                let _ = tx.send(list.to_owned());
            }
        }
    });
    let result = within(Duration::from_secs(120), async {
        let bootstrap =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
                .await?
                .context("dev-cluster did not come up")?;
        ensure!(bootstrap.split(',').count() == 3, "bootstrap {bootstrap}");

        let secret = dir.path().join("cluster.secret");
        let text = std::fs::read_to_string(&secret).context("no cluster secret was made")?;
        ensure!(
            text.trim().len() >= 64,
            "a short secret: {} bytes",
            text.trim().len()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret)?.permissions().mode();
            ensure!(
                mode & 0o077 == 0,
                "the secret is readable by others: {mode:o}"
            );
        }

        let topic = unique("dev");
        create_topic(&bootstrap, &topic, 3).await?;
        let producer = Producer::connect(&bootstrap, &topic, ProducerConfig::default()).await?;
        let batch = signed(&topic, 300, 100)?;
        produce_all(&producer, &batch).await?;
        producer.close().await?;
        let log = read_topic(&bootstrap, &topic, Duration::from_secs(60)).await?;
        ensure!(
            check_log(&log)?.records == 300,
            "not every record read back"
        );
        anyhow::Ok(())
    })
    .await;

    // SIGTERM stops every broker cleanly.
    let pid = libc::pid_t::try_from(child.id())?;
    // SAFETY: `kill` has no memory-safety preconditions; `pid` is our own child, not yet
    // reaped (we hold its `Child`), so the id cannot have been reused.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!("dev-cluster did not stop within 90 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    result?;
    ensure!(status.success(), "dev-cluster exited with {status}");
    Ok(())
}
