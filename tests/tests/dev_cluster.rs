//! The README's first command: `steme-broker dev-cluster --nodes 3`, a real process. It
//! makes its own cluster secret, its brokers reach each other on the authenticated peer
//! plane, and clients produce and read back through any of them; SIGTERM stops it.

use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::{Producer, ProducerConfig};
use steme_tests::dev::DevCluster;
use steme_tests::http;
use steme_tests::workload::{check_log, create_topic, produce_all, read_topic, signed};
use steme_tests::{unique, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_serves_with_a_secret_of_its_own() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    let (cluster, bootstrap) =
        tokio::task::spawn_blocking(move || DevCluster::start(&path, 3)).await??;
    let result = within(Duration::from_secs(120), async {
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

        // Each broker's admin listener is on, and says it is ready.
        ensure!(
            cluster.admin_addrs().len() == 3,
            "admin listeners printed: {:?}",
            cluster.admin_addrs()
        );
        for &addr in cluster.admin_addrs() {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let ready = http::get(addr, "/readyz", Duration::from_secs(10)).await?;
                if ready.status == 200 {
                    break;
                }
                ensure!(
                    std::time::Instant::now() < deadline,
                    "{addr} not ready: {}",
                    ready.body
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
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
    let status = cluster.terminate(Duration::from_secs(90))?;
    result?;
    ensure!(status.success(), "dev-cluster exited with {status}");
    Ok(())
}
