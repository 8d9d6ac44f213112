//! The README's HTTP gateway tour, run as it is written: the block between its
//! `gateway-tour` markers, with bash, in a fresh directory, against a real broker and a real
//! `steme-gateway` (its address put in place of the README's 127.0.0.1:8080): `steme sign`
//! piped into `curl`, the duplicate, a read, a topic description, an SSE read, and the
//! Python producer. Also: the README's Python producer is `examples/python/produce.py`.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use steme_tests::gateway::GatewayProcess;
use steme_tests::process::BrokerProcess;
use steme_tests::{binaries, readme_block, within};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn the_readme_python_producer_is_the_example_file() -> anyhow::Result<()> {
    let file = std::fs::read_to_string(format!("{REPO}/examples/python/produce.py"))?;
    let block = readme_block("python-producer", "python")?;
    ensure!(
        block == file,
        "the README's producer differs from examples/python/produce.py"
    );
    let code = file
        .lines()
        .skip_while(|l| !l.starts_with("import"))
        .filter(|l| !l.trim().is_empty())
        .count();
    ensure!(
        code == 10,
        "the README promises ten lines of Python; the file has {code}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_gateway_tour_runs_as_written() -> anyhow::Result<()> {
    let script = readme_block("gateway-tour", "sh")?;
    ensure!(
        script.contains("127.0.0.1:8080"),
        "the tour no longer names the gateway"
    );
    let broker = tokio::task::block_in_place(BrokerProcess::start)?;
    let gateway = tokio::task::block_in_place(|| GatewayProcess::start(&broker.bootstrap(), &[]))?;
    let script = script
        .replace("127.0.0.1:8080", &gateway.addr().to_string())
        .replace(
            "python3 examples/python/",
            &format!("python3 {REPO}/examples/python/"),
        );
    let dir = tempfile::tempdir()?;
    let mut path =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    path.insert(
        0,
        binaries::cli()?
            .parent()
            .context("a binary in a directory")?
            .to_owned(),
    );
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(dir.path())
        .env("PATH", std::env::join_paths(path)?)
        .env("STEME_BOOTSTRAP", broker.bootstrap())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = within(Duration::from_secs(120), async { Ok(cmd.output().await?) }).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let explain = || {
        format!(
            "stdout:\n{stdout}\nstderr:\n{stderr}\ngateway log:\n{}",
            gateway.log_tail(20)
        )
    };
    ensure!(
        out.status.success(),
        "the tour failed ({}):\n{}",
        out.status,
        explain()
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ack = lines.first().context("no ack printed")?;
    ensure!(
        ack["duplicate"] == false,
        "the first post was not new:\n{}",
        explain()
    );
    let id = ack["id"].as_str().context("an ack has an id")?;
    ensure!(
        lines
            .iter()
            .any(|l| l["id"] == id && l["duplicate"] == true),
        "the second post was not a duplicate:\n{}",
        explain()
    );
    ensure!(
        lines
            .iter()
            .any(|l| l["id"] == id && l["signature"].is_string() && l["time"].is_string()),
        "the read did not return the record:\n{}",
        explain()
    );
    ensure!(
        stdout.contains("\"partitions\":[{\"partition\":0,\"leader\":"),
        "no topic description:\n{}",
        explain()
    );
    ensure!(
        stdout
            .lines()
            .any(|l| l.starts_with("data: ") && l.contains(id)),
        "the stream did not carry the record:\n{}",
        explain()
    );
    // The Python producer's two acks: new records, on the topic.
    let python: Vec<_> = lines
        .iter()
        .filter(|l| l["duplicate"] == false && l["id"] != id)
        .collect();
    ensure!(
        python.len() == 2,
        "the Python producer's acks are missing:\n{}",
        explain()
    );
    Ok(())
}
