//! The gateway's HTTPS and who a caller is, with real processes and curl: a client
//! certificate's CN names a principal, a caller without one (or with a certificate from
//! another CA, or over plain HTTP) gets nothing; `--sign-with`, the trust decision, off
//! by default; SIGTERM, which ends open streams cleanly and the gateway at once; and a
//! principal mapped to a client certificate for TLS brokers with authorization on, served
//! exactly as far as that certificate's ACLs go.

use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::{Admin, ClientConfig, SigningKey, TopicOptions};
use steme_tests::gateway::{CurlOutput, GatewayProcess};
use steme_tests::pki::Pki;
use steme_tests::process::BrokerProcess;
use steme_tests::unique;

const CURL_TIMEOUT: Duration = Duration::from_secs(30);

/// `curl` with the status code on a last line of its own; its exit status is returned, not
/// checked (a refused handshake is an expected outcome here).
async fn curl(args: &[&str]) -> anyhow::Result<(Option<u16>, CurlOutput)> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(CURL_TIMEOUT, cmd.output())
        .await
        .context("curl did not finish")??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = stdout
        .rsplit('\n')
        .next()
        .and_then(|c| c.trim().parse().ok())
        .filter(|c| *c != 0);
    Ok((
        code,
        CurlOutput {
            status: out.status,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
    ))
}

async fn topic(broker: &BrokerProcess) -> anyhow::Result<String> {
    let name = unique("tls");
    let admin = Admin::connect(&broker.bootstrap(), ClientConfig::default()).await?;
    admin
        .create_topic(&name, 2, TopicOptions::default())
        .await?;
    Ok(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_callers_are_named_by_their_certificate_or_refused() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let f = |n: &str| pki.file(n).display().to_string();
    let broker = tokio::task::block_in_place(BrokerProcess::start)?;
    let topic = topic(&broker).await?;
    let dir = tempfile::tempdir()?;
    let principals = dir.path().join("principals.toml");
    // The client certificate of the test CA has CN "indexer-1".
    std::fs::write(
        &principals,
        "[[principal]]\nname = \"indexer\"\ncert_cn = \"indexer-1\"\n",
    )?;
    let args = [
        "--tls-cert",
        &f("broker.pem"),
        "--tls-key",
        &f("broker.key"),
        "--tls-client-ca",
        &f("ca.pem"),
        "--principals",
        principals.to_str().context("a UTF-8 path")?,
    ];
    let gateway =
        tokio::task::block_in_place(|| GatewayProcess::start(&broker.bootstrap(), &args))?;
    let url = format!("https://{}/v1/topics/{topic}", gateway.addr());
    let ca = f("ca.pem");

    // The certificate names the principal: served.
    let (code, out) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &f("client.pem"),
        "--key",
        &f("client.key"),
        &url,
    ])
    .await?;
    ensure!(code == Some(200), "with the client certificate: {out:?}");
    ensure!(
        out.stdout.contains(&format!("\"name\":\"{topic}\"")),
        "{out:?}"
    );

    // No certificate, no token: 401, as JSON.
    let (code, out) = curl(&["--cacert", &ca, &url]).await?;
    ensure!(code == Some(401), "without a certificate: {out:?}");
    ensure!(
        out.stdout.contains("\"code\":\"unauthenticated\""),
        "{out:?}"
    );

    // A certificate from another CA: the handshake is refused, no HTTP answer at all.
    let (code, out) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &f("other-client.pem"),
        "--key",
        &f("other-client.key"),
        &url,
    ])
    .await?;
    ensure!(
        code.is_none() && !out.status.success(),
        "another CA's certificate: {out:?}"
    );

    // Plain HTTP to the HTTPS port gets no answer either.
    let plain = url.replacen("https://", "http://", 1);
    let (code, out) = curl(&[&plain]).await?;
    ensure!(code.is_none(), "plain HTTP to the TLS port: {out:?}");

    // The gateway survived all of it.
    let (code, out) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &f("client.pem"),
        "--key",
        &f("client.key"),
        &url,
    ])
    .await?;
    ensure!(
        code == Some(200),
        "after the refusals: {out:?}\n{}",
        gateway.log_tail(20)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_gateway_given_a_key_signs_plain_assertions() -> anyhow::Result<()> {
    let broker = tokio::task::block_in_place(BrokerProcess::start)?;
    let topic = topic(&broker).await?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("gateway.key");
    let key = SigningKey::from_bytes(&[42; 32]);
    steme_client::keys::save_signing_key(&key_file, &key, steme_client::keys::Existing::Refuse)?;
    let plain = r#"{"subject":"urn:thing:1","predicate":"colour","object":"red","source":"ops"}"#;

    // By default: refused, naming the record, nothing stored.
    let open = tokio::task::block_in_place(|| GatewayProcess::start(&broker.bootstrap(), &[]))?;
    let post = format!("http://{}/v1/topics/{topic}/assertions", open.addr());
    let (code, out) = curl(&["--data-binary", plain, &post]).await?;
    ensure!(
        code == Some(400),
        "an unsigned record without --sign-with: {out:?}"
    );
    ensure!(
        out.stdout.contains("\"index\":0") && out.stdout.contains("not signed"),
        "{out:?}"
    );

    // With --sign-with: signed by that key, and stored.
    let signing = tokio::task::block_in_place(|| {
        GatewayProcess::start(
            &broker.bootstrap(),
            &["--sign-with", key_file.to_str().expect("a UTF-8 path")],
        )
    })?;
    let post = format!("http://{}/v1/topics/{topic}/assertions", signing.addr());
    let (code, out) = curl(&["--data-binary", plain, &post]).await?;
    ensure!(code == Some(200), "--sign-with: {out:?}");
    let ack: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap_or(""))?;
    let partition = ack["partition"]
        .as_u64()
        .context("an ack names its partition")?;
    let read = format!(
        "http://{}/v1/topics/{topic}/partitions/{partition}/records?from=0",
        signing.addr()
    );
    let (code, out) = curl(&[&read]).await?;
    ensure!(code == Some(200), "{out:?}");
    let record: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap_or(""))?;
    ensure!(record["id"] == ack["id"], "{out:?}");
    ensure!(
        record["signer"] == hex::encode(key.verifying_key().to_bytes()),
        "the record is not signed by the gateway's key: {record}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_and_the_gateway_at_once() -> anyhow::Result<()> {
    let broker = tokio::task::block_in_place(BrokerProcess::start)?;
    let topic = topic(&broker).await?;
    let mut gateway =
        tokio::task::block_in_place(|| GatewayProcess::start(&broker.bootstrap(), &[]))?;
    let url = format!(
        "http://{}/v1/topics/{topic}/partitions/0/stream",
        gateway.addr()
    );
    // A tail that would run for ever; it must end, cleanly, when the gateway stops.
    let mut tail = tokio::process::Command::new("curl");
    tail.args(["-sSN", "--max-time", "60", &url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let tail = tail.spawn()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::block_in_place(|| gateway.terminate(Duration::from_secs(5)))?;
    ensure!(status.success(), "the gateway exited with {status}");
    let out = tokio::time::timeout(Duration::from_secs(5), tail.wait_with_output())
        .await
        .context("the stream did not end with the gateway")??;
    ensure!(out.status.success(), "the stream ended badly: {out:?}");
    Ok(())
}

/// A signed assertion as the JSON array a post takes.
fn one_signed(subject: &str) -> anyhow::Result<String> {
    let a = steme_client::Assertion::builder(subject, "p")
        .object(steme_client::Value::Integer(1))
        .source("s")
        .build()?;
    Ok(serde_json::to_string(&[
        a.sign(&SigningKey::from_bytes(&[5; 32]))?
    ])?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_reaches_tls_brokers_with_its_own_certificate_and_acls() -> anyhow::Result<()> {
    use steme_client::ClientTls;
    use steme_client::connection::AuthKey;
    use steme_protocol::acl::Acl;
    use steme_protocol::messages::authenticate::key_principal;
    use steme_tests::process::BrokerOptions;

    let pki = Pki::new()?;
    let f = |n: &str| pki.file(n).display().to_string();
    let ops = SigningKey::from_bytes(&[9; 32]);
    let superuser = format!(
        "--superuser={}",
        key_principal(&ops.verifying_key().to_bytes())
    );
    let mut args = pki.broker_args();
    args.extend([
        "--auth=required".into(),
        "--authorization=on".into(),
        superuser,
    ]);
    let broker = tokio::task::block_in_place(|| {
        BrokerProcess::start_with(BrokerOptions {
            args,
            ..BrokerOptions::default()
        })
    })?;
    let mut as_ops = ClientConfig::default();
    as_ops.connection.tls = Some(ClientTls::from_pem_files(&pki.file("ca.pem"), None)?);
    as_ops.connection.auth_key = Some(AuthKey(ops));
    let admin = Admin::connect(&broker.bootstrap(), as_ops).await?;
    let topic = unique("certs");
    admin
        .create_topic(&topic, 1, TopicOptions::default())
        .await?;

    // "indexer" speaks to the brokers with the client certificate (cert:indexer-1);
    // "nobody" has no broker credentials, and the gateway has none of its own either.
    let dir = tempfile::tempdir()?;
    let (indexer_token, nobody_token) = ("token-of-the-indexer", "token-of-nobody");
    let hash = |t: &str| hex::encode(blake3::hash(t.as_bytes()).as_bytes());
    let principals = dir.path().join("principals.toml");
    std::fs::write(
        &principals,
        format!(
            "[[principal]]\nname = \"indexer\"\ntoken_blake3 = \"{}\"\nbroker_cert = \"{}\"\nbroker_cert_key = \"{}\"\n\n\
             [[principal]]\nname = \"nobody\"\ntoken_blake3 = \"{}\"\n",
            hash(indexer_token),
            f("client.pem"),
            f("client.key"),
            hash(nobody_token),
        ),
    )?;
    let gateway = tokio::task::block_in_place(|| {
        GatewayProcess::start(
            &broker.bootstrap(),
            &[
                "--principals",
                principals.to_str().expect("a UTF-8 path"),
                "--broker-tls-ca",
                &f("ca.pem"),
            ],
        )
    })?;
    let post = format!("http://{}/v1/topics/{topic}/assertions", gateway.addr());
    let body = one_signed(&unique("urn:cert"))?;
    let as_indexer = format!("authorization: Bearer {indexer_token}");
    let as_nobody = format!("authorization: Bearer {nobody_token}");

    // No ACL yet: the broker denies cert:indexer-1, and the gateway says so (403).
    let (code, out) = curl(&["-H", &as_indexer, "--data-binary", &body, &post]).await?;
    ensure!(code == Some(403), "before the ACL: {out:?}");
    ensure!(
        out.stdout.contains("cert:indexer-1"),
        "the denial names the principal: {out:?}"
    );

    let acl = Acl::parse("cert:indexer-1", &format!("topic:{topic}"), "produce")
        .map_err(anyhow::Error::msg)?;
    admin.add_acl(&acl).await?;
    let mut stored = None;
    for _ in 0..50 {
        let (code, out) = curl(&["-H", &as_indexer, "--data-binary", &body, &post]).await?;
        if code == Some(200) {
            stored = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = stored.context("the granted principal was never served")?;
    ensure!(out.stdout.contains("\"duplicate\":false"), "{out:?}");

    // A principal without broker credentials is no more than an anonymous client: the
    // brokers require authentication, so nothing is stored for it.
    let other = one_signed(&unique("urn:cert"))?;
    let (code, out) = curl(&["-H", &as_nobody, "--data-binary", &other, &post]).await?;
    ensure!(
        code.is_some_and(|c| c >= 400) && !out.stdout.contains("\"duplicate\""),
        "an unauthenticated principal was served: {out:?}"
    );
    Ok(())
}
